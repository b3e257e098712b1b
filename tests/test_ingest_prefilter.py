"""The Hyperscan prefilter (specdec_diag/ingest/prefilter.py) and the view-based plain reader must
give exactly what the reference path gives (the polars query over CSV-split lines, the copying
reader): the same lines, numbers, texts and routing, on the sample logs and on generated junk; and
a log that grows or is truncated while it is read must not crash the scan."""

from __future__ import annotations

import dataclasses
import gzip
import importlib
import random
from pathlib import Path

import polars as pl
import pytest

from specdec_diag.ingest import scan
from specdec_diag.ingest.registry import SOURCES
from specdec_diag.ingest.scan import parse_file
from specdec_diag.inputs import InputFile, Overlong

P = importlib.import_module("specdec_diag.ingest.prefilter")
R = importlib.import_module("specdec_diag.ingest.reading")
LN = importlib.import_module("specdec_diag.ingest.linenums")
ROOT = Path(__file__).resolve().parent.parent
GROUPS = tuple(P.marker_tuple(s.markers) for s in SOURCES)
SAMPLES = sorted(p for p in (ROOT / "sample_logs").rglob("*") if p.is_file() and R.wanted(p.name))
needs_hs = pytest.mark.skipif(P.engine() != "hyperscan", reason="hyperscan is not installed here")

PRE = "(APIServer pid=1) INFO 09-15 11:00:10 [loggers.py:123] "
SPEC = ("SpecDecoding metrics: Mean acceptance length: 2.50, Accepted throughput: 10.00 tokens/s, Drafted "
        "throughput: 40.00 tokens/s, Accepted: 100 tokens, Drafted: 200 tokens, Per-position acceptance rate: "
        "0.800, 0.500, 0.200, Avg Draft acceptance rate: 50.0%")
THR = ("Engine 000: Avg prompt throughput: 100.0 tokens/s, Avg generation throughput: 150.0 tokens/s, "
       "Running: 10 reqs, Waiting: 0 reqs, GPU KV cache usage: 25.0%")
#: junk alphabet: line ends of every kind, BOMs, broken UTF-8, NUL, CSV separators, markers of several sources
ALPHABET = [b"\n", b"\r", b"\r\n", b"\xff", b"\xe2\x82", b"\xef\xbb\xbf", b"x", b" ", b"\x00", b"\x1f", b"\x1e",
            b"\xc3\xa9", b"\t", b" | ", b"Decode batch", b"SpecDecoding metrics:", b"n_draft", b'"generated_text"',
            b"Avg generation throughput:", b"vllm:spec_decode", b"Position ", (PRE + SPEC).encode()]


def reference(piece: bytes, first: int) -> tuple[pl.DataFrame, int]:
    sel, n = R.chunk_marked(piece, first, R.marker_regex(P.flat(GROUPS)))
    return R.with_sets(sel, GROUPS), n


def junk(rng: random.Random, parts: int) -> bytes:
    return b"".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, parts)))


@needs_hs
@pytest.mark.parametrize("gap", [0, 4096, 1 << 40, "jit"])  # hits numbered alone / by all newlines / compiled
def test_prefilter_equals_reference_on_junk(monkeypatch, gap):
    if gap == "jit":
        if not LN._jit.available():
            pytest.skip("numba is not installed here")
        monkeypatch.setattr(LN, "JIT_BYTES", 0)
        monkeypatch.setattr(LN, "JIT_AFTER_BYTES", 0)
        gap = 7
    else:
        monkeypatch.setattr(LN, "JIT_BYTES", 1 << 62)
    monkeypatch.setattr(LN, "SPARSE_GAP", gap)
    monkeypatch.setattr(P, "FEW_BYTE_LINES", 0 if gap == 4096 else 256)  # tab lines by Hyperscan / memchr
    monkeypatch.setattr(P, "BLOCK_BYTES", 16 if gap in (0, 7) else 1 << 21)  # many blocks per piece / one
    rng = random.Random(gap)
    for _ in range(1500):
        blob = junk(rng, 60)
        want, n = reference(blob, 7)
        for piece in (blob, memoryview(blob)):
            got, m = P.find_marked(piece, 7, GROUPS)
            assert m == n and got.equals(want), blob


@needs_hs
@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_prefilter_equals_reference_on_sample_logs(monkeypatch, path):
    blob = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    want, n = reference(blob, 1)
    got, m = P.find_marked(blob, 1, GROUPS)
    assert m == n and got.equals(want)
    monkeypatch.setattr(P, "BLOCK_BYTES", 4096)  # searched and numbered in many blocks
    got, m = P.find_marked(blob, 1, GROUPS)
    assert m == n and got.equals(want)
    if LN._jit.available():  # line numbers by the compiled kernel too
        monkeypatch.setattr(LN, "JIT_BYTES", 0)
        monkeypatch.setattr(LN, "JIT_AFTER_BYTES", 0)
        got, m = P.find_marked(blob, 1, GROUPS)
        assert m == n and got.equals(want)


@needs_hs
@pytest.mark.parametrize("most", [0, 1, 256])  # tab lines by memchr, or Hyperscan with every marker
def test_one_byte_marker_lines_same_by_memchr_and_hyperscan(monkeypatch, most):
    monkeypatch.setattr(P, "FEW_BYTE_LINES", most)
    groups = (("\t", "tokens/s"), ("x",), ("ab",), ("\t",))
    for blob in (b"a\tb", b"a\tb\n", b"\t\n\n\tab\nx tokens/s\n\t", b"ab\nx\tx\n\r\t\r\n", b"no tab\n"):
        want = sorted(P._packed_hits(blob, groups))
        assert sorted(P.piece_hits(blob, 0, len(blob), groups)) == want, blob
        cut = blob.rfind(b"\n") + 1
        assert sorted(P.piece_hits(blob, 0, cut, groups)) == sorted(P._packed_hits(blob[:cut], groups))
        lo = blob.find(b"\n") + 1  # a block further on: line ends relative to it
        assert sorted(P.piece_hits(blob, lo, len(blob), groups)) == sorted(P._packed_hits(blob[lo:], groups))


def test_blocks_end_after_a_newline_and_cover_the_piece(monkeypatch):
    monkeypatch.setattr(P, "BLOCK_BYTES", 4)
    for blob in (b"", b"x", b"abcdefghij", b"ab\ncd\nef\ngh\n", b"a\nbcdefghijklmn\nop", b"\n" * 9):
        blocks = list(P._blocks(blob, len(blob)))
        assert [lo for lo, _ in blocks] == [0] + [hi for _, hi in blocks[:-1]] if blob else blocks == []
        assert (blocks[-1][1] if blocks else 0) == len(blob)
        assert all(blob[hi - 1 : hi] == b"\n" for _, hi in blocks[:-1])


@needs_hs
def test_tab_marker_lines_found_with_and_without_tabs_in_the_piece():
    groups = (P.marker_tuple(["\t", "tokens/s"]), P.marker_tuple(["Decode"]))
    for blob in (b"a\tb\nc tokens/s\nDecode\tx\n", b"a b\nc tokens/s\nDecode x\n"):
        want, n = R.with_sets(R.chunk_marked(blob, 1, R.marker_regex(P.flat(groups)))[0], groups), 3
        got, m = P.find_marked(memoryview(blob)[: len(blob)], 1, groups)
        assert m == n and got.equals(want)


def _tables(res) -> dict[str, pl.DataFrame]:
    return {"windows": res.windows, "malformed": res.malformed, "configs": res.configs, "steps": res.steps,
            "inputs": res.inputs}


@needs_hs
def test_scan_of_sample_logs_same_with_either_engine(monkeypatch):
    fast = _tables(scan([ROOT / "sample_logs"], use_cache=False))
    monkeypatch.setenv(P.ENGINE_ENV, "polars")
    assert P.engine() == "polars"
    ref = _tables(scan([ROOT / "sample_logs"], use_cache=False))
    for name, df in ref.items():
        assert fast[name].equals(df), name


def test_missing_hyperscan_falls_back_to_polars(monkeypatch, tmp_path):
    p = tmp_path / "x.log"
    p.write_text("\n".join([PRE + THR, "noise", PRE + SPEC] * 50) + "\n")
    want = scan([p], use_cache=False).windows
    monkeypatch.setattr(P, "_hs", None)
    assert P.engine() == "polars"
    assert scan([p], use_cache=False).windows.equals(want)
    assert want.height == 100


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("chunk", [1, 97, 1024, 1 << 20])
def test_view_reader_gives_the_reference_pieces_joined(tmp_path, seed, chunk):
    rng = random.Random(seed)
    lines = [rng.choice([b"x" * rng.randint(200, 3000), b"", (PRE + SPEC).encode(), b"\xff\r"]) for _ in range(300)]
    blob = b"\n".join(lines) + (b"\n" if seed % 2 else b"")
    p = tmp_path / "x.log"
    p.write_bytes(blob)
    f = InputFile(p)
    f.sniff()
    test = R.marker_test(P.flat(GROUPS))
    for max_line in (1 << 20, 1000):
        got = list(f.pieces(chunk, test, max_line=max_line, views=True))
        want = list(f.pieces(chunk, test, max_line=max_line))
        assert [bytes(x) if not isinstance(x, Overlong) else x for x in got] == want


def _grown_or_cut(tmp_path: Path, change: str) -> tuple[Path, object]:
    """Scan a 2 MB log whose file is appended to / truncated after the first piece was read."""
    p = tmp_path / "live.log"
    block = "\n".join([PRE + THR, "INFO: 10.0.0.1 POST /v1 200 OK", PRE + SPEC] * 4000) + "\n"
    p.write_text(block)
    done = []

    def on_bytes(_n: int) -> None:
        if not done:
            done.append(1)
            if change == "grow":
                with open(p, "a") as fh:
                    fh.write(block)
            else:
                with open(p, "r+") as fh:
                    fh.truncate(len(block) // 3)
    return p, parse_file(p, str(p), chunk_bytes=256 * 1024, on_bytes=on_bytes)


@pytest.mark.parametrize("change", ["grow", "truncate"])
def test_log_changing_while_read_does_not_crash(tmp_path, change):
    p, res = _grown_or_cut(tmp_path, change)
    assert res.input["error"] is None
    w = res.windows
    text = p.read_text().split("\n")
    # every row's line number points at a line of its kind in what the file holds now (exact numbers)
    for line, fmt in zip(w["line"].to_list(), w["format"].to_list(), strict=True):
        assert ("SpecDecoding" if fmt.startswith("vllm-v1-spec") else "Avg generation") in text[line - 1]
    if change == "grow":  # read as far as it reached: at least the first copy, at most both
        assert 8000 <= w.height <= 16000 and 12000 <= res.input["lines"] <= 24000
    else:  # the first piece is kept, the rest ends where the file now ends
        assert 0 < w.height < 8000 and res.input["lines"] < 12000


def test_crlf_and_gzip_give_the_same_rows_as_plain(tmp_path):
    lines = [PRE + THR, "noise \r inside", PRE + SPEC, ""] * 200
    plain = tmp_path / "a.log"
    plain.write_text("\n".join(lines) + "\n")
    crlf = tmp_path / "b.log"
    crlf.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    gz = tmp_path / "c.log.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    got = [scan([f], use_cache=False, chunk_bytes=4096).windows.drop("source") for f in (plain, crlf, gz)]
    assert got[0].height == 400
    assert got[1].equals(got[0]) and got[2].equals(got[0])


def test_routing_bits_follow_each_sources_markers():
    vllm_bit = 1 << [s.family for s in SOURCES].index("vllm")
    sglang_bit = 1 << [s.family for s in SOURCES].index("sglang")
    blob = (PRE + SPEC + "\nDecode batch. x\nboth: Decode batch SpecDecoding metrics:\nnone\n").encode()
    got, n = R.marked_lines(blob, 1, GROUPS)
    assert n == 4
    assert got["line"].to_list() == [1, 2, 3]
    # (other sources' bits may be set too: the SpecDecoding line's "tokens/s" is also a benchmark marker)
    assert [b & (vllm_bit | sglang_bit) for b in got["_src"].to_list()] == [vllm_bit, sglang_bit, vllm_bit | sglang_bit]


def test_sources_without_markers_and_no_sources():
    empty = tuple(dataclasses.replace(s, markers=()) for s in SOURCES)
    groups = tuple(P.marker_tuple(s.markers) for s in empty)
    got, n = R.marked_lines(b"SpecDecoding metrics: x\n", 1, groups)
    assert n == 1 and got.height == 0


@needs_hs
def test_threads_scan_at_once():
    """Each thread has its own Hyperscan scratch: a thread pool around the per-file scan works."""
    from concurrent.futures import ThreadPoolExecutor

    blob = ("\n".join([PRE + THR, "noise", PRE + SPEC] * 3000) + "\n").encode()
    want, n = P.find_marked(blob, 1, GROUPS)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: P.find_marked(blob, 1, GROUPS), range(16)))
    assert all(g.equals(want) and m == n for g, m in got)


@needs_hs
def test_compiled_database_kept_on_disk_and_rebuilt_when_unusable(monkeypatch, tmp_path):
    """The compiled database is saved once, loaded by the next process (here: after the in-process
    cache is cleared), recompiled when the file is corrupt, and never written when switched off."""
    blob = (PRE + SPEC + "\nnone\nDecode batch. x\n").encode()
    want = P.line_hits(blob, GROUPS)
    monkeypatch.setenv(P.DB_CACHE_ENV, str(tmp_path))
    P._database.cache_clear()
    assert P.line_hits(blob, GROUPS) == want
    (saved,) = (tmp_path / "hyperscan").iterdir()
    P._database.cache_clear()
    assert P.line_hits(blob, GROUPS) == want  # loaded from the file
    saved.write_bytes(b"not a database")
    P._database.cache_clear()
    assert P.line_hits(blob, GROUPS) == want  # recompiled, and the file rewritten
    assert saved.read_bytes() != b"not a database"
    saved.unlink()
    monkeypatch.setenv(P.DB_CACHE_ENV, "off")
    P._database.cache_clear()
    assert P.line_hits(blob, GROUPS) == want and not list((tmp_path / "hyperscan").iterdir())
    P._database.cache_clear()
