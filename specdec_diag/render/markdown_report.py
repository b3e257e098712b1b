"""The Markdown report (for tickets, PR comments and wikis): the same tables and findings as the
terminal report, pipes escaped."""

from __future__ import annotations

from typing import Any

from specdec_diag.analysis.report import INPUT_KEYS
from specdec_diag.render.text import evidence_items, fmt, loc_str, pct, summary_rows


def md_cell(s: str) -> str:
    """Text safe inside a Markdown table cell (one line, ``|`` escaped)."""
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict[str, Any], max_locations: int = 5) -> str:
    s = report["summary"]
    out = ["# Speculative decoding report", ""]
    if report["inputs"]:
        out += ["## Inputs", "", "| path | format | engine | lines | records | malformed |", "|---|---|---|---|---|---|"]
        for i in report["inputs"]:
            out.append("| " + " | ".join(md_cell(fmt(i.get(k))) for k in INPUT_KEYS) + " |")
        out.append("")
    out += ["## Summary", "", "| metric | value | definition |", "|---|---|---|"]
    for label, value, definition in summary_rows(s):
        out.append(f"| {md_cell(label)} | {md_cell(value)} | {md_cell(definition)} |")
    pp, cond = s.get("per_position_acceptance"), s.get("conditional_per_position") or []
    if pp:
        out += ["", "### Per-position acceptance", "", "| position | P(accepted) | conditional | |", "|---|---|---|---|"]
        for j, a in enumerate(pp):
            c = cond[j] if j < len(cond) else None
            out.append(f"| {j} | {pct(a)} | {pct(c)} | `{'█' * round(20 * (a or 0))}` |")
    out += ["", f"## Findings ({len(report['findings'])})", ""]
    if not report["findings"]:
        out.append("No findings.")
    for n, f in enumerate(report["findings"], 1):
        out += [f"### {n}. [{f['severity'].upper()}] `{f['code']}`: {f['title']}", ""]
        for k, v in evidence_items(f.get("evidence") or {}):
            out.append(f"- {k}: {v}")
        out += ["", f"**Recommendation:** {f.get('recommendation') or '-'}", ""]
        locs = f.get("locations") or []
        if locs:
            shown = ", ".join(f"`{loc_str(x)}`" for x in locs[:max_locations])
            more = f" and {len(locs) - max_locations} more" if len(locs) > max_locations else ""
            out += [f"Locations: {shown}{more}", ""]
    return "\n".join(out).rstrip() + "\n"


__all__ = ["md_cell", "render_markdown"]
