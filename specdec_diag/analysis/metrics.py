"""Every speculative-decoding metric, defined once, with its formula and definition.

Inputs are the normalised window table (``schema.WINDOW_SCHEMA``) and/or the trace steps table
(``ingest.base.STEPS_SCHEMA``); functions that accept either look at the columns (a steps table has
``n_accepted``). Definitions follow vLLM V1 ``spec_decode/metrics.py`` unless named otherwise, and
every metric says whether the bonus token is included and whether it is windowed or cumulative:
engines disagree on both, and users misread them (see ``docs/metrics.md``, generated from
:data:`METRICS` by :func:`metrics_markdown`).

Which windows are aggregated (so cumulative counters are never double counted with their interval
differences): see :func:`aggregation_rows`. Empty tables and nulls give ``None``, never an error.

This module is the public face: the registry lives in :mod:`.metric_registry`, the row selection in
:mod:`.aggregation`, the metric functions in :mod:`.metric_functions` and the report summary in
:mod:`.summary`; every public name is re-exported here.
"""

from __future__ import annotations

from specdec_diag.analysis import theory
from specdec_diag.analysis.aggregation import SPEC_COLUMNS, WINDOW_PRECEDENCE, aggregation_rows
from specdec_diag.analysis.metric_functions import (
    BASELINE_KEYS,
    acceptance_rate,
    accepted_length_histogram,
    accepted_tokens,
    achieved_speedup,
    alpha_from_mal,
    alpha_mle,
    alpha_mle_counts,
    alpha_tv,
    baseline_ms_per_token,
    conditional_per_position,
    cost_ratio,
    draft_length,
    draft_tokens,
    emitted_tokens,
    goodput,
    mean_acceptance_length,
    num_drafts,
    per_position_acceptance,
    sampling_sources,
    system_efficiency,
    time_breakdown,
    tokens_per_step,
)
from specdec_diag.analysis.metric_registry import METRICS, Metric
from specdec_diag.analysis.summary import summarize

__all__ = [
    "BASELINE_KEYS", "METRICS", "SPEC_COLUMNS", "WINDOW_PRECEDENCE", "Metric",
    "accepted_length_histogram", "accepted_tokens", "acceptance_rate", "achieved_speedup",
    "aggregation_rows", "alpha_from_mal", "alpha_mle", "alpha_mle_counts", "alpha_tv",
    "baseline_ms_per_token", "conditional_per_position", "cost_ratio", "draft_length", "draft_tokens",
    "emitted_tokens", "goodput", "mean_acceptance_length", "metrics_markdown", "num_drafts",
    "per_position_acceptance", "sampling_sources", "summarize", "system_efficiency", "time_breakdown",
    "tokens_per_step",
]


def _prose(doc: str | None) -> str:
    """A docstring as one markdown paragraph (its paragraphs joined)."""
    import inspect

    paras = inspect.cleandoc(doc or "").split("\n\n")
    return " ".join(" ".join(x.strip() for x in p.splitlines()) for p in paras)


def _changed_definitions() -> list[str]:
    """The engine numbers whose definition changed between versions (registry:
    ``specdec_diag/ingest/definitions.py``) and how ingest decides which one a log follows."""
    from specdec_diag.ingest.definitions import ENGINE_DEFINITIONS

    lines = ["## Engine numbers whose definition changed", "",
             "Generated from `ENGINE_DEFINITIONS` in `specdec_diag/ingest/definitions.py`; every converted row "
             "says what was done in its `definition_note`.", "",
             "| engine | number | before | after | changed in | decided by |", "|---|---|---|---|---|---|"]
    for d in ENGINE_DEFINITIONS:
        cells = (d.engine, d.number, d.before, d.after, d.changed_in, d.decided_by)
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return [*lines, ""]


def metrics_markdown() -> str:
    """docs/metrics.md, generated from :data:`METRICS` and :func:`aggregation_rows`' docstring."""
    lines = [
        "# Metric definitions",
        "",
        "Generated from `specdec_diag/analysis/metrics.py` by "
        "`python -m specdec_diag.analysis.metrics > docs/metrics.md`; do not edit by hand.",
        "",
        "Notation: S = verify steps that carried drafts, n = accepted drafts in a step, k = draft length "
        "(gamma), alpha = Leviathan's per-token acceptance probability, a_j = per-position acceptance.",
        "",
        "## Which windows are aggregated",
        "",
        _prose(aggregation_rows.__doc__),
        "",
        "## Metrics",
        "",
        "| metric | formula | bonus token | aggregated over | unit |",
        "|---|---|---|---|---|",
    ]
    for m in METRICS.values():
        lines.append(f"| `{m.name}` | {m.formula.replace('|', '/')} | {m.bonus} | {m.window} | {m.unit} |")
    lines += ["", "## Notes", ""]
    for m in METRICS.values():
        lines.append(f"- **`{m.name}`**: {_prose(m.doc)}")
    lines += [
        "",
        "## The same words in different engines",
        "",
        "Ingest converts engine numbers to the definitions above (and notes it in `definition_note`); "
        "when reading an engine's own output, mind which one it prints. Under i.i.d. alpha and fixed k:",
        "",
        "| engine number | computed as | i.i.d. value | here |",
        "|---|---|---|---|",
        "| vLLM V1 'Draft acceptance rate', AIPerf draft_acceptance_rate | accepted / drafted (prefix) "
        "| alpha(1-alpha^k) / (k(1-alpha)) | `acceptance_rate` |",
        "| vLLM V1 'Mean acceptance length', SGLang 'accept len', Spec-Bench mean accepted tokens "
        "| 1 + accepted / drafts | (1-alpha^(k+1)) / (1-alpha) | `mean_acceptance_length` |",
        "| vLLM V1 per-position acceptance rate j | #(n >= j) / drafts | alpha^j | `per_position_acceptance` |",
        "| vLLM V0 'Draft acceptance rate' | all positions marked accepted, even after a rejection / drafted "
        "| about alpha | (converted by ingest) |",
        "| vLLM V0 'System efficiency', SGLang chain 'accept rate' | emitted / (drafts (k+1)) | MAL / (k+1) "
        "| `system_efficiency` |",
        "| Leviathan alpha | E[sum_x min(p, q)] | alpha | `alpha_mle`, `alpha_tv`, `alpha_from_mal` |",
        "",
        "Example: alpha = 0.8, k = 5 gives an acceptance rate of 0.538 and a MAL of 3.69; neither is 0.8.",
        "",
        *_changed_definitions(),
        "## Where the achieved speed-up's baseline comes from",
        "",
        "`speedup_achieved` needs the plain autoregressive time per token, T_ar. It is taken from, in order: a "
        "trace header key `baseline_ms_per_token` or `ar_ms_per_token` (top level or under `baseline`); a config "
        "fact with one of those keys; the steps of a trace whose header `mode` is `baseline` / `ar` / "
        "`autoregressive` (`specdec-diag decode --baseline`), as total step time / emitted tokens. Without one "
        "the achieved speed-up is null and only the prediction is shown.",
        "",
        "## Theory (specdec_diag/analysis/theory.py)",
        "",
    ]
    for name in theory.__all__:
        fn = getattr(theory, name)
        lines.append(f"- **`{name}`**: {_prose(fn.__doc__)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(metrics_markdown(), end="")
