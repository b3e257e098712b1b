"""Derived frames for the dashboard pages: chart series, split tables, engine context, the noise of a
comparison. Each is cached with ``st.cache_data`` by the loaded directory's (or run's) key, the heavy
ingest result passed as an ``_underscore`` argument that is not hashed (docs/dashboard.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import streamlit as st

from specdec_diag.schema import trace_temperature

if TYPE_CHECKING:
    from specdec_diag.ingest.base import IngestResult

#: points per chart series; longer series are bucketed (draft-weighted), see bucket()
MAX_POINTS = 2000


# ---------------------------------------------------------------------------------------------
# derived frames (cached by key; the heavy object is an underscore argument, not hashed)
# ---------------------------------------------------------------------------------------------


SERIES_SCHEMA = {"series": pl.Utf8, "x": pl.Float64, "y": pl.Float64, "axis": pl.Utf8}


def _bucket_groups(df: pl.DataFrame, keys: list[str], max_points: int, first: tuple[str, ...] = ()) -> pl.DataFrame:
    """Per group of ``keys`` (rows already in order), at most ``max_points`` consecutive buckets: x of
    the bucket's first row, y the w-weighted mean (plain mean when the weights sum to 0), ``_n`` rows."""
    size = (pl.len().over(keys) + max_points - 1) // max_points
    return (df.with_columns((pl.int_range(pl.len()).over(keys) // size).alias("_b"))
            .group_by([*keys, "_b"], maintain_order=True)
            .agg(pl.col("x").first(),
                 pl.when(pl.col("w").sum() > 0).then((pl.col("y") * pl.col("w")).sum() / pl.col("w").sum())
                 .otherwise(pl.col("y").mean()).alias("y"),
                 *[pl.col(c).first() for c in first], pl.len().alias("_n"))
            .drop("_b"))


def bucket(df: pl.DataFrame, max_points: int, weight: str | None = None) -> pl.DataFrame:
    """One series (columns x, y, and ``weight``) in at most ``max_points`` buckets: the rule of
    :func:`render.charts.downsample` (tested against it), done in polars because a 1 GB log has a
    million windows."""
    d = df.select("x", "y", (pl.col(weight) if weight else pl.lit(1.0)).cast(pl.Float64).alias("w"),
                  pl.lit(0).alias("_k"))
    return _bucket_groups(d, ["_k"], max_points).select("x", "y")


def _timed(df: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Rows in time order per series with ``x``: seconds since the series' first record when every
    record has a time, else the record's index (files from different days share one axis), and
    ``_t`` saying which."""
    df = df.with_columns([pl.col(k).fill_null("") for k in keys]).sort([*keys, "time", "line"], nulls_last=True)
    has_time = pl.col("time").null_count().over(keys) == 0
    secs = (pl.col("time") - pl.col("time").min().over(keys)).dt.total_microseconds().cast(pl.Float64) / 1e6
    idx = pl.int_range(pl.len()).over(keys).cast(pl.Float64)
    return df.with_columns(pl.when(has_time).then(secs).otherwise(idx).alias("x"), has_time.alias("_t"))


AXIS = {True: "seconds since the file's first record", False: "record # in the file (no timestamps)"}


def _named(b: pl.DataFrame, extra: tuple[str, ...] = ()) -> pl.DataFrame:
    """Bucketed rows with the series' display name and axis label."""
    names = {(src, eid): f"{eid or eng or ''} · {Path(str(src)).name}"
             for src, eid, eng in b.select("source", "engine_id", "engine").unique().rows()}
    keys = pl.DataFrame({"source": [k[0] for k in names], "engine_id": [k[1] for k in names],
                         "series": list(names.values())}, schema={"source": pl.Utf8, "engine_id": pl.Utf8,
                                                                 "series": pl.Utf8})
    return (b.join(keys, on=["source", "engine_id"], how="left", maintain_order="left")
            .with_columns(pl.col("_t").replace_strict(AXIS, return_dtype=pl.Utf8).alias("axis"))
            .select(*extra, *SERIES_SCHEMA))


def _series_frame(name: str, xs: list[Any], ys: list[Any], axis: str) -> pl.DataFrame:
    return pl.DataFrame({"series": [name] * len(xs), "x": xs, "y": ys, "axis": [axis] * len(xs)},
                        schema=SERIES_SCHEMA)


@st.cache_data(show_spinner=False, max_entries=32)
def acceptance_series(key: str, _result: IngestResult, max_points: int = MAX_POINTS) -> tuple[pl.DataFrame, list[str]]:
    """Acceptance rate over time, one series per (engine_id, file): the engine's per-window
    accepted/drafted (bonus excluded), interval/request windows only (cumulative totals are not a
    time series). Trace steps give one series per trace over step index. Long series are bucketed
    (draft-weighted, by render.charts.downsample)."""
    from specdec_diag.render.charts import downsample

    frames: list[pl.DataFrame] = []
    notes: list[str] = []
    w = _result.windows
    if w.height:
        w = w.filter(pl.col("acceptance_rate").is_not_null() & pl.col("window").fill_null("interval")
                     .is_in(["interval", "request"]))
    if w.height:
        keys = ["source", "engine_id"]
        d = _timed(w, keys).select(*keys, "engine", "x", "_t", pl.col("acceptance_rate").alias("y"),
                                   pl.when(pl.col("draft_tokens") > 0).then(pl.col("draft_tokens"))
                                   .otherwise(1).cast(pl.Float64).alias("w"))
        b = _bucket_groups(d, keys, max_points, ("engine", "_t"))
        counts = b.group_by(keys, maintain_order=True).agg(pl.col("_n").sum(), pl.len().alias("_m"))
        for src, eid, n, m in counts.rows():
            if m < n:
                notes.append(f"{eid or ''} · {Path(str(src)).name}: {n:,} windows shown as {m:,} draft-weighted "
                             "buckets")
        frames.append(_named(b))
    s = _result.steps
    if s.height:
        s = s.filter(pl.col("gamma_drafted") >= 1)
        for (src,), g in s.group_by(["source"], maintain_order=True):
            g = g.sort(["request", "step"], nulls_last=True)
            xs = [float(i) for i in range(g.height)]
            ys = (g["n_accepted"] / g["gamma_drafted"]).to_list()
            ws = g["gamma_drafted"].cast(pl.Float64).to_list()
            dx, dy = downsample(xs, ys, ws, min(max_points, max(1, g.height // 4)))
            name = f"trace · {Path(str(src)).name}"
            notes.append(f"{name}: {g.height:,} steps in {len(dx):,} draft-weighted buckets")
            frames.append(_series_frame(name, dx, dy, "step # in the trace (requests in order)"))
    return (pl.concat(frames) if frames else pl.DataFrame(schema=SERIES_SCHEMA)), notes


SPLITS = ("file", "engine / process", "temperature", "context length", "request")


def _trace_temperatures(result: IngestResult) -> dict[str, float | None]:
    """Each trace's sampling temperature (greedy = 0), by source: one definition, schema's."""
    return {str(h.get("source")): trace_temperature(h) for h in result.headers or []}


@st.cache_data(show_spinner=False, max_entries=32)
def split_table(key: str, _result: IngestResult, by: str, buckets: int = 8) -> pl.DataFrame:
    """Acceptance split by a category; each group's numbers come from analysis.metrics on the
    group's own rows (windows and trace steps kept apart: their definitions match, their units don't)."""
    from specdec_diag.analysis import metrics

    rows: list[dict[str, Any]] = []

    def add(kind: str, label: Any, table: pl.DataFrame) -> None:
        rows.append({
            "group": str(label), "from": kind,
            "drafted tokens": metrics.draft_tokens(table),
            "acceptance rate": metrics.acceptance_rate(table),
            "mean acceptance length": metrics.mean_acceptance_length(table),
        })

    w = metrics.aggregation_rows(_result.windows)
    s = _result.steps.filter(pl.col("gamma_drafted") >= 1) if _result.steps.height else _result.steps
    if by == "file":
        for (src,), g in w.group_by(["source"], maintain_order=True):
            add("windows", src, g)
        for (src,), g in s.group_by(["source"], maintain_order=True):
            add("steps", src, g)
    elif by == "engine / process":
        for (eng, eid), g in w.group_by(["engine", "engine_id"], maintain_order=True):
            add("windows", f"{eng} {eid or ''}".strip(), g)
        if s.height:
            add("steps", "specdec-diag traces", s)
    elif by == "temperature":
        for (t,), g in w.filter(pl.col("temperature").is_not_null()).group_by(["temperature"]):
            add("windows", f"T={t:g}", g)
        temps = _trace_temperatures(_result)
        if s.height:
            s2 = s.with_columns(pl.col("source").replace_strict(temps, default=None, return_dtype=pl.Float64)
                                .alias("_t"))
            for (t,), g in s2.group_by(["_t"]):
                add("steps", "T=?" if t is None else f"T={t:g}", g.drop("_t"))
    elif by == "context length":
        for kind, table in (("windows", w.filter(pl.col("context_len").is_not_null())), ("steps", s)):
            if table.height == 0:
                continue
            lo, hi = int(table["context_len"].min()), int(table["context_len"].max())
            width = max(1, -(-(hi - lo + 1) // buckets))
            t2 = table.with_columns(((pl.col("context_len") - lo) // width).alias("_b"))
            for (b,), g in t2.sort("_b").group_by(["_b"], maintain_order=True):
                a = lo + int(b) * width
                add(kind, f"{a}–{a + width - 1}", g.drop("_b"))
    elif by == "request":
        for (r,), g in w.filter(pl.col("request").is_not_null()).group_by(["request"], maintain_order=True):
            add("windows", r, g)
        for (src, r), g in s.group_by(["source", "request"], maintain_order=True):
            add("steps", f"{Path(str(src)).name} #{r}", g)
    schema = {"group": pl.Utf8, "from": pl.Utf8, "drafted tokens": pl.Int64, "acceptance rate": pl.Float64,
              "mean acceptance length": pl.Float64}
    df = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    return df.filter(pl.col("drafted tokens").fill_null(0) > 0)


ENGINE_COLUMNS = ("running_reqs", "waiting_reqs", "kv_usage", "gen_tps")


@st.cache_data(show_spinner=False, max_entries=32)
def engine_context(key: str, _result: IngestResult, max_points: int = MAX_POINTS) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Batch, queue, KV usage and throughput over time per (engine_id, file), bucketed to
    ``max_points``; and per file the share of windows that ran under CUDA graphs."""

    schema = {"metric": pl.Utf8, **SERIES_SCHEMA}
    w = _result.windows
    frames = []
    graphs = pl.DataFrame(schema={"file": pl.Utf8, "windows": pl.Int64, "cuda graph share": pl.Float64})
    if w.height == 0:
        return pl.DataFrame(schema=schema), graphs
    # one pass: buckets over each series' rows, each metric the mean of its non-null values in a bucket
    keys = ["source", "engine_id"]
    d = _timed(w.filter(pl.any_horizontal([pl.col(c).is_not_null() for c in ENGINE_COLUMNS])), keys)
    if d.height:
        size = (pl.len().over(keys) + max_points - 1) // max_points
        b = (d.with_columns((pl.int_range(pl.len()).over(keys) // size).alias("_b"))
             .group_by([*keys, "_b"], maintain_order=True)
             .agg(pl.col("x").first(), pl.col("engine").first(), pl.col("_t").first(),
                  *[pl.col(c).cast(pl.Float64).mean() for c in ENGINE_COLUMNS]))
        for c in ENGINE_COLUMNS:
            part = b.filter(pl.col(c).is_not_null())
            if part.height:
                frames.append(_named(part.with_columns(pl.col(c).alias("y"), pl.lit(c).alias("metric")), ("metric",)))
    cg = w.filter(pl.col("cuda_graph").is_not_null())
    if cg.height:
        graphs = (cg.group_by("source", maintain_order=True)
                  .agg(pl.len().cast(pl.Int64).alias("windows"),
                       pl.col("cuda_graph").cast(pl.Float64).mean().alias("cuda graph share"))
                  .rename({"source": "file"}))
    return (pl.concat(frames) if frames else pl.DataFrame(schema=schema)), graphs


BLOCKS = 2000


def blocks(units: pl.DataFrame) -> pl.DataFrame:
    """Consecutive windows summed into at most BLOCKS blocks before resampling: a block bootstrap,
    which also respects the autocorrelation of neighbouring windows and keeps a million-window log
    to a fraction of a second."""
    if units.height <= BLOCKS:
        return units
    size = -(-units.height // BLOCKS)
    return (units.with_columns((pl.int_range(pl.len()) // size).alias("_b"))
            .group_by("_b", maintain_order=True).agg(pl.col("drafted").sum(), pl.col("accepted").sum())
            .select("drafted", "accepted"))


@st.cache_data(show_spinner=False, max_entries=16)
def compare_noise(key_a: str, key_b: str, _a: Any, _b: Any) -> dict[str, Any]:
    """Bootstrap intervals (analysis.gate) of each pooled acceptance rate and of their difference B - A."""
    from specdec_diag.analysis import gate

    ua = blocks(gate.acceptance_units(_a.result.windows, _a.result.steps))
    ub = blocks(gate.acceptance_units(_b.result.windows, _b.result.steps))
    out: dict[str, Any] = {"units_a": ua.height, "units_b": ub.height,
                           "ci_a": gate.bootstrap_rate(ua), "ci_b": gate.bootstrap_rate(ub), "ci_diff": None}
    if ua.height >= 2 and ub.height >= 2:
        out["ci_diff"] = gate.bootstrap_diff(ub, ua)
    return out


def warm(loaded: Any) -> None:
    """Compute the pages' default derived frames (same calls as the pages, so the same cache entries)
    in a background thread for large inputs, so the first visit to each page is a cache hit."""
    try:
        acceptance_series(loaded.key, loaded.result)
        split_table(loaded.key, loaded.result, SPLITS[0])
        engine_context(loaded.key, loaded.result)
        compare_noise(loaded.key, loaded.key, loaded, loaded)
    except Exception:  # noqa: BLE001 - the page computes it again and shows any error itself
        pass
    finally:
        loaded.warmed.set()
