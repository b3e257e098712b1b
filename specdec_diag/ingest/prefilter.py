"""Marker lines found in raw bytes at memory speed: a SIMD multi-literal search over the whole piece
(Hyperscan), hits mapped to line numbers through the piece's newline positions
(:mod:`specdec_diag.ingest.linenums`), and only the hit lines decoded and handed to the parsers.

The search runs once per piece, one pattern per source (``(?:m1|m2|...)[^\n]*$``), so each hit is
reported at the end of its line, once per line and source: the hit says which sources the line
goes to (``_src``), and no per-source regex routes the lines afterwards. One-byte markers (``\t``)
are left to a ``memchr`` loop where a piece holds few of them (:func:`piece_hits`): Hyperscan runs
a one-byte literal through a slower matcher. Line numbers come from counting the piece's newlines
between consecutive hits (a compiled kernel for big scans, numpy otherwise); exact, whatever the
line lengths. Hit lines become one string column through a single Binary -> Utf8 cast.

Without the ``hyperscan`` package (a dependency on x86-64 Linux, where its wheel exists) the
polars query of :func:`specdec_diag.ingest.reading.chunk_marked` does the same job at about half
the speed (``benchmarks/prefilter.py``); ``SPECDEC_PREFILTER=polars`` forces it. Both return the
same lines (tests/test_ingest_prefilter.py).
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from specdec_diag.ingest import linenums
from specdec_diag.schema import write_atomic

try:  # optional: a 3 MB manylinux wheel with the Hyperscan library inside
    import hyperscan as _hs
except ImportError:  # pragma: no cover - exercised where the package is missing
    _hs = None

#: environment switch: ``polars`` forces the fallback (tests compare the two engines with it)
ENGINE_ENV = "SPECDEC_PREFILTER"
_SCHEMA = {"line": pl.Int64, "text": pl.Utf8, "_src": pl.UInt64}
_BOM = b"\xef\xbb\xbf"


def engine() -> str:
    """``hyperscan`` when the package imports and is not switched off, else ``polars``."""
    if _hs is None or os.environ.get(ENGINE_ENV, "").lower() == "polars":
        return "polars"
    return "hyperscan"


def _escape(marker: str) -> bytes:
    """A literal as a Hyperscan pattern: every byte that is not a letter or digit as ``\\xHH``."""
    return b"".join(bytes([b]) if chr(b).isalnum() and b < 128 else b"\\x%02x" % b for b in marker.encode())


#: marker sets, one per source (a hit line says which sets it matched: bit ``i`` of ``_src``)
Groups = tuple[tuple[str, ...], ...]


@lru_cache(maxsize=16)
def _database(groups: Groups):
    """One compiled block-mode database, one pattern per non-empty set: compiled once per process,
    or loaded from its serialised form on disk (compiling ~175 markers costs ~70 ms, a tenth of a
    256 MB scan; loading costs ~0.1 ms)."""
    if len(groups) > 64:
        raise ValueError(f"{len(groups)} marker sets: the per-line bitmask holds 64")
    ids = [i for i, g in enumerate(groups) if g]
    exprs = [b"(?:" + b"|".join(_escape(m) for m in groups[i]) + rb")[^\n]*$" for i in ids]
    saved = _saved_path(exprs, ids)
    db = _load(saved) if saved is not None else None
    if db is None:
        db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        db.compile(expressions=exprs, ids=ids, elements=len(ids), flags=[_hs.HS_FLAG_MULTILINE] * len(ids))
        if saved is not None:
            _save(saved, db)
    return db


#: where compiled databases are kept (``$XDG_CACHE_HOME/specdec-diag/hyperscan``); ``off`` disables it
DB_CACHE_ENV = "SPECDEC_HS_CACHE"


def _saved_path(exprs: list[bytes], ids: list[int]) -> Path | None:
    """The file a database of these patterns is kept in, keyed by the patterns, the Hyperscan
    version and the machine; None when switched off."""
    where = os.environ.get(DB_CACHE_ENV, "")
    if where.lower() in ("off", "0", "no"):
        return None
    try:
        root = Path(where) if where else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "specdec-diag"
    except RuntimeError:  # no home directory to be found: compile every time
        return None
    version = getattr(_hs, "__version__", "?")
    key = hashlib.sha256(repr((exprs, ids, version, platform.machine())).encode()).hexdigest()[:32]
    return root / "hyperscan" / f"{key}.db"


def _load(path: Path):
    """A saved database, or None when absent or unusable (corrupt, another CPU or library version:
    Hyperscan checks both when it deserialises)."""
    try:
        return _hs.loadb(path.read_bytes(), mode=_hs.HS_MODE_BLOCK)
    except Exception:  # noqa: BLE001 - any failure: compile instead
        return None


def _save(path: Path, db) -> None:
    """Keep a compiled database (written to a temporary name, then renamed: readers never see half
    a file); an unwritable cache only costs the compile next time."""
    write_atomic(path, _hs.dumpb(db))


def line_hits(piece: bytes | memoryview, groups: Groups) -> tuple[list[int], list[int]]:
    """``(ends, ids)``: the line end (the ``\\n``, or the end of the piece) of each line holding a
    marker of set ``id``, once per line and set, in line order. Hyperscan only."""
    packed = _packed_hits(piece, groups)
    return [p >> 6 for p in packed], [p & 63 for p in packed]


def _packed_hits(piece: bytes | memoryview, groups: Groups) -> list[int]:
    """:func:`line_hits` as ``end << 6 | id`` per hit: one list append in the callback instead of
    two (the callback runs once per hit line and set: ~0.5 M times on a 256 MB metric-heavy log)."""
    packed: list[int] = []
    add = packed.append

    def hit(i: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
        add(to << 6 | i)
    if any(groups):
        db = _database(groups)
        db.scan(piece, match_event_handler=hit, scratch=_thread_scratch(db))
    return packed


def piece_hits(raw: bytes, lo: int, hi: int, groups: Groups) -> list[int]:
    """:func:`_packed_hits` of ``raw[lo:hi]`` (line ends relative to ``lo``), with one-byte markers
    (``\t``, bench's table-cell marker) found outside Hyperscan: a ``memchr`` loop finds the lines
    holding the byte, and the Hyperscan search runs without it. Hyperscan runs a one-byte literal
    through a slower matcher (all markers: ~1.3 GB/s on a production-like log, ~0.7 GB/s on a
    metric-heavy one; without the tab ~1.6 / ~1.05 GB/s). A block with more than
    :data:`FEW_BYTE_LINES` lines holding such a byte (a TSV table) is searched with every marker.
    Exact either way (hits out of line order are sorted by :func:`_per_line`)."""
    view = memoryview(raw)[lo:hi]
    singles = _one_byte(groups)
    extra: list[int] = []
    for m in singles:
        ends = _lines_with(raw, lo, hi, m.encode(), FEW_BYTE_LINES)
        if ends is None:
            return _packed_hits(view, groups)
        extra += [end - lo << 6 | i for end in ends for i, g in enumerate(groups) if m in g]
    packed = _packed_hits(view, _without(groups, singles) if singles else groups)
    return packed + extra if extra else packed


#: a block with more lines than this holding a one-byte marker is searched by Hyperscan alone
FEW_BYTE_LINES = 256


def _lines_with(raw: bytes, lo: int, hi: int, byte: bytes, most: int) -> list[int] | None:
    """Line ends (``\n`` or ``hi``) of the lines of ``raw[lo:hi]`` holding ``byte``; None past ``most``."""
    ends: list[int] = []
    pos = raw.find(byte, lo, hi)
    while pos >= 0:
        if len(ends) == most:
            return None
        end = raw.find(b"\n", pos, hi)
        end = hi if end < 0 else end
        ends.append(end)
        pos = raw.find(byte, end + 1, hi) if end < hi else -1
    return ends


@lru_cache(maxsize=16)
def _one_byte(groups: Groups) -> tuple[str, ...]:
    """The one-byte markers of all sets."""
    return tuple(sorted({m for g in groups for m in g if len(m.encode()) == 1}))


@lru_cache(maxsize=16)
def _without(groups: Groups, absent: tuple[str, ...]) -> Groups:
    """``groups`` without the markers ``absent`` (the same tuple each time: the database cache key)."""
    return tuple(tuple(m for m in g if m not in absent) for g in groups)


def _thread_scratch(db):
    """Hyperscan scratch space of this thread for ``db``: a database's own scratch may not be used
    by two threads at once (a thread pool around the per-file scan would fail with SCRATCH_IN_USE)."""
    spaces = getattr(_scratch, "hs", None)
    if spaces is None:
        spaces = _scratch.hs = {}
    if id(db) not in spaces:
        spaces[id(db)] = (db, _hs.Scratch(db))  # the database is kept alive with its scratch
    return spaces[id(db)][1]


def has_marker(block: bytes | memoryview, markers: tuple[str, ...]) -> bool:
    """Does any marker occur in ``block`` (an overlong line's bytes)."""
    return bool(markers) and bool(len(block)) and bool(line_hits(block, (markers,))[0])


def find_marked(piece: bytes | memoryview, first_line: int, groups: Groups) -> tuple[pl.DataFrame, int]:
    """The marker lines of one piece (``line`` numbered from ``first_line``, ``text`` decoded with
    undecodable bytes replaced, one trailing CR dropped, ``_src`` the bitmask of the marker sets
    it holds) and the piece's line count: :func:`~specdec_diag.ingest.reading.chunk_marked`'s
    lines, found with Hyperscan."""
    a = np.frombuffer(piece, np.uint8)
    size = len(a)
    if not size:
        return pl.DataFrame(schema=_SCHEMA), 0
    raw = piece.obj if isinstance(piece, memoryview) else piece  # the views used here start at 0
    parts = []
    n_newlines = 0
    for lo, hi in _blocks(raw, size):  # each block searched and numbered while it is in the cache
        packed = np.asarray(piece_hits(raw, lo, hi, groups), dtype=np.int64)
        if not len(packed):
            n_newlines += linenums.count_newlines(a[lo:hi])
            continue
        e, src = _per_line(packed >> 6, packed & 63)
        idx, starts, n = linenums.number(raw, lo, a[lo:hi], e)
        parts.append((e + lo, src, idx + n_newlines, starts + lo))
        n_newlines += n
    n_lines = n_newlines + (1 if a[-1] != 10 else 0)
    if not parts:
        return pl.DataFrame(schema=_SCHEMA), n_lines
    e, src, idx, starts = parts[0] if len(parts) == 1 else (np.concatenate(x) for x in zip(*parts, strict=True))
    stop = e - ((e > starts) & (a[np.maximum(e - 1, 0)] == 13))  # the CSV reader drops one CR
    texts = [raw[s:t] for s, t in zip(starts.tolist(), stop.tolist(), strict=True)]
    if starts[0] == 0 and bytes(texts[0][:3]) == _BOM:  # so does it with a BOM opening the piece
        texts[0] = texts[0][len(_BOM):]
    lines = pl.Series("line", idx + first_line, dtype=pl.Int64)
    return pl.DataFrame([lines, _decode(texts),
                         pl.Series("_src", src, dtype=pl.UInt64)]), n_lines


#: pieces are searched and numbered in blocks of about this size, cut after a newline: an 8 MB piece
#: passed over whole by each step (tab search, Hyperscan, newline count) falls out of the CPU cache
#: between steps (find_marked per 256 MB: whole 8 MB pieces 0.21 s, 1-4 MB blocks 0.20 s on the
#: production-like log, 0.59 / 0.53-0.55 s on the metric-heavy one; 256 KB blocks lose it again)
BLOCK_BYTES = 2 << 20


def _blocks(raw: bytes, size: int):
    """``(lo, hi)`` of the blocks of ``raw[:size]``, each ending after a newline (or at ``size``)."""
    lo = 0
    while lo < size:
        hi = size if size - lo <= BLOCK_BYTES * 3 // 2 else raw.rfind(b"\n", lo, lo + BLOCK_BYTES) + 1
        if hi <= lo:  # no newline in the block: it runs to the end of its line
            hi = raw.find(b"\n", lo + BLOCK_BYTES, size) + 1 or size
        yield lo, hi
        lo = hi


def _per_line(ends: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct line ends in order, and per line the bitmask of the sets that hit it."""
    if len(ends) > 1 and not bool(np.all(ends[1:] >= ends[:-1])):  # reported in order; be sure anyway
        order = np.argsort(ends, kind="stable")
        ends, ids = ends[order], ids[order]
    bits = np.left_shift(np.uint64(1), ids.astype(np.uint64))
    if len(ends) > 1 and not bool(np.all(ends[1:] > ends[:-1])):
        first = np.flatnonzero(np.concatenate(([True], ends[1:] != ends[:-1])))
        return ends[first], np.bitwise_or.reduceat(bits, first)
    return ends, bits


_scratch = threading.local()


def _decode(texts: list[bytes]) -> pl.Series:
    """UTF-8 with undecodable bytes replaced (as the polars CSV reader's ``utf8-lossy`` does). Valid
    UTF-8, nearly every piece, is checked and converted by polars (~2.5x faster than a Python
    ``decode`` per line); a piece with a bad byte is decoded line by line with replacement."""
    try:
        return pl.Series("text", texts, dtype=pl.Binary).cast(pl.Utf8)
    except (pl.exceptions.PolarsError, TypeError):  # a bad byte (or a buffer polars does not take)
        return pl.Series("text", [bytes(t).decode("utf-8", "replace") for t in texts], dtype=pl.Utf8)


def marker_tuple(markers: Iterable[str]) -> tuple[str, ...]:
    """The canonical (sorted, distinct, non-empty) form of a marker set: the database cache key."""
    return tuple(sorted({m for m in markers if m}))


def flat(groups: Groups) -> tuple[str, ...]:
    """All markers of all sets."""
    return marker_tuple(m for g in groups for m in g)
