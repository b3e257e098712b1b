"""llama.cpp SPEED-Bench tables (``tools/server/bench/speed-bench``, llama.cpp PR #23869;
docs/log-formats.md §4.3): ``speed_bench.py`` prints one run per category (``category  samples
avg_prompt_t/s  avg_pred_t/s  avg_latency  accept_rate``), ``speed_bench_compare.py`` a baseline and a
speculative run side by side (``base_avg_pred_t/s  spec_avg_pred_t/s  decode_speedup ...
accept_rate``). Columns are padded with spaces, so a data row carries no literal marker: the file is
read whole when its sample shows a header, and its llama.cpp lines are read as well.

Each run becomes a ``run`` row, ``gen_tps`` = avg_pred_t/s (mean per-request predicted tokens per second
as llama-server reports it), ``acceptance_rate`` = accept_rate (accepted / drafted, summed over the
category's requests). The compare table's baseline is a ``k = 0`` row, both tagged with their status in
``engine_id`` (``bench[baseline]: <category>``) so measured speed-ups pair them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.ingest import llamacpp
from specdec_diag.ingest._textparse import (
    finite,
    lines_from_texts,
    malformed_rows,
    reject_windows,
    rows_to_windows,
    split_lines,
    value_problem,
)
from specdec_diag.ingest.base import Parsed, Source
from specdec_diag.schema import MALFORMED_SCHEMA, WINDOW_SCHEMA, open_text

FAMILY = "llamacpp-speed-bench"
FORMAT = "llamacpp-speed-bench"
_MAX = 64 * 1024 * 1024
_COMPARE = ("category", "base_avg_pred_t/s", "spec_avg_pred_t/s", "decode_speedup", "base_avg_latency",
            "spec_avg_latency", "latency_speedup", "accept_rate")
_SINGLE = ("category", "samples", "avg_prompt_t/s", "avg_pred_t/s", "avg_latency", "accept_rate")
_NOTE = ("llama.cpp SPEED-Bench: gen_tps = avg_pred_t/s (mean of the requests' predicted tokens per second); "
         "acceptance_rate = accept_rate = accepted / drafted over the category's requests")


def detect(sample: str) -> bool:
    return "avg_pred_t/s" in sample and "accept_rate" in sample


def _cells(text: str) -> list[str]:
    return [c for c in re.split(r"\s{2,}", text.strip()) if c]


def _number(raw: str, label: str, ln: int, text: str, bad: list) -> tuple[float | None, bool]:
    """(value, ok): ``n/a`` is a missing value; a unit suffix (``x``, ``s``) is dropped."""
    if raw == "n/a":
        return None, True
    why = value_problem(raw.rstrip("xs"), label)
    if why:
        bad.append((ln, why, text[:300]))
        return None, False
    return finite(raw.rstrip("xs")), True


def _looks_like_row(cells: list[str], cols: tuple[str, ...]) -> bool:
    """A line with the header's cell count whose value cells are all numbers or ``n/a``."""
    return len(cells) == len(cols) and all(c == "n/a" or finite(c.rstrip("xs")) is not None for c in cells[1:])


def _table_rows(texts: list[str], source: str) -> tuple[list[dict[str, Any]], list[tuple[int, str, str]]]:
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str, str]] = []
    cols: tuple[str, ...] | None = None
    after_blank = False
    for ln, text in enumerate(texts, start=1):
        cells = _cells(text)
        if tuple(cells) in (_COMPARE, _SINGLE):
            cols, after_blank = tuple(cells), False
            continue
        if cols is None or not cells or set(text.strip()) <= {"-", " "}:
            after_blank = after_blank or not cells
            continue
        if after_blank:
            # a blank line ends the table unless a well-formed row follows it (a stray blank line
            # inside the table must not cost the rows below it)
            after_blank = False
            if not _looks_like_row(cells, cols):
                cols = None
                continue
        if len(cells) != len(cols):
            bad.append((ln, f"SPEED-Bench row has {len(cells)} cells, its header {len(cols)} (cut?)", text[:300]))
            continue
        vals: dict[str, float | None] = {}
        ok = True
        for name, raw in zip(cols[1:], cells[1:], strict=True):
            vals[name], good = _number(raw, name, ln, text, bad)
            ok = ok and good
        if ok:
            rows += _runs(cols, cells[0], vals, ln, source)
    return rows, bad


def _runs(cols: tuple[str, ...], category: str, v: dict[str, float | None], ln: int, source: str) -> list[dict]:
    base = {"source": source, "line": ln, "engine": llamacpp.ENGINE, "format": FORMAT, "window": "run",
            "request": category, "definition_note": _NOTE}
    rate = v.get("accept_rate")
    if cols == _SINGLE:
        tag = "bench[speculative]: " if rate is not None else ""
        return [{**base, "engine_id": tag + category, "gen_tps": v.get("avg_pred_t/s"),
                 "prompt_tps": v.get("avg_prompt_t/s"), "acceptance_rate": rate}]
    return [{**base, "engine_id": f"bench[baseline]: {category}", "k": 0, "gen_tps": v.get("base_avg_pred_t/s")},
            {**base, "engine_id": f"bench[speculative]: {category}", "gen_tps": v.get("spec_avg_pred_t/s"),
             "acceptance_rate": rate}]


def parse_file(path: Path, source: str) -> Parsed:
    """The tables, plus the file's llama.cpp lines (a whole-file source keeps the others away)."""
    with open_text(path) as fh:
        texts = split_lines(fh.read(_MAX))
    rows, bad = _table_rows(texts, source)
    windows, net = reject_windows(rows_to_windows(rows), source)
    keep = [i for i, t in enumerate(texts) if any(m in t for m in llamacpp.MARKERS)]
    lines = lines_from_texts(texts)[keep] if keep else lines_from_texts([])
    lc = llamacpp.parse(lines, source)
    mal = malformed_rows(bad, source) if bad else pl.DataFrame(schema=MALFORMED_SCHEMA)
    return Parsed(windows=pl.concat([windows, lc.windows.select(list(WINDOW_SCHEMA))]),
                  malformed=pl.concat([mal, net, lc.malformed]), configs=lc.configs)


SOURCE = Source(family=FAMILY, markers=(), detect=detect, parse_file=parse_file)
