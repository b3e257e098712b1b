"""llama-server draft cost (docs/log-formats.md §4.2): the cumulative ``dur(b,g,a)`` of the
``statistics <drafter>:`` lines, turned into each request's drafting time and set against that
request's eval time, so DRAFT_TOO_EXPENSIVE can judge llama.cpp windows by their draft share.
"""

from __future__ import annotations

import polars as pl

from specdec_diag.schema import conform_windows


def per_request_draft_ms(st: pl.DataFrame) -> pl.DataFrame:
    """The drafting time of the one request each statistics line closes: dur(g) itself on the
    server's first request (#calls b = 1), else the growth of dur(g) since the previous line of the
    same drafter when exactly one request began in between (b grew by one)."""
    if st.height == 0 or "_calls_b" not in st.columns:
        return pl.DataFrame(schema={"line": pl.Int64, "pid": pl.Utf8, "req_draft_ms": pl.Float64})
    key = [pl.col("pid").fill_null(""), pl.col("impl")]
    st = st.sort("line").with_columns(
        pl.col("draft_ms").shift(1).over(key).alias("_prev_ms"),
        pl.col("_calls_b").shift(1).over(key).alias("_prev_b"),
    )
    ms = (
        pl.when(pl.col("_calls_b") == 1).then(pl.col("draft_ms"))
        .when(pl.col("_calls_b") == pl.col("_prev_b") + 1).then(pl.col("draft_ms") - pl.col("_prev_ms"))
    )
    return st.select("line", pl.col("pid").fill_null(""), ms.alias("req_draft_ms")).filter(
        pl.col("req_draft_ms").is_not_null() & (pl.col("req_draft_ms") >= 0))


def attach_draft_cost(req: pl.DataFrame, lines: pl.DataFrame, costs: pl.DataFrame, eval_re: str, pid_re: str) -> pl.DataFrame:
    """Request rows of a single-slot server get ``draft_ms`` (the drafter's dur(g) for that request,
    from the statistics line that follows it) and ``verify_ms`` = eval time - draft_ms: llama-server's
    eval time is the wall time from the first to the last generated token, drafting included. With
    several slots the statistics totals mix concurrent requests, so nothing is attributed."""
    if req.height == 0 or costs.height == 0:
        return req
    t = pl.col("text")
    timing = lines.filter(t.str.contains("print_timing", literal=True))
    if timing.select(t.str.extract(r"id\s+(\d+) \|", 1).drop_nulls().n_unique()).item() > 1:
        return req
    evals = lines.filter(t.str.contains(eval_re)).select(
        "line", t.str.extract(pid_re, 1).fill_null("").alias("pid"),
        t.str.extract(eval_re, 1).cast(pl.Float64, strict=False).alias("_eval_ms"),
        pl.col("line").alias("_eval_line")).sort("line")
    r = req.with_columns(pl.col("engine_id").str.extract(r"^pid=(\S+)", 1).fill_null("").alias("pid")).sort("line")
    r = r.with_columns(pl.col("line").shift(1).over("pid").fill_null(0).alias("_prev_req"))
    r = r.join_asof(evals, on="line", by="pid", strategy="backward", check_sortedness=False)
    # the eval line must belong to this request: after the previous request's last line
    r = r.with_columns(pl.when(pl.col("_eval_line") > pl.col("_prev_req")).then(pl.col("_eval_ms")).alias("_eval_ms"))
    owner = costs.sort("line").join_asof(r.select(pl.col("line").alias("req_line"), "line", "pid"), on="line",
                                         by="pid", strategy="backward", check_sortedness=False)
    owner = owner.drop_nulls("req_line").unique("req_line", keep="first")
    r = r.join(owner.select(pl.col("req_line").alias("line"), "pid", "req_draft_ms"), on=["line", "pid"], how="left")
    ok = pl.col("req_draft_ms").is_not_null() & pl.col("_eval_ms").is_not_null() & (
        pl.col("_eval_ms") >= pl.col("req_draft_ms"))
    return conform_windows(r.with_columns(
        pl.when(ok).then(pl.col("req_draft_ms")).otherwise(pl.col("draft_ms")).alias("draft_ms"),
        pl.when(ok).then(pl.col("_eval_ms") - pl.col("req_draft_ms")).otherwise(pl.col("verify_ms")).alias("verify_ms"),
    ))
