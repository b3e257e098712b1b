"""The compiled path of :func:`specdec_diag.ingest.vllm.parse` for big batches: the kernel of
:mod:`specdec_diag.ingest.vllm_kernel` reads the dominant line shapes (SpecDecoding variants E/D, the
V1 throughput line) from the batch's text buffer, and their window rows are built here from its
numeric columns with a few polars expressions; every other line goes on through the polars path.
The rows are those the polars path gives (tests/test_ingest_vllm_fast.py compares both).

Used for batches of at least :data:`MIN_LINES` lines (numba's import costs ~0.25 s per process);
``SPECDEC_JIT=off`` switches it off (:mod:`specdec_diag.ingest._jit`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from specdec_diag.ingest import _jit
from specdec_diag.ingest._textparse import ratio_expr
from specdec_diag.ingest.definitions import VLLM_MAL_BONUS_SINCE, version_at_least
from specdec_diag.ingest.timestamps import YearAnchor
from specdec_diag.ingest.vllm_blocks import ENGINE

#: batches with fewer lines take the polars path only (tests set it to 0)
MIN_LINES = int(os.environ.get("SPECDEC_VLLM_FAST_MIN_LINES", "20000"))

_ND_NOTE = "num_drafts inferred from the rounded mean acceptance length (approximate)"
_DEPTH_NOTE = ("dynamic speculative depth: k = current depth {} at the log line; the per-position vector has {} "
               "entries (the maximum depth)")


def split(lines: pl.DataFrame, source: str, anchor: YearAnchor | None,
          old_version: Callable[[pl.DataFrame], bool]) -> tuple[list[pl.DataFrame], pl.DataFrame]:
    """(window frames of the lines the kernel read, the other lines). ``old_version(other lines)``:
    the batch names an engine version whose SpecDecoding definitions differ (vllm_lines.mal_note):
    its SpecDecoding lines then stay with polars."""
    if lines.height < MIN_LINES or not _jit.available():
        return [], lines
    import pyarrow as pa

    from specdec_diag.ingest import vllm_kernel as vk

    vk.prepare()
    arr = lines["text"].cast(pl.Binary).to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_binary())
    _, obuf, dbuf = arr.buffers()
    offs = np.frombuffer(obuf, dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    data = np.frombuffer(dbuf, dtype=np.uint8) if dbuf is not None else np.zeros(0, np.uint8)
    year, amd, at_start = ((anchor.date.year, anchor.date.month * 100 + anchor.date.day, anchor.at_start)
                           if anchor is not None else (0, 0, False))
    kind, oi, of, ppv, ppo = vk.scan_lines(data, offs, year, amd, at_start)
    if not kind.any():
        return [], lines
    if old_version(lines.filter(pl.Series(kind == 0))):
        kind[kind != vk.THR] = 0
    out = []
    v1 = (kind == vk.V1_E) | (kind == vk.V1_D)
    if v1.any():
        counts = np.diff(ppo)[v1]
        out.append(_v1_rows(lines.filter(pl.Series(v1)), source, kind[v1], oi[v1], of[v1], ppv[: counts.sum()],
                            counts, anchor is not None))
    thr = kind == vk.THR
    if thr.any():
        out.append(_thr_rows(lines.filter(pl.Series(thr)), source, oi[thr], of[thr], anchor is not None))
    return out, lines.filter(pl.Series(kind == 0))


def _common(df: pl.DataFrame, source: str, oi: np.ndarray, timed: bool) -> pl.DataFrame:
    """line, text, time, proc (the tag as the polars path cuts it from the text)."""
    proc = pl.when(pl.col("_pl") >= 0).then(pl.col("text").str.slice(pl.col("_ps"), pl.col("_pl")))
    time = (pl.Series(oi[:, 2]).cast(pl.Datetime("us")).dt.replace_time_zone("UTC") if timed
            else pl.lit(None, dtype=pl.Datetime("us", "UTC")))
    return df.with_columns(pl.Series("_ps", oi[:, 0]), pl.Series("_pl", oi[:, 1])).with_columns(
        time.alias("time"), proc.alias("proc"))


def _base(source: str, fmt: pl.Expr, engine_id: pl.Expr) -> list[pl.Expr]:
    return [pl.lit(source).alias("source"), pl.col("line"), pl.lit(ENGINE).alias("engine"), fmt.alias("format"),
            pl.col("time"), engine_id.alias("engine_id"), pl.lit("interval").alias("window")]


def _v1_rows(df: pl.DataFrame, source: str, kind: np.ndarray, oi: np.ndarray, of: np.ndarray, ppv: np.ndarray,
             counts: np.ndarray, timed: bool) -> pl.DataFrame:
    """The rows vllm._parse_v1 builds for these lines (all checks passed in the kernel)."""
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    import pyarrow as pa

    ppl = pl.Series("ppl", pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(ppv)))
    df = _common(df, source, oi, timed).with_columns(
        pl.Series("_kind", kind), pl.Series("acc", oi[:, 3]), pl.Series("draft", oi[:, 4]),
        pl.Series("k", oi[:, 6]), pl.Series("nd", oi[:, 7]), pl.Series("mal", of[:, 0]),
        pl.Series("acc_tps", of[:, 1]), pl.Series("draft_tps", of[:, 2]), ppl)
    nd = pl.when(pl.col("nd") >= 0).then(pl.col("nd"))
    win = df.select(
        *_base(source, pl.when(pl.col("_kind") == 1).then(pl.lit("vllm-v1-specdecoding-E"))
               .otherwise(pl.lit("vllm-v1-specdecoding-D")), pl.col("proc")),
        pl.when(pl.col("k") > 0).then(pl.col("k")).alias("k"),
        nd.alias("num_drafts"),
        pl.col("draft").alias("draft_tokens"),
        pl.col("acc").alias("accepted_tokens"),
        (pl.col("acc") + nd).alias("emitted_tokens"),
        ratio_expr(pl.col("acc"), pl.col("draft")).alias("acceptance_rate"),
        pl.col("mal").alias("mean_acceptance_length"),
        pl.col("ppl").alias("per_position_acceptance"),
        pl.col("acc_tps").alias("accepted_tps"),
        pl.col("draft_tps").alias("drafted_tps"),
        pl.lit(None, dtype=pl.Utf8).alias("definition_note"),
        pl.col("proc").alias("_proc"),
    )
    noted = np.flatnonzero((oi[:, 5] >= 0) | (oi[:, 8] == 1))
    if len(noted):  # dynamic depth or num_drafts from the MAL: rare, written in Python
        notes = []
        for i in noted.tolist():
            parts = [_DEPTH_NOTE.format(oi[i, 5], counts[i])] if oi[i, 5] >= 0 else []
            notes += ["; ".join([*parts, _ND_NOTE] if oi[i, 8] == 1 else parts)]
        col = win["definition_note"].scatter(noted, pl.Series(notes, dtype=pl.Utf8))
        win = win.with_columns(col)
    return win


def _thr_rows(df: pl.DataFrame, source: str, oi: np.ndarray, of: np.ndarray, timed: bool) -> pl.DataFrame:
    """The rows vllm._parse_throughput builds for these lines (V1 shape, KV usage, no optional field)."""
    eng = pl.when(pl.col("_el") >= 0).then(pl.col("text").str.slice(pl.col("_es"), pl.col("_el")))
    df = _common(df, source, oi, timed).with_columns(
        pl.Series("_es", oi[:, 9]), pl.Series("_el", oi[:, 10]), pl.Series("run", oi[:, 3]),
        pl.Series("wait", oi[:, 4]), pl.Series("ptps", of[:, 0]), pl.Series("gtps", of[:, 1]),
        pl.Series("kv", of[:, 2])).with_columns(eng.alias("eng"))
    return df.select(
        *_base(source, pl.lit("vllm-v1-throughput"),
               pl.when(pl.col("eng").is_not_null())
               .then(pl.concat_str([pl.col("proc"), pl.col("eng")], separator=" ", ignore_nulls=True))
               .otherwise(pl.col("proc"))),
        pl.col("gtps").alias("gen_tps"), pl.col("ptps").alias("prompt_tps"),
        pl.col("run").alias("running_reqs"), pl.col("wait").alias("waiting_reqs"),
        (pl.col("kv") / 100.0).round(6).alias("kv_usage"),
        pl.lit(None, dtype=pl.Utf8).alias("definition_note"),
        pl.col("proc").alias("_proc"), pl.col("eng").alias("_eng"),
    )


def old_version_named(texts: list[str], named: Any) -> bool:
    """Whether a startup line names an engine version before the MAL definition change."""
    from specdec_diag.ingest.vllm_lines import vllm_version

    for t in texts:
        if named.search(t):
            v = vllm_version([t])
            if v is not None and not version_at_least(v, VLLM_MAL_BONUS_SINCE):
                return True
    return False
