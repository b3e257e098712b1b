"""The report (ARCHITECTURE.md §4, ``specdec-diag/report@1``): one JSON-safe dict built from an
``IngestResult``, and renderers for it (terminal, markdown, json, junit, html).

Renderers read only the report dict, never the tables, so a saved JSON report renders again later
(and the CI gate reads a previous report as its baseline). The HTML is one self-contained file with
plotly.js inlined once: users attach it to tickets and open it offline.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any
from xml.etree import ElementTree as ET

import polars as pl

from specdec_diag.analysis import metrics, theory
from specdec_diag.schema import CONTRACT_WINDOW_COLUMNS, REPORT_SCHEMA

REPORT_KEYS = ("schema", "inputs", "summary", "windows", "findings")
INPUT_KEYS = ("path", "format", "engine", "lines", "records", "malformed")
FINDING_KEYS = ("code", "severity", "title", "evidence", "recommendation", "locations")
FORMATS = ("terminal", "markdown", "html", "json", "junit")
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
SEVERITY_COLOR = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}
#: points per series in HTML charts; longer series are bucketed (draft-weighted) to this many
MAX_POINTS = 1500


# ---------------------------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------------------------


def jsonable(v: Any) -> Any:
    """Recursively make a value JSON-safe: NaN/inf -> None, datetimes -> ISO, tuples -> lists."""
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars
        return jsonable(v.item())
    return v


def windows_json(windows: pl.DataFrame) -> list[dict[str, Any]]:
    """The §3 contract columns of every window row, JSON-safe (NaN -> null, time -> ISO string);
    done column-wise in polars because logs can have hundreds of thousands of windows."""
    if windows.height == 0:
        return []
    cols = [c for c in CONTRACT_WINDOW_COLUMNS if c in windows.columns]
    exprs = []
    for c in cols:
        dt = windows.schema[c]
        if dt == pl.Float64 or dt == pl.Float32:
            exprs.append(pl.col(c).fill_nan(None))
        elif isinstance(dt, pl.List) and dt.inner in (pl.Float64, pl.Float32):
            exprs.append(pl.col(c).list.eval(pl.element().fill_nan(None)))
        elif isinstance(dt, pl.Datetime):
            exprs.append(pl.col(c).dt.to_string("%Y-%m-%dT%H:%M:%S%.6f+00:00"))
        else:
            exprs.append(pl.col(c))
    return windows.select(exprs).to_dicts()


def inputs_json(inputs: pl.DataFrame) -> list[dict[str, Any]]:
    if inputs.height == 0:
        return []
    return [jsonable({k: r.get(k) for k in INPUT_KEYS}) for r in inputs.to_dicts()]


def run_findings(result: Any, thresholds: Any = None) -> list[dict[str, Any]]:
    """The diagnosis rules' findings, ranked, as report dicts (ARCHITECTURE.md §4 keys)."""
    from specdec_diag.analysis.rules import run_rules

    out = []
    for f in run_rules(result, thresholds):
        d = f.to_dict() if hasattr(f, "to_dict") else dict(f)
        out.append(jsonable({k: d.get(k) for k in FINDING_KEYS}))
    return out


def build_report(result: Any, thresholds: Any = None) -> dict[str, Any]:
    """The report dict of ARCHITECTURE.md §4 for one ``IngestResult``: exactly the keys schema,
    inputs, summary, windows, findings; JSON-serialisable as is."""
    return {
        "schema": REPORT_SCHEMA,
        "inputs": inputs_json(result.inputs),
        "summary": jsonable(metrics.summarize(result)),
        "windows": windows_json(result.windows),
        "findings": run_findings(result, thresholds),
    }


def has_data(report: dict[str, Any]) -> bool:
    """Whether the report saw any speculative-decoding numbers at all (else: exit 3)."""
    s = report.get("summary") or {}
    return bool(s.get("windows_used") or s.get("steps"))


# ---------------------------------------------------------------------------------------------
# formatting helpers
# ---------------------------------------------------------------------------------------------


def fmt(v: Any, nd: int = 3) -> str:
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
    return f"{loc.get('path')}:{loc.get('line')}" if loc.get("line") is not None else str(loc.get("path"))


# ---------------------------------------------------------------------------------------------
# json, markdown
# ---------------------------------------------------------------------------------------------


def render_json(report: dict[str, Any]) -> str:
    """Indented JSON, except one compact line per window (reports of long logs stay readable and
    fast to write)."""
    head = jsonable({k: v for k, v in report.items() if k != "windows"})
    if "windows" not in report:
        return json.dumps(head, indent=2, allow_nan=False) + "\n"
    rows = report["windows"]
    parts = []
    # one encoder for all rows: json.dumps builds a new one per call, a third of the time on 10^5 rows
    encode = json.JSONEncoder(allow_nan=False, default=_json_default).encode
    for k in report:
        if k == "windows":
            body = ",\n".join("    " + encode(w) for w in rows)
            parts.append('  "windows": [' + ("\n" + body + "\n  ]" if rows else "]"))
        else:
            text = json.dumps(head[k], indent=2, allow_nan=False).replace("\n", "\n  ")
            parts.append(f"  {json.dumps(k)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _json_default(o: Any) -> Any:
    v = jsonable(o)
    if v is o:
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")
    return v


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict[str, Any], max_locations: int = 5) -> str:
    s = report["summary"]
    out = ["# Speculative decoding report", ""]
    if report["inputs"]:
        out += ["## Inputs", "", "| path | format | engine | lines | records | malformed |", "|---|---|---|---|---|---|"]
        for i in report["inputs"]:
            out.append("| " + " | ".join(_md_cell(fmt(i.get(k))) for k in INPUT_KEYS) + " |")
        out.append("")
    out += ["## Summary", "", "| metric | value | definition |", "|---|---|---|"]
    for label, value, definition in summary_rows(s):
        out.append(f"| {_md_cell(label)} | {_md_cell(value)} | {_md_cell(definition)} |")
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


# ---------------------------------------------------------------------------------------------
# terminal (rich)
# ---------------------------------------------------------------------------------------------


def render_terminal(report: dict[str, Any], console: Any = None, max_locations: int = 3) -> None:
    """Summary table, per-position bars and the ranked findings, on a rich console."""
    from rich.console import Console
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    s = report["summary"]
    ins = report["inputs"]
    if ins:
        t = Table(title="Inputs", title_justify="left", show_edge=False)
        for k in INPUT_KEYS:
            t.add_column(k, overflow="fold")
        for i in ins:
            t.add_row(*(fmt(i.get(k)) for k in INPUT_KEYS))
        console.print(t)
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
    findings = report["findings"]
    console.print(Text(f"Findings ({len(findings)})", style="bold"))
    if not findings:
        console.print("  no findings")
    for n, f in enumerate(findings, 1):
        style = SEVERITY_STYLE.get(f["severity"], "")
        head = Text(f"{n:>2}. ")
        head.append(f"{f['severity'].upper():<7}", style=style)
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


# ---------------------------------------------------------------------------------------------
# junit
# ---------------------------------------------------------------------------------------------


def rule_codes(findings: Iterable[dict[str, Any]]) -> list[str]:
    """Every registered rule code (so passing rules show as passed tests), plus any finding codes."""
    codes: list[str] = []
    try:
        from specdec_diag.analysis.rules import RULES

        codes = list(RULES)
    except ImportError:
        pass
    for f in findings:
        if f["code"] not in codes:
            codes.append(f["code"])
    return codes


def render_junit(report: dict[str, Any], extra_cases: list[dict[str, Any]] | None = None,
                 suite: str = "specdec-diag", fail_severities: tuple[str, ...] = ("error",)) -> str:
    """JUnit XML: one testcase per rule code, a failure for each code with findings of
    ``fail_severities`` (the rest go to system-out). ``extra_cases`` (the gate's checks) are dicts
    with name, status ('pass'|'fail'|'insufficient'), message, text. Numbers go in the failure text
    too, because GitLab ignores properties and failure messages."""
    cases: list[ET.Element] = []
    failures = skipped = 0
    by_code: dict[str, list[dict[str, Any]]] = {}
    for f in report["findings"]:
        by_code.setdefault(f["code"], []).append(f)
    for ec in extra_cases or []:
        tc = ET.Element("testcase", classname=f"{suite}.check", name=ec["name"], time="0")
        if ec["status"] == "fail":
            failures += 1
            el = ET.SubElement(tc, "failure", message=ec["message"], type="gate")
            el.text = ec.get("text") or ec["message"]
        elif ec["status"] == "insufficient":
            skipped += 1
            ET.SubElement(tc, "skipped", message=ec["message"])
        else:
            ET.SubElement(tc, "system-out").text = ec.get("text") or ec["message"]
        cases.append(tc)
    for code in rule_codes(report["findings"]):
        tc = ET.Element("testcase", classname=f"{suite}.rules", name=code, time="0")
        fs = by_code.get(code, [])
        errors = [f for f in fs if f["severity"] in fail_severities]
        if errors:
            failures += 1
            el = ET.SubElement(tc, "failure", message=errors[0]["title"], type=code)
            el.text = "\n\n".join(_finding_text(f) for f in errors)
        rest = [f for f in fs if f["severity"] not in fail_severities]
        if rest:
            ET.SubElement(tc, "system-out").text = "\n\n".join(_finding_text(f) for f in rest)
        cases.append(tc)
    root = ET.Element("testsuites", name=suite, tests=str(len(cases)), failures=str(failures), errors="0",
                      skipped=str(skipped))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures), errors="0",
                       skipped=str(skipped), time="0", timestamp=datetime.now().replace(microsecond=0).isoformat())
    ts.extend(cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _finding_text(f: dict[str, Any]) -> str:
    lines = [f"[{f['severity']}] {f['code']}: {f['title']}"]
    lines += [f"  {k}: {v}" for k, v in evidence_items(f.get("evidence") or {})]
    if f.get("recommendation"):
        lines.append(f"  recommendation: {f['recommendation']}")
    lines += [f"  at {loc_str(x)}" for x in (f.get("locations") or [])[:20]]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# html
# ---------------------------------------------------------------------------------------------


def downsample(xs: list[Any], ys: list[float], ws: list[float], max_points: int = MAX_POINTS
               ) -> tuple[list[Any], list[float]]:
    """Bucket a long series into ``max_points`` consecutive buckets: x of the bucket's first point,
    y the weight-weighted mean (so a bucket's rate is still accepted/drafted)."""
    n = len(xs)
    if n <= max_points:
        return xs, ys
    size = math.ceil(n / max_points)
    ox, oy = [], []
    for i in range(0, n, size):
        w = ws[i:i + size]
        y = ys[i:i + size]
        tw = sum(w)
        ox.append(xs[i])
        oy.append(sum(a * b for a, b in zip(y, w, strict=True)) / tw if tw > 0 else sum(y) / len(y))
    return ox, oy


def _series(windows: list[dict[str, Any]]) -> dict[str, tuple[list[Any], list[float], list[float], str]]:
    """Acceptance over time per (source, engine_id): x = time when known else line number."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for w in windows:
        if w.get("acceptance_rate") is None:
            continue
        key = f"{w.get('engine_id') or w.get('engine') or ''} · {w.get('source')}"
        groups.setdefault(key, []).append(w)
    out = {}
    for key, rows in groups.items():
        kinds = {r.get("window") for r in rows}
        if "interval" in kinds or "request" in kinds:  # the windows the metrics aggregate (no cumulative)
            rows = [r for r in rows if r.get("window") in ("interval", "request")]
        use_time = all(r.get("time") for r in rows)
        rows = sorted(rows, key=lambda r: (r.get("time") or "", r.get("line") or 0))
        xs = [r["time"] if use_time else r.get("line") for r in rows]
        ys = [r["acceptance_rate"] for r in rows]
        ws = [float(r.get("draft_tokens") or 1.0) for r in rows]
        out[key] = (xs, ys, ws, "time (UTC)" if use_time else "line")
    return out


def accepted_length_distribution(summary: dict[str, Any]) -> tuple[dict[int, float], str] | None:
    """Share of steps accepting n drafts: measured from trace steps, else derived from per-position
    rates (P(n = j) = a_j - a_(j+1), a_0 = 1)."""
    hist = summary.get("accepted_length_histogram")
    if hist:
        total = sum(hist.values())
        return {int(k): v / total for k, v in hist.items()}, "trace steps"
    pp = summary.get("per_position_acceptance")
    if pp and all(x is not None for x in pp):
        a = [1.0, *pp, 0.0]
        return {j: max(0.0, a[j] - a[j + 1]) for j in range(len(pp) + 1)}, "derived from per-position rates"
    return None


def figures(report: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(title, plotly figure, note) for each chart the data supports."""
    import plotly.graph_objects as go

    s = report["summary"]
    figs: list[tuple[str, Any, str]] = []
    layout = {"height": 360, "margin": {"l": 50, "r": 20, "t": 30, "b": 40}, "template": "plotly_white"}

    series = _series(report["windows"])
    if series:
        fig = go.Figure()
        notes = []
        xlabel = next(iter(series.values()))[3]
        for key, (xs, ys, ws, _) in series.items():
            dx, dy = downsample(xs, ys, ws)
            if len(dx) < len(xs):
                notes.append(f"{key}: {len(xs)} windows shown as {len(dx)} draft-weighted buckets")
            fig.add_trace(go.Scatter(x=dx, y=dy, mode="lines+markers" if len(dx) < 200 else "lines", name=key))
        fig.update_layout(**layout, yaxis={"title": "acceptance rate", "range": [0, 1.02], "tickformat": ".0%"},
                          xaxis={"title": xlabel})
        figs.append(("Acceptance rate over time", fig, "; ".join(notes)
                     or "accepted / drafted per window, bonus excluded; one line per engine and file"))

    pp = s.get("per_position_acceptance")
    if pp:
        cond = s.get("conditional_per_position") or []
        fig = go.Figure()
        pos = list(range(len(pp)))
        fig.add_trace(go.Bar(x=pos, y=pp, name="P(position accepted)"))
        fig.add_trace(go.Scatter(x=pos, y=[c for c in cond], mode="lines+markers", name="conditional a_j / a_(j-1)"))
        a = s.get("alpha_mle") or s.get("alpha_from_mal")
        if a is not None:
            fig.add_trace(go.Scatter(x=pos, y=theory.expected_per_position(a, len(pp)), mode="lines",
                                     line={"dash": "dot"}, name=f"i.i.d. model alpha^j (alpha={a:.2f})"))
        fig.update_layout(**layout, yaxis={"title": "share of drafts", "range": [0, 1.02]},
                          xaxis={"title": "draft position", "dtick": 1})
        figs.append(("Per-position acceptance", fig,
                     "a flat conditional curve is healthy; a cliff or steady decay points at the drafter"))

    dist = accepted_length_distribution(s)
    if dist:
        d, basis = dist
        fig = go.Figure(go.Bar(x=list(d), y=list(d.values()), name="steps"))
        fig.update_layout(**layout, yaxis={"title": "share of steps", "tickformat": ".0%"},
                          xaxis={"title": "accepted drafts per step (bonus excluded)", "dtick": 1})
        figs.append(("Accepted length per step", fig, basis))

    tb = s.get("time_breakdown")
    if tb:
        parts = ["draft_ms", "verify_ms", "overhead_ms"]
        fig = go.Figure(go.Bar(x=[p.replace("_ms", "") for p in parts], y=[tb.get(p, 0) for p in parts],
                               text=[pct(tb.get(p.replace("_ms", "_share"))) for p in parts], textposition="auto"))
        fig.update_layout(**layout, yaxis={"title": "total ms"})
        figs.append(("Step time: draft / verify / overhead", fig, "summed over all trace steps"))

    sp = s.get("speedup") or {}
    if sp.get("alpha") is not None and sp.get("gamma"):
        alpha, k = sp["alpha"], sp["gamma"]
        c = sp.get("c") or 0.0
        gs = list(range(1, max(2 * k, (sp.get("optimal_gamma") or 0) + 2, 8) + 1))
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=gs, y=[theory.speedup(alpha, g, c) for g in gs], mode="lines+markers",
                                 name=f"predicted S(gamma), alpha={alpha:.2f}, c={c:.3f}"))
        fig.add_trace(go.Scatter(x=[k], y=[sp.get("predicted")], mode="markers", marker={"size": 14, "symbol": "diamond"},
                                 name=f"predicted at k={k}"))
        if sp.get("achieved") is not None:
            fig.add_trace(go.Scatter(x=[k], y=[sp["achieved"]], mode="markers", marker={"size": 14, "symbol": "x"},
                                     name="achieved"))
        fig.update_layout(**layout, yaxis={"title": "speed-up vs plain decoding (x)"},
                          xaxis={"title": "draft length gamma", "dtick": 1})
        note = "Leviathan Thm 3.8; " + ("c unknown, taken as 0: an upper bound" if sp.get("c_assumed_zero")
                                         else "c measured from trace timings")
        figs.append(("Predicted vs achieved speed-up", fig, note))
    return figs


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f5f5f5}.def{color:#777;font-size:.85em}
.finding{border-left:5px solid #999;padding:6px 12px;margin:10px 0;background:#fafafa}
.sev{font-weight:bold;text-transform:uppercase}.loc{font-family:monospace;font-size:.85em;color:#555}
.note{color:#666;font-size:.85em}.chart{margin:8px 0 20px}
"""


def render_html(report: dict[str, Any], title: str = "Speculative decoding report") -> str:
    """One self-contained HTML file: plotly.js inlined with the first chart, no external requests."""
    e = html.escape
    s = report["summary"]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    if report["inputs"]:
        parts.append("<h2>Inputs</h2><table><tr>" + "".join(f"<th>{k}</th>" for k in INPUT_KEYS) + "</tr>")
        for i in report["inputs"]:
            parts.append("<tr>" + "".join(f"<td>{e(fmt(i.get(k)))}</td>" for k in INPUT_KEYS) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Summary</h2><table><tr><th>metric</th><th>value</th><th>definition</th></tr>")
    for label, value, definition in summary_rows(s):
        parts.append(f"<tr><td>{e(label)}</td><td>{e(value)}</td><td class='def'>{e(definition)}</td></tr>")
    parts.append("</table>")

    parts.append(f"<h2>Findings ({len(report['findings'])})</h2>")
    if not report["findings"]:
        parts.append("<p>No findings.</p>")
    for n, f in enumerate(report["findings"], 1):
        color = SEVERITY_COLOR.get(f["severity"], "#999")
        parts.append(f"<div class='finding' style='border-color:{color}'><div><span class='sev' style='color:{color}'>"
                     f"{e(f['severity'])}</span> {n}. <code>{e(f['code'])}</code> {e(f['title'])}</div>")
        ev = evidence_items(f.get("evidence") or {})
        defs = (f.get("evidence") or {}).get("definitions") or {}
        if ev:
            parts.append("<table>" + "".join(
                f"<tr><td title='{e(str(defs.get(k, '')))}'>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in ev) + "</table>")
        if f.get("recommendation"):
            parts.append(f"<p><b>Recommendation:</b> {e(f['recommendation'])}</p>")
        locs = f.get("locations") or []
        if locs:
            more = f" and {len(locs) - 12} more" if len(locs) > 12 else ""
            parts.append("<div class='loc'>at " + ", ".join(e(loc_str(x)) for x in locs[:12]) + e(more) + "</div>")
        parts.append("</div>")

    parts.append("<h2>Charts</h2>")
    figs = figures(report)
    if not figs:
        parts.append("<p class='note'>No data to chart.</p>")
    for i, (ftitle, fig, note) in enumerate(figs):
        div = fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"chart-{i}",
                          config={"displaylogo": False, "responsive": True})
        parts.append(f"<h3>{e(ftitle)}</h3><p class='note'>{e(note)}</p><div class='chart'>{div}</div>")
    parts.append(f"<p class='note'>{e(REPORT_SCHEMA)} · generated by specdec-diag</p></body></html>")
    return "\n".join(parts)


def render(report: dict[str, Any], fmt_name: str, console: Any = None) -> str | None:
    """Render to a string (None for terminal, which prints to ``console``)."""
    if fmt_name == "terminal":
        render_terminal(report, console)
        return None
    fn = {"markdown": render_markdown, "html": render_html, "json": render_json, "junit": render_junit}.get(fmt_name)
    if fn is None:
        raise ValueError(f"unknown format {fmt_name!r}; choose one of {', '.join(FORMATS)}")
    return fn(report)
