"""Terminal output with rich: the report (summary table, per-position bars, ranked findings), the
``check`` verdict and the ``ingest`` file table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from specdec_diag.analysis.gate import GateResult
from specdec_diag.analysis.report import INPUT_KEYS
from specdec_diag.exit_codes import ExitCode
from specdec_diag.ingest.base import IngestResult
from specdec_diag.render.text import evidence_items, fmt, loc_str, pct, summary_rows

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
CHECK_STYLE = {"pass": "green", "fail": "bold red", "insufficient": "yellow"}
VERDICT = {ExitCode.OK: ("PASSED", "bold green"), ExitCode.FAILED: ("FAILED", "bold red"),
           ExitCode.NO_DATA: ("NOT ENOUGH DATA", "bold yellow")}


def render_terminal(report: dict[str, Any], console: Any = None, max_locations: int = 3) -> None:
    """Summary table, per-position bars and the ranked findings, on a rich console."""
    console = console or Console()
    if report["inputs"]:
        t = Table(title="Inputs", title_justify="left", show_edge=False)
        for k in INPUT_KEYS:
            t.add_column(k, overflow="fold")
        for i in report["inputs"]:
            t.add_row(*(fmt(i.get(k)) for k in INPUT_KEYS))
        console.print(t)
    _print_summary(report["summary"], console)
    findings = report["findings"]
    console.print(Text(f"Findings ({len(findings)})", style="bold"))
    if not findings:
        console.print("  no findings")
    for n, f in enumerate(findings, 1):
        _print_finding(n, f, console, max_locations)


def _print_summary(s: dict[str, Any], console: Any) -> None:
    t = Table(title="Summary", title_justify="left", show_edge=False)
    t.add_column("metric", style="bold")
    t.add_column("value", justify="right")
    t.add_column("definition", style="dim", overflow="fold")
    for label, value, definition in summary_rows(s):
        t.add_row(label, value, definition.split(" (bonus ")[0])  # the formula; the full text is in json/html
    console.print(t)
    pp, cond = s.get("per_position_acceptance"), s.get("conditional_per_position") or []
    if pp:
        t = Table(title="Per-position acceptance (share of drafts accepting position j)", title_justify="left",
                  show_edge=False)
        t.add_column("pos", justify="right")
        t.add_column("P(accepted)", justify="right")
        t.add_column("", no_wrap=True)
        t.add_column("conditional", justify="right")
        for j, a in enumerate(pp):
            c = cond[j] if j < len(cond) else None
            t.add_row(str(j), pct(a), Text("█" * round(30 * (a or 0)), style="green"), pct(c))
        console.print(t)


def _print_finding(n: int, f: dict[str, Any], console: Any, max_locations: int) -> None:
    head = Text(f"{n:>2}. ")
    head.append(f"{f['severity'].upper():<7}", style=SEVERITY_STYLE.get(f["severity"], ""))
    head.append(f" {f['code']}", style="bold")
    head.append(f"  {f['title']}")
    console.print(head)
    ev = evidence_items(f.get("evidence") or {})
    if ev:
        console.print(Padding(Text("; ".join(f"{k}={v}" for k, v in ev), style="dim"), (0, 0, 0, 5)))
    if f.get("recommendation"):
        console.print(Padding(Text("→ " + f["recommendation"]), (0, 0, 0, 5)))
    locs = f.get("locations") or []
    if locs:
        more = f" (+{len(locs) - max_locations} more)" if len(locs) > max_locations else ""
        console.print(Padding(Text("at " + ", ".join(loc_str(x) for x in locs[:max_locations]) + more,
                                   style="dim"), (0, 0, 0, 5)))


def print_check(outcome: GateResult, console: Any) -> None:
    """The gate's checks, its error/warning findings (first 20) and the verdict."""
    t = Table(title="specdec-diag check", title_justify="left", show_edge=False)
    t.add_column("check", style="bold")
    t.add_column("status")
    t.add_column("detail", overflow="fold")
    for c in outcome.checks:
        t.add_row(c.name, Text(c.status, style=CHECK_STYLE[c.status]), c.message)
    console.print(t)
    shown = [f for f in outcome.report["findings"] if f["severity"] in ("error", "warning")]
    for f in shown[:20]:
        loc = (f.get("locations") or [{}])[0]
        where = f" ({loc.get('path')}:{loc.get('line')})" if loc.get("path") else ""
        console.print(Text(f"  {f['severity'].upper():<7} {f['code']}: {f['title']}{where}",
                           style="red" if f["severity"] == "error" else "yellow"), overflow="fold")
    text, st = VERDICT[outcome.exit_code]
    console.print(Text(text, style=st))


def print_ingest(res: IngestResult, console: Any) -> None:
    """One row per input file (format, lines, records, malformed, error) and the table totals."""
    table = Table(title="ingested", show_lines=False)
    for col, just in (("file", "left"), ("format", "left"), ("lines", "right"), ("records", "right"),
                      ("malformed", "right"), ("error", "left")):
        table.add_column(col, justify=just, overflow="fold")
    for row in res.inputs.iter_rows(named=True):
        table.add_row(row["path"], (row["format"] or "-").replace(",", "\n"), str(row["lines"] or 0),
                      str(row["records"] or 0), str(row["malformed"] or 0), row["error"] or "")
    console.print(table)
    console.print(f"{res.windows.height} windows, {res.steps.height} trace steps, {res.configs.height} config "
                  f"facts, {res.malformed.height} malformed lines; fingerprint {res.fingerprint}", highlight=False)


__all__ = ["render_terminal", "print_check", "print_ingest"]
