"""The report's "summary" object: every metric of one ``IngestResult``, rounded, with definitions.

Split from :mod:`specdec_diag.analysis.metrics` (which re-exports :func:`summarize`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import polars as pl

from specdec_diag.analysis import metric_functions as mf
from specdec_diag.analysis import theory
from specdec_diag.analysis.aggregation import _div, _spec_steps, aggregation_rows
from specdec_diag.analysis.metric_registry import METRICS

if TYPE_CHECKING:
    from specdec_diag.ingest.base import IngestResult

#: summary key -> METRICS name whose definition the report prints next to it
_DEFINED = {
    "acceptance_rate": "acceptance_rate",
    "mean_acceptance_length": "mean_acceptance_length",
    "per_position_acceptance": "per_position_acceptance",
    "conditional_per_position": "conditional_per_position",
    "system_efficiency": "system_efficiency",
    "tokens_per_step": "tokens_per_step",
    "num_drafts": "num_drafts",
    "k": "k",
    "alpha_mle": "alpha_mle",
    "alpha_tv": "alpha_tv",
    "alpha_from_mal": "alpha_from_mal",
    "c": "c",
    "speedup.predicted": "speedup_predicted",
    "speedup.achieved": "speedup_achieved",
    "goodput": "goodput",
    "time_breakdown": "time_breakdown",
    "tokens_per_s": "tokens_per_s",
}


def _first_or_join(values: list[Any]) -> str | None:
    vals = [v for v in dict.fromkeys(values) if v is not None]
    return None if not vals else ", ".join(str(v) for v in vals)


def round_floats(x: Any, nd: int = 6) -> Any:
    """Round every float to ``nd`` places (non-finite -> None) through lists and dict values: report
    numbers are stable across platforms. Apply after :func:`specdec_diag.schema.jsonable`."""
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else round(x, nd)
    if isinstance(x, list):
        return [round_floats(v, nd) for v in x]
    if isinstance(x, dict):
        return {k: round_floats(v, nd) for k, v in x.items()}
    return x


def _alphas(result: IngestResult, rows: pl.DataFrame, spec_steps: pl.DataFrame, use_steps: bool,
            mal: float | None, k: int | None) -> tuple[float | None, float | None, float | None]:
    """alpha_tv (sampling-verified traces only), alpha_mle and alpha_from_mal."""
    steps = result.steps
    a_tv = mf.alpha_tv(spec_steps.filter(pl.col("source").is_in(mf.sampling_sources(result)))) if steps.height else None
    # the MLE from events when every aggregated row comes from a trace; else from the windows, so it
    # covers the same records as the acceptance rate next to it
    trace_only = spec_steps.height > 0 and set(rows["source"].to_list()) <= set(steps["source"].to_list())
    a_mle = mf.alpha_mle(spec_steps) if trace_only or use_steps else mf.alpha_mle(rows)
    a_mal = theory.alpha_from_mal(mal, k) if mal is not None and k else None
    return a_tv, a_mle, a_mal


def _speedup(result: IngestResult, alphas: tuple[float | None, ...], k: int | None,
             c: float | None) -> dict[str, Any]:
    """Predicted vs achieved speed-up, from the first alpha available (tv > mle > from MAL)."""
    alpha, basis = next(((a, b) for a, b in zip(alphas, ("alpha_tv", "alpha_mle", "alpha_from_mal"), strict=True)
                         if a is not None), (None, None))
    speed = theory.predicted_vs_achieved(alpha, k, c, mf.achieved_speedup(result))
    speed["alpha_basis"] = basis
    if alpha is not None and k:
        speed["expected_mal"] = theory.expected_tokens_per_step(alpha, k)
    return speed


def _span(windows: pl.DataFrame, steps: pl.DataFrame) -> dict[str, Any]:
    """Engine names and the time span, as distinct values in first-seen order (not a 10^6-item list)."""
    engines = (windows["engine"].drop_nulls().unique(maintain_order=True).to_list() if windows.height
               else ["specdec-diag"] if steps.height else [])
    times = windows["time"].drop_nulls() if windows.height else None
    t0 = times.min() if times is not None and times.len() else None
    t1 = times.max() if times is not None and times.len() else None
    return {
        "engine": _first_or_join(engines),
        "time_start": t0.isoformat() if t0 is not None else None,
        "time_end": t1.isoformat() if t1 is not None else None,
        "duration_s": (t1 - t0).total_seconds() if t0 is not None and t1 is not None else None,
    }


def _definitions() -> dict[str, str]:
    out = {key: METRICS[name].definition for key, name in _DEFINED.items()}
    out["windows_used"] = ("rows aggregated: per source one window kind, interval > request > run > cumulative "
                           "(last row per engine); see docs/metrics.md")
    return out


def summarize(result: IngestResult) -> dict[str, Any]:
    """The report's "summary" object (docs/architecture.md §4) for an ``IngestResult``.

    Counts and rates come from the window table when it has speculative rows, else from trace steps;
    step-only quantities (alpha_mle from events, alpha_tv, c, the time breakdown, the histogram) come
    from steps. ``definitions`` names the formula behind every number."""
    windows: pl.DataFrame = result.windows
    steps: pl.DataFrame = result.steps
    rows = aggregation_rows(windows)
    use_steps = rows.height == 0 and steps.height > 0
    table = steps if use_steps else rows
    spec_steps = _spec_steps(steps) if steps.height else steps

    k = mf.draft_length(table)
    mal = mf.mean_acceptance_length(table)
    pp = mf.per_position_acceptance(table)
    a_tv, a_mle, a_mal = alphas = _alphas(result, rows, spec_steps, use_steps, mal, k)
    c = mf.cost_ratio(steps) if steps.height else None
    span = _span(windows, steps)
    nd_raw = rows["num_drafts"] if rows.height else None

    summary: dict[str, Any] = {
        "engine": span["engine"],
        "k": k,
        "num_drafts": (nd := mf.num_drafts(table)),
        "num_drafts_estimated": bool(nd is not None and nd_raw is not None and nd_raw.null_count() > 0
                                     and not use_steps),
        "draft_tokens": mf.draft_tokens(table),
        "accepted_tokens": mf.accepted_tokens(table),
        "emitted_tokens": mf.emitted_tokens(table),
        "acceptance_rate": mf.acceptance_rate(table),
        "mean_acceptance_length": mal,
        "per_position_acceptance": pp,
        "conditional_per_position": mf.conditional_per_position(pp),
        "system_efficiency": _div(mal, None if k is None else k + 1),
        "tokens_per_step": mf.tokens_per_step(table),
        "alpha_mle": a_mle,
        "alpha_tv": a_tv,
        "alpha_from_mal": a_mal,
        "c": c,
        "speedup": _speedup(result, alphas, k, c),
        "goodput": mf.goodput(spec_steps) if spec_steps.height else None,
        "tokens_per_s": mf.goodput(windows) if windows.height else None,
        "time_breakdown": mf.time_breakdown(steps) if steps.height else mf.time_breakdown(rows),
        "accepted_length_histogram": {str(n): v for n, v in mf.accepted_length_histogram(steps).items()} or None,
        "time_start": span["time_start"],
        "time_end": span["time_end"],
        "duration_s": span["duration_s"],
        "basis": "trace steps" if use_steps else "windows",
        "windows_used": rows.height,
        "window_kinds": dict(rows.group_by("window", maintain_order=True).len().iter_rows()) if rows.height else {},
        "steps": spec_steps.height,
    }
    summary = round_floats(summary)
    summary["definitions"] = _definitions()
    return summary
