"""Line numbers of the prefilter's hit lines: for each hit line end (the ``\\n`` or the end of the
piece, ascending, distinct) the count of newlines before it (its 0-based line index in the piece),
where the line starts, and the piece's newline count.

Two equal implementations: a compiled kernel (:mod:`specdec_diag.ingest._jit`, numba) that walks
the piece once, counting newlines between consecutive hits in blocks that vectorise and finding each
line start by a short backwards scan; and the numpy path (newline mask; for dense hits every newline
position and a ``searchsorted``, for sparse ones the mask counted between consecutive hits). The
kernel runs for pieces of at least :data:`JIT_BYTES` once numba is loaded or the process has read
:data:`JIT_AFTER_BYTES` (so small scans never import numba), when numba is present and not switched
off (``SPECDEC_JIT=off``); tests compare the two.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

from specdec_diag.ingest import _jit

#: the compiled kernel numbers pieces of at least this size (smaller ones are cheaper in numpy than
#: the kernel's call) ...
JIT_BYTES = 1 << 20
#: ... once numba is loaded in the process (by another kernel: then the first call costs ~5 ms) or
#: this process has numbered this many bytes the numpy way. Importing numba and loading a cached
#: kernel costs ~0.3 s of CPU in a fresh process, and the kernel saves ~0.2 ms per MB of a
#: production-like log (~0.5 ms per MB of a metric-heavy one): repaid after some GB, not on a
#: 256 MB log scanned once.
JIT_AFTER_BYTES = 1 << 30
_numpy_bytes = [0]
#: hits further apart than this on average (bytes) are numbered by counting the mask between hits
#: and found by a backwards search each; closer ones from every newline position (measured)
SPARSE_GAP = 1024
_scratch = threading.local()


def number(raw: bytes, lo: int, a: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """``(idx, starts, n_newlines)`` for the hit line ends ``e`` of a block (``a``: its bytes as
    uint8, ``raw[lo:lo + len(a)]``; ``e`` relative to ``lo``): newlines before each line end, each
    line's first byte (relative to ``lo``), all newlines of the block. A block starts a line."""
    if _use_kernel(len(a)):
        idx = np.empty(len(e), np.int64)
        starts = np.empty(len(e), np.int64)
        n = _number_kernel(a, words(a), e, idx, starts)
        return idx, starts, int(n)
    newline = newline_mask(a)
    if len(e) * SPARSE_GAP < len(a):
        return _sparse_lines(raw, lo, newline, e)
    nl = np.flatnonzero(newline)  # every newline position: their count is the newline count
    idx = np.searchsorted(nl, e)  # newlines before each line end = its 0-based line index
    starts = np.concatenate(([0], nl + 1))[idx]  # a line starts after the newline before it
    return idx, starts, len(nl)


def count_newlines(a: np.ndarray) -> int:
    """The newlines of a piece without hits (the kernel with no line ends, or the mask counted)."""
    if _use_kernel(len(a)):
        none = np.empty(0, np.int64)
        return int(_number_kernel(a, words(a), none, none, none))
    return int(np.count_nonzero(newline_mask(a)))


def _use_kernel(size: int) -> bool:
    """Number this piece with the compiled kernel (see :data:`JIT_AFTER_BYTES`)?"""
    if size < JIT_BYTES or not _jit.available():
        return False
    if "numba" in sys.modules or _numpy_bytes[0] >= JIT_AFTER_BYTES:
        return True
    _numpy_bytes[0] += size
    return False


def words(a: np.ndarray) -> np.ndarray:
    """The whole 8-byte words of ``a`` as uint64 (a view, no copy)."""
    return a[: len(a) // 8 * 8].view(np.uint64)


def newline_mask(a: np.ndarray) -> np.ndarray:
    """``a == 10`` into a buffer reused across pieces (a fresh 8 MB array costs its page faults)."""
    buf = getattr(_scratch, "mask", None)
    if buf is None or len(buf) < len(a):
        buf = _scratch.mask = np.empty(max(len(a), 1 << 20), dtype=bool)
    return np.equal(a, 10, out=buf[: len(a)])


def _sparse_lines(raw: bytes, lo: int, newline: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The numpy path for few hits: the mask counted segment by segment between consecutive hit
    line ends (so the newline count is a by-product, no second pass), each line start by a short
    ``rfind`` back to the previous newline (measured ~1.5x faster than popcounts of the packed mask
    plus a count of the whole mask)."""
    count, rfind = np.count_nonzero, raw.rfind
    idx = np.empty(len(e), np.int64)
    starts = np.empty(len(e), np.int64)
    prev = n = 0
    for j, end in enumerate(e.tolist()):  # ends ascend; ``prev`` is the previous hit line's newline
        n += count(newline[prev:end])
        idx[j] = n
        found = rfind(b"\n", lo + prev, lo + end)  # the newline before the line (none: the block's first)
        starts[j] = found + 1 - lo if found >= 0 else 0
        prev = end
    return idx, starts, n + int(count(newline[prev:]))


def _number_lines(a, w, e, idx, starts):  # pragma: no cover - compiled; run as py_func by the tests
    """The kernel: fills ``idx`` and ``starts`` for the ascending line ends ``e`` and returns the
    newline count of ``a`` (``w``: its whole 8-byte words as uint64). Each segment between
    consecutive line ends is counted once, 8 bytes a step (a SWAR test marks each ``\n`` byte of a
    word with 1, up to 255 words summed bytewise in one uint64, then the bytes added: ~20 GB/s, where
    a byte loop does not vectorise, ~2 GB/s); each line start is found scanning back from its end
    (a word at a time), never past the previous line end."""
    m7 = np.uint64(0x7F7F7F7F7F7F7F7F)
    nl = np.uint64(0x0A0A0A0A0A0A0A0A)
    even = np.uint64(0x00FF00FF00FF00FF)
    low16 = np.uint64(0x0000FFFF0000FFFF)
    low32 = np.uint64(0xFFFFFFFF)
    n = 0
    prev = 0
    for j in range(len(e) + 1):
        end = e[j] if j < len(e) else len(a)
        lo = min(end, (prev + 7) // 8 * 8)  # bytes before the first whole word of the segment
        for k in range(prev, lo):
            n += a[k] == 10
        wlo, whi = lo // 8, end // 8
        while wlo < whi:
            stop = min(whi, wlo + 255)
            acc = np.uint64(0)
            for k in range(wlo, stop):
                x = w[k] ^ nl
                acc += (~(((x & m7) + m7) | x | m7)) >> np.uint64(7)  # 1 in each byte that was 10
            pairs = (acc & even) + ((acc >> np.uint64(8)) & even)  # 4 sums of 2 bytes, 16 bits each
            quads = (pairs & low16) + ((pairs >> np.uint64(16)) & low16)
            n += np.int64((quads & low32) + (quads >> np.uint64(32)))
            wlo = stop
        for k in range(max(lo, whi * 8), end):
            n += a[k] == 10
        if j < len(e):
            idx[j] = n
            s = end  # back to the newline before the line: bytes to a word boundary, then words
            while s > prev and s % 8 and a[s - 1] != 10:
                s -= 1
            while s - 8 >= prev and s % 8 == 0:
                x = w[s // 8 - 1] ^ nl
                if (~(((x & m7) + m7) | x | m7)) & ~m7:  # the word holds a newline
                    break
                s -= 8
            while s > prev and a[s - 1] != 10:
                s -= 1
            starts[j] = s
        prev = end
    return n


#: compiled on its first call (numba imported then); called only when :func:`_jit.available`
_number_kernel = _jit.kernel(_number_lines)
