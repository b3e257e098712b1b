"""Whitespace-aligned tables as people paste them from a terminal or an indented Markdown code block
(ninfer #65: ``--draft-tokens   decode      vs none`` over rows ``4   59.1   +56.5%   <- best``).

Such rows carry no marker word (``1               49.7          +31.7%``), so the scan, which hands a
line source only the lines holding its markers, never shows them to the benchmark parser. In a small
pasted file (known whole, :mod:`specdec_diag.ingest.paste`) the block is re-cut into pipe rows
(``| 1 | 49.7 | +31.7% |``), which the benchmark table reader (:mod:`specdec_diag.ingest.bench_tables`)
reads like any Markdown table; each re-cut row is noted as a repair.

What counts as such a table, to keep log lines out: a header line of at least two cells separated by
two or more spaces, mostly words, then at least :data:`MIN_ROWS` rows with at least as many cells,
each with a number after its first cell; no line holds a pipe, a tab, ``=`` or ``:`` (log records,
``key: value`` summaries and llama.cpp ``n_accept  = 47`` lines all do), and a header followed by a
dashed rule is left to the readers that own such tables (llama.cpp server-bench).

Also here: the other two layouts a paste puts around lines, a one-column table (its pipes stripped)
and a YAML ``args:`` list (read as one command line).
"""

from __future__ import annotations

import re
import shlex

from specdec_diag.ingest.bench_labels import number

#: rows a block needs (besides its header) to be read as a table
MIN_ROWS = 3
#: a first cell longer than this is prose, not a row label
MAX_LABEL = 40
_GAP = re.compile(r"\s{2,}")
_NOT_A_CELL_LINE = re.compile(r"[|\t=:]")
_RULE = re.compile(r"^\s*-{3,}(?:\s+-{3,})*\s*$")


def cells(text: str) -> list[str]:
    """The cells of an aligned line: its words split at runs of two or more spaces."""
    return [c for c in _GAP.split(text.strip()) if c]


def _is_number(cell: str) -> bool:
    return number(cell.lstrip("+"))[0] is not None


def _header(text: str) -> list[str] | None:
    if _NOT_A_CELL_LINE.search(text) or _RULE.match(text):
        return None
    cs = cells(text)
    if len(cs) < 2 or sum(_is_number(c) for c in cs) > len(cs) // 2:
        return None
    return cs


def _row(text: str, width: int) -> list[str] | None:
    """A body row re-cut to the header's width (an annotation past the last column joins that cell)."""
    if not text.strip() or _NOT_A_CELL_LINE.search(text):
        return None
    cs = cells(text)
    if len(cs) < width or len(cs[0]) > MAX_LABEL or not any(_is_number(c) for c in cs[1:]):
        return None
    return cs[: width - 1] + [" ".join(cs[width - 1:])]


def aligned_tables(texts: list[str]) -> tuple[list[str], list[int]]:
    """``texts`` with each aligned table's lines re-cut into pipe rows (same count), and the 0-based
    indices of the lines re-cut."""
    out, done = list(texts), []
    i = 0
    while i < len(texts):
        head = _header(texts[i])
        if head is None or (i + 1 < len(texts) and _RULE.match(texts[i + 1])):
            i += 1
            continue
        rows = []
        j = i + 1
        while j < len(texts) and (row := _row(texts[j], len(head))) is not None:
            rows.append((j, row))
            j += 1
        if len(rows) < MIN_ROWS:
            i += 1
            continue
        for k, cs in [(i, head), *rows]:
            out[k] = "| " + " | ".join(cs) + " |"
            done.append(k)
        i = j
    return out, done


__all__ = ["MIN_ROWS", "aligned_tables", "cells"]


_CELL_END = re.compile(r"\s\|\s*$")
_CELL_START = re.compile(r"^\s*\|\s")


def table_column(texts: list[str]) -> list[str] | None:
    """Lines rendered as one table column (a dataset viewer's ``text |`` on every line, a one-column
    Markdown table ``| text |``) without the pipes, which are the viewer's, not the log's; None when
    the lines are not such a column."""
    full = [t for t in texts if t.strip()]
    if len(full) < 3 or sum(bool(_CELL_END.search(t)) for t in full) < 0.8 * len(full):
        return None
    if any("|" in _CELL_START.sub("", _CELL_END.sub("", t)) for t in full):
        return None  # several columns: a real table, read as one by the benchmark parsers
    return [_CELL_START.sub("", _CELL_END.sub("", t)) for t in texts]


_YAML_ITEM = re.compile(r"^(\s*)-\s+('[^']*'|\"[^\"]*\"|\S+)\s*$")


def yaml_args(texts: list[str]) -> tuple[list[str], list[tuple[int, int]]]:
    """Each Kubernetes / Compose ``args:`` list (one word per ``- `` item, at least two of them flags)
    as the one command line it stands for, on the list's first line; and each list's ``(first index,
    end index)``."""
    out = list(texts)
    lists: list[tuple[int, int]] = []
    i = 0
    while i < len(out):
        m = _YAML_ITEM.match(out[i])
        j = i
        items: list[str] = []
        while m and j < len(out) and (mj := _YAML_ITEM.match(out[j])) and mj.group(1) == m.group(1):
            items.append(mj.group(2).strip("'\"") if mj.group(2)[:1] in "'\"" else mj.group(2))
            j += 1
        if m and sum(it.startswith("--") for it in items) >= 2:
            out[i] = m.group(1) + " ".join(shlex.quote(it) for it in items)
            out[i + 1:j] = [""] * (j - i - 1)
            lists.append((i, j))
        i = max(j, i + 1)
    return out, lists
