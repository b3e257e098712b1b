"""Marker lines found in raw bytes at memory speed: a SIMD multi-literal search over the whole piece
(Hyperscan), hits mapped to line numbers through the piece's newline positions, and only the hit
lines decoded and handed to the parsers.

The search runs once per piece over all sources' literal markers; each hit is reported at the end of
its line (the pattern is ``(?:m1|m2|...)[^\\n]*$``), so a line with several markers is reported once.
Line numbers come from the newline positions (``numpy``, one vectorised pass) and a
``searchsorted`` of the hit ends: exact, whatever the line lengths.

Without the optional ``hyperscan`` package (``pip install 'specdec-diag[fast]'``; x86-64 only) the
polars query of :func:`specdec_diag.ingest.reading.chunk_marked` does the same job at about a third
of the speed; ``SPECDEC_PREFILTER=polars`` forces it. Both return the same lines (tested).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache

import numpy as np
import polars as pl

try:  # optional: a 3 MB manylinux wheel with the Hyperscan library inside
    import hyperscan as _hs
except ImportError:  # pragma: no cover - exercised where the package is missing
    _hs = None

#: environment switch: ``polars`` forces the fallback (tests compare the two engines with it)
ENGINE_ENV = "SPECDEC_PREFILTER"
_LINES_SCHEMA = {"line": pl.Int64, "text": pl.Utf8}
_BOM = b"\xef\xbb\xbf"


def engine() -> str:
    """``hyperscan`` when the package imports and is not switched off, else ``polars``."""
    if _hs is None or os.environ.get(ENGINE_ENV, "").lower() == "polars":
        return "polars"
    return "hyperscan"


def _escape(marker: str) -> bytes:
    """A literal as a Hyperscan pattern: every byte that is not a letter or digit as ``\\xHH``."""
    return b"".join(bytes([b]) if chr(b).isalnum() and b < 128 else b"\\x%02x" % b for b in marker.encode())


@lru_cache(maxsize=16)
def _database(markers: tuple[str, ...]):
    """One compiled block-mode database for a marker set (compiled once per process)."""
    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    expr = b"(?:" + b"|".join(_escape(m) for m in markers) + rb")[^\n]*$"
    db.compile(expressions=[expr], ids=[0], elements=1, flags=[_hs.HS_FLAG_MULTILINE])
    return db


def line_ends(piece: bytes | memoryview, markers: tuple[str, ...]) -> list[int]:
    """Offsets of the line ends (the ``\\n``, or the end of the piece) of lines holding a marker, in
    order, each once. Hyperscan only."""
    ends: list[int] = []
    add = ends.append
    _database(markers).scan(piece, match_event_handler=lambda _id, _from, to, _flags, _ctx: add(to))
    return ends


def has_marker(block: bytes | memoryview, markers: tuple[str, ...]) -> bool:
    """Does any marker occur in ``block`` (an overlong line's bytes)."""
    return bool(markers) and bool(len(block)) and bool(line_ends(block, markers))


def find_marked(piece: bytes | memoryview, first_line: int,
                markers: tuple[str, ...]) -> tuple[pl.DataFrame, int]:
    """The marker lines of one piece (``line`` numbered from ``first_line``, ``text`` decoded with
    undecodable bytes replaced, one trailing CR dropped) and the piece's line count: what
    :func:`~specdec_diag.ingest.reading.chunk_marked` returns, found with Hyperscan."""
    a = np.frombuffer(piece, np.uint8)
    nl = np.flatnonzero(a == 10)
    size = len(a)
    n_lines = len(nl) + (1 if size and a[-1] != 10 else 0)
    if not markers or not size:
        return pl.DataFrame(schema=_LINES_SCHEMA), n_lines
    ends = line_ends(piece, markers)
    if not ends:
        return pl.DataFrame(schema=_LINES_SCHEMA), n_lines
    e = np.unique(np.asarray(ends, dtype=np.int64))
    idx = np.searchsorted(nl, e)  # newlines before each line end = its 0-based line index
    starts = np.concatenate(([0], nl + 1))[idx]  # the line starts after the newline before it
    stop = e - ((e > starts) & (a[np.maximum(e - 1, 0)] == 13))  # the CSV reader drops one CR
    texts = [piece[s:t] for s, t in zip(starts.tolist(), stop.tolist(), strict=True)]
    if starts[0] == 0 and bytes(texts[0][:3]) == _BOM:  # so does it with a BOM opening the piece
        texts[0] = texts[0][len(_BOM):]
    lines = pl.Series("line", idx + first_line, dtype=pl.Int64)
    return pl.DataFrame([lines, pl.Series("text", _decode(texts), dtype=pl.Utf8)]), n_lines


def _decode(texts: list) -> list[str]:
    """UTF-8 with undecodable bytes replaced (as the polars CSV reader's ``utf8-lossy`` does);
    ``texts`` are bytes or memoryviews."""
    return [str(t, "utf-8", "replace") for t in texts]


def marker_tuple(markers: Iterable[str]) -> tuple[str, ...]:
    """The canonical (sorted, distinct, non-empty) form of a marker set: the database cache key."""
    return tuple(sorted({m for m in markers if m}))
