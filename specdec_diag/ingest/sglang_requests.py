"""SGLang per-request ``meta_info`` speculative counters, as people save them: JSON lines of
``/generate`` or OpenAI-compatible responses (``meta_info`` at the top or under ``choices[0]``), and
the scheduler's ``Finish: obj=..., out={'meta_info': {...}}`` log line (Python repr, sglang PR
#11441). One ``request`` window per response (docs/log-formats.md §3.4).

Counts: ``spec_verify_ct`` verify steps; accepted / proposed drafts from whichever field this
version prints (``spec_accepted_drafts`` / ``spec_num_correct_drafts`` / ``spec_accept_token_num``,
``spec_proposed_drafts`` / ``spec_num_proposed_drafts`` / ``spec_draft_token_num``), else accepted =
completion_tokens - spec_verify_ct, which is SGLang's own accept length (completion_tokens /
spec_verify_ct, sglang PR #3152) written as 1 + accepted / steps.
"""

from __future__ import annotations

import ast
import json
from typing import Any

import polars as pl

from specdec_diag.capture.engines import spec_sglang
from specdec_diag.ingest._textparse import malformed_rows, ratio, rows_to_windows, value_problem
from specdec_diag.schema import MALFORMED_SCHEMA

MARKER = "spec_verify_ct"
_KEY = "meta_info"


def _braced(text: str, start: int) -> str | None:
    """The balanced ``{...}`` starting at ``text[start]`` (quotes respected), or None if cut."""
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
        i += 1
    return None


def meta_info(text: str) -> dict[str, Any] | None:
    """The ``meta_info`` dict a line carries (JSON or Python repr; a printed ``meta_info`` dict on
    its own counts too), or None."""
    at = max(text.find(f'"{_KEY}"'), text.find(f"'{_KEY}'"))
    brace = text.find("{", at) if at >= 0 else text.find("{")
    body = _braced(text, brace) if brace >= 0 else None
    if body is None:
        return None
    for load in (json.loads, ast.literal_eval):
        try:
            val = load(body)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        return val if isinstance(val, dict) else None
    return None


def _row(meta: dict[str, Any], line: int, source: str, fmt: str) -> dict[str, Any] | str:
    """A request window, or why the counters cannot be used."""
    for key in ("spec_verify_ct", "completion_tokens"):
        why = value_problem(meta.get(key), key, count=True)
        if why:
            return why
    spec = spec_sglang(meta)
    if spec is None:
        return "meta_info has spec_verify_ct 0 or none: no verify step to count"
    steps, acc, draft = spec["num_drafts"], spec["accepted_tokens"], spec["draft_tokens"]
    if acc is not None and draft is not None and acc > draft:
        return f"accepted drafts exceed proposed drafts ({acc} > {draft})"
    derived = not any(meta.get(f) is not None for f in ("spec_accepted_drafts", "spec_num_correct_drafts",
                                                        "spec_accept_token_num"))
    printed = ", ".join(f"{k}={meta[k]}" for k in ("spec_accept_rate", "spec_accept_length") if k in meta)
    note = ("accepted = completion_tokens - spec_verify_ct (SGLang's accept length completion_tokens / "
            "spec_verify_ct)" if derived else "accepted / proposed drafts as SGLang counts them")
    return {
        "source": source, "line": line, "engine": "sglang", "format": fmt, "window": "request",
        "request": str(meta.get("id")) if meta.get("id") is not None else None,
        "num_drafts": steps, "draft_tokens": draft, "accepted_tokens": acc,
        "emitted_tokens": acc + steps if acc is not None else None,
        "acceptance_rate": ratio(acc, draft),
        "mean_acceptance_length": 1 + acc / steps if acc is not None and steps else None,
        "definition_note": f"per-request meta_info; {note}" + (f"; engine printed {printed}" if printed else ""),
    }


def parse_requests(lines: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Request windows and malformed rows from the lines carrying ``spec_verify_ct``."""
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str, str]] = []
    for line, text in lines.select("line", "text").iter_rows():
        meta = meta_info(text)
        if meta is None or not any(k in meta for k in ("spec_verify_ct", "completion_tokens")):
            meta = None
            if _KEY in text:
                bad.append((line, "meta_info with spec_verify_ct could not be read (cut or not JSON/Python)", text))
            continue  # the key named in prose or code, not a response
        fmt = "sglang-finish-log" if "Finish:" in text else "sglang-meta-info"
        row = _row(meta, line, source, fmt)
        if isinstance(row, str):
            bad.append((line, row, text))
        else:
            rows.append(row)
    return rows_to_windows(rows), malformed_rows(bad, source) if bad else pl.DataFrame(schema=MALFORMED_SCHEMA)
