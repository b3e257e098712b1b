"""AIPerf (ai-dynamo/aiperf) speculative-decoding output (docs/log-formats.md §7): the per-request
``spec_decode_acceptance`` record of ``profile_export.jsonl``, the run totals of
``profile_export_aiperf.json`` and the console ``Spec Decode`` table with its accepted-drafts histogram.

AIPerf's definitions (docs/metrics-reference.md there) match the window table's: per verify step j
drafts accepted of l proposed, acceptance length j + 1 (bonus included), draft acceptance rate j / l.
``Token-Weighted Acceptance Length`` (every verify step weighted equally) is 1 + accepted / steps and
``Overall Draft Acceptance Rate`` is accepted / drafted over the run: those two, not the per-request
averages, are the run row's numbers. The histogram {j: steps that accepted exactly j} gives the prefix
per-position rates: position i was accepted on the steps with j > i.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.ingest._textparse import (
    as_int,
    finite,
    malformed_rows,
    norm_lines,
    ratio,
    reject_windows,
    rows_to_windows,
    split_lines,
    value_problem,
)
from specdec_diag.ingest.base import NO_OPTIONS, Parsed, ParseOptions, Source
from specdec_diag.schema import MALFORMED_SCHEMA, open_text

FAMILY = "aiperf"
ENGINE = "aiperf"
MARKERS = ("Overall Draft Acceptance Rate", "Token-Weighted Acceptance Length", "Acceptance Length (ratio)",
           "Draft Acceptance Rate (%)", "Spec Decode Steps", "Accepted drafts per step")
_MAX_DOC = 64 * 1024 * 1024
_RECORD_KEY = '"spec_decode_acceptance"'
_TOTALS = ('"total_spec_decode_steps"', '"pooled_spec_decode_acceptance_histogram"')
_NOTE_REQ = ("AIPerf per-request spec_decode_acceptance: acceptance_rate = num_accepted_draft_tokens / "
             "num_draft_tokens; mean acceptance length = 1 + accepted / num_spec_steps (bonus included); "
             "per position from acceptance_histogram")
_NOTE_RUN = ("AIPerf run totals: acceptance_rate = total_accepted_draft_tokens / total_draft_tokens; mean "
             "acceptance length = 1 + accepted / total_spec_decode_steps; per position from the pooled histogram")
_NOTE_CONSOLE = ("AIPerf Spec Decode console table: acceptance_rate = Overall Draft Acceptance Rate / 100 "
                 "(accepted / drafted over the run); mean acceptance length = Token-Weighted Acceptance Length "
                 "(tokens per verify step, bonus included); per position from the accepted-drafts histogram (%)")


def detect(sample: str) -> bool:
    """Records or run totals are JSON (often pretty-printed): read whole; the console table by lines."""
    return _RECORD_KEY in sample or any(k in sample for k in _TOTALS)


def per_position(hist: dict[int, float]) -> list[float] | None:
    """Prefix acceptance by position from {accepted drafts j: steps}: P(j > i) for i below the largest j."""
    total = sum(hist.values())
    if not hist or total <= 0:
        return None
    top = max(hist)
    return [sum(v for j, v in hist.items() if j > i) / total for i in range(top)] or None


def _histogram(raw: Any) -> dict[int, float] | None:
    if not isinstance(raw, dict):
        return None
    out: dict[int, float] = {}
    for k, v in raw.items():
        j, n = as_int(k) if isinstance(k, (int, str)) and str(k).isdigit() else None, finite(v)
        if j is None or n is None or n < 0 or j > 1024:
            return None
        out[j] = n
    return out


def _counts_row(acc: Any, draft: Any, steps: Any, k: Any, hist: Any) -> tuple[dict[str, Any] | None, str | None]:
    for raw, label in ((acc, "accepted draft tokens"), (draft, "draft tokens"), (steps, "spec decode steps")):
        why = value_problem(raw, label, count=True)
        if why:
            return None, why
    a, d, s = as_int(acc), as_int(draft), as_int(steps)
    if a is not None and d is not None and a > d:
        return None, f"accepted draft tokens ({a}) exceed draft tokens ({d})"
    return {"k": as_int(k), "num_drafts": s, "draft_tokens": d, "accepted_tokens": a,
            "acceptance_rate": ratio(a, d),
            "mean_acceptance_length": None if ratio(a, s) is None else 1 + a / s,
            "per_position_acceptance": per_position(_histogram(hist) or {})}, None


def _record(obj: Any, line: int, source: str) -> tuple[dict[str, Any] | None, str | None]:
    if not isinstance(obj, dict):
        return None, "spec_decode_acceptance is not an object"
    row, why = _counts_row(obj.get("num_accepted_draft_tokens"), obj.get("num_draft_tokens"),
                           obj.get("num_spec_steps"), obj.get("num_spec_tokens"), obj.get("acceptance_histogram"))
    if row is None:
        return None, why
    if row["mean_acceptance_length"] is None:  # no step count: the length as stated
        row["mean_acceptance_length"] = finite(obj.get("mean_acceptance_length"))
    # the record names the server that reported the counts (AIPerf itself only measures)
    engine = obj.get("engine") if isinstance(obj.get("engine"), str) and obj.get("engine") else ENGINE
    return {**row, "source": source, "line": line, "engine": engine[:40], "format": "aiperf-request",
            "window": "request", "definition_note": _NOTE_REQ}, None


def _metric(doc: dict[str, Any], key: str) -> Any:
    v = doc.get(key)
    return v.get("avg") if isinstance(v, dict) else v


def _totals(doc: dict[str, Any], source: str) -> tuple[dict[str, Any] | None, str | None]:
    row, why = _counts_row(_metric(doc, "total_accepted_draft_tokens"), _metric(doc, "total_draft_tokens"),
                           _metric(doc, "total_spec_decode_steps"), None,
                           doc.get("pooled_spec_decode_acceptance_histogram"))
    if row is None:
        return None, why
    return {**row, "source": source, "line": 1, "engine": ENGINE, "format": "aiperf-run", "window": "run",
            "gen_tps": finite(_metric(doc, "output_token_throughput")), "definition_note": _NOTE_RUN}, None


def parse_file(path: Path, source: str) -> Parsed:
    """Every ``"spec_decode_acceptance": {...}`` object in the file (JSON Lines, pretty-printed, inside
    Markdown fences), or one run-totals document; the console table through :func:`parse`."""
    with open_text(path) as fh:
        text = fh.read(_MAX_DOC)
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str, str]] = []
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict) and any(k.strip('"') in doc for k in _TOTALS):
        row, why = _totals(doc, source)
        rows, bad = ([row], []) if row else ([], [(1, why or "unreadable run totals", "")])
    else:
        dec = json.JSONDecoder()
        for m in re.finditer(_RECORD_KEY + r"\s*:\s*", text):
            line = text.count("\n", 0, m.start()) + 1
            try:
                obj, _ = dec.raw_decode(text, m.end())
            except (ValueError, RecursionError):
                bad.append((line, "spec_decode_acceptance object is cut or not valid JSON", text[m.start():m.start() + 300]))
                continue
            row, why = _record(obj, line, source)
            if row:
                rows.append(row)
            else:
                bad.append((line, why or "unreadable record", text[m.start():m.start() + 300]))
    lines = split_lines(text)
    table = parse(pl.DataFrame({"line": list(range(1, len(lines) + 1)), "text": lines},
                               schema={"line": pl.Int64, "text": pl.Utf8}), source)
    return _finish(rows, bad, source, table)


def _finish(rows: list[dict[str, Any]], bad: list[tuple[int, str, str]], source: str,
            more: Parsed | None = None) -> Parsed:
    windows, net = reject_windows(rows_to_windows(rows), source)
    mal = [malformed_rows(bad, source) if bad else pl.DataFrame(schema=MALFORMED_SCHEMA), net]
    if more is not None:
        windows = pl.concat([windows, more.windows])
        mal.append(more.malformed)
    return Parsed(windows=windows, malformed=pl.concat(mal))


_CELL = re.compile(r"[│┃|]")
_HIST = re.compile(r"(>=)?(\d+):\s*(\d+(?:\.\d+)?)%")


def _avg(text: str) -> str | None:
    """The first value cell after the label cell of a table row (the avg column)."""
    cells = [c.strip() for c in _CELL.split(text)]
    values = [c for c in cells[1:] if c]
    return values[1] if len(values) > 1 else None


def parse(lines: pl.DataFrame, source: str, options: ParseOptions = NO_OPTIONS) -> Parsed:
    """The console Spec Decode table: one run row from its Overall Draft Acceptance Rate and
    Token-Weighted Acceptance Length rows and the histogram line after it."""
    found: dict[str, Any] = {}
    bad: list[tuple[int, str, str]] = []
    first = None
    for ln, text in norm_lines(lines).sort("line").select("line", "text").iter_rows():
        t = text[:2000]
        key = ("rate" if "Overall Draft Acceptance Rate" in t else
               "length" if "Token-Weighted Acceptance Length" in t else
               "hist" if "Accepted drafts per step" in t else None)
        if key is None:
            continue
        first = first or ln
        if key == "hist":
            pairs = [(m.group(1), int(m.group(2)), float(m.group(3))) for m in _HIST.finditer(t)]
            # a folded ">=8" bucket hides the positions past it: keep the positions below it
            found["pp"] = per_position({j: p for ge, j, p in pairs if not ge}) if pairs else None
            continue
        raw = _avg(t)
        why = value_problem(raw, "Overall Draft Acceptance Rate" if key == "rate" else "Token-Weighted Acceptance Length")
        if raw is None or why:
            bad.append((ln, why or "Spec Decode table row without a value", t))
            continue
        found[key], found[key + "_line"] = float(raw), ln
    if "rate" not in found and "length" not in found:
        return _finish([], bad, source)
    rate = None if found.get("rate") is None else found["rate"] / 100
    if rate is not None and rate > 1:
        return _finish([], [*bad, (found["rate_line"], "Overall Draft Acceptance Rate above 100 %", "")], source)
    row = {"source": source, "line": first, "engine": ENGINE, "format": "aiperf-console", "window": "run",
           "acceptance_rate": rate, "mean_acceptance_length": found.get("length"),
           "per_position_acceptance": found.get("pp"), "definition_note": _NOTE_CONSOLE}
    return _finish([row], bad, source)


SOURCE = Source(family=FAMILY, markers=MARKERS, detect=detect, parse=parse, parse_file=parse_file)
