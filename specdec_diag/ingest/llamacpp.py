"""llama.cpp: the ``speculative`` / ``speculative-simple`` / ``lookup`` example summaries, llama-server
per-request ``draft acceptance`` lines (three variants), the cumulative ``statistics <impl>:`` lines
of common/speculative.cpp, and per-step ``accepted A/N draft tokens`` lines (docs/log-formats.md §4).

llama-server timestamps are time since server start, not wall time, so ``time`` stays null; rows
keep their line order. ``statistics`` lines are totals over the server's lifetime: they are kept as
``cumulative`` rows and differenced into ``interval`` rows (again across files in :func:`finalize`).
"""

from __future__ import annotations

import re

import polars as pl

from specdec_diag.ingest._textparse import (
    NUM,
    as_int,
    concat,
    configs,
    extract,
    finite,
    first_problem,
    malformed,
    malformed_rows,
    norm_lines,
    ratio,
    reject_windows,
    rows_to_windows,
    split_bad,
    value_problem_expr,
)
from specdec_diag.ingest.base import NO_OPTIONS, Parsed, ParseOptions, Source
from specdec_diag.ingest.counters import differences, recompute_differences
from specdec_diag.ingest.llamacpp_cost import attach_draft_cost, per_request_draft_ms
from specdec_diag.ingest.llamacpp_timings import BENCH_MARKERS, bench_rows, timings_rows
from specdec_diag.ingest.llamacpp_timings import MARKERS as TIMINGS_MARKERS
from specdec_diag.schema import CONFIG_SCHEMA, MALFORMED_SCHEMA, WINDOW_SCHEMA, conform_windows

FAMILY = "llama.cpp"
ENGINE = "llama.cpp"
MARKERS = (
    "n_draft",
    "n_predict",
    "n_accept",
    "accept    =",
    "decoded ",
    "generated ",
    "print_timing",
    "eval time =",
    "draft acceptance",
    "statistics ",
    "draft tokens",
    "vocab must match",
    "vocab type must match",
    "loading model '",
    "loading draft model '",
    "n_slots = ",
    *TIMINGS_MARKERS,
    *BENCH_MARKERS,
)
#: llama-server startup lines -> config keys (the rules share target_model / draft_model with traces)
_STARTUP = (
    (r"load_model: loading model '([^']+)'", "target_model"),
    (r"loading draft model '([^']+)'", "draft_model"),
    (r"initializing, n_slots = (\d+)", "n_slots"),
    (r"n_ctx_slot = (\d+)", "n_ctx_slot"),
)
_DETECT = (
    "slot print_timing",
    "draft acceptance",
    "n_drafted",
    "#calls(b,g,a)",
    "llama_perf_context_print",
    "llama_print_timings",
    "llama_model_loader",
    "slot update_slots",
    "common_speculative",
    "draft tokens",
    "load_tensors:",
    "llama_context:",
    '"draft_n_accepted"',
    '"total_draft_accepted"',
)
STAT_FORMAT = "llamacpp-statistics"

_WRAP_PID = r"^\[(\d+)\]"
_HEADER = r"print_timing: id\s+(\d+) \| task (\d+) \|"
_EVAL_TAIL = (
    r" ms /\s*(\d+) (?:tokens|runs)\s*\(\s*" + NUM + r" ms per token,\s*" + NUM + r" tokens per second\)"
)
_PROMPT = r"prompt eval time =\s*" + NUM + _EVAL_TAIL
_EVAL = r"(?:^|[^t] )eval time =\s*" + NUM + _EVAL_TAIL
_DRAFT = (
    r"draft acceptance(?: rate)? =\s*" + NUM + r" \(\s*(\d+) accepted /\s*(\d+) generated\)"
    r"(?:, mean (?:acceptance length|len) =\s*" + NUM + r")?"
    r"(?:, acceptance rate per position = \(([^)]*)\))?"
)
# "statistics <impl>: #calls(b,g,a) = b g a, ..." (2026) or "#calls = n, ..." (early 2026); padded names.
# dur(b,g,a) comes right after the counts (PR #19493) or, since PR #24536, after #acc rate/pos.
_DUR = r"(?:, dur\(b,g,a\) =\s*" + NUM + r",\s*" + NUM + r",\s*" + NUM + r" ms)?"
_STAT = (
    r"statistics\s+(\S+?):?\s+#calls(?:\(b,g,a\) =\s*(\d+)\s+(\d+)\s+(\d+)| =\s*(\d+)), "
    r"#gen drafts =\s*(\d+), #acc drafts =\s*(\d+), #gen tokens =\s*(\d+), #acc tokens =\s*(\d+)"
    + _DUR + r"(?:, #mean acc len =\s*" + NUM + r")?(?:, #acc rate/pos = \(([^)]*)\))?" + _DUR
)
_DRAFT_MARK = r"draft acceptance(?: rate)? ="  # vLLM's "Draft/Total draft acceptance rate:" uses a colon
_STEP = r"id\s+(\d+) \| task (\d+) \| accepted (\d+)\s*/\s*(\d+) draft tokens"
# example summary keys, optionally behind a "[pid] " wrapper and/or a "M.SS.mmm.uuu L " log prefix
_SUM_PREFIX = r"^(?:\[\d+\]\s*)?(?:\d+\.\d{2}\.\d{3}\.\d{3} [A-Z] )?\s*"
_SUMMARY = re.compile(_SUM_PREFIX + r"(n_draft|n_predict|n_drafted|n_accept|accept)\s*=\s*([0-9.]+)(%?)\s*$")
_SPEED = re.compile(r"(?:decoded|generated)\s+(\d+) tokens in\s+([0-9.]+) seconds, speed:\s+([0-9.]+) t/s")


def detect(sample: str) -> bool:
    """llama.cpp prints llama_* loader/perf lines, slot lines, or the example's n_drafted block."""
    return any(m in sample for m in _DETECT)


def _float_list(expr: pl.Expr) -> pl.Expr:
    """'0.80, 0.50, 0.20' -> [0.8, 0.5, 0.2] (null when any element is not a number)."""
    parts = (
        expr.str.strip_chars()
        .str.split(",")
        .list.eval(pl.element().str.strip_chars().cast(pl.Float64, strict=False))
    )
    return (
        pl.when(parts.list.eval(pl.element().is_null()).list.any() | (parts.list.len() == 0))
        .then(None)
        .otherwise(parts)
    )


def _whole_number(t: pl.Expr, pattern: str) -> pl.Expr:
    """True unless the token the pattern captures is printed but is not a number as a whole (a
    number regex reads "12x3" as 12)."""
    raw = t.str.extract(pattern, 1)
    return raw.is_null() | raw.cast(pl.Float64, strict=False).is_not_null()


def _unparsed(label: str, col: str) -> pl.Expr:
    """The line prints ``label`` but its value did not parse into ``col``: a cut or garbled line."""
    return pl.col("text").str.contains(label, literal=True) & pl.col(col).is_null()


def _requests(lines: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """llama-server per-request rows: the header, eval and draft-acceptance lines of one print_timings."""
    t = pl.col("text")
    ev = lines.filter(
        t.str.contains("print_timing", literal=True)
        | t.str.contains("eval time =", literal=True)
        | t.str.contains(_DRAFT_MARK)
    ).sort("line")
    if ev.height == 0:
        return pl.DataFrame(schema=WINDOW_SCHEMA), pl.DataFrame(schema=MALFORMED_SCHEMA)
    ev = ev.with_columns(
        extract(_HEADER, pl.Int64).alias("slot"),
        t.str.extract(_HEADER, 2).alias("task"),
        extract(_PROMPT).alias("prompt_ms"),
        t.str.extract(_PROMPT, 4).cast(pl.Float64, strict=False).alias("prompt_tps"),
        t.str.extract(_EVAL, 3).cast(pl.Float64, strict=False).alias("tpot_ms"),
        t.str.extract(_EVAL, 4).cast(pl.Float64, strict=False).alias("gen_tps"),
        extract(_DRAFT).alias("rate"),
        t.str.extract(_DRAFT, 2).cast(pl.Int64, strict=False).alias("accepted_tokens"),
        t.str.extract(_DRAFT, 3).cast(pl.Int64, strict=False).alias("draft_tokens"),
        t.str.extract(_DRAFT, 4).cast(pl.Float64, strict=False).alias("mean_acceptance_length"),
        _float_list(t.str.extract(_DRAFT, 5)).alias("per_position_acceptance"),
        _whole_number(t, r"mean (?:acceptance length|len) =\s*([^,\s]+)").alias("_mean_whole"),
        t.str.contains(_DRAFT_MARK).alias("is_draft"),
        t.str.extract(_WRAP_PID, 1).alias("pid"),
        # one request = the run of lines under headers of the same task: older builds print a second
        # "print_timing" header right before the draft line (two SLT_INF calls)
    ).with_columns(pl.col("task").forward_fill().rle_id().alias("grp"))
    # llama.cpp prints "inf tokens per second" for a zero-duration eval (0.00 ms): a rate it could not
    # measure, so unknown rather than malformed
    ev = ev.with_columns([pl.when(pl.col(c) == float("inf")).then(None).otherwise(pl.col(c)).alias(c)
                          for c in ("prompt_tps", "gen_tps")])
    # an eval line with a nan/inf/negative value is malformed at its own line; its values are not used
    timing = {"prompt_ms": "prompt eval time", "prompt_tps": "prompt eval tokens per second",
              "tpot_ms": "eval ms per token", "gen_tps": "eval tokens per second"}
    ev = ev.with_columns(first_problem(*(value_problem_expr(c, lbl) for c, lbl in timing.items())).alias("_why"))
    bad_ev = ev.filter(pl.col("_why").is_not_null())
    ev = ev.with_columns([pl.when(pl.col("_why").is_null()).then(pl.col(c)) for c in timing])
    fill = ["slot", "task", *timing, "pid"]
    ev = ev.with_columns([pl.col(c).forward_fill().over("grp") for c in fill])
    dr = ev.filter(pl.col("is_draft"))
    dr, bad = split_bad(dr.with_columns(_draft_problem().alias("_why")), pl.col("_why").is_not_null())
    variant = (
        pl.when(pl.col("per_position_acceptance").is_not_null())
        .then(pl.lit("llamacpp-server-pos"))
        .when(pl.col("mean_acceptance_length").is_not_null())
        .then(pl.lit("llamacpp-server-meanlen"))
        .otherwise(pl.lit("llamacpp-server-rate"))
    )
    rows = dr.with_columns(
        pl.lit(source).alias("source"),
        pl.lit(ENGINE).alias("engine"),
        variant.alias("format"),
        pl.lit("request").alias("window"),
        pl.when(pl.col("pid").is_not_null()).then(pl.lit("pid=") + pl.col("pid")).alias("engine_id"),
        pl.when(pl.col("task").is_not_null()).then(pl.lit("task ") + pl.col("task")).alias("request"),
        pl.when(pl.col("draft_tokens") > 0)
        .then(pl.col("accepted_tokens") / pl.col("draft_tokens"))
        .alias("acceptance_rate"),
        pl.col("per_position_acceptance").list.len().cast(pl.Int64).alias("k"),
        pl.col("prompt_ms").alias("ttft_ms"),
        pl.lit(
            "llama-server: rate = accepted/generated draft tokens (bonus excluded); mean acceptance "
            "length = 1 + accepted/verification steps"
        ).alias("definition_note"),
    )
    # a line cut right after "draft acceptance" names a record it does not carry
    cut = lines.filter(t.str.contains(r"draft acceptance(?: rate)?[\s=:,]*$")).with_columns(
        pl.lit("draft acceptance line cut after its marker").alias("_why"))
    return conform_windows(rows), malformed(
        pl.concat([bad_ev, bad, cut], how="diagonal_relaxed").unique("line", keep="first").sort("line"),
        source, pl.col("_why"))


def _draft_problem() -> pl.Expr:
    """Why a draft-acceptance line is malformed: it does not parse (cut?), accepts more than it
    drafted, or its rate, mean length or per-position values are nan/inf/negative/not fractions."""
    pp = pl.col("per_position_acceptance")
    unparsed = (
        pl.col("accepted_tokens").is_null()
        | pl.col("draft_tokens").is_null()
        | (pl.col("accepted_tokens") > pl.col("draft_tokens"))
        | _unparsed("mean ", "mean_acceptance_length")
        | ~pl.col("_mean_whole")
        | _unparsed("per position = (", "per_position_acceptance")
    )
    return first_problem(
        pl.when(unparsed).then(pl.lit("draft acceptance line does not parse (cut?) or accepts more than it drafted")),
        value_problem_expr("rate", "draft acceptance rate"),
        value_problem_expr("mean_acceptance_length", "mean acceptance length"),
        pl.when(pp.list.eval(~pl.element().is_finite() | (pl.element() < 0) | (pl.element() > 1)).list.any())
        .then(pl.lit("acceptance rate per position is not a fraction (nan, inf, < 0 or > 1)")),
    )


def _steps(lines: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per-step 'accepted A/N draft tokens' lines, aggregated to one row per task (exact per-position)."""
    t = pl.col("text")
    st = lines.filter(t.str.contains(r"\|\s*accepted\s+\S*\s*draft tokens"))
    if st.height == 0:
        return pl.DataFrame(), pl.DataFrame(schema=MALFORMED_SCHEMA)
    st = st.with_columns(
        t.str.extract(_STEP, 2).alias("task"),
        extract(_STEP, pl.Int64).alias("slot"),
        t.str.extract(_STEP, 3).cast(pl.Int64, strict=False).alias("a"),
        t.str.extract(_STEP, 4).cast(pl.Int64, strict=False).alias("n"),
        t.str.extract(_WRAP_PID, 1).alias("pid"),
    )
    st, bad = split_bad(st, pl.col("a").is_null() | pl.col("n").is_null() | (pl.col("a") > pl.col("n")))
    bad_m = malformed(bad, source, "per-step 'accepted A/N draft tokens' line does not parse (or A > N)")
    if st.height == 0:
        return pl.DataFrame(), bad_m
    kmax = min(int(st["n"].max() or 0), 256)
    agg = st.group_by("task", maintain_order=True).agg(
        pl.col("line").max(),
        pl.col("pid").last(),
        pl.len().cast(pl.Int64).alias("num_drafts"),
        pl.col("n").sum().alias("draft_tokens"),
        pl.col("a").sum().alias("accepted_tokens"),
        pl.col("n").max().alias("k"),
        pl.concat_list([(pl.col("a") > j).mean() for j in range(max(kmax, 1))]).alias("pp"),
    )
    agg = agg.with_columns(pl.col("pp").list.head(pl.col("k")).alias("per_position_acceptance"))
    return agg, bad_m


def _merge_steps(req: pl.DataFrame, agg: pl.DataFrame, source: str) -> pl.DataFrame:
    """Fill request rows with the step aggregate of the same task; tasks without one become own rows."""
    if agg.height == 0:
        return req
    agg = agg.with_columns((pl.lit("task ") + pl.col("task")).alias("request"))
    if req.height:
        joined = req.join(
            agg.select(
                "request",
                pl.col("num_drafts").alias("_nd"),
                pl.col("k").alias("_k"),
                pl.col("per_position_acceptance").alias("_pp"),
            ),
            on="request",
            how="left",
        )
        req = conform_windows(
            joined.with_columns(
                pl.coalesce("num_drafts", "_nd").alias("num_drafts"),
                pl.coalesce("k", "_k").alias("k"),
                pl.coalesce("per_position_acceptance", "_pp").alias("per_position_acceptance"),
            )
        )
        agg = agg.join(req.select("request").drop_nulls(), on="request", how="anti")
    rest = agg.with_columns(
        pl.lit(source).alias("source"),
        pl.lit(ENGINE).alias("engine"),
        pl.lit("llamacpp-server-steps").alias("format"),
        pl.lit("request").alias("window"),
        pl.when(pl.col("pid").is_not_null()).then(pl.lit("pid=") + pl.col("pid")).alias("engine_id"),
        (pl.col("accepted_tokens") / pl.col("draft_tokens")).alias("acceptance_rate"),
        (1 + pl.col("accepted_tokens") / pl.col("num_drafts")).alias("mean_acceptance_length"),
        (pl.col("accepted_tokens") + pl.col("num_drafts")).alias("emitted_tokens"),
        pl.lit("aggregated from per-step 'accepted A/N draft tokens' lines").alias("definition_note"),
    )
    return concat([req, conform_windows(rest)], WINDOW_SCHEMA)


def _statistics(lines: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Cumulative 'statistics <impl>:' lines -> cumulative rows (+ differences within this file)."""
    t = pl.col("text")
    st = lines.filter(t.str.contains("statistics ", literal=True) & t.str.contains("#calls", literal=True))
    if st.height == 0:
        return pl.DataFrame(schema=WINDOW_SCHEMA), pl.DataFrame(schema=MALFORMED_SCHEMA), per_request_draft_ms(st)
    g = [t.str.extract(_STAT, i) for i in range(1, 18)]
    st = st.with_columns(
        g[0].alias("impl"),
        g[1].cast(pl.Int64, strict=False).alias("_calls_b"),
        g[5].cast(pl.Int64, strict=False).alias("num_drafts"),
        g[7].cast(pl.Int64, strict=False).alias("draft_tokens"),
        g[8].cast(pl.Int64, strict=False).alias("accepted_tokens"),
        pl.coalesce(g[10], g[15]).cast(pl.Float64, strict=False).alias("draft_ms"),
        g[12].cast(pl.Float64, strict=False).alias("mal_printed"),
        _whole_number(t, r"#mean acc len =\s*([^,\s]+)").alias("_mean_whole"),
        _float_list(g[13]).alias("per_position_acceptance"),
        t.str.extract(_WRAP_PID, 1).alias("pid"),
    )
    pp = pl.col("per_position_acceptance")
    st = st.with_columns(
        pl.when(
            pl.col("impl").is_null()
            | pl.col("accepted_tokens").is_null()
            | (pl.col("accepted_tokens") > pl.col("draft_tokens"))
            | _unparsed("#mean acc len", "mal_printed")
            | ~pl.col("_mean_whole")
            | _unparsed("#acc rate/pos", "per_position_acceptance")
        )
        .then(pl.lit("statistics line does not parse (cut?) or accepts more than it drafted"))
        .otherwise(first_problem(
            pl.when(g[5].is_not_null() & pl.col("num_drafts").is_null())
            .then(pl.lit("#gen drafts is beyond the int64 range")),
            pl.when(g[7].is_not_null() & pl.col("draft_tokens").is_null())
            .then(pl.lit("#gen tokens is beyond the int64 range")),
            value_problem_expr("draft_ms", "dur(g)"),
            value_problem_expr("mal_printed", "#mean acc len"),
            pl.when(pp.list.eval(~pl.element().is_finite() | (pl.element() < 0) | (pl.element() > 1)).list.any())
            .then(pl.lit("#acc rate/pos is not a fraction (nan, inf, < 0 or > 1)")),
        ))
        .alias("_why")
    )
    st, bad = split_bad(st, pl.col("_why").is_not_null())
    cum = st.with_columns(
        pl.lit(source).alias("source"),
        pl.lit(ENGINE).alias("engine"),
        pl.lit(STAT_FORMAT).alias("format"),
        pl.lit("cumulative").alias("window"),
        pl.when(pl.col("pid").is_not_null())
        .then(pl.lit("pid=") + pl.col("pid") + pl.lit(" "))
        .otherwise(pl.lit(""))
        .add(pl.col("impl"))
        .alias("engine_id"),
        pl.when(pl.col("draft_tokens") > 0)
        .then(pl.col("accepted_tokens") / pl.col("draft_tokens"))
        .alias("acceptance_rate"),
        pl.when(pl.col("num_drafts") > 0)
        .then(1 + pl.col("accepted_tokens") / pl.col("num_drafts"))
        .alias("mean_acceptance_length"),
        (pl.col("accepted_tokens") + pl.col("num_drafts")).alias("emitted_tokens"),
        pl.col("per_position_acceptance").list.len().cast(pl.Int64).alias("k"),
        pl.lit("llama.cpp statistics: totals over the server lifetime; draft_ms = cumulative dur(g)").alias(
            "definition_note"
        ),
    )
    costs = per_request_draft_ms(st)
    cum = conform_windows(cum)
    return concat([cum, differences(cum, ("source", "engine_id"))], WINDOW_SCHEMA), malformed(
        bad, source, pl.col("_why")
    ), costs


def _summaries(lines: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Example summaries: the n_draft .. accept block (rare lines; one row per block, window 'run')."""
    t = pl.col("text")
    cand = lines.filter(
        t.str.contains(_SUM_PREFIX + r"(?:n_draft|n_predict|n_drafted|n_accept|accept)\s*=")
        | t.str.contains(r"(?:decoded|generated)\s+\d+ tokens in", literal=False)
    )
    blocks: list[dict] = []
    bad: list[tuple[int, str, str]] = []
    speed: tuple[float, float] | None = None
    cur: dict | None = None
    for ln, text in cand.select("line", "text").iter_rows():
        m = _SPEED.search(text[:10_000])
        if m:
            speed = (finite(m.group(3)), finite(m.group(2)))
            continue
        m = _SUMMARY.match(text[:10_000])
        if not m:
            bad.append((ln, "example summary line does not parse (cut?)", text))
            continue
        key = m.group(1)
        val = finite(m.group(2)) if key == "accept" else as_int(m.group(2))
        if val is None:
            bad.append((ln, f"{key} is not a count", text))
            continue
        if cur is None or key in cur or (key == "n_draft" and cur):
            cur = {"line": ln, "speed": speed}
            speed = None
            blocks.append(cur)
        cur[key] = val
        cur["last"] = ln
    rows = []
    for b in blocks:
        drafted, acc, pred = b.get("n_drafted"), b.get("n_accept"), b.get("n_predict")
        if drafted is None or acc is None:
            bad.append((b["line"], "example summary lacks n_drafted / n_accept", ""))
            continue
        if acc > drafted or (pred is not None and acc > pred):
            bad.append((b["line"], "example summary accepts more than it drafted / predicted", ""))
            continue
        sp = b.get("speed")
        steps = None if pred is None else pred - acc
        rows.append(
            {
                "source": source,
                "line": b["last"],
                "engine": ENGINE,
                "format": "llamacpp-example",
                "window": "run",
                "k": None if b.get("n_draft") is None else int(b["n_draft"]),
                "draft_tokens": int(drafted),
                "accepted_tokens": int(acc),
                "emitted_tokens": None if pred is None else int(pred),
                "acceptance_rate": ratio(acc, drafted),
                "mean_acceptance_length": ratio(pred, steps),
                "gen_tps": sp[0] if sp else None,
                "definition_note": "llama.cpp example: acceptance_rate = n_accept/n_drafted; mean acceptance "
                "length = n_predict/(n_predict-n_accept), tokens per target forward",
            }
        )
    return rows_to_windows(rows), malformed_rows(bad, source) if bad else pl.DataFrame(
        schema=MALFORMED_SCHEMA
    )


def _startup(lines: pl.DataFrame, source: str) -> pl.DataFrame:
    t = pl.col("text")
    err = lines.filter(
        t.str.contains("vocab must match", literal=True)
        | t.str.contains("vocab type must match", literal=True)
    )
    rows = [(ln, "startup_error", text.strip()[:300]) for ln, text in err.select("line", "text").iter_rows()]
    for ln, text in lines.filter(t.str.contains("loading model '|loading draft model '|n_slots = ")).iter_rows():
        rows += [(ln, key, m.group(1)) for pat, key in _STARTUP if (m := re.search(pat, text))]
    return configs(rows, source, ENGINE) if rows else pl.DataFrame(schema=CONFIG_SCHEMA)


def parse(lines: pl.DataFrame, source: str, options: ParseOptions = NO_OPTIONS) -> Parsed:
    lines = norm_lines(lines)
    req, bad_r = _requests(lines, source)
    agg, bad_s = _steps(lines, source)
    req = _merge_steps(req, agg, source)
    stat, bad_t, costs = _statistics(lines, source)
    req = attach_draft_cost(req, lines, costs, _EVAL, _WRAP_PID)
    summ, bad_e = _summaries(lines, source)
    tim, bad_j = timings_rows(lines, source, ENGINE)
    bench, bad_b = bench_rows(lines, source, ENGINE)
    bad_j += bad_b
    windows, net = reject_windows(concat([req, stat, summ, tim, bench], WINDOW_SCHEMA).sort("line"), source, lines)
    return Parsed(
        windows=windows,
        malformed=concat([bad_r, bad_s, bad_t, bad_e, net, malformed_rows(bad_j, source) if bad_j else pl.DataFrame(schema=MALFORMED_SCHEMA)],
                         MALFORMED_SCHEMA).sort("line"),
        configs=_startup(lines, source),
    )


def finalize(windows: pl.DataFrame) -> pl.DataFrame:
    """Difference the cumulative statistics rows again over whole files (a chunked scan splits them);
    each file is its own server lifetime, so differences never cross files. Idempotent."""
    return recompute_differences(windows, (STAT_FORMAT,), keys=("source", "engine_id"))


SOURCE = Source(family=FAMILY, markers=MARKERS, detect=detect, parse=parse, finalize=finalize)
