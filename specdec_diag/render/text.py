"""Labels and number formats shared by the renderers (and the dashboard), so every format shows a
metric under the same name, with the same precision and the same definition."""

from __future__ import annotations

from typing import Any


def fmt(v: Any, nd: int = 3) -> str:
    """A report value as text: None as '-', booleans as yes/no, floats to ``nd`` decimals."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    if isinstance(v, list):
        return "[" + ", ".join(fmt(x, nd) for x in v) + "]"
    if isinstance(v, dict):
        return ", ".join(f"{k}={fmt(x, nd)}" for k, x in v.items())
    return str(v)


def pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def fmt_check(v: Any) -> str:
    """A gate check's evidence value: floats to 4 decimals (thresholds are compared at that
    precision in the check messages), lists bracketed, anything else as ``str``."""
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_check(x) for x in v) + "]"
    return str(v)


def summary_rows(s: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, value, definition) rows shared by the terminal, markdown and html renderers."""
    d = s.get("definitions", {})
    sp = s.get("speedup") or {}
    rows = [
        ("engine", fmt(s.get("engine")), ""),
        ("k (draft length)", fmt(s.get("k")), d.get("k", "")),
        ("drafts (verify steps)", fmt(s.get("num_drafts")) + (" (estimated)" if s.get("num_drafts_estimated") else ""),
         d.get("num_drafts", "")),
        ("draft tokens", fmt(s.get("draft_tokens")), ""),
        ("accepted tokens", fmt(s.get("accepted_tokens")), ""),
        ("acceptance rate", pct(s.get("acceptance_rate")), d.get("acceptance_rate", "")),
        ("mean acceptance length", fmt(s.get("mean_acceptance_length"), 2), d.get("mean_acceptance_length", "")),
        ("system efficiency", pct(s.get("system_efficiency")), d.get("system_efficiency", "")),
        ("alpha (MLE)", fmt(s.get("alpha_mle")), d.get("alpha_mle", "")),
        ("alpha (1 - TV)", fmt(s.get("alpha_tv")), d.get("alpha_tv", "")),
        ("alpha (from MAL)", fmt(s.get("alpha_from_mal")), d.get("alpha_from_mal", "")),
        ("draft cost ratio c", fmt(s.get("c")), d.get("c", "")),
        ("predicted speed-up", fmt(sp.get("predicted"), 2) + ("x (upper bound, c unknown)" if sp.get("c_assumed_zero")
                                                                and sp.get("predicted") is not None else "x"),
         d.get("speedup.predicted", "")),
        ("achieved speed-up", fmt(sp.get("achieved"), 2) + "x", d.get("speedup.achieved", "")),
        ("optimal gamma", fmt(sp.get("optimal_gamma")), "argmax of the predicted speed-up at this alpha and c"),
        ("tokens per step", fmt(s.get("tokens_per_step"), 2), d.get("tokens_per_step", "")),
        ("step time split", _split(s.get("time_breakdown")), d.get("time_breakdown", "")),
        ("goodput (traces)", fmt(s.get("goodput"), 1) + " tok/s", d.get("goodput", "")),
        ("engine throughput", fmt(s.get("tokens_per_s"), 1) + " tok/s", d.get("tokens_per_s", "")),
        ("time span", f"{fmt(s.get('time_start'))} .. {fmt(s.get('time_end'))}", ""),
        ("rows aggregated", f"{fmt(s.get('windows_used'))} windows {fmt(s.get('window_kinds'))}; "
                            f"{fmt(s.get('steps'))} steps", d.get("windows_used", "")),
    ]
    return [r for r in rows if r[1] not in ("-", "-x", "- tok/s", "- .. -", "- %")]


def _split(tb: dict[str, Any] | None) -> str:
    if not tb:
        return "-"
    return " / ".join(f"{part} {pct(tb.get(part + '_share'))}" for part in ("draft", "verify", "overhead"))


def evidence_items(ev: dict[str, Any]) -> list[tuple[str, str]]:
    """Evidence as (name, value) pairs, the definitions dict left out (shown as hover/notes)."""
    return [(k, fmt(v)) for k, v in ev.items() if k != "definitions"]


def loc_str(loc: dict[str, Any]) -> str:
    """A finding location as ``path:line`` (just the path when the line is unknown)."""
    return f"{loc.get('path')}:{loc.get('line')}" if loc.get("line") is not None else str(loc.get("path"))


__all__ = ["fmt", "pct", "fmt_check", "summary_rows", "evidence_items", "loc_str"]
