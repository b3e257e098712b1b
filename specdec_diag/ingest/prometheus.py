"""Prometheus text-format snapshots of vLLM V0/V1, SGLang, TGI (docs/log-formats.md §1.4, §2.4, §3.4, §5),
llama-server (its ``llamacpp:spec_decode_*`` counters, vLLM V1 semantics; docs/capture.md) and
trtllm-serve (``trtllm_spec_decode_*``, §6; :mod:`specdec_diag.ingest.prometheus_trtllm`).

A file may hold one scrape (``metrics.prom``) or many concatenated scrapes. Scrapes are told apart by
separator lines carrying a time (``# 2025-06-01T12:00:00Z``, ``=== 2025-06-01 12:00:00 ===``,
``# scrape_time=1748779200``), by ``# EOF``, and, without any separator, by a series repeating (the
n-th occurrence of a series belongs to the n-th scrape); per-sample timestamps give the time too.

Counters become one ``cumulative`` row per scrape and engine, and one ``interval`` row per difference
of successive scrapes (counter resets handled; :func:`finalize` repeats this across files, so a
``before.prom`` / ``after.prom`` pair gives the window in between). SGLang only exports gauges of the
last decode-log window: those are ``interval`` rows as they are.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.ingest import prometheus_trtllm as trt
from specdec_diag.ingest._textparse import (
    INT64_MAX,
    concat,
    counts_problem,
    lines_frame,
    malformed,
    malformed_rows,
    norm_lines,
    ratio,
    reject_windows,
    rows_to_windows,
    split_bad,
)
from specdec_diag.ingest.base import NO_OPTIONS, Parsed, ParseOptions, Source
from specdec_diag.ingest.counters import differences, recompute_differences
from specdec_diag.ingest.definitions import fit_accept_rate_definition
from specdec_diag.schema import MALFORMED_SCHEMA, WINDOW_SCHEMA

FAMILY = "prometheus"
#: line mode (when ``detect`` missed the file) sees only these; whole files go through :func:`parse_file`.
MARKERS = ("vllm:spec_decode", "sglang:spec_accept", "tgi_request_skipped_tokens", "llamacpp:spec_decode",
           "trtllm_spec_decode")
CUM_FORMATS = ("prometheus-vllm-v1", "prometheus-vllm-v0", "prometheus-tgi", "prometheus-llamacpp", trt.FORMAT)

_SAMPLE = r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(?:\s+(-?\d+))?\s*$"
_RELEVANT = r"^(?:vllm:|sglang:|tgi_|llamacpp:|trtllm_)"
_ISO = r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]\d{2}:?\d{2}| ?UTC)?"
_EPOCH = r"(?:time|ts|timestamp|scrape\w*)\s*[=:]\s*(\d{10}(?:\.\d+)?|\d{13})\b"

#: metric (without _total) -> column it feeds
_METRICS = {
    "vllm:spec_decode_num_drafts": "v1_drafts",
    "vllm:spec_decode_num_draft_tokens": "draft",
    "vllm:spec_decode_num_accepted_tokens": "acc",
    "vllm:spec_decode_num_emitted_tokens": "v0_emitted",
    "vllm:spec_decode_efficiency": "v0_eff",
    "vllm:spec_decode_draft_acceptance_rate": "v0_ar",
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:gpu_cache_usage_perc": "kv",
    "vllm:kv_cache_usage_perc": "kv",
    "sglang:spec_accept_length": "sg_al",
    "sglang:spec_accept_rate": "sg_ar",
    "sglang:num_running_reqs": "running",
    "sglang:num_queue_reqs": "waiting",
    "sglang:token_usage": "kv",
    "sglang:gen_throughput": "gen_tps",
    "sglang:spec_num_draft_tokens": "sg_n",  # the active --speculative-num-draft-tokens (2026)
    "sglang:spec_num_steps": "sg_steps",
    "tgi_request_skipped_tokens_sum": "tgi_sum",
    "tgi_request_skipped_tokens_count": "tgi_count",
    "tgi_batch_current_size": "running",
    "tgi_queue_size": "waiting",
    # llama-server (tools/server/server-task.cpp to_metrics): the vLLM V1 counter semantics
    "llamacpp:spec_decode_num_drafts": "lc_drafts",
    "llamacpp:spec_decode_num_draft_tokens": "draft",
    "llamacpp:spec_decode_num_accepted_tokens": "acc",
    "llamacpp:requests_processing": "running",
    "llamacpp:requests_deferred": "waiting",
    **trt.METRICS,
}
_PER_POS = ("vllm:spec_decode_num_accepted_tokens_per_pos", "llamacpp:spec_decode_num_accepted_tokens_per_pos")
_BUCKET = "tgi_request_skipped_tokens_bucket"


def detect(sample: str) -> bool:
    """Text exposition format: TYPE/HELP comments or bare ``vllm:``/``sglang:``/``tgi_`` samples."""
    if "# TYPE " in sample and any(p in sample for p in ("vllm:", "sglang:", "tgi_", "llamacpp:spec_decode",
                                                          "trtllm_spec_decode")):
        return True
    for line in sample.splitlines()[:2000]:
        s = line.strip()
        if s.startswith(MARKERS):
            parts = s.rsplit(maxsplit=2)
            if len(parts) >= 2:
                try:
                    float(parts[-1] if "}" in parts[-2] or len(parts) == 2 else parts[-2])
                    return True
                except ValueError:
                    continue
    return False


def _label(name: str) -> pl.Expr:
    return pl.col("labels").str.extract(r"[{,]\s*" + name + r'="([^"]*)"', 1)


def _classify(lines: pl.DataFrame) -> pl.DataFrame:
    t = pl.col("text").str.slice(0, 4096)
    iso = t.str.extract(_ISO, 1)
    tz = t.str.extract(_ISO, 2)
    epoch = t.str.extract(_EPOCH, 1).cast(pl.Float64, strict=False)
    epoch_s = pl.when(epoch > 1e11).then(epoch / 1000).otherwise(epoch)
    iso_t = pl.when(tz.is_null() | tz.str.contains("Z|UTC")).then(
        iso.str.replace("T", " ")
        .str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False)
        .dt.replace_time_zone("UTC")
    )
    offset = tz.str.replace(":", "").str.strip_chars()
    iso_off = (
        (iso.str.replace("T", " ") + pl.lit(" ") + offset)
        .str.to_datetime("%Y-%m-%d %H:%M:%S %z", strict=False)
        .dt.convert_time_zone("UTC")
    )
    sep_time = pl.coalesce(
        iso_t,
        iso_off,
        pl.from_epoch((epoch_s * 1e6).cast(pl.Int64, strict=False), time_unit="us").dt.replace_time_zone(
            "UTC"
        ),
    )
    is_sample = pl.col("text").str.contains(_SAMPLE)
    is_meta = pl.col("text").str.contains(r"^\s*# (?:HELP|TYPE|UNIT) ")
    return lines.with_columns(
        is_sample.alias("is_sample"),
        (
            (~is_sample & ~is_meta & sep_time.is_not_null()) | pl.col("text").str.contains(r"^\s*# EOF\s*$")
        ).alias("is_sep"),
        pl.when(~is_sample & ~is_meta).then(sep_time).alias("sep_time"),
    )


def _samples(lines: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Relevant samples with their snapshot id, engine id, value and labels; and malformed lines."""
    c = _classify(norm_lines(lines).sort("line"))
    c = c.with_columns(pl.col("is_sep").cum_sum().alias("sep_grp"))
    sep_times = c.filter(pl.col("is_sep")).select(pl.col("sep_grp"), pl.col("sep_time"))
    c = c.drop("sep_time")
    rel = c.filter(pl.col("text").str.strip_chars_start().str.contains(_RELEVANT))
    t = pl.col("text").str.strip_chars()
    rel = rel.with_columns(
        t.str.extract(_SAMPLE, 1).alias("name"),
        t.str.extract(_SAMPLE, 2).alias("labels"),
        t.str.extract(_SAMPLE, 3).alias("raw"),
        t.str.extract(_SAMPLE, 4).cast(pl.Int64, strict=False).alias("ts"),
    ).with_columns(
        pl.col("raw").str.replace(r"^\+?Inf$", "inf").cast(pl.Float64, strict=False).alias("value"),
    )
    # a file whose samples carry timestamps: one without is cut (its value may be the timestamp)
    stamped = rel.height > 2 and rel.select(pl.col("ts").is_not_null().mean()).item() >= 0.9
    rel = rel.with_columns(
        pl.when(pl.lit(stamped) & pl.col("ts").is_null() & pl.col("name").is_not_null())
        .then(pl.lit("sample without the timestamp every other sample carries (cut?)"))
        .otherwise(_sample_problem()).alias("_why"))
    rel, bad = split_bad(rel, pl.col("_why").is_not_null())
    bad_m = malformed(bad, source, pl.col("_why"))
    rel = rel.drop("_why")
    rel = rel.with_columns(pl.col("name").str.replace(r"_total$", "").alias("name"))
    rel = rel.filter(~pl.col("name").str.ends_with("_created"))
    rel = rel.with_columns(
        _label("model_name").alias("model_name"),
        _label("engine").alias("engine_lbl"),
        pl.coalesce(_label("position"), _label("token_position")).cast(pl.Int64, strict=False).alias("position"),
        pl.col("labels")
        .str.extract(r'[{,]\s*le="([^"]*)"', 1)
        .str.replace(r"^\+?Inf$", "inf")
        .cast(pl.Float64, strict=False)
        .alias("le"),
        _label("dp_rank").alias("dp"),
        _label("tp_rank").alias("tp"),
        _label("pp_rank").alias("pp"),
    )
    eid = pl.concat_str(
        [
            pl.col("model_name"),
            pl.lit("engine=") + pl.col("engine_lbl"),
            pl.lit("DP") + pl.col("dp"),
            pl.lit("PP") + pl.col("pp"),
            pl.lit("TP") + pl.col("tp"),
        ],
        separator=" ",
        ignore_nulls=True,
    )
    # series key (name + labels): its n-th occurrence within a separator group is the n-th scrape
    rel = rel.with_columns(
        pl.when(eid == "").then(None).otherwise(eid).alias("engine_id"),
        pl.col("line").cum_count().over(["sep_grp", "name", "labels"]).alias("occ"),
    ).join(sep_times, on="sep_grp", how="left")
    rel = rel.with_columns(pl.struct("sep_grp", "occ").rank("dense").alias("snap"))
    return rel, bad_m


def _sample_problem() -> pl.Expr:
    """Why a relevant line is not a usable sample: no name/value, or a value no counter or gauge of
    ours can hold (NaN, +-Inf, negative, beyond int64): each such line is malformed, never a null."""
    v, raw = pl.col("value"), pl.col("raw").str.slice(0, 40)
    return (
        pl.when(pl.col("name").is_null() | v.is_null())
        .then(pl.lit("not a Prometheus sample line (name{labels} value [timestamp])"))
        .when(~v.is_finite()).then(pl.lit("sample value ") + raw + pl.lit(" is not a finite number"))
        .when(v < 0).then(pl.lit("sample value ") + raw + pl.lit(" is negative"))
        .when(v > float(INT64_MAX)).then(pl.lit("sample value ") + raw + pl.lit(" is beyond the int64 range"))
        .otherwise(pl.lit(None, dtype=pl.Utf8))
    )


def _has(name: str) -> pl.Expr:
    return (pl.col("name") == name).any()


def _val(name: str) -> pl.Expr:
    """Sum of one metric within a group (null when the group lacks it)."""
    return pl.when(_has(name)).then(pl.col("value").filter(pl.col("name") == name).sum())


def _aggregate(rel: pl.DataFrame) -> pl.DataFrame:
    cols: dict[str, list[str]] = {}
    for name, col in _METRICS.items():
        cols.setdefault(col, []).append(name)
    acc = pl.col("name") == "vllm:spec_decode_num_accepted_tokens"
    exprs = [pl.col("line").min(), pl.col("sep_time").first(), pl.col("ts").max().alias("ts"),
             pl.col("line").filter(acc).first().alias("acc_line"), pl.col("text").filter(acc).first().alias("acc_text")]
    for col, names in cols.items():
        exprs.append(pl.coalesce([_val(n) for n in names]).alias(col))
    pp = pl.col("name").is_in(_PER_POS)
    bk = pl.col("name") == _BUCKET
    ta, td = pl.col("name") == trt.PER_POS_ACCEPTED, pl.col("name") == trt.PER_POS_DRAFTED
    exprs += [
        pl.col("value").filter(ta).alias("trt_pp_accepted"), pl.col("position").filter(ta).alias("trt_pos_accepted"),
        pl.col("value").filter(td).alias("trt_pp_drafted"), pl.col("position").filter(td).alias("trt_pos_drafted"),
        pl.col("value").filter(pp).sort_by(pl.col("position").filter(pp)).alias("pp_counts"),
        pl.col("position").filter(pp).sort().alias("pp_pos"),
        pl.col("value").filter(bk).sort_by(pl.col("le").filter(bk)).alias("b_counts"),
        pl.col("le").filter(bk).sort().alias("b_le"),
    ]
    return rel.group_by(["snap", "engine_id"], maintain_order=True).agg(exprs).sort("snap", "line")


def _time(r: dict[str, Any]) -> datetime | None:
    if r["sep_time"] is not None:
        return r["sep_time"]
    if r["ts"] is not None:
        try:
            return datetime.fromtimestamp(r["ts"] / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _int(x: float | None) -> int | None:
    if x is None or not math.isfinite(x) or abs(x) > 2**62:
        return None
    return int(round(x))


def _infer_v0_k(draft: float | None, emitted: float | None, eff: float | None) -> int | None:
    """k from the efficiency gauge: eff = emitted / ((draft/k) * (k+1)); draft is a multiple of k."""
    if not draft or emitted is None or eff is None or not math.isfinite(eff) or eff <= 0:
        return None
    fits = [
        k
        for k in range(1, 65)
        if draft % k == 0 and abs(emitted * k / (draft * (k + 1)) - eff) <= 2e-3 * max(eff, 0.05)
    ]
    return fits[0] if len(fits) == 1 else None


def _rows(r: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """One snapshot of one engine as window rows (none when it carries no speculative metric)."""
    base = {
        "source": source,
        "line": r["line"],
        "time": _time(r),
        "engine_id": r["engine_id"],
        "running_reqs": _int(r["running"]),
        "waiting_reqs": _int(r["waiting"]),
        "kv_usage": r["kv"] if r["kv"] is None or r["kv"] <= 1.0 else r["kv"] / 100,
        "gen_tps": r["gen_tps"],
    }
    if trt.present(r):
        return trt.rows(r, base, _int)
    if r["v1_drafts"] is not None or r["lc_drafts"] is not None:
        return [_vllm_v1_row(r, base)]
    if r["v0_emitted"] is not None or r["v0_eff"] is not None:
        return [_vllm_v0_row(r, base)]
    if r["tgi_count"] is not None:
        return [_tgi_row(r, base)]
    if r["sg_al"] is not None:
        return [{
            **base,
            "engine": "sglang",
            "format": "prometheus-sglang",
            "window": "interval",
            "mean_acceptance_length": r["sg_al"],
            "_ar": r["sg_ar"],
            # N as the server states it, used only for a chain (N = steps + 1); a tree's N counts nodes
            "_n": _int(r["sg_n"]) if r["sg_n"] is not None and r["sg_steps"] is not None
            and _int(r["sg_n"]) == (_int(r["sg_steps"]) or 0) + 1 else None,
        }]
    return []


def _vllm_v1_row(r: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    lc = r["lc_drafts"] is not None  # llama-server: the same counters under its own names
    drafts, draft, acc = _int(r["lc_drafts" if lc else "v1_drafts"]), _int(r["draft"]), _int(r["acc"])
    counts = r["pp_counts"] or []
    pp = [c / drafts for c in counts] if drafts and counts else None
    return {
        **base,
        "engine": "llama.cpp" if lc else "vllm",
        "format": "prometheus-llamacpp" if lc else "prometheus-vllm-v1",
        "window": "cumulative",
        "k": len(counts) or None,
        "num_drafts": drafts,
        "draft_tokens": draft,
        "accepted_tokens": acc,
        "acceptance_rate": ratio(acc, draft),
        "mean_acceptance_length": None if ratio(acc, drafts) is None else 1 + acc / drafts,
        "per_position_acceptance": pp,
        "definition_note": ("llama-server" if lc else "vLLM V1") + " counters since server start (prefix acceptance)",
    }


def _vllm_v0_row(r: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    draft, emitted, acc = _int(r["draft"]), _int(r["v0_emitted"]), _int(r["acc"])
    k = _infer_v0_k(draft, emitted, r["v0_eff"])
    row = {
        **base,
        "engine": "vllm",
        "format": "prometheus-vllm-v0",
        "window": "cumulative",
        "k": k,
        "draft_tokens": draft,
        "emitted_tokens": emitted,
    }
    if k and draft is not None and emitted is not None:
        drafts = draft // k
        prefix = emitted - drafts
        row.update(
            num_drafts=drafts,
            accepted_tokens=prefix,
            acceptance_rate=ratio(prefix, draft),
            mean_acceptance_length=ratio(emitted, drafts),
            definition_note=f"vLLM V0 counts non-prefix accepts: accepted = emitted - drafts "
            f"(prefix), k={k} inferred from the efficiency gauge",
        )
    else:
        row.update(
            accepted_tokens=acc,
            acceptance_rate=ratio(acc, draft),
            definition_note="vLLM V0 non-prefix acceptance (k unknown, not converted): "
            "an upper bound of the prefix acceptance rate",
        )
    return row


def _tgi_row(r: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    count, ssum = _int(r["tgi_count"]), r["tgi_sum"]
    les, bcounts = r["b_le"] or [], r["b_counts"] or []
    finite_le = [le for le in les if le is not None and math.isfinite(le)]
    # the router's buckets are 0, 1, ..., speculate (router/src/server.rs: (0..speculate + 1)): the
    # largest finite bound is k; without buckets (a summary) k stays unknown
    k = int(max(finite_le)) if finite_le and max(finite_le) >= 1 else None
    pp = None
    if k and count:
        cum = dict(zip(les, bcounts, strict=False))
        if all(float(j) in cum for j in range(k)):
            pp = [max(0.0, min(1.0, (count - cum[float(j)]) / count)) for j in range(k)]
    acc = _int(ssum)
    return {
        **base,
        "engine": "tgi",
        "format": "prometheus-tgi",
        "window": "cumulative",
        "k": k,
        "engine_id": r["engine_id"] or "tgi",
        "num_drafts": count,
        "accepted_tokens": acc,
        "draft_tokens": count * k if k and count is not None else None,
        "emitted_tokens": None if acc is None or count is None else acc + count,
        "acceptance_rate": ratio(acc, count * k if k and count is not None else None),
        "mean_acceptance_length": None if ratio(acc, count) is None else 1 + acc / count,
        "per_position_acceptance": pp,
        "definition_note": "TGI skipped_tokens = accepted tokens per step; k = the largest bucket bound "
        "(buckets 0..speculate), drafted = steps x k (assumes every step drafts k)",
    }


def _sglang_rates(rows: list[dict[str, Any]]) -> None:
    """Convert SGLang's accept-rate gauge like its log lines (bonus-including definitions detected)."""
    sg = [r for r in rows if r["format"] == "prometheus-sglang"]
    if not sg:
        return
    frame = pl.DataFrame(
        {"al": [r["mean_acceptance_length"] for r in sg], "ar": [r["_ar"] for r in sg]},
        schema={"al": pl.Float64, "ar": pl.Float64},
    )
    # the server states N itself when it exports sglang:spec_num_draft_tokens (one value throughout)
    stated = {r["_n"] for r in sg if r["_n"]}
    n_stated = stated.pop() if len(stated) == 1 else None
    version, n = fit_accept_rate_definition(frame, n_stated, False)
    # the length and a stated chain N give the rate whatever definition the printed rate follows
    n = n_stated if n_stated and n_stated >= 2 else (n if n and n >= 2 else None)
    for r in sg:
        al = r["mean_acceptance_length"]
        if n and al is not None and math.isfinite(al):
            r["k"] = n - 1
            r["acceptance_rate"] = min(1.0, max(0.0, (al - 1) / (n - 1)))
        elif version == "B":
            r["acceptance_rate"] = r["_ar"]
        what = {"A": "includes the bonus (accept_len/N)", "B": "excludes the bonus"}.get(
            version or "", "fits no known definition"
        )
        r["definition_note"] = f"SGLang gauges of the last decode-log window; accept rate {what}" + (
            f", N={n}" + (" (sglang:spec_num_draft_tokens)" if n == n_stated else "")
            + ": acceptance_rate=(accept_len-1)/(N-1)" if n else ""
        )


def parse(lines: pl.DataFrame, source: str, options: ParseOptions = NO_OPTIONS) -> Parsed:
    rel, bad = _samples(lines, source)
    if rel.height == 0:
        return Parsed(malformed=bad)
    snaps = _aggregate(rel).to_dicts()
    order_bad = _reject_accepted(snaps)
    rows = [x for r in snaps for x in _rows(r, source)]
    _sglang_rates(rows)
    for r in rows:
        r.pop("_ar", None)
        r.pop("_n", None)
    cum = rows_to_windows(rows)
    windows = concat([cum, differences(cum.filter(pl.col("window") == "cumulative"))], WINDOW_SCHEMA)
    windows, net = reject_windows(windows, source, norm_lines(lines))
    return Parsed(
        windows=windows.sort("line"),
        malformed=concat([bad, malformed_rows(order_bad, source), net], MALFORMED_SCHEMA).sort("line"),
    )


def _reject_accepted(snaps: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """A snapshot whose accepted-tokens counter exceeds its draft-tokens counter: the accepted sample
    is malformed at its line and left out (the snapshot keeps its other values)."""
    out = []
    for r in snaps:
        why = counts_problem(_int(r["acc"]), _int(r["draft"]))
        if why and r["acc_line"] is not None:
            out.append((r["acc_line"], why, r["acc_text"] or ""))
            r["acc"] = None
    return out


def parse_file(path: Path, source: str) -> Parsed:
    """Whole-file parse: separator lines (times) must be seen even though they carry no metric."""
    return parse(lines_frame(path), source)


def finalize(windows: pl.DataFrame) -> pl.DataFrame:
    """Difference successive snapshots of one engine across all files (idempotent)."""
    return recompute_differences(windows, CUM_FORMATS)


SOURCE = Source(family=FAMILY, markers=MARKERS, detect=detect, parse=parse, parse_file=parse_file, finalize=finalize)
