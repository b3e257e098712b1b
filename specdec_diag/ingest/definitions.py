"""Which definition of "accept rate" an engine's numbers follow, decided from the numbers
themselves. SGLang's decode lines and its Prometheus gauges print the same pair (accept length,
accept rate), so both sources call this one fit.

Version A (Oct 2025 - early 2026): ``ar = al/N`` (the bonus token included, floor 1/N); version B
(2026): ``ar = (al-1)/(N-1)`` (bonus excluded); sglang-jax: ``ar = al/N`` with N = num_steps.
"""

from __future__ import annotations

import polars as pl

_TOL = 0.011  # accept rate printed with 2 decimals; accept len too: allow both roundings


def fit_accept_rate_definition(dec: pl.DataFrame, n_cfg: int | None, jax: bool) -> tuple[str | None, int | None]:
    """Which accept-rate definition the lines follow, and N. Version A: ar = al/N; B: ar = (al-1)/(N-1);
    jax: ar = al/N with N = num_steps. Returns (version, N); N None when the numbers cannot tell."""
    pts = dec.filter(
        pl.col("al").is_not_null()
        & pl.col("ar").is_not_null()
        & pl.col("al").is_finite()
        & pl.col("ar").is_finite()
    )
    if pts.height == 0:
        return None, None
    cands = range(1 if jax else 2, 65)
    exprs = []
    # the median error: one garbled line (accept len 9.5 among 2.x) must not change every row's reading
    for n in cands:
        exprs.append((pl.col("ar") - pl.col("al") / n).abs().median().alias(f"A{n}"))
        if n >= 2 and not jax:
            exprs.append((pl.col("ar") - (pl.col("al") - 1) / (n - 1)).abs().median().alias(f"B{n}"))
    errs = pts.select(exprs).row(0, named=True)
    if n_cfg is not None:
        fit = {k: v for k, v in errs.items() if int(k[1:]) == n_cfg and v is not None and v <= _TOL}
        if fit:
            best = min(fit, key=lambda k: fit[k])
            return ("jax" if jax else best[0]), n_cfg
    best_err = min(v for v in errs.values() if v is not None)
    if best_err > _TOL:
        return "unknown", None
    near = [k for k, v in errs.items() if v is not None and v <= best_err + 0.002]
    versions = {k[0] for k in near}
    if len(versions) > 1:
        return "unknown", None
    version = "jax" if jax else versions.pop()
    ns = {int(k[1:]) for k in near}
    return version, (ns.pop() if len(ns) == 1 else None)
