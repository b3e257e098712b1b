"""Generated text printed in logs: what the model actually wrote, so analysis can see degenerate
output (a run of one token, a looping phrase) that no acceptance number shows.

Three shapes, each one line:

* vLLM offline examples: ``Prompt: 'Hello, my name is', Generated text: ' Joel, ...'`` (Python
  ``repr`` of the strings, so quotes and newlines are escaped);
* vLLM request logging (``--enable-log-outputs``, ``RequestLogger.log_outputs``):
  ``Generated response <id>: output: '...', output_token_ids: [...], finish_reason: stop``; streaming
  deltas (``(streaming delta)``) are partial and skipped, ``(streaming complete)`` is kept;
* JSON responses dumped into a log (TGI / HF ``"generated_text": "..."``).

Rows go to the ``configs`` table under key ``generated_text`` (value: the decoded text) and, where
the line lists them, ``generated_token_ids`` (value: comma-separated ids) with the same line number:
facts seen in the log, never judged here. :func:`texts` turns them back into one row per text. A
line that carries a marker but no readable string is not a metrics line, so it is not malformed.
"""

from __future__ import annotations

import ast
import json
import re

import polars as pl

from specdec_diag.ingest.base import Parsed, ParseOptions, Source
from specdec_diag.schema import CONFIG_SCHEMA

FAMILY = "generated_text"
MARKERS = ("Generated text:", "Generated response", '"generated_text"')
TEXT_KEY, IDS_KEY = "generated_text", "generated_token_ids"
#: longest text kept per line (a runaway generation can print megabytes)
MAX_CHARS = 20_000

_PY_STR = r"""(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
_OFFLINE = re.compile(r"Generated text:\s*(" + _PY_STR + ")")
_RESPONSE = re.compile(r"Generated response \S+?(?P<stream> \(streaming (?:delta|complete)\))?: output: (?P<s>"
                       + _PY_STR + r")(?:, output_token_ids: \[(?P<ids>[\d,\s]*)\])?")
_JSON = re.compile(r'"generated_text"\s*:\s*("(?:[^"\\]|\\.)*")')
_TRUNCATED = re.compile(r"(?:Generated text:|output:)\s*(['\"])(?P<s>.*)$")


def detect(sample: str) -> bool:
    return any(m in sample for m in MARKERS)


def _literal(quoted: str, as_json: bool = False) -> str | None:
    try:
        value = json.loads(quoted) if as_json else ast.literal_eval(quoted)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, str) else None


def parse_line(text: str) -> tuple[str, list[int] | None] | None:
    """(generated text, token ids or None) from one line; None when the line carries no text."""
    m = _RESPONSE.search(text)
    if m:
        if m.group("stream") and "delta" in m.group("stream"):
            return None
        s = _literal(m.group("s"))
        ids = [int(x) for x in m.group("ids").replace(" ", "").split(",") if x] if m.group("ids") else None
        return (s, ids) if s is not None else None
    m = _OFFLINE.search(text)
    if m:
        s = _literal(m.group(1))
        return (s, None) if s is not None else None
    m = _JSON.search(text)
    if m:
        s = _literal(m.group(1), as_json=True)
        return (s, None) if s is not None else None
    m = _TRUNCATED.search(text)  # a pasted line cut before its closing quote: keep what is there
    if m and len(m.group("s")) >= 16:
        return m.group("s"), None
    return None


def parse(lines: pl.DataFrame, source: str, options: ParseOptions) -> Parsed:
    rows = []
    for ln, text in zip(lines["line"].to_list(), lines["text"].to_list(), strict=True):
        got = parse_line(text or "")
        if got is None:
            continue
        s, ids = got
        rows.append({"source": source, "line": ln, "engine": None, "key": TEXT_KEY, "value": s[:MAX_CHARS]})
        if ids:
            rows.append({"source": source, "line": ln, "engine": None, "key": IDS_KEY,
                         "value": ",".join(str(i) for i in ids[:MAX_CHARS])})
    return Parsed(configs=pl.DataFrame(rows, schema=CONFIG_SCHEMA))


def texts(configs: pl.DataFrame) -> pl.DataFrame:
    """One row per logged text: ``source``, ``line``, ``text``, ``token_ids`` (list or null)."""
    schema = {"source": pl.Utf8, "line": pl.Int64, "text": pl.Utf8, "token_ids": pl.List(pl.Int64)}
    if configs.is_empty():
        return pl.DataFrame(schema=schema)
    t = configs.filter(pl.col("key") == TEXT_KEY).select("source", "line", pl.col("value").alias("text"))
    ids = configs.filter(pl.col("key") == IDS_KEY).select(
        "source", "line", pl.col("value").str.split(",").cast(pl.List(pl.Int64), strict=False).alias("token_ids"))
    return t.join(ids, on=["source", "line"], how="left").select(list(schema)).cast(schema)


SOURCE = Source(family=FAMILY, markers=MARKERS, detect=detect, parse=parse)
