"""TensorRT-LLM ``trtllm-bench`` reports (docs/log-formats.md §6): the console ``DECODING STATISTICS``
block and the ``decoding_stats`` object of its JSON report (``--report_json``), one ``run`` row each.

Both come from ``ReportUtility`` in ``tensorrt_llm/bench/dataclasses/reporting.py``. Per request the
benchmark computes DT = max_draft_len x (decode iterations + 1), ADT = output tokens - (decode
iterations + 1), DAR = ADT / DT and AL = output tokens / (decode iterations + 1), and prints their
minimum, maximum, average and percentiles over requests. The row keeps the averages as printed
(``acceptance_rate`` = [DAR] AVERAGE, ``mean_acceptance_length`` = [AL] AVERAGE); token totals are the
averages times ``Number of requests`` when the report gives it; k follows from AL - 1 = k x DAR, which
holds for each request and so for the averages (plain or output-weighted alike).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.ingest._textparse import (
    NUM,
    finite,
    lines_from_texts,
    malformed_rows,
    norm_lines,
    reject_windows,
    rows_to_windows,
    split_lines,
    value_problem,
)
from specdec_diag.ingest.base import NO_OPTIONS, Parsed, ParseOptions, Source
from specdec_diag.schema import MALFORMED_SCHEMA, open_text

FAMILY = "trtllm-bench"
ENGINE = "trtllm"
FORMAT = "trtllm-bench-decoding-stats"
MARKERS = ("DECODING STATISTICS", "[DT] ", "[ADT] ", "[DAR] ", "[AL] ", "Number of requests:",
           "Total Output Throughput (tokens/sec)", "Acceptance Rate (Speculative)")
_MAX_DOC = 64 * 1024 * 1024

_HEADER = re.compile(r"=\s*DECODING STATISTICS\s*(?:\(([^)]*)\))?")
_STAT = re.compile(r"\[(DT|ADT|DAR|AL)\]\s+(MINIMUM|MAXIMUM|AVERAGE|P\d+)\s*:\s*(\S+)")
_NREQ = re.compile(r"Number of requests:\s+(\d+)\s*$")
_TPS = re.compile(r"Total Output Throughput \(tokens/sec\):\s+" + NUM)
#: the 2024 latency report (tensorrt_llm/bench/benchmark/low_latency.py): total output tokens / total
#: decoding iterations - tokens per iteration, an acceptance *length* despite its name
_OLD_AR = re.compile(r"Acceptance Rate \(Speculative\):\s+" + NUM)
_OLD_NOTE = ("trtllm-bench latency report (2024): 'Acceptance Rate (Speculative)' is total output tokens / total "
             "decoding iterations, i.e. tokens per iteration (bonus included): read as the mean acceptance length")
#: JSON percentile objects -> the console tags
_JSON_KEYS = {"num_draft_tokens_percentiles": "DT", "num_accepted_draft_tokens_percentiles": "ADT",
              "draft_acceptance_rate_percentiles": "DAR", "acceptance_length_percentiles": "AL"}
_NOTE = ("trtllm-bench DECODING STATISTICS averaged over requests: acceptance_rate = [DAR] AVERAGE (accepted / "
         "(max_draft_len x (decode iterations + 1)) per request: the configured maximum, so an under-estimate "
         "when fewer tokens are drafted); mean_acceptance_length = [AL] AVERAGE (output tokens / (decode "
         "iterations + 1), bonus included); token totals = averages x requests; k = (AL - 1) / DAR")


def detect(sample: str) -> bool:
    """Whole-file mode only for the JSON report; the console block is read line by line."""
    return sample.lstrip().startswith("{") and '"decoding_stats"' in sample


def _k(dar: float | None, al: float | None) -> int | None:
    """max_draft_len from AL - 1 = k x DAR, when the printed (2-decimal) averages pin one integer."""
    if dar is None or al is None or dar < 0.05:
        return None
    est = (al - 1.0) / dar
    k = round(est)
    return k if k >= 1 and abs(est - k) <= 0.15 * max(1.0, est / 4) else None


def _row(stats: dict[str, dict[str, float]], line: int, source: str, mode: str | None,
         n_req: int | None, tps: float | None) -> tuple[dict[str, Any] | None, str | None]:
    avg = {tag: (stats.get(tag) or {}).get("AVERAGE") for tag in ("DT", "ADT", "DAR", "AL")}
    if all(v is None for v in avg.values()):
        return None, "DECODING STATISTICS block without any AVERAGE row"
    dar, al, dt, adt = avg["DAR"], avg["AL"], avg["DT"], avg["ADT"]
    if dar is not None and dar > 1:
        return None, f"[DAR] AVERAGE {dar} is not a fraction"
    if dt is not None and adt is not None and adt > dt:
        return None, f"[ADT] AVERAGE {adt} exceeds [DT] AVERAGE {dt}"
    k = _k(dar, al)
    draft = None if dt is None or not n_req else round(dt * n_req)
    acc = None if adt is None or not n_req else round(adt * n_req)
    return {
        "source": source, "line": line, "engine": ENGINE, "format": FORMAT, "window": "run",
        "engine_id": mode or None, "k": k,
        "num_drafts": None if draft is None or not k else round(draft / k),
        "draft_tokens": draft, "accepted_tokens": acc,
        "acceptance_rate": dar, "mean_acceptance_length": al, "gen_tps": tps,
        "definition_note": _NOTE,
    }, None


def parse(lines: pl.DataFrame, source: str, options: ParseOptions = NO_OPTIONS) -> Parsed:
    """Console reports: a header (or, pasted without it, the first tag row) opens a block; the request
    count and output throughput printed before it belong to it; a repeated tag row opens the next."""
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str, str]] = []
    cur: dict[str, Any] | None = None
    pending: dict[str, Any] = {}

    def close() -> None:
        if cur is not None:
            row, why = _row(cur["stats"], cur["line"], source, cur["mode"], cur.get("n"), cur.get("tps"))
            if row:
                rows.append(row)
            elif why:
                bad.append((cur["line"], why, cur["text"]))

    for ln, text in norm_lines(lines).sort("line").select("line", "text").iter_rows():
        t = text[:2000]
        if m := _NREQ.search(t):
            pending["n"] = int(m.group(1))
        elif m := _TPS.search(t):
            pending["tps"] = finite(m.group(1))
        elif m := _OLD_AR.search(t):
            _old_rate(m.group(1), ln, t, source, rows, bad)
        elif m := _HEADER.search(t):
            close()
            cur = {"line": ln, "text": t, "mode": m.group(1), "header": True, "stats": {}, **pending}
            pending = {}
        elif m := _STAT.search(t):
            tag, key, raw = m.group(1), m.group(2), m.group(3)
            why = value_problem(raw, f"[{tag}] {key}")
            if why:
                bad.append((ln, why, t))
                continue
            repeated = cur is not None and key in cur["stats"].get(tag, {})
            if repeated and cur["header"]:  # a report prints each row once after its header
                bad.append((ln, f"[{tag}] {key} repeated within one DECODING STATISTICS block", t))
                continue
            if cur is None or repeated:  # pasted without headers: a repeated row starts the next report
                close()
                cur = {"line": ln, "text": t, "mode": None, "header": False, "stats": {}, **pending}
                pending = {}
            cur["stats"].setdefault(tag, {})[key] = float(raw)
    close()
    return _finish(rows, bad, source)


def _old_rate(raw: str, ln: int, text: str, source: str, rows: list, bad: list) -> None:
    """The 2024 line. At 1.00 (one token per iteration) the run may not have speculated at all - the
    report prints the line either way - so no row is made: nothing says speculation was on."""
    why = value_problem(raw, "Acceptance Rate (Speculative)")
    if why:
        bad.append((ln, why, text))
        return
    v = float(raw)
    if v < 1:
        bad.append((ln, f"Acceptance Rate (Speculative) {v} is below one token per iteration", text))
    elif v > 1.005:
        rows.append({"source": source, "line": ln, "engine": ENGINE, "format": "trtllm-bench-latency-2024",
                     "window": "run", "mean_acceptance_length": v, "definition_note": _OLD_NOTE})


def _finish(rows: list[dict[str, Any]], bad: list[tuple[int, str, str]], source: str) -> Parsed:
    windows, net = reject_windows(rows_to_windows(rows), source)
    mal = malformed_rows(bad, source) if bad else pl.DataFrame(schema=MALFORMED_SCHEMA)
    return Parsed(windows=windows, malformed=pl.concat([mal, net]) if net.height else mal)


def _json_report(obj: dict[str, Any], source: str) -> Parsed:
    ds = obj.get("decoding_stats")
    if not isinstance(ds, dict):
        return Parsed()
    stats: dict[str, dict[str, float]] = {}
    for key, tag in _JSON_KEYS.items():
        pct = ds.get(key)
        if not isinstance(pct, dict):
            continue
        why = value_problem(pct.get("average"), f"decoding_stats.{key}.average")
        if why:
            return _finish([], [(1, why, json.dumps(pct)[:300])], source)
        if pct.get("average") is not None:
            stats[tag] = {"AVERAGE": float(pct["average"])}
    info = obj.get("request_info") if isinstance(obj.get("request_info"), dict) else {}
    perf = obj.get("performance") if isinstance(obj.get("performance"), dict) else {}
    n = info.get("num_requests")
    n_req = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None
    mode = ds.get("mode") if isinstance(ds.get("mode"), str) else None
    row, why = _row(stats, 1, source, mode, n_req, finite(perf.get("system_output_throughput_tok_s")))
    return _finish([row] if row else [], [] if row or not why else [(1, why, "")], source)


def parse_file(path: Path, source: str) -> Parsed:
    """The JSON report (one document); anything else is read as console lines."""
    with open_text(path) as fh:
        text = fh.read(_MAX_DOC)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict):
        return _json_report(obj, source)
    texts = split_lines(text)
    keep = [i for i, s in enumerate(texts) if any(m in s for m in MARKERS)]
    lines = lines_from_texts(texts)[keep] if keep else lines_from_texts([])
    return parse(lines, source)


SOURCE = Source(family=FAMILY, markers=MARKERS, detect=detect, parse=parse, parse_file=parse_file)
