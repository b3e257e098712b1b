"""No input crashes any parser: every registered source (ours and the other engines') gets random
text, cut and mangled real lines, and lines made of its own markers; the reader gets random bytes.
Parsers are called directly here: the scan's crash guard would otherwise hide a crash."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specdec_diag.ingest import SOURCES, scan
from specdec_diag.ingest.base import NO_OPTIONS, Parsed
from specdec_diag.ingest.reading import chunk_marked, lines_frame, marker_regex
from specdec_diag.inputs import _BOMS
from specdec_diag.schema import WINDOW_SCHEMA

FIX = Path(__file__).parent / "fixtures"
REAL_LINES = [ln for p in sorted(FIX.rglob("*")) if p.is_file() and p.suffix in (".log", ".txt", ".prom", ".jsonl")
              for ln in p.read_text(errors="replace").splitlines() if ln.strip()][:400]
LINE_SOURCES = [s for s in SOURCES if s.reads_lines]
ALL_MARKERS = sorted({mk for s in LINE_SOURCES for mk in s.markers})
# SPECDEC_FUZZ_EXAMPLES=400 for a deeper run; 30 keeps CI fast
FUZZ = settings(max_examples=int(os.environ.get("SPECDEC_FUZZ_EXAMPLES", "30")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mangled(draw) -> str:
    """A real line cut short, with characters replaced, or a marker followed by junk."""
    kind = draw(st.sampled_from(["cut", "replace", "marker", "random", "numbers"]))
    if kind == "random" or not REAL_LINES:
        return draw(st.text(max_size=200))
    if kind == "marker":
        return draw(st.text(max_size=20)) + draw(st.sampled_from(ALL_MARKERS)) + draw(st.text(max_size=80))
    line = draw(st.sampled_from(REAL_LINES))
    if kind == "cut":
        return line[: draw(st.integers(0, len(line)))]
    if kind == "numbers":
        return "".join(draw(st.sampled_from(["9" * 25, "-1", "nan", "1e308", "0.", ""])) if c.isdigit() and
                       draw(st.booleans()) else c for c in line)
    i = draw(st.integers(0, max(0, len(line) - 1)))
    return line[:i] + draw(st.text(min_size=1, max_size=5)) + line[i + 1:]


def _frame(texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"line": pl.Series(range(1, len(texts) + 1), dtype=pl.Int64),
                         "text": pl.Series(texts, dtype=pl.Utf8)})


def _check(p: Parsed) -> None:
    assert isinstance(p, Parsed)
    assert dict(p.windows.schema) == WINDOW_SCHEMA


@FUZZ
@given(st.lists(mangled(), min_size=1, max_size=25))
def test_line_parsers_never_crash(texts):
    df = _frame(texts)
    for src in LINE_SOURCES:
        mine = df.filter(pl.col("text").str.contains_any(list(src.markers)))
        p = src.parse(mine, "fuzz.log", NO_OPTIONS)
        _check(p)
        if src.finalize is not None:
            src.finalize(p.windows)


@FUZZ
@given(st.binary(max_size=3000), st.lists(mangled(), max_size=10))
def test_whole_file_parsers_and_scan_never_crash(blob, texts):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "fuzz.jsonl"
        p.write_bytes(blob + "\n".join(texts).encode("utf-8", errors="replace"))
        if any(blob.startswith(bom) for bom, codec, _ in _BOMS if codec is None):
            # a BOM of an encoding we cannot decode (SCSU, UTF-7, ...) is a clean one-line input error
            res = scan([p], use_cache=False)
            assert res.inputs["error"][0].startswith("encoding not supported")
            return
        for src in SOURCES:
            if src.parse_file is not None:
                _check(src.parse_file(p, str(p)))
        res = scan([p], use_cache=False)
        assert res.inputs.height == 1 and res.inputs["error"][0] is None


@FUZZ
@given(st.binary(max_size=2000))
def test_line_numbers_are_exact(blob):
    df = lines_frame(blob, 1)
    expected = blob.count(b"\n") + (0 if blob.endswith(b"\n") or not blob else 1)
    assert df.height == expected
    assert df["line"].to_list() == list(range(1, expected + 1))


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=60), mangled().map(lambda s: s.encode("utf-8", "replace"))),
                max_size=30), st.sampled_from([b"\n", b"\r\n", b"\r"]))
def test_fast_reader_agrees_with_exact_reader(parts, eol):
    """The fused CSV split + filter must number and select lines exactly like the plain split (or
    notice it cannot, and fall back)."""
    blob = eol.join(parts)
    rx = marker_regex(ALL_MARKERS)
    exact = lines_frame(blob, 7)
    want = exact.filter(pl.col("text").str.contains(rx))
    got, n = chunk_marked(blob, 7, rx)
    assert n == exact.height
    assert got["line"].to_list() == want["line"].to_list()
    assert got["text"].str.strip_chars_end("\r").to_list() == want["text"].str.strip_chars_end("\r").to_list()
