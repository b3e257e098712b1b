"""The compiled parser of the dominant vLLM lines (ingest/vllm_kernel.py, vllm_fast.py) must give the
tables the polars path gives: on every sample log and real fixture (batched and file by file), on
generated big-log lines, on damaged lines, and its plain-Python form must read lines as the compiled
one does."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from specdec_diag.ingest import _jit, vllm, vllm_fast, vllm_kernel
from specdec_diag.ingest.scan import scan
from specdec_diag.ingest.timestamps import YearAnchor

pytestmark = pytest.mark.skipif(not _jit.available(), reason="numba not installed")

ROOT = Path(__file__).resolve().parent.parent
PRE = "(APIServer pid=1) INFO 09-15 11:00:10 [loggers.py:123] "
E = ("SpecDecoding metrics: Mean acceptance length: 2.50, Accepted throughput: 10.00 tokens/s, Drafted "
     "throughput: 40.00 tokens/s, Accepted: 150 tokens, Drafted: 300 tokens, Per-position acceptance rate: "
     "0.800, 0.500, 0.200, Avg Draft acceptance rate: 50.0%")
D = ("SpecDecoding metrics: Draft acceptance rate: 50.0%, Mean acceptance length: 2.50, Accepted throughput: "
     "10.00 tokens/s, Drafted throughput: 40.00 tokens/s, Accepted: 150 tokens, Drafted: 300 tokens, "
     "Per-position acceptance rate: 0.800, 0.500, 0.200")
THR = ("Avg prompt throughput: 100.0 tokens/s, Avg generation throughput: 150.0 tokens/s, Running: 10 reqs, "
       "Waiting: 0 reqs, GPU KV cache usage: 25.0%, Prefix cache hit rate: 3.5%")
# lines the kernel must read as polars does, or leave to polars
EDGE = [
    PRE + E, PRE + D, PRE + "Engine 000: " + THR, PRE + "4 Engines Aggregated: " + THR, "INFO 09-15 11:00:10 "
    "[loggers.py:1] " + E, PRE + E + "\r", PRE + E + " \t", PRE + THR + "\r", PRE + E.replace("150", "1x0"),
    PRE + E.replace("150 tokens", "99999999999999999999 tokens"), PRE + E.replace("2.50", "nan"),
    PRE + E.replace("0.800", "nan"), PRE + E.replace(", Avg Draft", ""), PRE + E.replace("Accepted: 150 tokens, ", ""),
    PRE + E.replace("Accepted: 150", "Accepted: ١٥٠"), PRE + "Engine ٣: " + THR, PRE + E.replace("2.50", "2.5.0"),
    PRE + E.replace("Mean acceptance length: 2.50, ", "Mean acceptance length: 2.50, Current speculative depth: 3, "),
    PRE + E.replace("Mean acceptance length: 2.50, ", "Mean acceptance length: 2.50, Current speculative depth: 5, "),
    PRE + E.replace("300 tokens", "301 tokens").replace("50.0%", "49.8%"), PRE + E.replace("300", "100"),
    PRE + E.replace("2.50", "0.50"), PRE + E.replace("2.50", "1.50"), PRE + E.replace("0.800", "1.800"),
    PRE + THR.replace("25.0%", "1e5%"), PRE + THR.replace("Waiting: 0 reqs", "Pending: 0 reqs"),
    PRE + THR.replace("Waiting: 0 reqs", "Waiting: 0 reqs, Preemptions: 2"), PRE + THR + ", SpecDecoding metrics: 1%",
    PRE + THR.replace("Running: 10 reqs", "Running: 1 req"), PRE + THR.replace(", Prefix cache hit rate: 3.5%", ""),
    "2025-09-15T11:00:10.123Z " + PRE + E, "(APIServer pid=1) INFO 02-30 11:00:10 [loggers.py:1] " + E,
    "(APIServer pid=1) INFO 09-15 25:00:10 [loggers.py:1] " + E, "(APIServer pid=1) INFO 12-31 23:59:59 [l.py:1] " + E,
    PRE.replace("loggers.py", "log-2025-09-15T11:00.py") + E, PRE + E.replace("Drafted: 300", "Drafted: 299"),
    PRE + "SpecDecoding metrics: Mean acceptance length: 2.50, Accepted: 150 tokens, Drafted: 300 tokens",
    PRE.replace("(APIServer pid=1)", "(Engine-Core_DP0 pid=77)") + E, PRE + E.replace("0.800", "0.8001234567890123"),
    PRE + D.replace("0.800, 0.500", "0.800,0.500"), PRE + "é" + E, PRE + E + "é", PRE + THR.replace("3.5%", "3.5 %"),
    # other vector lengths in one batch (num_drafts then inferred from the MAL, with its note)
    PRE + E.replace("0.800, 0.500, 0.200", "0.800, 0.700"), PRE + E.replace("0.800, 0.500, 0.200", "0.800, 0.400, 0.200, 0.100"),
]


def _lines(texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"line": list(range(1, len(texts) + 1)), "text": texts},
                        schema={"line": pl.Int64, "text": pl.Utf8})


def _both(monkeypatch, run):
    """``run()`` with the kernel for every batch, and with it switched off."""
    monkeypatch.setattr(vllm_fast, "MIN_LINES", 0)
    monkeypatch.setattr(vllm_fast, "LOAD_LINES", 0)
    fast = run()
    monkeypatch.setenv(_jit.ENV, "off")
    slow = run()
    monkeypatch.delenv(_jit.ENV)
    return fast, slow


def _same(fast, slow, tables=("windows", "malformed", "configs")):
    for t in tables:
        a, b = getattr(fast, t), getattr(slow, t)
        assert a.drop("fingerprint", strict=False).equals(b.drop("fingerprint", strict=False)), t


@pytest.mark.parametrize("anchor", [None, YearAnchor(__import__("datetime").date(2025, 9, 20), False, "mtime"),
                                    YearAnchor(__import__("datetime").date(2025, 1, 2), True, "iso-in-file")])
def test_edge_lines_parse_as_without_the_kernel(monkeypatch, anchor):
    from specdec_diag.ingest.base import ParseOptions

    df = _lines(EDGE * 2)
    fast, slow = _both(monkeypatch, lambda: vllm.parse(df, "x", ParseOptions(year_anchor=anchor)))
    assert fast.windows.height >= 20 and fast.malformed.height >= 5
    monkeypatch.setattr(vllm_fast, "MIN_LINES", 0)
    monkeypatch.setattr(vllm_fast, "LOAD_LINES", 0)
    plain = df.filter(~pl.col("text").str.starts_with("2025"))  # one ISO-dated line sends a batch to polars
    got, rest = vllm_fast.split(plain, "x", anchor, lambda _: False, lambda _: (0, 0))
    assert got.frame.height >= 24 and rest.height >= 40  # both paths taken
    _same(fast, slow, ("windows", "malformed", "configs"))


def test_an_old_engine_version_leaves_specdecoding_lines_to_polars(monkeypatch):
    df = _lines(["(APIServer pid=1) INFO 09-15 11:00:00 [api_server.py:1] vLLM API server version 0.8.5",
                 PRE + E, PRE + THR, PRE + E.replace("2.50", "1.50")])
    fast, slow = _both(monkeypatch, lambda: vllm.parse(df, "x"))
    _same(fast, slow)
    assert "bonus" in (fast.windows["definition_note"].drop_nulls().to_list() or [""])[0]


def _kernel_out(fn, texts: list[str]):
    raw = [t.encode() for t in texts]
    offs = np.zeros(len(raw) + 1, np.int64)
    np.cumsum([len(r) for r in raw], out=offs[1:])
    lines = np.arange(1, len(raw) + 1, dtype=np.int64) + (np.arange(len(raw)) // 50) * (1 << 32)  # files of 50
    return fn(np.frombuffer(b"".join(raw), np.uint8), offs, lines, 1 << 32, 2025, 920, False)


def test_plain_python_kernel_reads_lines_as_the_compiled_one():
    texts = EDGE + [PRE + E, PRE + "Engine 002: " + THR, PRE.replace("pid=1", "pid=2") + D] * 30 + _mutated(300)
    vllm_kernel.prepare()
    compiled = _kernel_out(vllm_kernel.scan_lines, texts)
    # a fresh copy of the module: its helpers are plain functions too (prepare() compiled the imported one's)
    import importlib.util

    spec = importlib.util.spec_from_file_location("plain_vllm_kernel", vllm_kernel.__file__)
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    plain = _kernel_out(fresh.scan_lines.py_func, texts)
    kind = compiled[0]
    assert (kind > 0).sum() >= 100 and (kind == 0).sum() >= 100
    for a, b in zip(compiled, plain, strict=True):
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def _mutated(n: int, seed: int = 7) -> list[str]:
    """Ordinary lines with one random edit each: a digit, a separator or a letter changed, removed or doubled."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t = rng.choice([PRE + E, PRE + D, PRE + "Engine 001: " + THR])
        i = rng.randrange(len(t))
        edit = rng.choice(["del", "dup", "sub"])
        t = t[:i] + (t[i] * 2 if edit == "dup" else rng.choice("0123456789.,% :-ax") if edit == "sub" else "") + t[i + 1:]
        out.append(t)
    return out


def test_randomly_damaged_lines_parse_as_without_the_kernel(monkeypatch):
    df = _lines(_mutated(1500))
    fast, slow = _both(monkeypatch, lambda: vllm.parse(df, "x"))
    assert fast.windows.height > 500
    _same(fast, slow)


def test_generated_big_log_lines(tmp_path, monkeypatch):
    """The benchmark's generator (variant E, DP engines) at a small size: most lines go through the kernel."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "benchmarks" / "ingest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = tmp_path / "gen.log"
    mod.generate(path, 2)
    fast, slow = _both(monkeypatch, lambda: scan([path], use_cache=False))
    assert fast.windows.height > 2000
    _same(fast, slow)


@pytest.mark.parametrize("where", ["sample_logs", "tests/fixtures/real", "tests/fixtures/vllm"])
@pytest.mark.parametrize("batched", [True, False])
def test_every_sample_and_real_log_gives_the_same_tables(tmp_path, monkeypatch, where, batched):
    from specdec_diag.ingest import batch as B

    if not batched:
        monkeypatch.setattr(B, "SMALL_BYTES", 0)
    fast, slow = _both(monkeypatch, lambda: scan([ROOT / where], use_cache=False))
    assert fast.windows.height > 20
    _same(fast, slow)


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_engines_attach_per_file_and_process_as_without_the_kernel(monkeypatch, order):
    """A batch of files (line // LINE_STRIDE): a SpecDecoding line takes the engine of its own process's
    last throughput line in its own file, never one from the file before; an unsorted batch too."""
    from specdec_diag.ingest.base import LINE_STRIDE

    p2 = PRE.replace("pid=1", "pid=2")
    texts = [PRE + "Engine 000: " + THR, p2 + "Engine 001: " + THR, PRE + E, p2 + D, p2 + E, PRE + THR, PRE + E]
    lines = [1, 2, 3, 4, LINE_STRIDE + 1, LINE_STRIDE + 2, LINE_STRIDE + 3]
    df = pl.DataFrame({"line": lines, "text": texts}, schema={"line": pl.Int64, "text": pl.Utf8})
    if order == "shuffled":
        df = df.sample(fraction=1.0, shuffle=True, seed=3)
    fast, slow = _both(monkeypatch, lambda: vllm.parse(df, "x"))
    _same(fast, slow)
    assert fast.windows["engine_id"].to_list()[2:5] == ["APIServer pid=1 Engine 000", "APIServer pid=2 Engine 001",
                                                        "APIServer pid=2"]


def test_small_batches_do_not_load_the_kernel(monkeypatch):
    """A batch below LOAD_LINES keeps to polars until the kernel is loaded; then MIN_LINES decides."""
    monkeypatch.setattr(vllm_fast, "_loaded", [])
    monkeypatch.setattr(vllm_fast, "_polars_lines", [0])
    monkeypatch.setattr(vllm_fast, "LOAD_LINES", 100)
    monkeypatch.setattr(vllm_fast, "MIN_LINES", 10)
    small, big, tiny = _lines([PRE + E] * 20), _lines([PRE + E] * 100), _lines([PRE + E] * 5)
    assert vllm_fast.split(small, "x", None, lambda _: False, lambda _: (0, 0))[0] is None
    assert vllm_fast.split(big, "x", None, lambda _: False, lambda _: (0, 0))[0] is not None
    assert vllm_fast.split(small, "x", None, lambda _: False, lambda _: (0, 0))[0] is not None
    assert vllm_fast.split(tiny, "x", None, lambda _: False, lambda _: (0, 0))[0] is None  # below MIN_LINES


def test_many_small_batches_load_the_kernel_once_polars_spent_as_much(monkeypatch):
    """Ski rental: batches too small to repay the load alone (a parallel scan's 64 MB pieces) go to
    polars until they add up to LOAD_LINES lines; the next batch loads the kernel."""
    monkeypatch.setattr(vllm_fast, "_loaded", [])
    monkeypatch.setattr(vllm_fast, "_polars_lines", [0])
    monkeypatch.setattr(vllm_fast, "LOAD_LINES", 100)
    monkeypatch.setattr(vllm_fast, "MIN_LINES", 10)
    small = _lines([PRE + E] * 40)
    got = [vllm_fast.split(small, "x", None, lambda _: False, lambda _: (0, 0))[0] is not None for _ in range(4)]
    assert got == [False, False, False, True]  # 40 + 40 + 40 >= 100 lines parsed by polars first


def test_container_dates_in_the_middle_of_a_part_are_read_as_without_the_kernel(monkeypatch):
    """polars reads container (ISO) dates of a part only when its first or last lines carry them: a
    batch whose ISO-dated lines sit in the middle, between plain ones, gives the same times either way."""
    plain = [PRE + E, PRE + "Engine 000: " + THR] * 120
    iso = ["2025-09-15T11:00:10.123Z " + PRE + E, "2025-09-15T11:00:10.123Z " + PRE + "Engine 000: " + THR]
    df = _lines(plain + iso + plain)
    fast, slow = _both(monkeypatch, lambda: vllm.parse(df, "x"))
    _same(fast, slow)


ISO = ["2025-09-15T11:00:10.123Z", "2025-09-15T11:00:10Z", "2025-09-15 11:00:10,5", "2025-09-15T11:00:10.123456789Z",
       "2025-09-15T11:00:10.1234567890Z", "2025-09-15T11:00:10+05:30", "2025-09-15T11:00:10.25-0800", "2025-09-15T11:00:10",
       "2025-02-29T11:00:10Z", "2024-02-29T23:59:59.999999+00:00", "2025-09-15T24:00:10Z", "2025-09-15T11:00:10+24:00",
       "2025-09-15T11:00:10+05", "2025-09-15T11:00:10.Z", "0001-01-01T00:00:00Z", "2025-12-31T23:59:59-23:59"]


@pytest.mark.parametrize("anchor", [None, YearAnchor(__import__("datetime").date(2025, 9, 20), False, "mtime")])
def test_container_dates_parse_as_without_the_kernel(monkeypatch, anchor):
    """Lines behind a container runtime's ISO date (docker --timestamps, kubectl): every form the
    polars path reads (zones, fractions cut to microseconds, a space or a comma), the dates it
    cannot read (those lines left to polars), and a part mixing dated and undated lines (all to polars)."""
    from specdec_diag.ingest.base import ParseOptions

    good = [d for d in ISO if d not in ("2025-09-15T11:00:10.1234567890Z", "2025-02-29T11:00:10Z",
                                         "2025-09-15T24:00:10Z", "2025-09-15T11:00:10+24:00",
                                         "2025-09-15T11:00:10+05", "2025-09-15T11:00:10.Z")]
    for dates, taken in ((good, True), (ISO, True), ([*good, ""], False)):  # "": a line without a date
        df = _lines([f"{d} {PRE}{body}".lstrip() for d in dates for body in (E, "Engine 000: " + THR, D)])
        fast, slow = _both(monkeypatch, lambda df=df: vllm.parse(df, "x", ParseOptions(year_anchor=anchor)))
        _same(fast, slow)
        assert fast.windows["time"].null_count() == 0 or dates is not good
        monkeypatch.setattr(vllm_fast, "LOAD_LINES", 0)
        got, _ = vllm_fast.split(df, "x", anchor, lambda _: False, vllm._iso_parts)
        assert (got is not None) == taken
