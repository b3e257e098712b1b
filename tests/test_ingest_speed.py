"""The speed paths of the scan must not change what it produces: the seek-based reader of plain files
against an independent split, and vLLM's marker-anchored one-pass patterns against the generic ones."""

from __future__ import annotations

import gzip
import importlib
import random

import polars as pl
import pytest

from specdec_diag.ingest import scan, vllm

R = importlib.import_module("specdec_diag.ingest.reading")  # the reader module

PRE = "(APIServer pid=1) INFO 09-15 11:00:10 [loggers.py:123] "
SPEC = ("SpecDecoding metrics: Mean acceptance length: 2.50, Accepted throughput: 10.00 tokens/s, Drafted "
        "throughput: 40.00 tokens/s, Accepted: 100 tokens, Drafted: 200 tokens, Per-position acceptance rate: "
        "0.800, 0.500, 0.200, Avg Draft acceptance rate: 50.0%")
THR = ("Avg prompt throughput: 100.0 tokens/s, Avg generation throughput: 150.0 tokens/s, Running: 10 reqs, "
       "Waiting: 0 reqs, GPU KV cache usage: 25.0%")
# lines where an anchored fast path and the generic pattern could disagree: repeated markers, odd
# whitespace, V0 shapes, multi-engine tags, damaged first occurrences, cut lines
TRICKY = [
    f"{PRE}Engine 000: {THR}", f"{PRE}{SPEC}", f"{PRE}12 Engines Aggregated: {THR}", f"{PRE}{SPEC}\x0c",
    f"{PRE}SpecDecoding metrics: junk {SPEC}", f"{PRE}Engine 001: Avg prompt throughput: x, {THR}",
    f"{PRE}Engine 7: Avg prompt throughput: 1 tokens/s, Avg generation throughput: 2 tokens/s, Running: 1 req, "
    "Swapped: 0 reqs, Pending: 3 reqs", f"{PRE}{THR}\r", f"{PRE}{SPEC[:-1]}", f"{PRE}{SPEC}  ",
    f"{PRE}Engine 003: {THR}, Avg prompt throughput: 5 tokens/s", f"{PRE}Engine 004: {THR[:60]}",
    f"{PRE}{SPEC.replace('0.200, ', '')}", f"{PRE}{SPEC.replace(', Avg Draft', ', Foo: 1, Avg Draft')}",
    f"{PRE}Engine ٣: {THR}", f"{PRE}{THR}, Engine 005: Avg prompt throughput: 5 tokens/s", f"{PRE}{SPEC.replace('Accepted: 100', 'Accepted: ١٠٠')}",
    # where the ASCII fast pattern of the throughput line stops and the generic one goes on
    f"{PRE}{THR.replace('25.0%', '٢٥%')}", f"{PRE}{THR.replace('25.0%', '25.0 %')}", f"{PRE}{THR.replace('150.0', '1e5')}",
    f"{PRE}{THR.replace('Running: 10', 'Running: 1٠')}", f"{PRE}{THR.replace('100.0', '')}",
    f"{PRE}{THR.replace('Waiting: 0 reqs', 'Swapped: ٣ reqs, Waiting: 0 reqs')}", f"{PRE}{THR.replace('100.0', '+1')}",
    f"{PRE}{THR.replace(', GPU KV cache usage: 25.0%', '')}", f"{PRE}{THR.replace('25.0%', 'nan%')}",
]


def _lines(texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"line": list(range(1, len(texts) + 1)), "text": texts},
                        schema={"line": pl.Int64, "text": pl.Utf8})


def test_anchored_patterns_agree_with_the_generic_ones():
    df = _lines(TRICKY)
    text = pl.col("text")
    for marker, fast, generic, key, fix in (
        (vllm.M_V1, vllm._V1_E, vllm._V1, "acc", lambda c: c.str.strip_suffix(", ")),
        (vllm.M_THR_BODY, vllm._THR_BODY, vllm._THR, "wait", lambda c: c),
    ):
        got = df.select(vllm._anchored(marker, fast).alias("g")).unnest("g")
        ref = df.select(text.str.extract_groups(generic).alias("g")).unnest("g")
        hit = got[key].is_not_null()
        assert hit.sum() >= 3  # the fast path is taken for the ordinary lines
        for c in got.columns:  # wherever the fast path matches, it captures what the generic one does
            a = got.filter(hit)[c]
            b = ref.filter(hit)[c]
            assert fix(a.to_frame()[c]).to_list() == b.to_list() if c == "pp" else a.to_list() == b.to_list(), c


def _old_style_parse(lines: pl.DataFrame) -> pl.DataFrame:
    """vllm.parse with the fast paths disabled: every line through the generic patterns."""
    saved = vllm._V1_E, vllm._THR_BODY
    try:
        # same groups, but a NUL no line starts with: every line takes the generic path
        vllm._V1_E = "^\\x00" + saved[0][1:]
        vllm._THR_BODY = "^\\x00" + saved[1][1:]
        return vllm.parse(lines, "x").windows
    finally:
        vllm._V1_E, vllm._THR_BODY = saved


def test_parse_output_is_the_same_with_and_without_fast_paths():
    df = _lines(TRICKY * 3)
    fast = vllm.parse(df, "x")
    slow = _old_style_parse(df)
    assert fast.windows.height >= 20
    assert fast.windows.sort("line").equals(slow.sort("line"))


def _blob(rng: random.Random) -> bytes:
    parts = []
    for _ in range(400):
        r = rng.random()
        if r < 0.05:
            parts.append(b"x" * rng.randint(500, 3000))  # lines longer than a piece
        elif r < 0.1:
            parts.append(b"")
        elif r < 0.15:
            parts.append(b"\xff\xfe bad utf8 \r")
        else:
            parts.append(rng.choice([PRE + SPEC, PRE + THR, "INFO: 10.0.0.1 POST /v1 200"]).encode())
    blob = b"\n".join(parts)
    return blob if rng.random() < 0.5 else blob + b"\n"


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("chunk", [1, 97, 1024, 1 << 20])
def test_plain_reader_cuts_exactly_at_line_ends(tmp_path, seed, chunk):
    blob = _blob(random.Random(seed))
    p = tmp_path / "x.log"
    p.write_bytes(blob)
    g = tmp_path / "x.log.gz"
    g.write_bytes(gzip.compress(blob))
    for f in (p, g):  # the seek reader (plain) and the carrying one (gz) cut at different places
        pieces = list(R.iter_chunks(f, chunk))
        assert b"".join(pieces) == blob
        assert all(x.endswith(b"\n") for x in pieces[:-1]) and all(pieces)
        assert len(pieces) >= min(len(blob) // (chunk + 3000), 50)  # pieces stay near the asked size


def test_scan_line_numbers_match_a_plain_split(tmp_path):
    blob = _blob(random.Random(7)) + b"\n"
    p = tmp_path / "x.log"
    p.write_bytes(blob)
    texts = blob.decode("utf-8", "replace").split("\n")[:-1]
    want_spec = [i + 1 for i, t in enumerate(texts) if vllm.M_V1 in t]
    want_thr = [i + 1 for i, t in enumerate(texts) if vllm.M_THR in t]
    for chunk in (150, 4096, R.CHUNK_BYTES):
        res = scan([p], use_cache=False, chunk_bytes=chunk)
        w = res.windows
        assert w.filter(pl.col("format").str.starts_with("vllm-v1-spec"))["line"].to_list() == want_spec
        assert w.filter(pl.col("format") == "vllm-v1-throughput")["line"].to_list() == want_thr
        assert res.inputs["lines"].to_list() == [len(texts)]


@pytest.mark.parametrize("size", [0, 1, R._NL_BLOCK - 1, R._NL_BLOCK, R._NL_BLOCK + 1, 3 * R._NL_BLOCK + 17])
def test_newline_count_matches_bytes_count(size):
    rng = random.Random(size)
    blob = bytes(rng.choice(b"\nab\r\x00\xff") for _ in range(size))
    assert R._count_newlines(blob) == blob.count(b"\n")
