"""The compiled path of :func:`specdec_diag.ingest.vllm.parse` for big batches: the kernel of
:mod:`specdec_diag.ingest.vllm_kernel` reads the dominant line shapes (SpecDecoding variants E/D, the
V1 throughput line) from the batch's text buffer, and their window rows are built here from its
numeric columns with a few polars expressions; every other line goes on through the polars path.
The rows are those the polars path gives (tests/test_ingest_vllm_fast.py compares both).

Used for a batch big enough to repay loading numba (:data:`LOAD_LINES`), or once the process has
parsed that many lines in smaller batches, and once loaded for every batch of :data:`MIN_LINES` lines
or more; ``SPECDEC_JIT=off`` switches it off (:mod:`specdec_diag.ingest._jit`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import numpy as np
import polars as pl

from specdec_diag.ingest import _jit
from specdec_diag.ingest._textparse import ratio_expr
from specdec_diag.ingest.base import LINE_STRIDE
from specdec_diag.ingest.timestamps import YearAnchor
from specdec_diag.ingest.vllm_blocks import ENGINE
from specdec_diag.ingest.vllm_lines import DEPTH_NOTE, ND_NOTE

#: a batch with this many lines repays loading numba and the kernel (~0.3 s CPU, ~+150 MB RSS, once per
#: process) by itself: the polars path costs ~3 us a line, this one ~0.6 us (256 MB logs: 38 K metric lines
#: in a production-like mix lost 0.35 s with a 20 K threshold, 273 K in the metric-heavy mix gain ~0.7 s)
LOAD_LINES = int(os.environ.get("SPECDEC_VLLM_FAST_LOAD_LINES", "120000"))
#: once loaded, the kernel takes every batch from this size on (tests set both to 0)
MIN_LINES = min(2000, LOAD_LINES)
_loaded: list[bool] = []
#: lines this process has parsed with polars in batches too small to load numba alone: once they
#: reach LOAD_LINES, numba is loaded (ski rental: what polars already spent equals the load cost, so
#: a long series of small batches - the 64 MB pieces of a parallel scan - costs at most twice the best)
_polars_lines = [0]
_broken: list[bool] = []



class Fast:
    """The kernel's window rows, and whether they are in line order with their engines attached
    (vllm._attach_engine then only runs when polars produced windows too: :meth:`tagged` adds
    the ``_proc``/``_eng`` columns it needs)."""

    def __init__(self, frame: pl.DataFrame, ordered: bool, tags: Callable[[], list[pl.Series]]):
        self.frame, self.ordered, self._tags = frame, ordered, tags

    def tagged(self) -> pl.DataFrame:
        return self.frame.with_columns(self._tags())


def split(lines: pl.DataFrame, source: str, anchor: YearAnchor | None, old_version: Callable[[pl.DataFrame], bool],
          iso_dates: Callable[[pl.DataFrame], tuple[int, int]]) -> tuple[Fast | None, pl.DataFrame]:
    """(window rows of the lines the kernel read, the other lines). ``old_version(other lines)``:
    the batch names an engine version whose SpecDecoding definitions differ (vllm_lines.mal_note):
    its SpecDecoding lines then stay with polars. ``iso_dates(other lines)``: how many of them are
    SpecDecoding or throughput lines, and how many of those carry a container (ISO) date."""
    if _broken or lines.height < MIN_LINES or not _jit.available():
        return None, lines
    if not _loaded and lines.height < LOAD_LINES and _polars_lines[0] < LOAD_LINES:
        _polars_lines[0] += lines.height
        return None, lines
    import pyarrow as pa

    from specdec_diag.ingest import vllm_kernel as vk

    arr = lines["text"].cast(pl.Binary).to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_binary())
    _, obuf, dbuf = arr.buffers()
    offs = np.frombuffer(obuf, dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    data = np.frombuffer(dbuf, dtype=np.uint8) if dbuf is not None else np.zeros(0, np.uint8)
    year, amd, at_start = ((anchor.date.year, anchor.date.month * 100 + anchor.date.day, anchor.at_start)
                           if anchor is not None else (0, 0, False))
    line = np.array(lines["line"].to_numpy(), dtype=np.int64)  # writable and contiguous: one compiled signature
    ordered = bool(np.all(line[1:] > line[:-1]))
    try:
        vk.prepare()
        kind, oi, of, ppv, procs, engs = vk.scan_lines(data, offs, line, LINE_STRIDE, year, amd, at_start)
    except Exception as exc:  # noqa: BLE001 - a numba that cannot import or compile: the polars path, once said
        _broken.append(True)
        warnings.warn(f"vLLM line kernel unavailable ({exc!r}); parsing with polars", RuntimeWarning, stacklevel=2)
        return None, lines
    if not _loaded:
        _loaded.append(True)
    if not kind.any():
        return None, lines
    rest = lines.filter(pl.Series(kind == 0))
    if old_version(rest):
        keep = kind[kind > 0] == vk.THR
        kind[kind != vk.THR] = 0
        if not keep.any():
            return None, lines
        oi, of, rest = oi[:, keep], of[:, keep], lines.filter(pl.Series(kind == 0))
    # polars reads container dates of a part (SpecDecoding, throughput lines) when its first or last
    # lines carry them: the kernel's rows follow that only where all of a part's lines do, or none
    iso = oi[vk.ISO_US] != vk.NO_TIME
    part_lines, part_dated = iso_dates(rest)
    dated = bool(iso.all()) and part_dated == part_lines
    if not dated and (iso.any() or part_dated):
        return None, lines
    names = [[bytes(data[a:a + n]).decode() for a, n in tab] for tab in (procs, engs)]
    taken = kind > 0
    kind = kind[taken]
    frame = _rows(line[taken], source, kind, oi, of, ppv, names, anchor is not None or dated, ordered, dated)
    return Fast(frame, ordered, lambda: _tags(oi, kind != vk.THR, names)), rest


def _engine_id(oi: np.ndarray, is_v1: np.ndarray, names: list[list[str]], ordered: bool) -> pl.Series:
    """engine_id: process tag and engine (the line's own, or for a SpecDecoding line the attached one),
    gathered from the few distinct strings."""
    from specdec_diag.ingest import vllm_kernel as vk

    procs, engs = names
    eff = np.where(is_v1, oi[vk.ATTACHED] if ordered else vk.NONE, oi[vk.ENG_ID])
    table = [" ".join(x for x in (p, e) if x is not None) or None for p in [None, *procs] for e in [None, *engs]]
    return pl.Series("engine_id", table, dtype=pl.Utf8).gather((oi[vk.PROC_ID] + 1) * (len(engs) + 1) + eff + 1)


def _tags(oi: np.ndarray, is_v1: np.ndarray, names: list[list[str]]) -> list[pl.Series]:
    """_proc and _eng as the polars path gives them to vllm._attach_engine."""
    from specdec_diag.ingest import vllm_kernel as vk

    procs, engs = names
    proc = pl.Series("_proc", [None, *procs], dtype=pl.Utf8).gather(oi[vk.PROC_ID] + 1)
    eng = pl.Series("_eng", [None, *engs], dtype=pl.Utf8).gather(np.where(is_v1, 0, oi[vk.ENG_ID] + 1))
    return [proc, eng]


def _per_position(ppv: np.ndarray, counts: np.ndarray, is_v1: np.ndarray) -> pl.Series:
    """The per-position lists (null on throughput rows) from the values and per-row counts: one
    2-D array per distinct vector length (one in practice), made lists by polars (a pyarrow list
    array would cost ~0.2 s the first time polars imports one)."""
    starts = np.zeros(len(counts), np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    lengths = np.unique(counts[is_v1]).tolist()
    parts = []
    for c in lengths:
        full = np.zeros((len(counts), c))
        if len(lengths) == 1:
            full[is_v1] = ppv.reshape(-1, c)
        else:
            rows = np.flatnonzero(is_v1 & (counts == c))
            full[rows] = ppv[starts[rows][:, None] + np.arange(c)]
        parts.append((c, pl.Series(full).cast(pl.List(pl.Float64))))
    if not parts:
        return pl.Series("ppl", [None] * len(counts), dtype=pl.List(pl.Float64))
    if len(parts) == 1:
        return pl.select(pl.when(pl.lit(pl.Series(is_v1))).then(pl.lit(parts[0][1]))).to_series().alias("ppl")
    expr = pl.when(pl.lit(False)).then(pl.lit(None, dtype=pl.List(pl.Float64)))
    for c, col in parts:
        expr = expr.when(pl.lit(pl.Series(is_v1 & (counts == c)))).then(pl.lit(col))
    return pl.select(expr).to_series().alias("ppl")


def _rows(line: np.ndarray, source: str, kind: np.ndarray, oi: np.ndarray, of: np.ndarray, ppv: np.ndarray,
          names: list[list[str]], timed: bool, ordered: bool, dated: bool = False) -> pl.DataFrame:
    """The rows vllm._parse_v1 and vllm._parse_throughput build for these lines, in line order."""
    from specdec_diag.ingest import vllm_kernel as vk

    is_v1 = kind != vk.THR
    counts = np.where(is_v1, oi[vk.PP_COUNT], 0)
    ppl = _per_position(ppv, counts, is_v1)
    time = (pl.Series(oi[vk.ISO_US if dated else vk.TIME_US]).cast(pl.Datetime("us")).dt.replace_time_zone("UTC") if timed
            else pl.lit(None, dtype=pl.Datetime("us", "UTC")))
    fmt = pl.Series(["", "vllm-v1-specdecoding-E", "vllm-v1-specdecoding-D", "vllm-v1-throughput"]).gather(kind)
    ints = {name: pl.Series(name, oi[c]) for name, c in (("acc", vk.ACC), ("draft", vk.DRAFT), ("k", vk.K),
                                                         ("nd", vk.ND), ("run", vk.RUN), ("wait", vk.WAIT))}
    floats = {name: pl.Series(name, of[c]) for name, c in (
        ("mal", vk.MAL), ("acc_tps", vk.ACC_TPS), ("draft_tps", vk.DRAFT_TPS), ("gtps", vk.GEN_TPS),
        ("ptps", vk.PROMPT_TPS), ("kv", vk.KV))}
    df = pl.DataFrame([pl.Series("line", line), pl.Series("_v1", is_v1), *ints.values(), *floats.values(),
                       pl.Series("ppl", ppl), _engine_id(oi, is_v1, names, ordered)])
    v1, thr = pl.col("_v1"), ~pl.col("_v1")

    def count(c: str) -> pl.Expr:
        return pl.when(pl.col(c) >= 0).then(pl.col(c))

    win = df.select(
        pl.lit(source).alias("source"), pl.col("line"), pl.lit(ENGINE).alias("engine"), pl.lit(fmt).alias("format"),
        time.alias("time"), pl.col("engine_id"), pl.lit("interval").alias("window"),
        pl.when(pl.col("k") > 0).then(pl.col("k")).alias("k"),
        count("nd").alias("num_drafts"), count("draft").alias("draft_tokens"), count("acc").alias("accepted_tokens"),
        (count("acc") + count("nd")).alias("emitted_tokens"),
        ratio_expr(count("acc"), count("draft")).alias("acceptance_rate"),
        pl.when(v1).then(pl.col("mal")).alias("mean_acceptance_length"),
        pl.col("ppl").alias("per_position_acceptance"),
        pl.when(v1).then(pl.col("acc_tps")).alias("accepted_tps"),
        pl.when(v1).then(pl.col("draft_tps")).alias("drafted_tps"),
        pl.when(thr).then(pl.col("gtps")).alias("gen_tps"), pl.when(thr).then(pl.col("ptps")).alias("prompt_tps"),
        count("run").alias("running_reqs"), count("wait").alias("waiting_reqs"),
        pl.when(thr).then((pl.col("kv") / 100.0).round(6)).alias("kv_usage"),
        pl.lit(None, dtype=pl.Utf8).alias("definition_note"),
    )
    noted = np.flatnonzero(is_v1 & ((oi[vk.DEPTH] >= 0) | (oi[vk.ND_NOTE] == 1)))
    if len(noted):  # dynamic depth or num_drafts from the MAL: rare, written in Python
        notes = []
        for i in noted.tolist():
            parts = [DEPTH_NOTE.format(oi[vk.DEPTH, i], counts[i])] if oi[vk.DEPTH, i] >= 0 else []
            notes += ["; ".join([*parts, ND_NOTE] if oi[vk.ND_NOTE, i] == 1 else parts)]
        win = win.with_columns(win["definition_note"].scatter(noted, pl.Series(notes, dtype=pl.Utf8)))
    return win.set_sorted("line") if ordered else win
