"""Finding and reading input files: the directory walk, a file's marker lines from the pieces the
input layer (:mod:`specdec_diag.inputs`: gzip salvage, decoding, line endings, the 1 MiB line cap)
delivers, through the fused polars query that keeps a piece's marker lines with exact line numbers.
Nothing here knows a log format; the sources (via :mod:`specdec_diag.ingest.scan`) do.
"""

from __future__ import annotations

import errno
import io
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from specdec_diag.ingest import prefilter
from specdec_diag.inputs import (
    MAX_LINE_BYTES,
    SAMPLE_BYTES,
    Damage,
    InputError,
    InputFile,
    Overlong,
    reason,
)

#: file kinds a directory walk picks up (a trailing .gz is looked through); files named explicitly
#: are always read.
EXTENSIONS = (".log", ".txt", ".jsonl", ".json", ".prom")
CHUNK_BYTES = 8 * 1024 * 1024  # measured best: smaller pieces pay per-query overhead, larger ones page faults
#: CSV separators for "one column of lines": the first byte absent from a piece is used (a line
#: holding the separator would be cut there); a piece holding all of them takes the exact split.
_SEPS = (b"\x1f", b"\x1e", b"\x1d", b"\x1c", b"\x01", b"\x02", b"\x03", b"\x04")


# ---------------------------------------------------------------------------------------------
# discovering files
# ---------------------------------------------------------------------------------------------


#: what logrotate appends to a rotated file: a number (``server.log.1``) or a date (``-20261201``)
_ROTATION = re.compile(r"(?:\.\d{1,4}|-\d{8}(?:\d{2})?)$")


def wanted(name: str) -> bool:
    """A file the scan reads: one of :data:`EXTENSIONS`, optionally rotated (``.1``, ``-YYYYMMDD``)
    and/or gzipped (``server.log.2.gz``)."""
    n = name.lower()
    if n.endswith(".gz"):
        n = n[:-3]
    return n.endswith(EXTENSIONS) or _ROTATION.sub("", n).endswith(EXTENSIONS)


def iter_files(paths: Iterable[str | Path]) -> Iterator[tuple[Path, str | None]]:
    """Yield ``(file, error)`` for every file under ``paths`` (sorted, recursive, hidden directories
    such as the cache skipped). ``error`` is set for entries that cannot be read as files."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            errors: list[OSError] = []
            for root, dirs, files in os.walk(p, onerror=errors.append, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if wanted(name):
                        yield Path(root) / name, None
            for e in errors:
                yield Path(e.filename or p), f"cannot list directory: {e.strerror or e}"
        else:
            try:
                p.stat()
                yield p, None
            except OSError as exc:
                yield p, "broken symbolic link" if p.is_symlink() and exc.errno == errno.ENOENT else reason(exc)


# ---------------------------------------------------------------------------------------------
# reading (bytes come from the one input layer, specdec_diag.inputs)
# ---------------------------------------------------------------------------------------------


def read_sample(path: Path, n: int = SAMPLE_BYTES) -> str:
    """The head of a file as text (decoded, BOM dropped, bare CRs as newlines). Raises InputError."""
    return InputFile(path).sniff(n)


def iter_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Bytes of the (decompressed, UTF-8) file in pieces that end on a line boundary (the last piece
    may lack its newline); a line over 1 MiB that spans pieces is left out (see :func:`read_marked`)."""
    f = InputFile(path)
    f.sniff()
    for piece in f.pieces(chunk_bytes):
        if not isinstance(piece, Overlong):
            yield piece


def marker_test(markers: str | tuple[str, ...]) -> Callable[[bytes], bool]:
    """``bytes -> bool``: does a marker occur (literals: Hyperscan when present; an alternation:
    polars' regex engine, GB/s, where Python's ``re`` would crawl through a 200 MB line)."""
    if isinstance(markers, tuple) and prefilter.engine() == "hyperscan":
        return lambda block: prefilter.has_marker(block, markers)
    rx = marker_regex(markers) if isinstance(markers, tuple) else markers

    def test(block: bytes) -> bool:
        if not rx or not block:
            return False
        return bool(pl.Series([bytes(block).decode("utf-8", errors="replace")]).str.contains(rx).any())
    return test


def marked_lines(piece: bytes | memoryview, first_line: int, groups: prefilter.Groups) -> tuple[pl.DataFrame, int]:
    """The marker lines of one piece and its line count (:func:`chunk_marked`'s contract) plus
    ``_src``, the bitmask of the marker sets (``groups``, one per source) each line holds, from
    the fastest engine present: Hyperscan (:mod:`~specdec_diag.ingest.prefilter`) or polars."""
    raw = piece.obj if isinstance(piece, memoryview) else piece
    if prefilter.engine() == "hyperscan" and _separator(raw, len(piece)) is not None:
        return prefilter.find_marked(piece, first_line, groups)
    # the polars query, also for a piece holding every separator byte (junk): it splits those exactly
    sel, n = chunk_marked(bytes(piece), first_line, marker_regex(prefilter.flat(groups)))
    return with_sets(sel, groups), n


def with_sets(sel: pl.DataFrame, groups: prefilter.Groups) -> pl.DataFrame:
    """``sel`` with ``_src``: bit ``i`` set where a marker of ``groups[i]`` occurs in the line."""
    bits = [pl.when(pl.col("text").str.contains(marker_regex(g))).then(pl.lit(1 << i, pl.UInt64))
            .otherwise(pl.lit(0, pl.UInt64)) for i, g in enumerate(groups) if g]
    src = pl.sum_horizontal(bits) if bits else pl.lit(0)
    return sel.with_columns(src.cast(pl.UInt64).alias("_src"))


@dataclass
class MarkedLines:
    """What :func:`read_marked` found in one file: marker lines (``line``, ``text``) in pieces, the
    line count, malformed rows for lines it had to drop, and the error/warning text if the read
    stopped early (``None`` when the whole file was read)."""

    lines: int = 0
    dropped: list[dict] = field(default_factory=list)
    error: str | None = None     # nothing could be read
    warning: str | None = None   # read up to damage: the lines before it are kept


def read_marked(f: InputFile, groups: prefilter.Groups, add: Callable[[pl.DataFrame], None], *,
                chunk_bytes: int = CHUNK_BYTES, on_bytes: Callable[[int], None] | None = None,
                display: str = "") -> MarkedLines:
    """Stream a sniffed file and hand each piece's marker lines (with ``_src``, see
    :func:`marked_lines`) to ``add``. Lines over 1 MiB that carry a marker, and a marker line cut by
    gzip damage, become malformed rows (never parsed); gzip damage stops the read with ``error``
    naming the last complete line."""
    out = MarkedLines()
    markers = prefilter.flat(groups)
    test = marker_test(markers)
    try:
        for piece in f.pieces(chunk_bytes, test, views=True):
            if isinstance(piece, Overlong):
                out.lines += 1
                if piece.marked:
                    out.dropped.append(_long_row(display, out.lines, piece.nbytes, ""))
                if on_bytes:
                    on_bytes(piece.nbytes + 1)
                continue
            size = len(piece)
            sel, n = marked_lines(piece, out.lines + 1, groups)
            del piece
            out.lines += n
            if sel.height and int(sel["text"].str.len_bytes().max() or 0) > MAX_LINE_BYTES:
                sel = _drop_long(sel, display, out.dropped)
            add(sel)
            if on_bytes:
                on_bytes(size)
    except Damage as dmg:
        if out.lines:
            out.warning = dmg.message(out.lines)
        else:
            out.error = dmg.message(0)
        if dmg.marked:
            out.dropped.append({"source": display, "line": out.lines + 1, "reason": "line cut by gzip damage: "
                                "not parsed", "text": dmg.fragment[:200].decode("utf-8", errors="replace")})
    except (InputError, OSError) as exc:
        if out.lines:  # e.g. an I/O error mid-file: what was read is kept
            out.warning = f"read error after line {out.lines}: {reason(exc)}"
        else:
            out.error = reason(exc)
    return out


def _long_row(display: str, line: int, nbytes: int, head: str) -> dict:
    return {"source": display, "line": line, "text": head[:200],
            "reason": f"line longer than 1 MiB ({nbytes} bytes): not parsed"}


def _drop_long(sel: pl.DataFrame, display: str, dropped: list[dict]) -> pl.DataFrame:
    long = pl.col("text").str.len_bytes() > MAX_LINE_BYTES
    for row in sel.filter(long).iter_rows(named=True):
        dropped.append(_long_row(display, row["line"], len(row["text"].encode()), row["text"]))
    return sel.filter(~long)


def clean_copy(f: InputFile) -> Path:
    """A plain UTF-8 temp copy of a sniffed file's complete lines (decoded, bare CRs as newlines,
    lines over 1 MiB empty, nothing after gzip damage), for whole-file parsers that open paths
    themselves. Named like the file without ``.gz``; the caller deletes it."""
    stem = f.path.name[:-3] if f.path.name.lower().endswith(".gz") else f.path.name
    fd, name = tempfile.mkstemp(prefix="specdec-", suffix="-" + stem[-60:])
    with os.fdopen(fd, "wb") as out:
        try:
            for piece in f.pieces(CHUNK_BYTES):
                out.write(b"\n" if isinstance(piece, Overlong) else piece)
        except (Damage, InputError, OSError):
            pass  # keep what was read: the caller reports the damage
    return Path(name)


def count_lines(f: InputFile) -> MarkedLines:
    """Line count of a sniffed file (whole-file sources parse it themselves) and how the read ended."""
    out = MarkedLines()
    try:
        for piece in f.pieces(CHUNK_BYTES):
            out.lines += 1 if isinstance(piece, Overlong) else _count_newlines(piece) + (not piece.endswith(b"\n"))
    except Damage as dmg:
        out.warning, out.error = (dmg.message(out.lines), None) if out.lines else (None, dmg.message(0))
    except (InputError, OSError) as exc:
        out.error = reason(exc)
    return out


def lines_frame(chunk: bytes, first_line: int) -> pl.DataFrame:
    """A chunk as columns ``line`` (1-based, continuing from ``first_line``) and ``text`` (utf-8,
    undecodable bytes replaced). Uses polars' CSV reader with a separator byte absent from the
    chunk; falls back to a plain split if the row count
    disagrees with the newline count, so line numbers are always exact."""
    n_lines = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
    if not chunk:
        return pl.DataFrame({"line": [], "text": []}, schema={"line": pl.Int64, "text": pl.Utf8})
    df = None
    sep = _separator(chunk)
    try:
        if sep is None:
            raise ValueError("every separator occurs in the piece")
        df = pl.read_csv(io.BytesIO(chunk), **_CSV_LINES, separator=sep, raise_if_empty=False)
        if df.width != 1 or df.height != n_lines:
            df = None
        else:
            df = df.select(pl.col(df.columns[0]).fill_null("").alias("text"))
    except Exception:  # noqa: BLE001 - any reader hiccup: the slow path is always right
        df = None
    if df is None:
        text = chunk.decode("utf-8", errors="replace")
        parts = text.split("\n")
        if text.endswith("\n"):
            parts.pop()
        df = pl.DataFrame({"text": parts}, schema={"text": pl.Utf8})
    return df.with_row_index("line", offset=first_line).with_columns(pl.col("line").cast(pl.Int64))


def chunk_marked(chunk: bytes, first_line: int, markers: str) -> tuple[pl.DataFrame, int]:
    """The marker lines of one piece (numbered from ``first_line``) and its line count. The CSV
    reader splits and filters in one fused query; if its row count disagrees with the newline count
    the exact split is used instead."""
    n_lines = _count_newlines(chunk) + (0 if chunk.endswith(b"\n") or not chunk else 1)
    if not markers or not chunk:
        return pl.DataFrame(schema={"line": pl.Int64, "text": pl.Utf8}), n_lines
    last = first_line + n_lines - 1
    sep = _separator(chunk)
    try:
        if sep is None:
            raise ValueError("every separator occurs in the piece")
        # one pass: the marker lines plus the chunk's last row, whose number proves the count right
        df = (pl.scan_csv(chunk, **_CSV_LINES, separator=sep).with_row_index("line", offset=first_line)
              .with_columns(pl.col("text").str.contains(markers).fill_null(False).alias("_m"))
              .filter(pl.col("_m") | (pl.col("line") >= last)).collect())
        if df.height and int(df["line"].max()) == last:
            return _compact(df.filter(pl.col("_m"))), n_lines
    except Exception:  # noqa: BLE001 - fall through to the exact reader
        pass
    df = lines_frame(chunk, first_line)
    return _compact(df.filter(pl.col("text").str.contains(markers))), df.height


_NL_BLOCK = 1 << 18


def _count_newlines(chunk: bytes) -> int:
    """``chunk.count(b"\\n")``, ~3x faster: CPython counts byte by byte, numpy compares cache-sized
    blocks with SIMD (bytes.count was ~10 % of a whole scan of a production log)."""
    if len(chunk) < _NL_BLOCK:
        return chunk.count(b"\n")
    a = np.frombuffer(chunk, np.uint8)
    return sum(int(np.count_nonzero(a[i : i + _NL_BLOCK] == 10)) for i in range(0, len(a), _NL_BLOCK))


def _compact(sel: pl.DataFrame) -> pl.DataFrame:
    """Copy the kept lines out of the piece: polars strings are views into the piece's buffers, so
    a few kept lines would otherwise pin the whole of every piece read (1 GB log -> 1 GB RSS)."""
    return sel.select(pl.col("line").cast(pl.Int64), pl.concat_str([pl.col("text").fill_null(""), pl.lit("")]))


def _separator(chunk: bytes, size: int | None = None) -> str | None:
    """The first candidate separator byte absent from ``chunk[:size]`` (a memchr each), else None."""
    for sep in _SEPS:
        if chunk.find(sep, 0, size) < 0:
            return sep.decode()
    return None


_CSV_LINES = dict(has_header=False, quote_char=None, new_columns=["text"], infer_schema=False,
                  encoding="utf8-lossy", truncate_ragged_lines=True)


def marker_regex(markers: Iterable[str]) -> str:
    """One alternation of literals: the regex engine's SIMD literal search makes this ~4x faster than
    ``str.contains_any`` on long files."""
    return "|".join(re.escape(m) for m in sorted(set(markers)))


def os_reason(exc: BaseException) -> str:
    """The one-line reason for an OS or input error (see :func:`specdec_diag.inputs.reason`)."""
    return reason(exc)
