"""TensorRT-LLM iteration statistics (``specDecodingStats``) and per-request perf metrics
(docs/log-formats.md §6).

Accepted layouts: JSON Lines, one JSON array (one line or pretty-printed), a stream of pretty-printed
objects, and log lines with a prefix before the object (``[TensorRT-LLM][INFO] {...}``). Each iteration
becomes one ``interval`` row; each request record of the perf-metrics JSONL one ``request`` row.

``specDecodingStats.iterLatencyMS`` is the draft-token generation time only; the rest of the
iteration (``iterLatencyMS`` at top level minus it) is reported as ``verify_ms``.
"""

from __future__ import annotations

import bisect
import json
import re
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.ingest._textparse import (
    as_int,
    counts_problem,
    finite,
    lines_from_texts,
    malformed_rows,
    norm_lines,
    ratio,
    reject_windows,
    rows_to_windows,
    split_lines,
    value_problem,
)
from specdec_diag.ingest.base import NO_OPTIONS, Parsed, ParseOptions, Source
from specdec_diag.schema import MALFORMED_SCHEMA, conform_windows, open_text

FAMILY = "trtllm"
ENGINE = "trtllm"
MARKERS = (
    '"specDecodingStats"',
    '"spec_decoding_stats"',
    '"iterLatencyMS"',
    '"numActiveRequests"',
    '"speculative_decoding"',
    'specDecodingStats\\"',
)
_TIME_FORMATS = ("%m-%d-%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S%.f", "%m-%d-%Y %H:%M:%S%.f")
_MAX_DOC = 256 * 1024 * 1024
_SD_KEYS = (
    "numDraftTokens",
    "numAcceptedTokens",
    "numRequestsWithDraftTokens",
    "acceptanceLength",
    "iterLatencyMS",
    "draftOverhead",
)


def detect(sample: str) -> bool:
    """Iteration stats carry ``specDecodingStats`` or ``iterLatencyMS``; perf metrics
    ``speculative_decoding``."""
    return (
        "specDecodingStats" in sample
        or '"spec_decoding_stats"' in sample
        or ("iterLatencyMS" in sample and "numActiveRequests" in sample)
        or ('"speculative_decoding"' in sample and "total_draft_tokens" in sample)
    )


def _finish(rows: list[dict[str, Any]], bad: list[tuple[int, str, str]], source: str) -> Parsed:
    """Rows -> Parsed; the ``timestamp`` strings are parsed here in one vectorised pass."""
    stamps = [r.pop("_ts", None) for r in rows]
    windows = rows_to_windows(rows)
    if any(isinstance(x, str) for x in stamps):
        raw = pl.Series([x if isinstance(x, str) else None for x in stamps], dtype=pl.Utf8)
        raw = raw.str.strip_chars().str.strip_chars_end("Z").str.replace("T", " ")
        parsed = pl.select(pl.coalesce([raw.str.to_datetime(f, strict=False) for f in _TIME_FORMATS]))
        windows = windows.with_columns(parsed.to_series().dt.replace_time_zone("UTC").alias("time"))
    windows, net = reject_windows(conform_windows(windows), source)
    mal = malformed_rows(bad, source) if bad else pl.DataFrame(schema=MALFORMED_SCHEMA)
    return Parsed(windows=windows, malformed=pl.concat([mal, net]) if net.height else mal)


#: fields that are counts (whole, within int64); every other number read must be finite and >= 0
_COUNTS = {"numDraftTokens", "numAcceptedTokens", "numRequestsWithDraftTokens", "numActiveRequests",
           "numQueuedRequests", "total_draft_tokens", "total_accepted_draft_tokens"}


def _bad_number(obj: dict[str, Any], keys: tuple[str, ...], where: str) -> str | None:
    """The first of ``keys`` whose value is not usable: not a number, NaN/Infinity (Python's JSON
    reads them), negative, or a count that is fractional or beyond int64."""
    for k in keys:
        v = obj.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return f"{where}{k} is not a number ({json.dumps(v)[:40]})"
        why = value_problem(v, f"{where}{k}", count=k in _COUNTS)
        if why:
            return why
    return None


_SNAKE = {
    "num_draft_tokens": "numDraftTokens",
    "num_accepted_tokens": "numAcceptedTokens",
    "num_requests_with_draft_tokens": "numRequestsWithDraftTokens",
    "acceptance_length": "acceptanceLength",
    "iter_latency_ms": "iterLatencyMS",
    "draft_overhead": "draftOverhead",
}


def _iteration(obj: dict[str, Any], ln: int, source: str) -> tuple[dict[str, Any] | None, str | None]:
    sd = obj.get("specDecodingStats", obj.get("spec_decoding_stats"))
    if sd is not None and not isinstance(sd, dict):
        return None, "specDecodingStats is not an object"
    sd = {_SNAKE.get(k, k): v for k, v in (sd or {}).items()}
    why = _bad_number(sd, _SD_KEYS, "specDecodingStats.") or _bad_number(
        obj, ("iterLatencyMS", "numActiveRequests", "numQueuedRequests"), ""
    )
    if why:
        return None, why
    nreq, draft, acc = (
        as_int(sd.get(k)) for k in ("numRequestsWithDraftTokens", "numDraftTokens", "numAcceptedTokens")
    )
    if counts_problem(acc, draft):
        return None, f"specDecodingStats accepts more tokens ({acc}) than it drafted ({draft})"
    total_ms, draft_ms = finite(obj.get("iterLatencyMS")), finite(sd.get("iterLatencyMS"))
    overhead = finite(sd.get("draftOverhead"))
    if draft_ms is None and total_ms is not None and overhead is not None and overhead <= 1:
        draft_ms = overhead * total_ms  # draftOverhead = draft latency / iteration latency
    kv = obj.get("kvCacheStats") if isinstance(obj.get("kvCacheStats"), dict) else {}
    mal = None if ratio(acc, nreq) is None else 1 + acc / nreq
    if mal is None and (nreq or (nreq is None and draft)):  # as printed when the request count is absent
        mal = finite(sd.get("acceptanceLength"))
    k = draft // nreq if draft is not None and nreq and draft % nreq == 0 else None
    return {
        "source": source,
        "line": ln,
        "engine": ENGINE,
        "format": "trtllm-iteration-stats",
        "_ts": obj.get("timestamp"),
        "window": "interval",
        "engine_id": None if obj.get("rank") is None else f"rank {obj.get('rank')}",
        "k": k,
        "num_drafts": nreq,
        "draft_tokens": draft,
        "accepted_tokens": acc,
        "emitted_tokens": None if acc is None or nreq is None else acc + nreq,
        "acceptance_rate": ratio(acc, draft),
        "mean_acceptance_length": mal,
        "running_reqs": as_int(obj.get("numActiveRequests")),
        "waiting_reqs": as_int(obj.get("numQueuedRequests")),
        "kv_usage": ratio(finite(kv.get("usedNumBlocks")), finite(kv.get("maxNumBlocks"))),
        "draft_ms": draft_ms,
        "verify_ms": None if total_ms is None or draft_ms is None else max(0.0, total_ms - draft_ms),
        "request": None if obj.get("iter") is None else f"iter {obj.get('iter')}",
        "definition_note": "TRT-LLM specDecodingStats of one iteration: acceptance length = (accepted + "
        "requests with drafts) / requests; draft_ms = draft generation time (specDecodingStats.iterLatencyMS, "
        "else draftOverhead x iterLatencyMS), verify_ms = iteration latency - draft_ms",
    }, None


def _request(obj: dict[str, Any], ln: int, source: str) -> tuple[dict[str, Any] | None, str | None]:
    pm = obj.get("perf_metrics") if isinstance(obj.get("perf_metrics"), dict) else obj
    sd = pm.get("speculative_decoding")
    if not isinstance(sd, dict):
        return None, "speculative_decoding is not an object"
    why = _bad_number(
        sd, ("total_draft_tokens", "total_accepted_draft_tokens", "acceptance_rate"), "speculative_decoding."
    )
    if why:
        return None, why
    draft, acc = as_int(sd.get("total_draft_tokens")), as_int(sd.get("total_accepted_draft_tokens"))
    if counts_problem(acc, draft):
        return None, f"speculative_decoding accepts more tokens ({acc}) than it drafted ({draft})"
    rate = ratio(acc, draft)
    return {
        "source": source,
        "line": ln,
        "engine": ENGINE,
        "format": "trtllm-request-perf",
        "window": "request",
        "draft_tokens": draft,
        "accepted_tokens": acc,
        "acceptance_rate": rate
        if rate is not None
        else (finite(sd.get("acceptance_rate")) if draft else None),
        "request": None if obj.get("request_id") is None else str(obj.get("request_id")),
        "definition_note": "TRT-LLM per-request perf metrics: acceptance_rate = accepted/drafted tokens",
    }, None


def _record(obj: Any, ln: int, source: str, rows: list, bad: list, text: str) -> None:
    if isinstance(obj, str) and obj.lstrip().startswith("{"):  # get_stats() may return JSON strings
        try:
            obj = json.loads(obj)
        except (ValueError, RecursionError):
            bad.append((ln, "JSON string entry is not valid JSON", text))
            return
    if not isinstance(obj, dict):
        bad.append((ln, "JSON value is not an object", text))
        return
    if "specDecodingStats" in obj or "spec_decoding_stats" in obj or "iterLatencyMS" in obj:
        row, why = _iteration(obj, ln, source)
    elif "speculative_decoding" in obj or isinstance(obj.get("perf_metrics"), dict):
        pm = obj["perf_metrics"] if isinstance(obj.get("perf_metrics"), dict) else obj
        if not isinstance(pm.get("speculative_decoding"), dict):
            return  # perf metrics without speculation: nothing to record
        row, why = _request(obj, ln, source)
    else:
        return
    if row is not None:
        rows.append(row)
    else:
        bad.append((ln, why or "unreadable record", text))


def _decode_line(text: str) -> tuple[list[Any] | None, str | None]:
    """The JSON value(s) on one line, after any log prefix; (None, reason) when it does not parse."""
    s = text.strip()
    is_array = s.startswith("[") and s[1:].lstrip()[:1] in ("{", "]", '"')
    start = 0 if is_array else s.find("{")
    if start < 0:
        return None, "no JSON object on the line"
    try:
        val, end = json.JSONDecoder().raw_decode(s, start)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and ints over Python's digit limit
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)[:80]
        return None, f"not valid JSON ({msg})"
    if s[end:].strip().rstrip(","):
        return None, "text after the JSON value"
    return (val if isinstance(val, list) else [val]), None


def parse(lines: pl.DataFrame, source: str, options: ParseOptions = NO_OPTIONS) -> Parsed:
    """Line mode: each marker line holding a whole JSON value (optionally after a log prefix)."""
    t = pl.col("text")
    cand = norm_lines(lines).filter(t.str.contains(r'\{\s*"') | t.str.contains(r"^\s*\[\s*[\{\]\"]"))
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str, str]] = []
    for ln, text in cand.select("line", "text").iter_rows():
        if text is None:
            continue
        vals, why = _decode_line(text)
        if vals is None:
            bad.append((ln, why or "unreadable", text))
            continue
        for v in vals:
            _record(v, ln, source, rows, bad, text[:300])
    return _finish(rows, bad, source)


def _scan_document(text: str, source: str) -> Parsed | None:
    """Whole-document mode: a top-level array or a stream of (pretty-printed) objects. None when the
    text is not such a document (then line mode applies). Junk before the document or between its
    values is reported malformed at its line; reading resumes at the next value."""
    newlines = [i for i, ch in enumerate(text) if ch == "\n"]

    def line_of(pos: int) -> int:
        return bisect.bisect_right(newlines, pos - 1) + 1

    n = len(text)
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str, str]] = []

    def skip(p: int) -> int:
        while p < n and text[p] in " \t\r\n,":
            p += 1
        return p

    pos = lead = skip(0)
    if pos < n and text[pos] not in "[{":  # a junk line before the document
        m = _VALUE_START.search(text, pos)
        if m is None:
            return None
        pos = m.end() - 1
    eol = text.find("\n", pos) if pos < n else -1
    # an array: "[" opening a value, or alone on its line (junk may follow it)
    in_array = pos < n and text[pos] == "[" and (
        text[skip(pos + 1) : skip(pos + 1) + 1] in ("{", "]", '"') or not text[pos + 1 : eol if eol >= 0 else n].strip())
    if in_array:
        pos = skip(pos + 1)
    elif not _pretty(text, pos):
        return None  # JSON Lines or prefixed log lines: line mode
    if lead != pos and text[lead:pos].strip(" \t\r\n[,"):
        bad.append((line_of(lead), "text before the JSON document", text[lead:pos][:300]))
    _values(text, pos, in_array, line_of, source, rows, bad)
    if not rows and not in_array and bad and lead == pos:
        return None  # never a document of values (a cut JSON Lines head): line mode
    return _finish(rows, bad, source)


#: a line whose first character opens a JSON value: where a document or a record resumes after junk
_VALUE_START = re.compile(r"\n[ \t]*[\[{]")
_OBJ_START = re.compile(r"\n[ \t]*\{")


def _values(text: str, pos: int, in_array: bool, line_of: Any, source: str, rows: list, bad: list) -> None:
    """The values of a document from ``pos`` on; a value that does not decode is malformed and reading
    resumes at the next line opening an object at the indentation of the values read so far."""
    dec = json.JSONDecoder()
    n = len(text)
    col: int | None = None

    def skip(p: int) -> int:
        while p < n and text[p] in " \t\r\n,":
            p += 1
        return p

    while pos < n:
        if in_array and text[pos] == "]":
            pos = skip(pos + 1)
            in_array = False
            continue
        if text[pos] == "[" and text[skip(pos + 1) : skip(pos + 1) + 1] == "{":
            pos, in_array = skip(pos + 1), True  # an array of records (nested by a stray "["): each keeps its line
            continue
        val = None
        if text[pos] in "{[" or (in_array and text[pos] == '"'):
            try:
                val, end = dec.raw_decode(text, pos)
            except (ValueError, RecursionError):
                val = None
        here = pos - (text.rfind("\n", 0, pos) + 1)
        if val is None:
            bad.append((line_of(pos), "truncated or invalid JSON value", text[pos : pos + 300]))
            if col is None:  # no value read yet: the next line opening an object, at any indentation
                m = _OBJ_START.search(text, pos)
                if m is None:
                    break
                pos = m.end() - 1
                continue
            want = "\n" + " " * col + "{"
            nxt = text.find(want, pos)
            if nxt < 0:
                break
            pos = nxt + len(want) - 1
            continue
        if col is None and isinstance(val, (dict, list)):  # records set the indentation, stray strings not
            col = here
        ln = line_of(pos)
        for v in val if isinstance(val, list) else [val]:
            _record(v, ln, source, rows, bad, text[pos : min(end, pos + 300)])
        pos = skip(end)


def _pretty(text: str, pos: int) -> bool:
    """True when the first value starts a pretty-printed object (its first line is not whole JSON)."""
    if pos >= len(text) or text[pos] != "{":
        return False
    first = text[pos : text.find("\n", pos) if "\n" in text[pos:] else len(text)]
    try:
        json.loads(first)
    except (ValueError, RecursionError):
        return True
    return False


def parse_file(path: Path, source: str) -> Parsed:
    """Whole-file parse: JSON arrays and pretty-printed objects span lines, so read the document."""
    with open_text(path) as fh:
        text = fh.read(_MAX_DOC)
    doc = _scan_document(text, source)
    if doc is not None:
        return doc
    return parse(lines_from_texts(split_lines(text)), source)


SOURCE = Source(family=FAMILY, markers=MARKERS, detect=detect, parse=parse, parse_file=parse_file)
