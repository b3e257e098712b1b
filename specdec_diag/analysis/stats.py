"""Acceptance statistics shared by the gate and the run comparisons: windows as the unit, the pooled
(draft-weighted) rate, median/MAD, and seeded cluster-bootstrap intervals. Acceptance is a ratio of
counts whose window-to-window spread comes from the workload mix, so windows, not tokens, are resampled.
"""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis import metrics


def acceptance_units(windows: pl.DataFrame, steps: pl.DataFrame | None = None, block: int = 32) -> pl.DataFrame:
    """Per-window (drafted, accepted) pairs: the aggregated window rows of :func:`metrics.aggregation_rows`.
    Windows that logged only a rate count with weight = their drafts (x k), else 1. Without windows,
    trace steps are cut into blocks of ``block`` steps per file."""
    schema = {"drafted": pl.Float64, "accepted": pl.Float64}
    rows = metrics.aggregation_rows(windows) if windows.height else windows
    if rows.height:
        weight = pl.coalesce(
            pl.col("draft_tokens").cast(pl.Float64),
            pl.col("_drafts") * pl.col("k").cast(pl.Float64),
            pl.lit(1.0),
        )
        u = rows.select(
            weight.alias("drafted"),
            pl.coalesce(pl.col("accepted_tokens").cast(pl.Float64),
                        pl.col("acceptance_rate") * weight).alias("accepted"),
        ).filter(pl.col("accepted").is_not_null() & pl.col("accepted").is_not_nan() & (pl.col("drafted") > 0))
        if u.height:
            return u
    if steps is not None and steps.height:
        s = steps.filter(pl.col("gamma_drafted") >= 1)
        if s.height:
            return (
                s.with_columns((pl.int_range(pl.len()).over("source") // block).alias("_blk"))
                .group_by(["source", "_blk"], maintain_order=True)
                .agg(pl.col("gamma_drafted").sum().cast(pl.Float64).alias("drafted"),
                     pl.col("n_accepted").sum().cast(pl.Float64).alias("accepted"))
                .select("drafted", "accepted")
            )
    return pl.DataFrame(schema=schema)


def pooled_rate(units: pl.DataFrame) -> float | None:
    d = units["drafted"].sum() if units.height else 0
    return units["accepted"].sum() / d if d else None


def median_mad(units: pl.DataFrame) -> tuple[float | None, float | None]:
    """Median of per-window rates and their median absolute deviation (unscaled)."""
    if units.height == 0:
        return None, None
    r = units["accepted"] / units["drafted"]
    med = float(r.median())
    return med, float((r - med).abs().median())


def bootstrap_diff(cur: pl.DataFrame, base: pl.DataFrame, n: int = 2000, seed: int = 0,
                   confidence: float = 0.95) -> tuple[float, float]:
    """Percentile CI of pooled(cur) - pooled(base), resampling windows with replacement on each
    side independently (a cluster bootstrap; deterministic for a seed)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    dc, ac = cur["drafted"].to_numpy(), cur["accepted"].to_numpy()
    db, ab = base["drafted"].to_numpy(), base["accepted"].to_numpy()
    out = np.empty(n)
    chunk = max(1, 2_000_000 // max(len(dc), len(db)))
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        ic = rng.integers(0, len(dc), (m, len(dc)))
        ib = rng.integers(0, len(db), (m, len(db)))
        out[lo:lo + m] = ac[ic].sum(1) / dc[ic].sum(1) - ab[ib].sum(1) / db[ib].sum(1)
    tail = (1.0 - confidence) / 2.0
    return float(np.quantile(out, tail)), float(np.quantile(out, 1.0 - tail))


def bootstrap_rate(units: pl.DataFrame, n: int = 1000, seed: int = 0, confidence: float = 0.95
                   ) -> tuple[float, float] | None:
    """Percentile CI of the pooled acceptance rate over windows (for evidence)."""
    import numpy as np

    if units.height < 2:
        return None
    rng = np.random.default_rng(seed)
    d, a = units["drafted"].to_numpy(), units["accepted"].to_numpy()
    chunk = max(1, 2_000_000 // len(d))
    vals = []
    for lo in range(0, n, chunk):
        idx = rng.integers(0, len(d), (min(chunk, n - lo), len(d)))
        vals.append(a[idx].sum(1) / d[idx].sum(1))
    v = np.concatenate(vals)
    tail = (1.0 - confidence) / 2.0
    return float(np.quantile(v, tail)), float(np.quantile(v, 1.0 - tail))


__all__ = ["acceptance_units", "pooled_rate", "median_mad", "bootstrap_diff", "bootstrap_rate"]
