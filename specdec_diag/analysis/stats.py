"""Small-sample statistics the diagnosis rules share: how much evidence a judgment rests on, and how
uncertain the number it judges is.

Every finding carries ``evidence['sample']`` (what was counted, how many, and the rule's documented
minimum) and, where the judged number is a proportion, ``evidence['interval']`` (a Wilson score
interval). Wilson rather than the normal approximation because the proportions rules judge sit near
0 or 1 (a broken drafter accepts 1 %, a bypassed verifier 100 %), where the normal interval
collapses to a point or leaves [0, 1]. Pure Python: the analysis side stays light.

Acceptance statistics shared by the gate and the run comparisons (below): windows as the unit,
the pooled (draft-weighted) rate, median/MAD, and seeded cluster-bootstrap intervals. Acceptance is a
ratio of counts whose window-to-window spread comes from the workload mix, so windows, not tokens,
are resampled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import polars as pl

from specdec_diag.analysis import metrics

#: two-sided 95 % normal quantile
Z95 = 1.959963984540054

__all__ = ["Z95", "wilson", "Sample", "interval", "sample_definitions", "linear_fit", "acceptance_units",
           "pooled_rate", "median_mad", "bootstrap_diff", "bootstrap_rate"]


def wilson(successes: float, trials: float, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for ``successes`` out of ``trials`` (counts may be fractional when they
    are reconstructed from printed rates); None when there are no trials."""
    if trials is None or successes is None or not trials > 0 or math.isnan(trials) or math.isnan(successes):
        return None
    p = min(max(successes / trials, 0.0), 1.0)
    z2 = z * z
    denom = 1.0 + z2 / trials
    centre = (p + z2 / (2.0 * trials)) / denom
    half = z * math.sqrt(p * (1.0 - p) / trials + z2 / (4.0 * trials * trials)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # exact ends: an all-or-nothing count keeps its own end (float rounding must not exclude it)
    return (0.0 if p <= 0.0 else min(lo, p)), (1.0 if p >= 1.0 else max(hi, p))


@dataclass(frozen=True)
class Sample:
    """The evidence a finding rests on: ``size`` units of ``unit`` (draft tokens, windows, steps, ...)
    against the rule's documented ``minimum``. ``explicit``: the evidence is a fact the engine printed
    (``cuda graph: False``, requests waiting at full KV), which needs no statistics."""

    unit: str
    size: float
    minimum: float
    explicit: bool = False

    @property
    def enough(self) -> bool:
        return self.size >= self.minimum

    def to_evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unit": self.unit, "size": self.size, "minimum": self.minimum}
        if self.explicit:
            out["explicit"] = True
        return out


def interval(of: str, successes: float | None, trials: float | None) -> dict[str, Any] | None:
    """``evidence['interval']`` for a proportion ``of`` (a name such as ``acceptance_rate``): 95 %
    Wilson bounds with the counts they come from; None without counts."""
    if successes is None or trials is None:
        return None
    ci = wilson(successes, trials)
    if ci is None:
        return None
    return {"of": of, "low": ci[0], "high": ci[1], "level": 0.95, "method": "wilson",
            "successes": successes, "trials": trials}


def sample_definitions() -> dict[str, str]:
    """What the two evidence entries mean (merged into a finding's ``definitions``)."""
    return {"sample": "evidence the finding rests on: unit counted, size, and the rule's documented minimum "
                      "(below it a rule abstains or emits an info 'not enough data' note)",
            "interval": "95 % Wilson score interval of the judged proportion (successes / trials)"}


def linear_fit(x: list[float], y: list[float], min_distinct: int = 3) -> tuple[float, float] | None:
    """Least-squares ``(intercept, slope)`` of y on x; None with fewer than ``min_distinct`` distinct
    x values (a slope from two points of one configuration is noise, not growth)."""
    if len(x) != len(y) or len(set(x)) < min_distinct:
        return None
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxx = sum((a - mx) ** 2 for a in x)
    if sxx <= 0:
        return None
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx
    return my - slope * mx, slope



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
