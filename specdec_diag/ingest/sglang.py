"""SGLang scheduler logs: ``Decode batch`` / ``Prefill batch`` lines and the speculative settings
printed at startup (docs/log-formats.md §3).

SGLang's ``accept len`` already is the mean acceptance length (bonus included). Its ``accept rate``
changed meaning between builds: version A (Oct 2025 - early 2026) divides the bonus-including count
by ``num_draft_tokens`` (floor 1/N even when nothing is accepted), version B (2026) excludes the
bonus, and sglang-jax (lines with ``#cache_miss``) divides by ``num_steps``. The version is detected
from the numbers themselves (``ar = al/N`` vs ``ar = (al-1)/(N-1)``) and every row is converted to
``acceptance_rate = (accept_len - 1) / k``; the conversion is written in ``definition_note``.
"""

from __future__ import annotations

import re

import polars as pl

from specdec_diag.ingest._textparse import (
    INT,
    INT64_MAX,
    NUM,
    concat,
    configs,
    extract,
    malformed,
    norm_lines,
    reject_windows,
)
from specdec_diag.ingest.base import NO_OPTIONS, Parsed, ParseOptions, Source
from specdec_diag.ingest.definitions import (
    SGLANG_RATE_FIX_SINCE,
    fit_accept_rate_definition,
    sglang_rate_version,
)
from specdec_diag.ingest.sglang_banner import convert_per_banner
from specdec_diag.ingest.sglang_requests import MARKER as META_MARKER
from specdec_diag.ingest.sglang_requests import parse_requests
from specdec_diag.schema import CONFIG_SCHEMA, MALFORMED_SCHEMA, WINDOW_SCHEMA, conform_windows

FAMILY = "sglang"
ENGINE = "sglang"
MARKERS = (
    "Decode batch",
    "Prefill batch",
    "server_args=",
    "ServerArgs(",
    "--speculative-",
    "--cuda-graph-max-bs",
    META_MARKER,
)

_DETECT = ("Decode batch", "Prefill batch", "ServerArgs(", "sglang.launch_server", "sglang.srt", "sgl_jax",
           '"spec_verify_ct"', "'spec_verify_ct'")

# Prefix: "[2025-10-01 12:00:00 TP0] " / "[... DP0 TP0] " / "[...] ";
# a fork's "2025-12-04 20:35:53 INFO 151972 [".
_TS_BRACKET = r"\[(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:[.,]\d+)?(?: ([A-Z]{2,3}\d+(?: [A-Z]{2,3}\d+)*))?\]"
_TS_FORK = r"^(?:\S+\s+\|\s+)?(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:[.,]\d+)? [A-Z]+ (\d+) \["
# a Ray actor's prefix, "(SGLangEngine pid=111711, ip=10.15.36.1) ": several engines share rank TP0
_ACTOR = r"\(([A-Za-z][\w.\-]* pid=\d+)(?:, ip=[^)\s]*)?\)"

#: decode/prefill fields: column -> (label that must be present, value pattern, dtype)
_END = r"(?:[,\s%\]]|$)"  # a number must end at a delimiter: "0.x" is not 0
_FIELDS: dict[str, tuple[str, str, pl.DataType]] = {
    "running_reqs": ("#running-req:", r"#running-req: " + INT + _END, pl.Int64),
    "tokens": ("#token:", r"#token: " + INT + _END, pl.Int64),
    "full_tokens": ("#full token:", r"#full token: " + INT + _END, pl.Int64),
    "usage": (", token usage:", r", token usage: " + NUM + _END, pl.Float64),
    "full_usage": ("full token usage:", r"full token usage: " + NUM + _END, pl.Float64),
    "al": ("accept len:", r"accept len: " + NUM + _END, pl.Float64),
    "ar": ("accept rate:", r"accept rate: " + NUM + _END, pl.Float64),
    "gen_tps": ("gen throughput (token/s):", r"gen throughput \(token/s\): " + NUM + _END, pl.Float64),
    "waiting_reqs": ("#queue-req:", r"#queue-req: " + INT + _END, pl.Int64),
    "prompt_tps": ("input throughput (token/s):", r"input throughput \(token/s\): " + NUM + _END, pl.Float64),
    "new_tokens": ("#new-token:", r"#new-token: " + INT + _END, pl.Int64),
    "cache_miss": ("#cache_miss:", r"#cache_miss: " + INT + _END, pl.Int64),
    "transfer": ("#transfer-req:", r"#transfer-req: " + INT + _END, pl.Int64),
}
_GRAPH = r"\b(?:cuda|cpu|npu) graph: (True|False)\b"

_SERVER_KEYS = (
    "model_path",
    "served_model_name",
    "tp_size",
    "dp_size",
    "pp_size",
    "cuda_graph_max_bs",
    "disable_cuda_graph",
    "max_running_requests",
    "disaggregation_mode",
    "decode_log_interval",
    "enable_dp_attention",
    "attention_backend",
    "page_size",
    "chunked_prefill_size",
    "mem_fraction_static",
)
_KV = re.compile(r"(\w+)=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\[[^\]]*\]|\{[^}]*\}|[^,()\s]+)")
_CLI = re.compile(
    r"--(speculative-[\w-]+|cuda-graph-max-bs|tp-size|tp|dp-size|dp|model-path|"
    r"disaggregation-mode|decode-log-interval)[ =]([^\s\\]+)"
)


def detect(sample: str) -> bool:
    """SGLang scheduler logs always carry decode or prefill batch lines or the ServerArgs dump."""
    return any(m in sample for m in _DETECT)


def _keep(key: str) -> bool:
    return key.startswith("speculative_") or key in _SERVER_KEYS


def _config_rows(lines: pl.DataFrame, source: str) -> pl.DataFrame:
    """server_args=ServerArgs(...) dumps and pasted launch commands: rare lines, parsed in Python."""
    cand = lines.filter(
        pl.col("text").str.contains("ServerArgs(", literal=True)
        | pl.col("text").str.contains("--speculative-", literal=True)
        | pl.col("text").str.contains("--cuda-graph-max-bs", literal=True)
    )
    rows: list[tuple[int, str, str]] = []
    for ln, text in cand.select("line", "text").iter_rows():
        text = text[:200_000]
        if "ServerArgs(" in text:
            for key, val in _KV.findall(text[text.index("ServerArgs(") + 11 :]):
                if _keep(key):
                    rows.append((ln, key, val.strip("'\"")))
        elif (
            "sglang" in text or "sgl_jax" in text
        ):  # a pasted launch command; vLLM's --speculative-config is not ours
            for flag, val in _CLI.findall(text):
                key = flag.replace("-", "_")
                key = {"tp": "tp_size", "dp": "dp_size"}.get(key, key)
                if _keep(key):
                    rows.append((ln, key, val.strip("'\"")))
    return configs(rows, source, ENGINE) if rows else pl.DataFrame(schema=CONFIG_SCHEMA)


def _config_str(cfg: pl.DataFrame, keys: tuple[str, ...]) -> str | None:
    vals = cfg.filter(pl.col("key").is_in(keys))["value"].to_list()
    return vals[-1] if vals else None


def _config_int(cfg: pl.DataFrame, key: str) -> int | None:
    vals = cfg.filter(pl.col("key") == key)["value"].to_list()
    for v in reversed(vals):
        try:
            return int(v)
        except (TypeError, ValueError):
            continue
    return None


def _fields(df: pl.DataFrame) -> pl.DataFrame:
    exprs = [extract(pat, dtype).alias(col) for col, (_, pat, dtype) in _FIELDS.items()]
    has_actor = df.height > 0 and bool(df["text"].str.contains(" pid=", literal=True).any())
    exprs.append((pl.col("text").str.extract(_ACTOR, 1) if has_actor else pl.lit(None, dtype=pl.Utf8)).alias("actor"))
    exprs += [
        pl.col("text").str.contains(lbl, literal=True).alias(f"has_{col}")
        for col, (lbl, _, _) in _FIELDS.items()
    ]
    graph = pl.col("text").str.extract(_GRAPH, 1)
    exprs += [
        pl.when(graph.is_null()).then(None).otherwise(graph == "True").alias("cuda_graph"),
        pl.col("text").str.contains(r"(?:cuda|cpu|npu) graph:").alias("has_graph"),
        pl.col("text").str.extract(_TS_BRACKET, 1).alias("ts1"),
        pl.col("text").str.extract(_TS_BRACKET, 2).alias("rank"),
        pl.col("text").str.extract(_TS_FORK, 1).alias("ts2"),
        pl.col("text").str.extract(_TS_FORK, 2).alias("pid"),
    ]
    return df.with_columns(exprs).with_columns(
        pl.coalesce("ts1", "ts2")
        .str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False)
        .dt.replace_time_zone("UTC")
        .alias("time"),
        pl.concat_str([pl.col("actor"), pl.coalesce(pl.col("rank"), pl.lit("pid=") + pl.col("pid"))],
                      separator=" ", ignore_nulls=True).replace("", None).alias("engine_id"),
    )


def _bad_reason(required: tuple[str, ...]) -> pl.Expr:
    """Why a batch line is malformed: a required field missing, or a label without a number."""
    reason = pl.lit(None, dtype=pl.Utf8)
    for col in reversed(list(_FIELDS)):
        lbl, _, dtype = _FIELDS[col]
        v = pl.col(col)
        # "accept len: nan" / "accept rate: nan" are the engine's own numbers for a window without
        # drafts (kept, see _decode_rows); any other nan is not. Polars sorts NaN above every number.
        finite = v.is_finite() | v.is_nan() if col in ("al", "ar") else v.is_finite()
        reason = (
            pl.when(pl.col(f"has_{col}") & v.is_null())
            .then(pl.lit(f"'{lbl}' without a number"))
            .when(~finite if dtype == pl.Float64 else pl.lit(False))
            .then(pl.lit(f"'{lbl}' is not a finite number"))
            .when(v < 0)
            .then(pl.lit(f"'{lbl}' is negative"))
            .when(v.cast(pl.Float64).is_finite() & (v.cast(pl.Float64) > float(INT64_MAX)))
            .then(pl.lit(f"'{lbl}' is beyond the int64 range"))
            .otherwise(reason)
        )
    reason = (
        pl.when(pl.col("has_graph") & pl.col("cuda_graph").is_null())
        .then(pl.lit("graph flag is neither True nor False"))
        .otherwise(reason)
    )
    for col in reversed(required):
        reason = (
            pl.when(pl.col(col).is_null() & ~pl.col(f"has_{col}"))
            .then(pl.lit(f"missing '{_FIELDS[col][0]}' (truncated line?)"))
            .otherwise(reason)
        )
    return reason


# ---------------------------------------------------------------------------------------------
# accept-rate definition (the fit itself: :mod:`specdec_diag.ingest.definitions`)
# ---------------------------------------------------------------------------------------------


def _convert(dec: pl.DataFrame, cfg: pl.DataFrame) -> pl.DataFrame:
    """acceptance_rate (bonus excluded), k and the note, from accept len / accept rate / config."""
    steps = _config_int(cfg, "speculative_num_steps")
    topk = _config_int(cfg, "speculative_eagle_topk")
    n_tok = _config_int(cfg, "speculative_num_draft_tokens")
    chain = topk in (None, 1)
    n_cfg = n_tok if n_tok is not None else (steps + 1 if steps is not None and chain else None)
    jax = bool(dec["has_cache_miss"].any())
    engine_version = _config_str(cfg, ("engine_version", "sglang_version", "version"))
    known = sglang_rate_version(engine_version)
    version, n = fit_accept_rate_definition(dec, steps if jax else n_cfg, jax, known)
    # k: draft tokens verified per step. Chains: num_steps (= N-1); trees: N-1 verified nodes.
    k: int | None = None
    if version == "jax":
        k = n if n is not None else steps
    elif chain and steps is not None:
        k = steps
    elif n is not None:
        k = n - 1
    elif n_tok is not None:
        k = n_tok - 1
    al_note = "accept len = tokens per verify step incl. bonus (= mean_acceptance_length)"
    if version == "A":
        note = (
            f"{al_note}; SGLang accept rate includes the bonus (accept_len/N, N={n if n else '?'}): "
            f"converted to acceptance_rate=(accept_len-1)/k"
        )
    elif version == "B":
        note = f"{al_note}; SGLang accept rate already excludes the bonus; acceptance_rate=(accept_len-1)/k"
    elif version == "jax":
        note = (
            f"{al_note}; sglang-jax accept rate includes the bonus and divides by num_steps: "
            f"converted to acceptance_rate=(accept_len-1)/k"
        )
    elif version == "unknown":
        note = f"{al_note}; accept rate fits no known definition: acceptance_rate from accept len and k"
    else:
        note = f"{al_note}; acceptance_rate=(accept_len-1)/k" if k else al_note
    if n_cfg is not None and n is not None and version == "A" and n != n_cfg:
        note += f" (printed rate used N={n}, config says {n_cfg}: pre-#13212 denominator)"
    if known is not None and version == "B":
        note += f" (SGLang {engine_version} >= {SGLANG_RATE_FIX_SINCE}: fixed definition, sglang PR #23530)"
    elif version in ("A", "B"):
        why = f"SGLang {engine_version} does not fix it" if engine_version else "engine version unknown"
        note += f" (definition decided from the numbers; {why})"
    if not chain:
        note += "; tree drafting (topk>1): rate per verified tree node, not comparable with chains"
    al = pl.col("al")
    if k:
        rate = pl.when(al.is_finite()).then(((al - 1) / k).clip(0.0, 1.0))
    elif version == "B":
        rate = pl.col("ar")
    else:
        rate = pl.lit(None, dtype=pl.Float64)
    return dec.with_columns(
        pl.when(al.is_not_null()).then(rate).otherwise(None).alias("acceptance_rate"),
        pl.when(al.is_not_null()).then(pl.lit(k, dtype=pl.Int64)).otherwise(None).alias("k"),
        pl.when(al.is_not_null()).then(pl.lit(note)).otherwise(None).alias("definition_note"),
        pl.lit(
            {"A": "ar-bonus", "B": "ar", "jax": "ar-jax", "unknown": "ar-unknown"}.get(version or "", "")
        ).alias("_variant"),
    )


def _split_bad(batch: pl.DataFrame, is_dec: pl.Expr) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """``(decode, prefill, bad)``: batch lines with a missing or unreadable field go to ``bad``."""
    bad_dec = batch.filter(is_dec).with_columns(_bad_reason(("running_reqs",)).alias("reason"))
    # a decode line must also reach its throughput or queue field, or it was cut
    bad_dec = bad_dec.with_columns(
        pl.when(pl.col("reason").is_null() & pl.col("gen_tps").is_null() & pl.col("waiting_reqs").is_null())
        .then(pl.lit("decode line ends before gen throughput / #queue-req (truncated?)"))
        .otherwise(pl.col("reason"))
        .alias("reason")
    )
    bad_pre = batch.filter(~is_dec).with_columns(_bad_reason(("running_reqs",)).alias("reason"))
    bad = pl.concat(
        [bad_dec.filter(pl.col("reason").is_not_null()), bad_pre.filter(pl.col("reason").is_not_null())]
    )
    return bad_dec.filter(pl.col("reason").is_null()), bad_pre.filter(pl.col("reason").is_null()), bad


def _decode_rows(dec: pl.DataFrame, cfg: pl.DataFrame) -> pl.DataFrame:
    """Decode lines as interval rows: accept len is the mean acceptance length, the rate converted."""
    # "accept len: nan" is the engine's own number, not a bad line: keep the row, drop the value
    nan_al = pl.col("al").is_nan().fill_null(False)
    dec = dec.with_columns(
        nan_al.alias("_al_nan"), pl.when(nan_al).then(None).otherwise(pl.col("al")).alias("al")
    )
    dec = convert_per_banner(dec, cfg, _convert)  # k from the preceding server_args banner
    dec = dec.with_columns(
        pl.when(pl.col("_al_nan"))
        .then(pl.lit("accept len printed as nan"))
        .otherwise(pl.col("definition_note"))
        .alias("definition_note")
    )
    graph_tag = pl.col("text").str.extract(r"\b(cpu|npu) graph:", 1)
    return dec.with_columns(
        pl.lit("interval").alias("window"),
        pl.when(~pl.col("has_al"))
        .then(pl.lit("sglang-decode"))
        .when(pl.col("_variant") == "")
        .then(pl.lit("sglang-decode-al"))
        .otherwise(pl.lit("sglang-decode-") + pl.col("_variant"))
        .alias("format"),
        pl.col("al").alias("mean_acceptance_length"),
        pl.coalesce("usage", "full_usage").alias("kv_usage"),
        pl.when(pl.col("running_reqs") > 0)
        .then(pl.coalesce("tokens", "full_tokens") // pl.col("running_reqs"))
        .alias("context_len"),
        pl.concat_str(
            [pl.col("definition_note"), pl.lit("graph flag is ") + graph_tag + pl.lit(" graph")],
            separator="; ",
            ignore_nulls=True,
        )
        .replace("", None)
        .alias("definition_note"),
    )


def parse(lines: pl.DataFrame, source: str, options: ParseOptions = NO_OPTIONS) -> Parsed:
    """Decode lines -> interval rows; prefill lines -> queue/context rows; ServerArgs -> configs."""
    text = pl.col("text")
    lines = norm_lines(lines)
    cfg = _config_rows(lines, source)
    is_dec = text.str.contains(r"Decode batch(?: \[\d+\])?[.,] ")
    is_pre = text.str.contains(r"Prefill batch(?: \[\d+\])?[.,] ")
    dec, pre, bad = _split_bad(_fields(lines.filter(is_dec | is_pre)), is_dec)
    # a batch line cut right after its marker names a record it does not carry
    is_cut = text.str.contains(r"(?:Decode|Prefill) batch(?: \[\d*\]?)?[\s.,:;]*$")
    # a batch tag that is not a count (``Decode batch [nan], ...``): the record cannot be trusted
    bad_tag = text.str.contains(r"(?:Decode|Prefill) batch ?\[") & ~(is_dec | is_pre | is_cut)
    cut = lines.filter(is_cut | bad_tag).select(
        "line", "text", pl.when(is_cut).then(pl.lit("batch line cut after its marker"))
        .otherwise(pl.lit("batch line whose [batch] tag is not a count")).alias("reason"))
    if cut.height:
        bad = pl.concat([bad.select("line", "text", "reason"), cut])
    frames = []
    if dec.height:
        frames.append(_decode_rows(dec, cfg))
    if pre.height:
        frames.append(
            pre.with_columns(
                pl.lit("interval").alias("window"),
                pl.lit("sglang-prefill").alias("format"),
                pl.coalesce("usage", "full_usage").alias("kv_usage"),
            )
        )
    windows = concat(
        [
            f.with_columns(pl.lit(source).alias("source"), pl.lit(ENGINE).alias("engine")).pipe(
                conform_windows
            )
            for f in frames
        ],
        WINDOW_SCHEMA,
    ).sort("line")
    windows, net = reject_windows(windows, source, lines)
    if net.height:
        bad = pl.concat([bad.select("line", "text", pl.col("reason")),
                         net.select("line", "text", "reason")]).sort("line")
    meta_lines = lines.filter(text.str.contains(META_MARKER, literal=True))
    if meta_lines.height:
        req_w, req_bad = parse_requests(meta_lines, source)
        windows = concat([windows, req_w], WINDOW_SCHEMA).sort("line")
        bad = pl.concat([bad.select("line", "text", "reason"),
                         req_bad.select("line", "text", pl.col("reason"))]).sort("line")
    if dec.height and bool(dec["transfer"].is_not_null().any()):
        first = int(dec.filter(pl.col("transfer").is_not_null())["line"][0])
        cfg = pl.concat([cfg, configs([(first, "pd_decode_mode", "true")], source, ENGINE)])
    return Parsed(
        windows=windows,
        malformed=malformed(bad, source, pl.col("reason"))
        if bad.height
        else pl.DataFrame(schema=MALFORMED_SCHEMA),
        configs=cfg,
    )


SOURCE = Source(family=FAMILY, markers=MARKERS, detect=detect, parse=parse)
