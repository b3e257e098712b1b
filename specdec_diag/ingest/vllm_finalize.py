"""vLLM cross-line work, run once over the vLLM windows of all files after every piece is parsed:
SpecDecoding windows whose throughput line fell in an earlier batch get their engine, and V0's
cumulative counters become per-window differences (docs/log-formats.md §1). Split from
:mod:`specdec_diag.ingest.vllm`, which parses the lines.
"""

from __future__ import annotations

import polars as pl

from specdec_diag.ingest._textparse import ratio_expr, reject_windows
from specdec_diag.ingest.counters import differences

_ENG_RX = r"(Engine \d+|\d+ Engines Aggregated)$"


def _repair_engines(w: pl.DataFrame) -> pl.DataFrame:
    """Parse attaches engines within a batch of lines; a SpecDecoding row whose throughput line fell
    in the previous batch (or a previous cached piece) is matched here with an as-of join on the
    line number, per file and process. Touches only those rows, so huge tables are not copied."""
    spec_missing = (pl.col("format").str.starts_with("vllm-v1-specdecoding")
                    & ~pl.col("engine_id").fill_null("").str.contains("Engine", literal=True))
    thr_tagged = (pl.col("format") == "vllm-v1-throughput") & pl.col("engine_id").fill_null("").str.contains(
        "Engine", literal=True)
    flags = w.select(spec_missing.any().alias("m"), thr_tagged.any().alias("t")).row(0)
    if not (flags[0] and flags[1]):
        return w
    proc = pl.col("engine_id").str.extract(r"^(.*? pid=\d+)", 1).fill_null("")
    idx = w.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_i"), "source", "line", "format", "engine_id")
    need = idx.filter(spec_missing).select("_i", "source", "line", proc.alias("_p")).sort("line")
    thr = (idx.filter(thr_tagged).select("source", "line", proc.alias("_p"),
                                        pl.col("engine_id").str.extract(_ENG_RX, 1).alias("_e")).sort("line"))
    got = need.join_asof(thr, on="line", by=["source", "_p"], strategy="backward", check_sortedness=False)
    got = got.filter(pl.col("_e").is_not_null())
    if not got.height:
        return w
    fill = got.select(pl.concat_str([pl.col("_p").replace("", None), pl.col("_e")], separator=" ",
                                    ignore_nulls=True))
    engine_id = w["engine_id"].clone().scatter(got["_i"], fill.to_series())
    return w.with_columns(engine_id)


def _v0_note(_own: str | None, first: bool, reset: bool) -> str:
    """The note of a V0 interval row (replaces the cumulative row's note, which quotes the engine's numbers)."""
    when = (" (first record: counts since server start)" if first
            else " (counters went down: server restart, counts since it)" if reset else "")
    return f"difference of vLLM V0 cumulative counters{when}; accepted_tokens = emitted - num_drafts (prefix acceptance)"


def finalize(windows: pl.DataFrame) -> pl.DataFrame:
    """Per file: attach each V1 SpecDecoding window to the engine of the throughput line logged just
    before it by the same process, and turn V0 cumulative counters into per-window differences (a
    counter going down means the server restarted: that window counts from zero; the first line
    counts since server start)."""
    if windows.height == 0:
        return windows
    w = _repair_engines(windows)
    cum = w.filter((pl.col("window") == "cumulative") & pl.col("format").str.starts_with("vllm-v0-spec"))
    if not cum.height:
        return w
    iv = differences(cum, ("source", "engine_id"), since_start=True, time_rates=False, note=_v0_note)
    # V0 defines the mean acceptance length from its emitted counter (as the cumulative rows do)
    iv = iv.with_columns(ratio_expr(pl.col("emitted_tokens"), pl.col("num_drafts")).alias("mean_acceptance_length"))
    iv, _ = reject_windows(iv, "")  # a pair breaking accepted <= drafted is never shown
    iv = iv.select(w.columns).cast(dict(w.schema))
    # each interval row goes right after its cumulative row (V0 logs are small: a sort is fine here)
    out = pl.concat([w.with_columns(pl.lit(0, dtype=pl.Int8).alias("_k")),
                     iv.with_columns(pl.lit(1, dtype=pl.Int8).alias("_k"))])
    return out.sort("source", "line", "_k", maintain_order=True).drop("_k")


