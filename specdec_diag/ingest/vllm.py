"""vLLM: V0 ``Speculative metrics:`` (cumulative), V1 ``SpecDecoding metrics:`` variants A-E
(windowed; with ``Current speculative depth`` under dynamic depth), the ``Engine NNN:`` / ``N Engines
Aggregated:`` / V0 throughput lines, startup lines naming the speculative configuration and the
version, the ``vllm bench serve`` summary and the output of ``examples/offline_inference/spec_decode.py``;
``DiffusionDecoding metrics:`` and ``Iteration(N):`` lines in :mod:`specdec_diag.ingest.vllm_lines`.
Formats and meanings: docs/log-formats.md §1-2.

Line records are parsed with vectorised polars regexes (the bulk of a big log); only the rare
startup lines and multi-line summary blocks go through Python (:mod:`specdec_diag.ingest.vllm_blocks`).
"""

from __future__ import annotations

import re

import polars as pl

from specdec_diag.ingest import vllm_fast
from specdec_diag.ingest._textparse import (
    first_problem,
    malformed,
    norm_lines,
    ratio_expr,
    reject_windows,
    value_problem_expr,
)
from specdec_diag.ingest.base import LINE_STRIDE, NO_OPTIONS, Parsed, ParseOptions, Source
from specdec_diag.ingest.definitions import VLLM_MAL_BONUS_SINCE, version_at_least
from specdec_diag.ingest.timestamps import ISO_PATTERN, YearAnchor, iso_time, month_day_time
from specdec_diag.ingest.vllm_blocks import BLOCK_MARKERS, CONFIG_MARKERS, parse_blocks, parse_configs
from specdec_diag.ingest.vllm_finalize import finalize
from specdec_diag.ingest.vllm_lines import (
    DEPTH_NOTE,
    M_DIFF,
    M_ITER,
    ND_NOTE,
    mal_excludes_bonus,
    mal_note,
    parse_diffusion,
    parse_iteration,
    parse_v1_kv,
    vllm_version,
)
from specdec_diag.ingest.vllm_startup import STARTUP_MARKERS, parse_startup
from specdec_diag.ingest.vllm_v0 import as_float as _f
from specdec_diag.ingest.vllm_v0 import as_int as _i
from specdec_diag.ingest.vllm_v0 import base_columns as _base
from specdec_diag.ingest.vllm_v0 import parse_speculative as _parse_speculative
from specdec_diag.schema import MALFORMED_SCHEMA, WINDOW_SCHEMA, conform_windows

FAMILY = "vllm"

M_V1 = "SpecDecoding metrics:"
M_V0 = "Speculative metrics:"
M_THR = "Avg generation throughput:"
MARKERS: tuple[str, ...] = (M_V1, M_V0, M_THR, M_DIFF, M_ITER, *CONFIG_MARKERS, *BLOCK_MARKERS, *STARTUP_MARKERS)

_VERSION_HINT = r"vLLM API server version|LLM engine \(v"
_VERSION_NAMED = re.compile(r"(?:vLLM API server version |LLM engine \(v)\d+\.\d+")  # a start naming its version
_CFG_RX = "|".join(re.escape(m) for m in CONFIG_MARKERS)
_BLOCK_RX = "|".join(re.escape(m) for m in BLOCK_MARKERS)
# any printed token where a number belongs (nan, NaN, -inf, 1e400, 12x3 ...): the value checks name
# what is wrong with it, where a narrower pattern would skip an optional field and leave a silent null
_NUM = r"(?:[-+]?[\w.]*)"
_ANSI = r"\x1b\[[0-9;?]*[A-Za-z]"

# The vLLM logger prefix: optional process tag, level, MM-DD HH:MM:SS, file:line (bracketed in V1).
_MD_HMS = r"(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\s+(\d{2}-\d{2} \d{2}:\d{2}:\d{2})"
_PROC = r"\(([A-Za-z][\w.\-]* pid=\d+)\)"
_BRACKET = r"\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\s+\[[\w.\-]+\.py:\d+\]"
_ISO_HEAD = rf"^.{{0,80}}?(?P<iso>{ISO_PATTERN})"
_ISO_ANY = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:"

_V1 = (
    rf"SpecDecoding metrics: (?:Draft acceptance rate: (?P<ar_c>{_NUM})%, )?"
    rf"(?:Mean acceptance length: (?P<mal>{_NUM}), )?"
    rf"(?:Current speculative depth: (?P<depth>{_NUM}), )?"
    # a paste can lose the space before a unit or after a list comma ('394.48tokens/s', '0.000,0.000')
    rf"(?:Accepted throughput: (?P<acc_tps>{_NUM}) ?tokens/s, Drafted throughput: (?P<draft_tps>{_NUM}) ?tokens/s, )?"
    r"Accepted: (?P<acc>\d+) ?tokens, Drafted: (?P<draft>\d+) ?tokens"
    r"(?:, Per-position acceptance rate: (?P<pp>(?:\d+\.\d+|nan)(?:, ?(?:\d+\.\d+|nan))*))?"
    rf"(?:, Avg Draft acceptance rate: (?P<ar_e>{_NUM})%)?\s*$"
)
_THR = (
    r"(?:(?P<eng>Engine \d+|\d+ Engines Aggregated): )?"
    rf"Avg prompt throughput: (?P<ptps>{_NUM}) tokens/s, Avg generation throughput: (?P<gtps>{_NUM}) tokens/s, "
    r"Running: (?P<run>\d+) reqs?, (?:Swapped: (?P<swap>\d+) reqs?, )?(?P<wk>Waiting|Pending): (?P<wait>\d+) reqs?"
    r"(?:, Deferred: (?P<deferred>\d+) reqs?)?(?:, Preemptions: (?P<preempt>\d+))?"
    rf"(?:, GPU KV cache usage: (?P<kv>{_NUM})%)?"
)

# _THR split for speed (see _anchored): the body anchored at its marker, the engine read from the text
# before it; ASCII classes (Unicode \w/\d: 2x slower), KV part required; misses go through _THR.
M_THR_BODY = "Avg prompt throughput: "
_THR_BODY = ("^" + M_THR_BODY + r"(?P<ptps>[0-9.]+) tokens/s, Avg generation throughput: (?P<gtps>[0-9.]+) "
             r"tokens/s, Running: (?P<run>[0-9]+) reqs?, (?:Swapped: (?P<swap>[0-9]+) reqs?, )?(?P<wk>Waiting|"
             r"Pending): (?P<wait>[0-9]+) reqs?(?:, Deferred: (?P<deferred>[0-9]+) reqs?)?"
             r"(?:, Preemptions: (?P<preempt>[0-9]+))?, GPU KV cache usage: (?P<kv>[0-9.]+)%")
_THR_ENG = r"(Engine \d+|\d+ Engines Aggregated): $"

#: keys of the V1 line we understand; a line with any other key is an unknown variant (key/value parse).
_KNOWN_V1_KEYS = {
    "Draft acceptance rate", "Mean acceptance length", "Accepted throughput", "Drafted throughput",
    "Accepted", "Drafted", "Per-position acceptance rate", "Avg Draft acceptance rate", "Current speculative depth",
}


def detect(sample: str) -> bool:
    """A vLLM log: its metric lines, its startup lines, or its logger prefix."""
    if any(m in sample for m in (M_V1, M_V0, M_THR, "Configuring SpecDecodeWorker", "vllm serve", "vLLM API server")):
        return True
    return re.search(r"(?:INFO|WARNING) \d{2}-\d{2} \d{2}:\d{2}:\d{2} \[?[\w.]+\.py:\d+\]? ", sample) is not None


def parse(lines: pl.DataFrame, source: str, options: ParseOptions = NO_OPTIONS) -> Parsed:
    """Turn marker lines (columns ``line``, ``text``) into windows, configs and malformed rows."""
    lines = norm_lines(lines)
    if lines.height and lines["text"].str.contains("\x1b", literal=True).any():
        lines = lines.with_columns(pl.col("text").str.replace_all(_ANSI, ""))
    # big batches: the dominant line shapes through the compiled parser, the rest below
    every = lines
    fast, lines = vllm_fast.split(lines, source, options.year_anchor, _names_old_version, _iso_parts)
    windows: list[pl.DataFrame] = []
    bad: list[pl.DataFrame] = []

    is_v1 = pl.col("text").str.contains(M_V1, literal=True)
    is_v0 = pl.col("text").str.contains(M_V0, literal=True)
    is_thr = pl.col("text").str.contains(M_THR, literal=True)
    is_diff = pl.col("text").str.contains(M_DIFF, literal=True)
    lines = lines.with_columns(pl.when(is_v1).then(1).when(is_v0).then(2).when(is_thr).then(3).when(is_diff).then(4)
                               .otherwise(0).cast(pl.Int8).alias("_kind"))
    v1, v0, thr, diff, rest = (lines.filter(pl.col("_kind") == i).drop("_kind") for i in (1, 2, 3, 4, 0))
    # Iteration(N) lines are rare outside --enable-logging-iteration-details: looked for among the rest
    is_iter = pl.col("text").str.contains(M_ITER, literal=True) & pl.col("text").str.contains(r"Iteration\(\d+\): ")
    it, rest = rest.filter(is_iter), rest.filter(~is_iter)
    named = rest.filter(pl.col("text").str.contains(_VERSION_HINT))
    parsers = [*((seg, _v1_parser(ver)) for seg, ver in _v1_by_version(v1, named)),
               (v0, _parse_speculative), (thr, _parse_throughput), (diff, parse_diffusion), (it, parse_iteration)]
    for part, fn in parsers:
        if part.height:
            w, b = fn(_with_header(part, options.year_anchor, bracket=fn is _parse_speculative), source)
            windows.append(w)
            bad.append(b)

    # startup lines and summary blocks are rare: look for them only among the other lines
    configs = parse_configs(rest.filter(pl.col("text").str.contains(_CFG_RX)), source)
    configs = pl.concat([configs, parse_startup(rest, source)]).sort("line", maintain_order=True)  # model, version, pid
    bw, bbad = parse_blocks(rest.filter(pl.col("text").str.contains(_BLOCK_RX)), source)
    windows.append(bw)
    bad.append(bbad)

    if fast is not None and fast.ordered and not any(w.height for w in windows):
        out_w = conform_windows(fast.frame)  # in line order, engines attached, every check passed
    else:
        windows = ([fast.tagged()] if fast is not None else []) + windows
        out_w = pl.concat([w for w in windows if w.height], how="diagonal_relaxed") if any(
            w.height for w in windows) else pl.DataFrame(schema=WINDOW_SCHEMA)
        if "_eng" in out_w.columns and "_proc" in out_w.columns:
            # stable: rows sharing a line (a block's) keep their parser's order wherever the kernel's rows are
            out_w = _attach_engine(out_w.sort("line", maintain_order=True))
        out_w, net = reject_windows(conform_windows(out_w), source, every)
        bad.append(net)
    out_m = pl.concat([m.select(list(MALFORMED_SCHEMA)) for m in bad if m.height]) if any(
        m.height for m in bad) else pl.DataFrame(schema=MALFORMED_SCHEMA)
    return Parsed(windows=out_w.sort("line", maintain_order=True) if out_w.height else out_w, malformed=out_m.sort("line"),
                  configs=configs)


def _names_old_version(lines: pl.DataFrame) -> bool:
    """Whether a startup line among ``lines`` names an engine version before the MAL definition change
    (its SpecDecoding lines then take the polars path, which applies vllm_lines.mal_note)."""
    for text in lines.filter(pl.col("text").str.contains(_VERSION_HINT))["text"].to_list():
        v = vllm_version([text]) if _VERSION_NAMED.search(text) else None
        if v is not None and not version_at_least(v, VLLM_MAL_BONUS_SINCE):
            return True
    return False


def _iso_parts(lines: pl.DataFrame) -> tuple[int, int]:
    """(SpecDecoding and throughput lines among ``lines``, those with an ISO date): _with_header reads
    such dates when the ends of a part carry them."""
    text = pl.col("text")
    part = text.str.contains(M_V1, literal=True) | (
        ~text.str.contains(M_V0, literal=True) & text.str.contains(M_THR, literal=True))
    got = lines.select(part.sum().alias("n"), (part & text.str.contains(_ISO_ANY)).sum().alias("d")).row(0)
    return int(got[0]), int(got[1])


def _v1_parser(version: str | None):
    return lambda d, s: _parse_v1(d, s, version)


def _v1_by_version(v1: pl.DataFrame, named: pl.DataFrame) -> list[tuple[pl.DataFrame, str | None]]:
    """V1 lines grouped by the engine version that decides their definitions: the version named by the
    last startup line before them in their own file (None before the first one, or after a development
    build's: their own numbers decide). A restart into another version keeps each definition to its
    own lines, and a batch of small files costs one parse per distinct version, not one per file."""
    if not named.height or not v1.height:
        return [(v1, None)]
    if not any(_VERSION_NAMED.search(t) for t in named["text"].to_list()):
        return [(v1, None)]
    marks = pl.DataFrame([(line, vllm_version([text])) for line, text in named.select("line", "text").rows()
                          if _VERSION_NAMED.search(text)],
                         schema={"line": pl.Int64, "_ver": pl.Utf8}, orient="row")
    file_of = (pl.col("line") // LINE_STRIDE).alias("_file")
    tagged = v1.sort("line").with_columns(file_of).join_asof(
        marks.sort("line").with_columns(file_of), on="line", by="_file", strategy="backward",
        check_sortedness=False)  # sorted by line above; by-groups cannot be checked
    return [(g.drop("_file", "_ver"), ver) for (ver,), g in tagged.group_by("_ver", maintain_order=True)]


# ---------------------------------------------------------------------------------------------
# line records
# ---------------------------------------------------------------------------------------------


def _attach_engine(w: pl.DataFrame) -> pl.DataFrame:
    """A SpecDecoding window belongs to the engine of the throughput line its process logged just
    before it (vLLM logs the two together). Rows in line order; helper columns _proc/_eng dropped."""
    spec = pl.col("format").str.starts_with("vllm-v1-specdecoding")
    last = (pl.when(pl.col("format") == "vllm-v1-throughput").then(pl.col("_eng")).otherwise(None)
            .forward_fill().over(pl.col("_proc").fill_null(""), pl.col("line") // LINE_STRIDE))
    return w.with_columns(
        pl.when(spec & last.is_not_null())
        .then(pl.concat_str([pl.col("_proc"), last], separator=" ", ignore_nulls=True))
        .otherwise(pl.col("engine_id")).alias("engine_id")
    ).drop("_proc", "_eng")


def _with_header(df: pl.DataFrame, anchor: YearAnchor | None, bracket: bool = False) -> pl.DataFrame:
    """Add ``time`` and ``proc`` from the container / vLLM prefixes (both optional). Three small
    single-group extractions, each skipped when no line needs it, cost a third of one regex with
    five capture groups on a big log."""
    text = pl.col("text")
    # a container prefix is on every line or on none: looking at both ends of the batch suffices
    ends = pl.concat([df["text"].head(100), df["text"].tail(100)])
    has_iso = df.height > 0 and bool(ends.str.contains(_ISO_ANY).any())
    has_pid = df.height > 0 and bool(df["text"].str.contains(" pid=", literal=True).any())
    null = pl.lit(None, dtype=pl.Utf8)
    df = df.with_columns(
        text.str.extract(_MD_HMS, 1).alias("_mdhms"),
        (text.str.extract(_PROC, 1) if has_pid else null).alias("proc"),
        (text.str.extract(_ISO_HEAD, 1) if has_iso else null).alias("_iso"),
        (text.str.contains(_BRACKET) if bracket else pl.lit(True)).alias("_bracket"),
    )
    md, hms = pl.col("_mdhms").str.slice(0, 5), pl.col("_mdhms").str.slice(6, 8)
    local = month_day_time(md, hms, anchor)
    return df.with_columns(
        (pl.coalesce(iso_time(pl.col("_iso")), local) if has_iso else local).alias("time")
    )


def _v1_numbers(ok: pl.DataFrame, version: str | None) -> pl.DataFrame:
    """Typed counts of matched V1 lines, their variant (B-E), k and num_drafts (not printed: exact as
    drafted/k for fixed-k drafters, else inferred from the rounded mean acceptance length). Under
    dynamic depth k is the printed current depth (the vector keeps one entry per maximum position);
    a pre-v0.9.0 MAL (bonus excluded) becomes 1 + printed."""
    ok = ok.with_columns(
        _i("acc").alias("acc"), _i("draft").alias("draft"), _f("mal").alias("mal"),
        _f("ar_c").alias("ar_c"), _f("ar_e").alias("ar_e"), _i("depth").alias("depth"),
        pl.col("pp").str.replace_all(", ?", ",").str.split(",").cast(pl.List(pl.Float64), strict=False).alias("ppl"),
    ).with_columns(pl.coalesce("depth", pl.col("ppl").list.len().cast(pl.Int64)).alias("k"))
    # only C-shaped lines (no throughput fields) or a MAL below 1 can carry the pre-v0.9.0 MAL; a batch of
    # D/E lines skips the identity, and a batch without depth skips its note
    maybe_old = version is not None or bool(ok.select(
        (pl.col("acc_tps").is_null() & pl.col("mal").is_not_null()) | (pl.col("mal") < 1.0)).to_series().any())
    old = mal_excludes_bonus(version) if maybe_old else pl.lit(False)
    notes = [mal_note(version, pl.col("_old_mal"))] if maybe_old else []
    notes += [_depth_note()] if ok["depth"].null_count() < ok.height else []
    ok = ok.with_columns(old.alias("_old_mal")).with_columns(
        pl.when(pl.col("_old_mal")).then(pl.col("mal") + 1.0).otherwise(pl.col("mal")).alias("mal"),
        (pl.concat_str(notes, separator="; ", ignore_nulls=True).replace("", None) if notes
         else pl.lit(None, dtype=pl.Utf8)).alias("_mal_note"))
    ok = ok.with_columns(
        pl.when(pl.col("ar_c").is_not_null() & pl.col("mal").is_null() & pl.col("pp").is_null()
                & pl.col("acc_tps").is_null()).then(pl.lit("B"))
        .when(pl.col("ar_c").is_not_null() & pl.col("mal").is_not_null() & pl.col("pp").is_not_null()
              & pl.col("acc_tps").is_null() & pl.col("ar_e").is_null()).then(pl.lit("C"))
        .when(pl.col("ar_c").is_not_null() & pl.col("mal").is_not_null() & pl.col("pp").is_not_null()
              & pl.col("acc_tps").is_not_null() & pl.col("ar_e").is_null()).then(pl.lit("D"))
        .when(pl.col("ar_c").is_null() & pl.col("mal").is_not_null() & pl.col("pp").is_not_null()
              & pl.col("acc_tps").is_not_null() & pl.col("ar_e").is_not_null()).then(pl.lit("E"))
        .otherwise(pl.lit("other")).alias("variant"),
        # num_drafts is not printed: exact as drafted/k for fixed-k drafters, else from the rounded MAL.
        pl.when((pl.col("k") > 0) & (pl.col("draft") % pl.col("k").clip(1) == 0))
        .then(pl.col("draft") // pl.col("k").clip(1)).otherwise(None).alias("nd_k"),
        # polars evaluates a then-branch on every row: the cast must not raise where mal is nan
        pl.when(pl.col("mal").is_finite() & (pl.col("mal") > 1.0))
        .then((pl.col("acc") / (pl.col("mal") - 1.0)).round(0).cast(pl.Int64, strict=False))
        .otherwise(None).alias("nd_mal"),
    )

    def fits(nd: pl.Expr) -> pl.Expr:
        return nd.is_not_null() & (nd > 0) & (
            pl.col("mal").is_null() | ((1.0 + pl.col("acc") / nd - pl.col("mal")).abs() <= 0.0051))

    ok = ok.with_columns(
        pl.when(fits(pl.col("nd_k"))).then(pl.col("nd_k"))
        .when(fits(pl.col("nd_mal"))).then(pl.col("nd_mal")).otherwise(None).alias("nd"),
        # the exact case (num_drafts = Drafted / k) needs no note: a million copies would cost memory
        pl.when(fits(pl.col("nd_k"))).then(pl.lit(None, dtype=pl.Utf8))
        .when(fits(pl.col("nd_mal"))).then(pl.lit(ND_NOTE))
        .otherwise(None).alias("_nd_note"),
        # identities of docs/log-formats.md §2.3: printed rate = accepted/drafted; 1 + sum(per-position) = MAL.
        pl.coalesce("ar_c", "ar_e").alias("ar_printed"),
    )
    return ok.with_columns(pl.concat_str(["_mal_note", "_nd_note"], separator="; ", ignore_nulls=True)
                           .replace("", None).alias("note"))


def _depth_note() -> pl.Expr:
    """Dynamic depth: the depth printed and the vector's length (its maximum), both as stated."""
    return pl.when(pl.col("depth").is_not_null()).then(pl.format(DEPTH_NOTE, "depth", pl.col("ppl").list.len()))


def _parse_v1(df: pl.DataFrame, source: str, version: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """V1 ``SpecDecoding metrics:`` (variants B-E, windowed counts) plus unknown suffixes."""
    df = df.with_columns(_anchored(M_V1, _V1_E).alias("_g")).unnest("_g")
    fast = df.filter(pl.col("acc").is_not_null()).with_columns(
        pl.col("pp").str.strip_suffix(", "), pl.lit(None, dtype=pl.Utf8).alias("ar_c"))
    slow = df.filter(pl.col("acc").is_null())
    if slow.height:
        slow = slow.drop("mal", "depth", "acc_tps", "draft_tps", "acc", "draft", "pp", "ar_e")
        slow = slow.with_columns(pl.col("text").str.extract_groups(_V1).alias("_g")).unnest("_g")
        df = pl.concat([fast, slow], how="diagonal_relaxed") if fast.height else slow
    else:
        df = fast
    matched = df.filter(pl.col("acc").is_not_null())
    ok = _v1_numbers(matched.with_columns(_v1_value_problem(matched).alias("_vwhy")), version)
    rest = df.filter(pl.col("acc").is_null())
    rate_bad = (pl.col("ar_printed").is_not_null() & (pl.col("draft") > 0)
                & ((pl.col("ar_printed") - 100.0 * pl.col("acc") / pl.col("draft")).abs() > 0.051))
    pp_bad = (pl.col("ppl").is_not_null() & pl.col("mal").is_not_null()
              & ((1.0 + pl.col("ppl").list.sum() - pl.col("mal")).abs() > 0.006 + 0.0005 * pl.col("ppl").list.len()))
    order_bad = pl.col("acc") > pl.col("draft")
    ok = ok.with_columns(
        pl.when(pl.col("_vwhy").is_not_null()).then(pl.col("_vwhy"))
        .when(order_bad).then(pl.lit("accepted tokens exceed drafted tokens"))
        .when(rate_bad).then(pl.lit("printed acceptance rate disagrees with Accepted/Drafted"))
        .when(pp_bad).then(pl.lit("per-position rates do not add up to mean acceptance length - 1 "
                                  "(line cut short?)"))
        .otherwise(None).alias("why")
    )
    bad = [malformed(ok.filter(pl.col("why").is_not_null()), source, pl.col("why"))]
    ok = ok.filter(pl.col("why").is_null())
    win = ok.select(
        *_base(ok, source, pl.concat_str([pl.lit("vllm-v1-specdecoding-"), pl.col("variant")]), "interval"),
        pl.when(pl.col("k") > 0).then(pl.col("k")).otherwise(None).alias("k"),
        pl.col("nd").alias("num_drafts"),
        pl.col("draft").alias("draft_tokens"),
        pl.col("acc").alias("accepted_tokens"),
        (pl.col("acc") + pl.col("nd")).alias("emitted_tokens"),
        ratio_expr(pl.col("acc"), pl.col("draft")).alias("acceptance_rate"),
        pl.coalesce(pl.col("mal"), 1.0 + ratio_expr(pl.col("acc"), pl.col("nd"))).alias("mean_acceptance_length"),
        pl.col("ppl").alias("per_position_acceptance"),
        _f("acc_tps").alias("accepted_tps"),
        _f("draft_tps").alias("drafted_tps"),
        pl.col("note").alias("definition_note"),
        pl.col("proc").alias("_proc"),
    )
    wins = [win]
    if rest.height:
        kv_w, kv_bad = parse_v1_kv(rest, source, M_V1, _KNOWN_V1_KEYS, version)
        wins.append(kv_w)
        bad.append(kv_bad)
    return pl.concat(wins, how="diagonal_relaxed"), pl.concat(bad)


#: printed values of a V1 line: (group, label, is a count)
_V1_VALUES = (
    ("acc", "Accepted", True), ("draft", "Drafted", True), ("mal", "Mean acceptance length", False),
    ("ar_c", "Draft acceptance rate", False), ("ar_e", "Avg Draft acceptance rate", False),
    ("depth", "Current speculative depth", True),
    ("acc_tps", "Accepted throughput", False), ("draft_tps", "Drafted throughput", False),
)


def _v1_value_problem(df: pl.DataFrame) -> pl.Expr:
    """Why a matched V1 line's numbers are unusable (nan/inf as vLLM prints for an interval without
    drafts, counts beyond int64): the line becomes malformed, never a window with holes. A field no
    line of the batch prints is not checked."""
    pp = pl.when(pl.col("pp").str.contains("nan", literal=True)).then(
        pl.lit("Per-position acceptance rate has nan values (not a finite number)"))
    return first_problem(*(value_problem_expr(c, label, count=n) for c, label, n in _V1_VALUES
                           if df[c].null_count() < df.height), pp)


# Variant E (current vLLM) without optional parts, anchored at the marker (see _anchored) and
# one-pass (``pp`` keeps a trailing ", ", stripped after): ~2x faster than the same pattern searched
# unanchored, which is ~40 % faster than the generic one. Lines it misses go through the generic one.
_V1_E = (
    r"^SpecDecoding metrics: Mean acceptance length: (?P<mal>[0-9.]+), "
    r"(?:Current speculative depth: (?P<depth>[0-9]+), )?Accepted throughput: (?P<acc_tps>[0-9.]+) "
    r"tokens/s, Drafted throughput: (?P<draft_tps>[0-9.]+) tokens/s, Accepted: (?P<acc>[0-9]+) tokens, "
    r"Drafted: (?P<draft>[0-9]+) tokens, Per-position acceptance rate: (?P<pp>(?:[0-9]\.[0-9]+, )+)"
    r"Avg Draft acceptance rate: (?P<ar_e>[0-9.]+)%[ \t\r\n]*$"
)


def _anchored(marker: str, pattern: str) -> pl.Expr:
    """``extract_groups`` of a ``^``-anchored ``pattern`` on the text from the first ``marker`` on.
    Rust's regex runs an anchored one-pass pattern with its one-pass DFA instead of the backtracker:
    about half the cost per line. The caller sends misses through the unanchored pattern, so the
    result is the same (a miss only costs time)."""
    text = pl.col("text")
    return text.str.slice(text.str.find(marker, literal=True).fill_null(0)).str.extract_groups(pattern)


def _parse_throughput(df: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Periodic stats lines: the context the rules need (batch, queue, KV usage, generation speed)."""
    text = pl.col("text")
    at = text.str.find(M_THR_BODY, literal=True).fill_null(0)
    df = df.with_columns(
        _anchored(M_THR_BODY, _THR_BODY).alias("_g"),
        text.str.slice(0, at).str.extract(_THR_ENG, 1).alias("eng"),
    ).unnest("_g")
    miss = pl.col("wait").is_null()
    if df.select(miss.any()).item():  # rare: a damaged line or an odd repetition, so the generic pattern
        df = pl.concat([df.filter(~miss), df.filter(miss).select("line", "text", "time", "proc").with_columns(
            text.str.extract_groups(_THR).alias("_g")).unnest("_g")], how="diagonal_relaxed")
    df = _with_thr_columns(df)
    df = _late_fields(df)
    df = df.with_columns(pl.when(pl.col("wait").is_null())
                         .then(pl.lit("throughput line does not match the known format"))
                         .otherwise(_throughput_value_problem(df)).alias("_why"))
    ok = df.filter(pl.col("_why").is_null())
    v0 = (pl.col("wk") == "Pending") | pl.col("swap").is_not_null()
    win = ok.select(
        *_base(ok, source, pl.when(v0).then(pl.lit("vllm-v0-throughput")).otherwise(pl.lit("vllm-v1-throughput")),
               "interval",
               pl.when(pl.col("eng").is_not_null())
               .then(pl.concat_str([pl.col("proc"), pl.col("eng")], separator=" ", ignore_nulls=True))
               .otherwise(pl.col("proc"))),
        _f("gtps").alias("gen_tps"), _f("ptps").alias("prompt_tps"),
        _i("run").alias("running_reqs"), _i("wait").alias("waiting_reqs"),
        (_f("kv") / 100.0).round(6).alias("kv_usage"),  # printed with one decimal: exact after rounding
        _throughput_note(ok).alias("definition_note"),
        pl.col("proc").alias("_proc"), pl.col("eng").alias("_eng"),
    )
    return win, malformed(df.filter(pl.col("_why").is_not_null()), source, pl.col("_why"))


#: optional key: value fields the pattern expects in a fixed order (Deferred, Preemptions, then the KV
#: usage); a build that prints another field between them or reorders them leaves the KV usage unmatched,
#: and such lines have each field read where it is (a rare path)
_LATE_FIELDS = (("kv", rf"GPU KV cache usage: ({_NUM})%"), ("deferred", r"Deferred: (\d+) reqs?"),
                ("preempt", r"Preemptions: (\d+)"))


def _with_thr_columns(df: pl.DataFrame) -> pl.DataFrame:
    """The fast pattern has no Deferred/Preemptions groups: add them (null) so a batch the fast
    pattern read entirely has every column the generic pattern would have given."""
    missing = [name for name in ("deferred", "preempt") if name not in df.columns]
    return df.with_columns(pl.lit(None, dtype=pl.Utf8).alias(name) for name in missing) if missing else df


def _late_fields(df: pl.DataFrame) -> pl.DataFrame:
    """Fill optional fields the ordered pattern missed although the line prints them."""
    if df["kv"].null_count() == 0:
        return df
    redo = pl.col("kv").is_null() & pl.col("text").str.contains("GPU KV cache usage: ", literal=True)
    if not df.select(redo.any()).item():
        return df
    return df.with_columns(pl.when(redo & pl.col(col).is_null()).then(pl.col("text").str.extract(pattern, 1))
                           .otherwise(pl.col(col)).alias(col) for col, pattern in _LATE_FIELDS)


def _throughput_note(df: pl.DataFrame) -> pl.Expr:
    """Deferred / Preemptions as printed (null on the many lines without them)."""
    if df["deferred"].null_count() == df.height and df["preempt"].null_count() == df.height:
        return pl.lit(None, dtype=pl.Utf8)
    return pl.concat_str([pl.lit("Deferred: ") + pl.col("deferred") + pl.lit(" of the waiting requests"),
                          pl.lit("Preemptions: ") + pl.col("preempt") + pl.lit(" in the interval")],
                         separator="; ", ignore_nulls=True).replace("", None)


def _throughput_value_problem(df: pl.DataFrame) -> pl.Expr:
    """Why a matched throughput line's numbers are unusable (nan/inf, counts beyond int64). Optional
    fields no line of the batch prints are not checked (most batches: Swapped, Deferred, Preemptions)."""
    fields = (("ptps", "Avg prompt throughput", False), ("gtps", "Avg generation throughput", False),
              ("run", "Running", True), ("swap", "Swapped", True), ("wait", "Waiting", True),
              ("deferred", "Deferred", True), ("preempt", "Preemptions", True), ("kv", "GPU KV cache usage", False))
    return first_problem(*(value_problem_expr(c, label, count=n) for c, label, n in fields
                           if df[c].null_count() < df.height))


SOURCE = Source(family=FAMILY, markers=MARKERS, detect=detect, parse=parse, finalize=finalize, batchable=True)
