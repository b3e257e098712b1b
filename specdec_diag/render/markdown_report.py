"""The Markdown report (for tickets, PR comments and wikis): the same tables and findings as the
terminal report, pipes escaped."""

from __future__ import annotations

from typing import Any

from specdec_diag.analysis.report import INPUT_KEYS
from specdec_diag.render.fleet import FLEET_COLUMNS, comparison_rows, fleet_row, ordered_runs, status_line
from specdec_diag.render.text import evidence_items, fmt, loc_str, pct, summary_rows


def md_cell(s: str) -> str:
    """Text safe inside a Markdown table cell (one line, ``|`` escaped)."""
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict[str, Any], max_locations: int = 5) -> str:
    """The fleet table (worst first), the comparisons, then one section per run with findings (every
    run when there are few): its summary table and findings."""
    runs = ordered_runs(report)
    out = ["# Speculative decoding report", "", f"## Fleet: {status_line(report)}", "",
           "| " + " | ".join(name for name, _ in FLEET_COLUMNS) + " |",
           "|" + "|".join("---:" if right else "---" for _, right in FLEET_COLUMNS) + "|"]
    out += ["| " + " | ".join(md_cell(c) for c in fleet_row(r)) + " |" for r in runs]
    comps = comparison_rows(report)
    if comps:
        out += ["", "## Comparisons", "", "| kind | runs | result | load |", "|---|---|---|---|"]
        out += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in comps]
    if report["inputs"]:
        out += ["", "## Inputs", "", "| path | format | engine | lines | records | malformed |",
                "|---|---|---|---|---|---|"]
        for i in report["inputs"]:
            out.append("| " + " | ".join(md_cell(fmt(i.get(k))) for k in INPUT_KEYS) + " |")
    shown = runs if len(runs) <= 12 else [r for r in runs if r["status"] in ("error", "warning")]
    for run in shown:
        out += _run_section(run, max_locations)
    return "\n".join(out).rstrip() + "\n"


def _run_section(run: dict[str, Any], max_locations: int) -> list[str]:
    s = run["summary"]
    out = ["", f"## Run `{run['id']}` ({run['status']})", "", "| metric | value | definition |", "|---|---|---|"]
    for label, value, definition in summary_rows(s):
        out.append(f"| {md_cell(label)} | {md_cell(value)} | {md_cell(definition)} |")
    pp, cond = s.get("per_position_acceptance"), s.get("conditional_per_position") or []
    if pp:
        out += ["", "### Per-position acceptance", "", "| position | P(accepted) | conditional | |", "|---|---|---|---|"]
        for j, a in enumerate(pp):
            c = cond[j] if j < len(cond) else None
            out.append(f"| {j} | {pct(a)} | {pct(c)} | `{'█' * round(20 * (a or 0))}` |")
    out += ["", f"### Findings ({len(run['findings'])})", ""]
    if not run["findings"]:
        out.append("No findings.")
    for n, f in enumerate(run["findings"], 1):
        out += [f"#### {n}. [{f['severity'].upper()}] `{f['code']}`: {f['title']}", ""]
        for k, v in evidence_items(f.get("evidence") or {}):
            out.append(f"- {k}: {v}")
        out += ["", f"**Recommendation:** {f.get('recommendation') or '-'}", ""]
        locs = f.get("locations") or []
        if locs:
            shown = ", ".join(f"`{loc_str(x)}`" for x in locs[:max_locations])
            more = f" and {len(locs) - max_locations} more" if len(locs) > max_locations else ""
            out += [f"Locations: {shown}{more}", ""]
    return out


__all__ = ["md_cell", "render_markdown"]
