"""Line numbers of hit lines (specdec_diag/ingest/linenums.py): the compiled kernel, its plain
Python function and the numpy paths (sparse and dense) must agree with a byte-by-byte reference on
every input: empty pieces, no newline, hits at word boundaries and at the very end, CRs, long lines."""

from __future__ import annotations

import random
import types

import numpy as np
import pytest

from specdec_diag.ingest import _jit
from specdec_diag.ingest import linenums as LN

needs_numba = pytest.mark.skipif(not _jit.available(), reason="numba is not installed or switched off")


def reference(piece: bytes, ends: list[int]) -> tuple[list[int], list[int], int]:
    return ([piece.count(b"\n", 0, e) for e in ends], [piece.rfind(b"\n", 0, e) + 1 for e in ends],
            piece.count(b"\n"))


def cases(seed: int, n: int):
    rng = random.Random(seed)
    yield b"", []
    yield b"x", [1]
    yield b"\n", [0]
    yield b"\n" * 17, [0, 8, 16]
    for _ in range(n):
        parts = [rng.choice([b"\n", b"\r\n", b"x", b"abcdefgh" * rng.randint(0, 40), b"\n\n", b"\x0a\x0b\x09"])
                 for _ in range(rng.randint(0, 80))]
        piece = b"".join(parts)
        ends = [i for i, b in enumerate(piece) if b == 10]
        if piece and not piece.endswith(b"\n"):
            ends.append(len(piece))
        yield piece, sorted(rng.sample(ends, rng.randint(0, len(ends))))


def _run(fn, piece: bytes, ends: list[int]):
    a = np.frombuffer(piece, np.uint8)
    e = np.asarray(ends, dtype=np.int64)
    idx, starts = np.empty(len(e), np.int64), np.empty(len(e), np.int64)
    n = fn(a, LN.words(a), e, idx, starts)
    return idx.tolist(), starts.tolist(), int(n)


def test_kernel_logic_without_compiling():
    for piece, ends in cases(0, 300):
        assert _run(LN._number_lines, piece, ends) == reference(piece, ends), (piece, ends)


@needs_numba
def test_compiled_kernel_equals_reference():
    for piece, ends in cases(1, 1500):
        assert _run(LN._number_kernel, piece, ends) == reference(piece, ends), (piece, ends)


@pytest.mark.parametrize("path", ["sparse", "dense", "jit"])
def test_number_equals_reference_on_every_path(monkeypatch, path):
    if path == "jit" and not _jit.available():
        pytest.skip("numba is not installed or switched off")
    monkeypatch.setattr(LN, "JIT_BYTES", 0 if path == "jit" else 1 << 62)
    monkeypatch.setattr(LN, "JIT_AFTER_BYTES", 0)
    monkeypatch.setattr(LN, "SPARSE_GAP", 1 << 40 if path == "sparse" else 0)
    for piece, ends in cases(2, 400):
        a = np.frombuffer(piece, np.uint8)
        want = reference(piece, ends)
        if ends:
            idx, starts, n = LN.number(piece, 0, a, np.asarray(ends, dtype=np.int64))
            assert (idx.tolist(), starts.tolist(), n) == want, (piece, ends)
            raw = b"x\nyz\n" + piece  # the same block further on in a bigger buffer
            idx, starts, n = LN.number(raw, 5, np.frombuffer(raw, np.uint8)[5:], np.asarray(ends, dtype=np.int64))
            assert (idx.tolist(), starts.tolist(), n) == want
        assert LN.count_newlines(a) == want[2]


@needs_numba
def test_big_piece_same_with_kernel_and_numpy(monkeypatch):
    monkeypatch.setattr(LN, "JIT_AFTER_BYTES", 0)
    rng = np.random.default_rng(3)
    a = rng.choice(np.frombuffer(b"\nabcdefghijklmnopqrstuvwxyz0123456789 ", np.uint8), size=LN.JIT_BYTES + 13)
    piece = a.tobytes()
    nl = np.flatnonzero(a == 10)
    for take in (5, len(nl) // 3):
        e = np.sort(rng.choice(nl, take, replace=False)).astype(np.int64)
        got = LN.number(piece, 0, a, e)
        monkeypatch.setenv(_jit.ENV, "off")
        want = LN.number(piece, 0, a, e)
        monkeypatch.delenv(_jit.ENV)
        assert all(np.array_equal(x, y) for x, y in zip(got[:2], want[:2], strict=True)) and got[2] == want[2]
    assert LN.count_newlines(a) == int(np.count_nonzero(a == 10))


def test_kernel_only_for_big_pieces_once_numba_is_loaded_or_much_was_read(monkeypatch):
    monkeypatch.setattr(LN, "sys", types.SimpleNamespace(modules={}))  # numba not loaded yet
    monkeypatch.setattr(LN, "_numpy_bytes", [0])
    monkeypatch.setattr(LN, "JIT_AFTER_BYTES", 3 * LN.JIT_BYTES)
    monkeypatch.setattr(_jit, "available", lambda: True)
    assert not LN._use_kernel(LN.JIT_BYTES - 1)  # small pieces: never, and not counted
    assert [LN._use_kernel(LN.JIT_BYTES) for _ in range(4)] == [False, False, False, True]
    monkeypatch.setattr(LN, "_numpy_bytes", [0])
    monkeypatch.setattr(LN, "sys", types.SimpleNamespace(modules={"numba": object()}))
    assert LN._use_kernel(LN.JIT_BYTES) and not LN._use_kernel(LN.JIT_BYTES - 1)
    monkeypatch.setattr(_jit, "available", lambda: False)
    assert not LN._use_kernel(LN.JIT_BYTES)
