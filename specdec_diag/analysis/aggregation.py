"""Which window rows speculative metrics aggregate, and the small helpers every metric shares.

Split from :mod:`specdec_diag.analysis.metrics` (which re-exports the public names): the metric
functions and the summary both build on these, so they live below both.
"""

from __future__ import annotations

import math

import polars as pl

from specdec_diag.schema import SPEC_COLUMNS

#: kinds of window rows, in order of preference when one source has several (see aggregation_rows)
WINDOW_PRECEDENCE = ("interval", "request", "run", "cumulative")


def _is_steps(df: pl.DataFrame) -> bool:
    return "n_accepted" in df.columns


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or (isinstance(b, float) and math.isnan(b)):
        return None
    return a / b


def _sum(df: pl.DataFrame, col: str) -> float | None:
    if col not in df.columns or df.height == 0 or df[col].null_count() == df.height:
        return None
    return df[col].sum()


def _spec_steps(steps: pl.DataFrame) -> pl.DataFrame:
    """Steps that carried drafts (gamma_drafted >= 1): vLLM counts a 'draft' only then."""
    if steps.height == 0:
        return steps
    return steps.filter(pl.col("gamma_drafted") >= 1)


def _ordered_sum(e: pl.Expr) -> pl.Expr:
    """Sum adding in row order (0.0 when empty), as a Python loop does: polars' own sum adds pairwise,
    which differs in the last bits."""
    return e.cum_sum().last().fill_null(0.0)


def _has_spec(windows: pl.DataFrame) -> pl.Expr:
    return pl.any_horizontal([pl.col(c).is_not_null() for c in SPEC_COLUMNS if c in windows.columns])


def aggregation_rows(windows: pl.DataFrame) -> pl.DataFrame:
    """The window rows that speculative metrics aggregate, so nothing is counted twice.

    Only rows carrying speculative data count. Per source file, one window kind is used, the first
    present of interval > request > run > cumulative: interval rows (vLLM V1 windows, SGLang decode
    lines, and the per-window differences ingest derives from cumulative counters) partition the run;
    per-request rows partition it too; a run summary stands alone; raw cumulative rows are used only
    when nothing else exists, and then only the last one per (source, engine_id), which is the total.
    A null ``window`` is treated as ``interval``. Adds ``_drafts``: the number of drafts, estimated
    when the source lacks it (draft_tokens / k, else accepted / (MAL - 1)); a frame that already has
    it is returned as is, so callers may aggregate once and pass the rows to every metric.
    """
    if "_drafts" in windows.columns:
        return windows
    if windows.height == 0 or not any(c in windows.columns for c in SPEC_COLUMNS):
        return _with_drafts(windows.head(0))
    w = windows.filter(_has_spec(windows)).with_columns(
        pl.col("window").fill_null("interval"), pl.col("source").fill_null("")
    )
    parts: list[pl.DataFrame] = []
    for _, g in w.group_by("source", maintain_order=True):
        kinds = set(g["window"].unique().to_list())
        kind = next((k for k in WINDOW_PRECEDENCE if k in kinds), None)
        if kind is None:  # unknown window labels: take them as they are
            parts.append(g)
            continue
        sel = g.filter(pl.col("window") == kind)
        if kind == "cumulative":
            sel = (
                sel.with_columns(pl.col("engine_id").fill_null(""))
                .sort("line", nulls_last=False)
                .group_by("engine_id", maintain_order=True)
                .last()
                .select(g.columns)
            )
        parts.append(sel)
    return _with_drafts(pl.concat(parts, how="vertical_relaxed") if parts else w)


def _with_drafts(w: pl.DataFrame) -> pl.DataFrame:
    if "num_drafts" not in w.columns:
        return w.with_columns(pl.lit(None, dtype=pl.Float64).alias("_drafts"))
    mal = pl.col("mean_acceptance_length")
    est_k = pl.when(pl.col("k") > 0).then(pl.col("draft_tokens").cast(pl.Float64) / pl.col("k"))
    est_mal = pl.when((mal > 1.0) & mal.is_not_nan()).then(pl.col("accepted_tokens").cast(pl.Float64) / (mal - 1.0))
    return w.with_columns(
        pl.coalesce(pl.col("num_drafts").cast(pl.Float64), est_k, est_mal).alias("_drafts")
    )


def _weighted_mean(df: pl.DataFrame, col: str) -> float | None:
    """Mean of a per-window rate weighted by drafts; plain mean when no window has a weight."""
    d = df.filter(pl.col(col).is_not_null() & pl.col(col).is_not_nan())
    if d.height == 0:
        return None
    dw = d.filter(pl.col("_drafts").is_not_null() & (pl.col("_drafts") > 0))
    if dw.height == d.height:
        return _div((dw[col] * dw["_drafts"]).sum(), dw["_drafts"].sum())
    return float(d[col].mean())
