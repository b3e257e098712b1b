"""``specdec-requests@1`` files written by `specdec-diag capture`: one window per request
(``window="request"``), the engine named by the header, and configuration rows from the header.

The numbers are the engine's own per-request counters (``record["spec"]``, normalised by the capture
client from llama.cpp ``timings``, vLLM ``metrics.speculative_decoding``, SGLang ``meta_info``, TRT-LLM
``perf_metrics``). The capture's ``metrics.prom`` beside it counts the same traffic; analysis keeps
the two apart (each file is its own run), so nothing is counted twice. Where an engine does not
count verify steps (llama.cpp) ``num_drafts`` and ``k`` stay null, so rates that need them come from
the server's Prometheus counters, never from a guess.
Failed requests are not windows; they become malformed rows so a report shows them.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.capture.format import REQUESTS_SCHEMA, RequestsFileError, read_requests
from specdec_diag.ingest._textparse import configs, malformed_rows, ratio, rows_to_windows
from specdec_diag.ingest.base import Parsed, Source

FAMILY = "requests"
FORMAT = REQUESTS_SCHEMA
MARKERS: tuple[str, ...] = ()  # whole-file source: never fed marker lines


def detect(sample: str) -> bool:
    first = sample.split("\n", 1)[0]
    return f'"{REQUESTS_SCHEMA}"' in first and '"header"' in first


def _time(s: Any) -> datetime | None:
    if not isinstance(s, str):
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


def _per_pos(spec: dict[str, Any]) -> list[float] | None:
    counts, drafts = spec.get("accepted_per_pos"), spec.get("num_drafts")
    if not counts or not drafts:
        return None
    return [c / drafts for c in counts]


def request_row(rec: dict[str, Any], line: int, header: dict[str, Any], source: str) -> dict[str, Any]:
    """The window row of one answered request."""
    spec = rec.get("spec") or {}
    drafts, draft, acc = spec.get("num_drafts"), spec.get("draft_tokens"), spec.get("accepted_tokens")
    rate = ratio(acc, draft)
    mal = None if not drafts or acc is None else 1 + acc / drafts
    sampling = rec.get("sampling") or {}
    n_prompt = rec.get("n_prompt") or len(rec.get("prompt_token_ids") or [])
    n_out = len(rec.get("output_token_ids") or []) or rec.get("n_output")
    return {
        "source": source, "line": line, "engine": header.get("engine") or "openai",
        "format": f"{REQUESTS_SCHEMA}/{header.get('api')}", "time": _time(rec.get("started_at")),
        "engine_id": None if rec.get("slot") is None else f"slot {rec['slot']}",
        "window": "request", "request": str(rec.get("index")),
        "k": spec.get("k"), "num_drafts": drafts, "draft_tokens": draft, "accepted_tokens": acc,
        "emitted_tokens": None if drafts is None or acc is None else acc + drafts,
        "acceptance_rate": rate,
        "mean_acceptance_length": mal,
        "per_position_acceptance": _per_pos(spec),
        "gen_tps": rec.get("gen_tps"), "prompt_tps": rec.get("prompt_tps"),
        "temperature": sampling.get("temperature"),
        "context_len": (n_prompt or 0) + (n_out or 0) or None,
        "ttft_ms": rec.get("ttft_ms"), "tpot_ms": rec.get("tpot_ms"),
        "definition_note": _note(spec),
    }


def _note(spec: dict[str, Any]) -> str:
    if not spec:
        return "the engine reported no speculative counters for this request"
    return f"per-request counters as the engine reported them ({spec.get('source')})"


def header_configs(header: dict[str, Any], source: str) -> pl.DataFrame:
    """Header facts (engine, api, model, k, sampling, the server's own settings) as config rows."""
    rows: list[tuple[int, str, str]] = []

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        elif v is not None:
            rows.append((1, prefix, v if isinstance(v, str) else json.dumps(v)))

    for k in ("engine", "api", "url", "model", "k", "sampling", "concurrency", "server"):
        walk(k, header.get(k))
    if header.get("k") is not None:
        rows.append((1, "num_speculative_tokens", json.dumps(header["k"])))
    temp = (header.get("sampling") or {}).get("temperature")
    if temp is not None:
        rows.append((1, "temperature", json.dumps(temp)))
    return configs(rows, source, header.get("engine") or "openai")


def parse_file(path: Path, source: str) -> Parsed:
    try:
        rf = read_requests(path)
    except RequestsFileError as exc:
        return Parsed(malformed=malformed_rows([(1, str(exc), "")], source))
    bad = [(no, why, "") for no, why in rf.dropped]
    rows = []
    for rec, line in zip(rf.requests, rf.lines, strict=True):
        if rec.get("status") != "ok":
            bad.append((line, f"request failed: {rec.get('error')}", ""))
            continue
        rows.append(request_row(rec, line, rf.header, source))
    return Parsed(windows=rows_to_windows(rows), malformed=malformed_rows(bad, source),
                  configs=header_configs(rf.header, source))


SOURCE = Source(family=FAMILY, markers=MARKERS, detect=detect, parse_file=parse_file)
