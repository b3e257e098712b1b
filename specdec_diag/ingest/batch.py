"""Many small files read and parsed as one: a directory of 20,000 small logs costs a few polars
queries per *batch* instead of some seventy per file.

Each small plain file is read whole once (fingerprint, sample and text from the same bytes); the
files of a batch are joined into one buffer and go through one marker query; their marker lines
are renumbered ``file * LINE_STRIDE + line``. A source marked ``batchable`` parses the whole batch in
one call (per distinct year anchor); any other source parses each file's lines on its own, so the
rows are the same as the per-file path gives. Rows are then mapped back to their files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.ingest.base import LINE_STRIDE, NO_OPTIONS, STEPS_SCHEMA, Parsed, ParseOptions, Source
from specdec_diag.ingest.cache import FileResult, empty_table, file_fingerprint
from specdec_diag.ingest.prefilter import marker_tuple
from specdec_diag.ingest.reading import marked_lines
from specdec_diag.ingest.timestamps import _ISO_RE, anchor_from
from specdec_diag.inputs import InputError, InputFile
from specdec_diag.schema import CONFIG_SCHEMA, MALFORMED_SCHEMA, WINDOW_SCHEMA

#: files up to this size (plain, not .gz) are batched; bigger ones are streamed one by one.
SMALL_BYTES = 256 * 1024
#: a batch closes at this many bytes or files (bounds memory; amortises the per-query overhead).
BATCH_BYTES = 16 * 1024 * 1024
BATCH_FILES = 4096
_PLACEHOLDER = "\0batch"
ISO_PATTERN = _ISO_RE.pattern
_WSCHEMA = {**WINDOW_SCHEMA, "_family": pl.Utf8}
_TABLES = {"windows": _WSCHEMA, "malformed": MALFORMED_SCHEMA, "configs": CONFIG_SCHEMA, "steps": STEPS_SCHEMA}


@dataclass
class SmallFile:
    """One small file read whole: its UTF-8 text (newline-terminated), what the scan needs to know.
    ``options`` is set when its batch is parsed (the year anchors of a batch are found in one query)."""

    path: Path
    display: str
    fingerprint: str
    text: bytes
    lines: int
    sample: str
    mtime: float
    detected: list[Source]
    options: ParseOptions = NO_OPTIONS


def is_small(path: Path, size: int) -> bool:
    return size <= SMALL_BYTES and not path.name.lower().endswith(".gz")


def read_small(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def prepare(path: Path, display: str, st: os.stat_result, sources: Sequence[Source], detect,
            raw: bytes | None = None, fingerprint: str | None = None) -> SmallFile | None:
    """Read a small file for a batch; None when it must take the per-file path instead (a
    whole-file source recognises it, or it cannot be read: that path reports why)."""
    try:
        raw = path.read_bytes() if raw is None else raw
        f = InputFile(path)
        sample = f.sniff(head=raw)
        text = f.decode(raw)
    except (OSError, InputError):
        return None
    detected = [s for s in sources if detect(s, sample)]
    if any(s.parse_file is not None for s in detected):
        return None
    lines = text.count(b"\n")
    if text and not text.endswith(b"\n"):
        text += b"\n"
        lines += 1
    return SmallFile(path, display, fingerprint or file_fingerprint(path, st, raw), text, lines, sample,
                     st.st_mtime, detected)


def _set_anchors(files: list[SmallFile]) -> None:
    """Each file's year anchor, as :func:`anchor_from` gives it, with the search for the first ISO
    date of every sample done in one polars query (Python's ``re`` took 0.4 ms a file for it)."""
    first = pl.Series([f.sample for f in files], dtype=pl.Utf8).str.extract(f"({ISO_PATTERN})", 1).to_list()
    for f, m in zip(files, first, strict=True):
        f.options = ParseOptions(year_anchor=anchor_from(m or "", f.mtime))
        f.sample = ""


def parse_batch(files: list[SmallFile], sources: Sequence[Source], call) -> list[FileResult]:
    """Parse a batch of small files; one :class:`FileResult` per file, in order. ``call(src, lines,
    display, options)`` runs one source's parse and returns its parts (the scan's crash-guarded one)."""
    _set_anchors(files)
    line_sources = [s for s in sources if s.reads_lines]
    groups = tuple(marker_tuple(s.markers) for s in line_sources)  # one Hyperscan pass marks each line's sources
    marked, n = marked_lines(b"".join(f.text for f in files), 1, groups)
    starts = [0]
    for f in files:
        starts.append(starts[-1] + f.lines)
    if n != starts[-1]:
        raise RuntimeError(f"batch line count {n} != {starts[-1]}")  # cannot happen: caller falls back
    idx = (pl.Series(starts[1:-1], dtype=pl.Int64).search_sorted(marked["line"] - 1, side="right")
           if len(files) > 1 else pl.zeros(marked.height, pl.Int64, eager=True))
    first = pl.Series(starts[:-1], dtype=pl.Int64).gather(idx)
    marked = marked.with_columns(
        (idx.cast(pl.Int64) * LINE_STRIDE + marked["line"] - first).alias("line"),
        idx.cast(pl.Int64).alias("_file"))
    parts: list[Parsed] = []
    used: dict[int, list[str]] = {i: [s.family for s in f.detected] for i, f in enumerate(files)}
    for bit, src in enumerate(line_sources):
        mine = marked.filter((pl.col("_src") & (1 << bit)) != 0).drop("_src")
        if not mine.height:
            continue
        for i in mine["_file"].unique().to_list():
            if src.family not in used[i]:
                used[i].append(src.family)
        parts.extend(_parse_source(src, mine, files, call))
    tables = _split({t: [getattr(p, t) for p in parts] for t in _TABLES}, [f.display for f in files])
    return [_result(i, f, tables, used[i]) for i, f in enumerate(files)]


def _parse_source(src: Source, mine: pl.DataFrame, files: list[SmallFile], call) -> list[Parsed]:
    """One source over its lines of the batch: in one call per year anchor if it is batchable,
    else file by file (its own numbering and name, rows renumbered after)."""
    assert src.parse is not None
    out: list[Parsed] = []
    if src.batchable:
        ids: dict[ParseOptions, int] = {}
        group = pl.Series([ids.setdefault(f.options, len(ids)) for f in files], dtype=pl.Int64)
        groups = mine.with_columns(group.gather(mine["_file"]).alias("_o"))
        for (_,), part in groups.partition_by("_o", as_dict=True).items():
            opts = files[int(part["_file"][0])].options
            out.extend(call(src, part.drop("_file", "_o"), _PLACEHOLDER, opts))
        return out
    for (i,), part in mine.partition_by("_file", as_dict=True).items():
        base = int(i) * LINE_STRIDE
        local = part.drop("_file").with_columns(pl.col("line") - base)
        for p in call(src, local, files[int(i)].display, files[int(i)].options):
            for t in _TABLES:
                df = getattr(p, t)
                if df.height and "line" in df.columns:
                    setattr(p, t, df.with_columns(pl.col("line") + base))
            out.append(p)
    return out


def _split(frames: dict[str, list[pl.DataFrame]], displays: list[str]) -> dict[str, dict[int, pl.DataFrame]]:
    """Each table of the batch split by file, with each row's real source and line."""
    names = pl.Series(displays, dtype=pl.Utf8)
    out: dict[str, dict[int, pl.DataFrame]] = {}
    for t, schema in _TABLES.items():
        fs = [f.select([pl.col(c).cast(d, strict=False) for c, d in schema.items()]) for f in frames[t]
              if f.height and (t != "windows" or "_family" in f.columns)]
        if not fs:
            out[t] = {}
            continue
        df = pl.concat(fs)
        fi = (df["line"] // LINE_STRIDE).cast(pl.Int64).fill_null(0)
        df = df.with_columns(names.gather(fi).alias("source"), (pl.col("line") % LINE_STRIDE).alias("line"),
                             fi.alias("_file"))
        out[t] = {int(k[0]): v for k, v in df.partition_by("_file", as_dict=True, include_key=False).items()}
    return out


def _result(i: int, f: SmallFile, tables: dict[str, dict[int, pl.DataFrame]], families: list[str]) -> FileResult:
    got: dict[str, Any] = {t: tables[t].get(i) for t in _TABLES}
    for t in _TABLES:
        if got[t] is None:
            got[t] = empty_table(t)
    w = got["windows"]
    formats = sorted({x for x in w["format"].to_list() if x is not None}) if w.height else []
    engines = sorted({x for x in w["engine"].to_list() if x is not None}) if w.height else []
    info = {"path": f.display, "format": ",".join(formats) if formats else (",".join(families) or None),
            "engine": ",".join(engines) if engines else None, "lines": f.lines, "records": w.height,
            "malformed": got["malformed"].height, "fingerprint": f.fingerprint, "error": None}
    return FileResult(info, w, got["malformed"], got["configs"], got["steps"], [])
