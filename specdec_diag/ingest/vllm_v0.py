"""vLLM's ``Speculative metrics:`` lines, split from :mod:`specdec_diag.ingest.vllm`: V0's cumulative
counters (2024-2025, non-prefix accept counts) and the first V1 variant A (Mar 2025, windowed), plus
the small column helpers every vLLM line parser shares (docs/log-formats.md §1, §2.2).
"""

from __future__ import annotations

import polars as pl

from specdec_diag.ingest._textparse import first_problem, malformed, ratio_expr, value_problem_expr
from specdec_diag.ingest.vllm_blocks import ENGINE

_NUM = r"(?:[-+]?[\w.]*)"
_V0 = (
    rf"Speculative metrics: Draft acceptance rate: (?P<ar>{_NUM}), System efficiency: (?P<eff>{_NUM}), "
    r"Number of speculative tokens: (?P<k>\d+), Number of accepted tokens: (?P<acc>\d+), "
    r"Number of draft tokens(?P<typo> tokens)?: (?P<draft>\d+), "
    r"Number of emitted tokens(?: tokens)?: (?P<emit>\d+)\.\s*$"
)
_V1A = (
    rf"Speculative metrics: Draft acceptance rate: (?P<ar>{_NUM}), Number of accepted tokens: (?P<acc>\d+), "
    r"Number of draft tokens: (?P<draft>\d+),?\s*$"
)


def base_columns(df: pl.DataFrame, source: str, fmt: pl.Expr | str, window: str,
                 engine_id: pl.Expr | None = None) -> list[pl.Expr]:
    """The columns every vLLM window row starts with (source, line, engine, format, time, engine_id, window)."""
    return [
        pl.lit(source).alias("source"),
        pl.col("line"),
        pl.lit(ENGINE).alias("engine"),
        (fmt if isinstance(fmt, pl.Expr) else pl.lit(fmt)).alias("format"),
        pl.col("time"),
        (pl.col("proc") if engine_id is None else engine_id).alias("engine_id"),
        pl.lit(window).alias("window"),
    ]


def as_float(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.Float64, strict=False)


def as_int(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.Int64, strict=False)


def parse_speculative(df: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``Speculative metrics:`` lines: V0 (cumulative since start, non-prefix accept counts) or the
    first V1 variant A (windowed; bracketed ``[file.py:N]`` prefix)."""
    df = df.with_columns(pl.col("text").str.extract_groups(_V0).alias("_g")).unnest("_g")
    v0 = df.filter(pl.col("acc").is_not_null() & ~pl.col("_bracket"))
    rest = df.filter(pl.col("acc").is_null() | pl.col("_bracket")).select(
        "line", "text", "time", "proc", "_bracket")
    # V0 prints rate and efficiency as nan until the first draft: quoted only, so nan is fine there
    counts_why = first_problem(*(value_problem_expr(c, label, count=True) for c, label in (
        ("k", "Number of speculative tokens"), ("acc", "Number of accepted tokens"),
        ("draft", "Number of draft tokens"), ("emit", "Number of emitted tokens"))))
    v0 = v0.with_columns(counts_why.alias("_vwhy"))
    v0 = v0.with_columns(as_int("k").alias("k"), as_int("acc").alias("acc"), as_int("draft").alias("draft"),
                         as_int("emit").alias("emit"), as_float("ar").alias("ar"), as_float("eff").alias("eff"))
    v0 = v0.with_columns(pl.when(pl.col("k") > 0).then(pl.col("draft") // pl.col("k").clip(1)).alias("nd"))
    why = (
        pl.when(pl.col("_vwhy").is_not_null()).then(pl.col("_vwhy"))
        .when(pl.col("k") <= 0).then(pl.lit("number of speculative tokens is 0"))
        .when(pl.col("draft") % pl.col("k").clip(1) != 0).then(pl.lit("draft tokens not a multiple of k"))
        .when((pl.col("emit") < pl.col("nd")) | (pl.col("emit") > pl.col("nd") * (pl.col("k") + 1))
              | (pl.col("acc") > pl.col("draft")))
        .then(pl.lit("emitted/accepted/draft counters are inconsistent"))
        .otherwise(None)
    )
    v0 = v0.with_columns(why.alias("why"))
    bad = [malformed(v0.filter(pl.col("why").is_not_null()), source, pl.col("why"))]
    v0 = v0.filter(pl.col("why").is_null())
    prefix_acc = pl.col("emit") - pl.col("nd")
    win = v0.select(
        *base_columns(v0, source, pl.when(pl.col("typo").is_not_null()).then(pl.lit("vllm-v0-spec-metrics-2024"))
               .otherwise(pl.lit("vllm-v0-spec-metrics")), "cumulative"),
        pl.col("k"), pl.col("nd").alias("num_drafts"), pl.col("draft").alias("draft_tokens"),
        prefix_acc.alias("accepted_tokens"), pl.col("emit").alias("emitted_tokens"),
        ratio_expr(prefix_acc, pl.col("draft")).alias("acceptance_rate"),
        ratio_expr(pl.col("emit"), pl.col("nd")).alias("mean_acceptance_length"),
        pl.concat_str([
            pl.lit("vLLM V0 counts accepted drafts at any position (engine: accepted="), pl.col("acc").cast(pl.Utf8),
            pl.lit(", rate="), pl.col("ar").cast(pl.Utf8).fill_null("nan"),
            pl.lit("); accepted_tokens here = emitted - num_drafts (prefix, bonus excluded); "
                   "num_drafts = draft/k; counters cumulative since server start"),
        ]).alias("definition_note"),
    )
    wins = [win]
    if rest.height:
        a = rest.with_columns(pl.col("text").str.extract_groups(_V1A).alias("_g")).unnest("_g")
        ok = a.filter(pl.col("acc").is_not_null())
        ok = ok.with_columns(first_problem(value_problem_expr("acc", "Number of accepted tokens", count=True),
                                           value_problem_expr("draft", "Number of draft tokens", count=True))
                             .alias("_vwhy"))
        ok = ok.with_columns(as_int("acc").alias("acc"), as_int("draft").alias("draft"))
        ok = ok.with_columns(pl.when(pl.col("_vwhy").is_not_null()).then(pl.col("_vwhy"))
                             .when(pl.col("acc") > pl.col("draft"))
                             .then(pl.lit("accepted tokens exceed drafted tokens")).alias("why"))
        bad.append(malformed(ok.filter(pl.col("why").is_not_null()), source, pl.col("why")))
        ok = ok.filter(pl.col("why").is_null())
        wins.append(ok.select(
            *base_columns(ok, source, "vllm-v1-specdecoding-A", "interval"),
            pl.col("draft").alias("draft_tokens"), pl.col("acc").alias("accepted_tokens"),
            ratio_expr(pl.col("acc"), pl.col("draft")).alias("acceptance_rate"),
        ))
        bad.append(malformed(a.filter(pl.col("acc").is_null()), source,
                        "Speculative metrics line does not match the V0 or V1-A format"))
    return pl.concat(wins, how="diagonal_relaxed"), pl.concat(bad)
