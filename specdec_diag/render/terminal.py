"""Terminal output with rich: the report (summary table, per-position bars, ranked findings), the
``check`` verdict and the ``ingest`` file table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from specdec_diag.analysis.gate import GateResult
from specdec_diag.exit_codes import ExitCode
from specdec_diag.ingest.base import IngestResult
from specdec_diag.render.fleet import FLEET_COLUMNS, comparison_rows, fleet_row, ordered_runs, status_line
from specdec_diag.render.text import evidence_items, fmt, loc_str, pct, summary_rows

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
CHECK_STYLE = {"pass": "green", "fail": "bold red", "insufficient": "yellow"}
VERDICT = {ExitCode.OK: ("PASSED", "bold green"), ExitCode.FAILED: ("FAILED", "bold red"),
           ExitCode.NO_DATA: ("NOT ENOUGH DATA", "bold yellow")}


def render_terminal(report: dict[str, Any], console: Any = None, max_locations: int = 3) -> None:
    """The fleet table (one line per run, worst first), the comparisons, then each run's findings; a
    report of one run also shows its summary table and per-position bars."""
    console = console or Console()
    runs = ordered_runs(report)
    print_fleet(report, console)
    comps = comparison_rows(report)
    if comps:
        t = Table(title="Comparisons", title_justify="left", show_edge=False)
        for col in ("kind", "runs", "result", "load"):
            t.add_column(col, overflow="fold")
        for row in comps:
            t.add_row(*row)
        console.print(t)
    if len(runs) == 1:
        _print_summary(runs[0]["summary"], console)
    total = sum(len(r["findings"]) for r in runs)
    console.print(Text(f"Findings ({total})", style="bold"))
    if not total:
        console.print("  no findings")
    for run in runs:
        if not run["findings"]:
            continue
        console.print(Text(f"▸ {run['id']}", style="bold"), overflow="fold")
        for n, f in enumerate(run["findings"], 1):
            _print_finding(n, f, console, max_locations)


def print_fleet(report: dict[str, Any], console: Any) -> None:
    """One line per run, worst first, readable at 100 columns: long run ids lose their middle, the
    text columns their tail (the JSON and the run sections below keep everything)."""
    t = Table(title=f"Fleet — {status_line(report)}", title_justify="left", box=None, padding=(0, 1),
              collapse_padding=True, show_edge=False, header_style="bold")
    widths = {"engine": 6, "model": 9, "method": 7, "k": 3, "AR %": 5, "MAL": 4, "tok/s": 5, "win": 4,
              "worst finding": 15}
    rows = [fleet_row(run) for run in ordered_runs(report)]
    width = getattr(console, "width", 100) or 100
    longest = max((len(r[0]) for r in rows), default=10)
    widths["run"] = max(20, min(longest, width - sum(widths.values()) - len(FLEET_COLUMNS) - 3))
    for name, right in FLEET_COLUMNS:
        t.add_column(name, justify="right" if right else "left", no_wrap=True, overflow="ellipsis",
                     width=widths[name])
    for run, cells in zip(ordered_runs(report), rows, strict=True):
        cells[0] = middle_ellipsis(cells[0], widths["run"] - 1)
        t.add_row(*cells[:-1], Text(cells[-1], style=SEVERITY_STYLE.get(run.get("status", ""), "")))
    console.print(t)


def middle_ellipsis(s: str, width: int) -> str:
    """``s`` cut in the middle to ``width`` characters (both the file and the start stay visible)."""
    if len(s) <= width:
        return s
    head = (width - 1) // 2
    return s[:head] + "…" + s[len(s) - (width - 1 - head):]


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
        run = f"[{f['run']}] " if f.get("run") else ""
        console.print(Text(f"  {f['severity'].upper():<7} {f['code']}: {run}{f['title']}{where}",
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


def print_runs(table: Any, console: Any) -> None:
    """The runs table (docs/runs.md): one line per run — its configuration, size and why it starts;
    long ids lose their middle to fit the console."""
    t = Table(title=f"runs ({table.height})", box=None, padding=(0, 1), collapse_padding=True, header_style="bold")
    widths = {"engine": 7, "model": 12, "method": 8, "k": 3, "spec": 4, "windows": 7, "split": 14}
    width = getattr(console, "width", 100) or 100
    longest = max((len(i) for i in table["id"].to_list()), default=10)
    widths = {"id": max(20, min(longest, width - sum(widths.values()) - 2 * len(widths) - 2)), **widths}
    for col, w in widths.items():
        t.add_column(col, width=w, no_wrap=True, overflow="ellipsis",
                     justify="right" if col in ("k", "windows") else "left")
    for row in table.iter_rows(named=True):
        t.add_row(middle_ellipsis(row["id"], widths["id"] - 1), fmt(row["engine"]), fmt(row["model"]),
                  fmt(row["method"]), fmt(row["k"]), fmt(row["speculative"]), fmt(row["windows"]), row["split"])
    console.print(t)


__all__ = ["render_terminal", "print_fleet", "print_check", "print_ingest", "print_runs"]
