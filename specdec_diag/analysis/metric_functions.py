"""The metric functions: counts, rates, alpha estimators and time, computed column-wise.

Inputs are the normalised window table and/or the trace steps table (see
:mod:`specdec_diag.analysis.metrics`); each function registers its definition in
:data:`~specdec_diag.analysis.metric_registry.METRICS` through :func:`metric`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from specdec_diag.analysis import theory
from specdec_diag.analysis.aggregation import (
    _div,
    _is_steps,
    _ordered_sum,
    _spec_steps,
    _sum,
    _weighted_mean,
    aggregation_rows,
)
from specdec_diag.analysis.metric_registry import METRICS, Metric, metric
from specdec_diag.schema import trace_is_baseline

if TYPE_CHECKING:
    from specdec_diag.ingest.base import IngestResult

#: trace header / config keys that carry a plain autoregressive baseline (ms per emitted token)
BASELINE_KEYS = ("baseline_ms_per_token", "ar_ms_per_token")


# ---------------------------------------------------------------------------------------------
# counts
# ---------------------------------------------------------------------------------------------


@metric("num_drafts", "S = number of verify steps that carried >= 1 draft token", "n/a",
         "summed over aggregated windows / trace steps", "count")
def num_drafts(table: pl.DataFrame) -> int | None:
    """Verify steps with drafts (vLLM ``num_drafts``). From windows it is the sum of ``num_drafts``,
    estimated as draft_tokens / k (or accepted / (MAL - 1)) for sources that do not log it."""
    if _is_steps(table):
        s = _spec_steps(table).height
        return s if table.height else None
    v = _sum(aggregation_rows(table), "_drafts")
    return None if v is None else round(v)


@metric("draft_tokens", "sum of drafted tokens", "n/a", "summed over aggregated windows / steps", "tokens")
def draft_tokens(table: pl.DataFrame) -> int | None:
    """Draft tokens proposed."""
    v = _sum(table if _is_steps(table) else aggregation_rows(table),
             "gamma_drafted" if _is_steps(table) else "draft_tokens")
    return None if v is None else int(v)


@metric("accepted_tokens", "sum of accepted draft tokens (prefix counting)", "excluded",
         "summed over aggregated windows / steps that also count their drafted tokens", "tokens")
def accepted_tokens(table: pl.DataFrame) -> int | None:
    """Accepted draft tokens; only the accepted prefix counts (vLLM V1), never tokens after the first
    rejection (vLLM V0 counted those; ingest converts). A window whose drafted count is unknown (its
    sample was malformed) is left out, so the sum never exceeds the drafted tokens it is shown beside."""
    if _is_steps(table):
        v = _sum(table, "n_accepted")
    else:
        rows = aggregation_rows(table)
        v = _sum(rows.filter(pl.col("draft_tokens").is_not_null()) if "draft_tokens" in rows.columns else rows,
                 "accepted_tokens")
    return None if v is None else int(v)


@metric("emitted_tokens", "sum of tokens emitted by speculative steps (accepted + 1 verifier token each, "
         "less EOS/max-length trimming)", "included", "summed over aggregated windows / steps", "tokens")
def emitted_tokens(table: pl.DataFrame) -> int | None:
    """Tokens the speculative steps produced."""
    if _is_steps(table):
        if table.height == 0:
            return None
        return int(table["emitted_token_ids"].list.len().sum())
    rows = aggregation_rows(table)
    v = _sum(rows.filter(pl.col("_drafts") > 0) if rows.height else rows, "emitted_tokens")  # not baseline runs
    return None if v is None else int(v)


# ---------------------------------------------------------------------------------------------
# rates
# ---------------------------------------------------------------------------------------------


@metric("acceptance_rate", "sum(accepted) / sum(drafted)", "excluded",
         "draft-weighted over aggregated windows / all steps", "fraction")
def acceptance_rate(table: pl.DataFrame) -> float | None:
    """vLLM V1 draft acceptance rate: Σaccepted / Σdrafted over all windows (draft-weighted, not a
    mean of window rates). Windows without counts fall back to their logged rate weighted by drafts.
    Under i.i.d. alpha it is alpha(1-alpha^k)/(k(1-alpha)), not Leviathan's alpha."""
    if _is_steps(table):
        s = _spec_steps(table)
        return _div(_sum(s, "n_accepted"), _sum(s, "gamma_drafted"))
    rows = aggregation_rows(table)
    counted = rows.filter(pl.col("draft_tokens").is_not_null() & pl.col("accepted_tokens").is_not_null())
    if counted.height and counted["draft_tokens"].sum() > 0:
        return _div(counted["accepted_tokens"].sum(), counted["draft_tokens"].sum())
    return _weighted_mean(rows, "acceptance_rate")


@metric("mean_acceptance_length", "MAL = 1 + sum(accepted) / sum(num_drafts)", "included",
         "draft-weighted over aggregated windows / steps with drafts", "tokens per verify step")
def mean_acceptance_length(table: pl.DataFrame) -> float | None:
    """Mean acceptance length (vLLM V1 'Mean acceptance length', SGLang 'accept len'): tokens per
    verify step including the bonus/correction token, range 1..k+1. Equals Eq. 1 under i.i.d. alpha."""
    if _is_steps(table):
        s = _spec_steps(table)
        acc = _sum(s, "n_accepted")
        return None if acc is None else 1.0 + acc / s.height
    rows = aggregation_rows(table)
    counted = rows.filter(pl.col("accepted_tokens").is_not_null() & pl.col("_drafts").is_not_null())
    if counted.height and counted["_drafts"].sum() > 0:
        return 1.0 + counted["accepted_tokens"].sum() / counted["_drafts"].sum()
    return _weighted_mean(rows, "mean_acceptance_length")


@metric("per_position_acceptance", "a_j = #{steps with n >= j} / S, j = 1..k", "excluded",
         "draft-weighted over aggregated windows / steps with drafts", "fraction per position")
def per_position_acceptance(table: pl.DataFrame) -> list[float | None] | None:
    """vLLM V1 per-position acceptance: fraction of drafts whose j-th token was accepted (so all
    before it were too). Non-increasing; 1 + Σ_j a_j = MAL. Across windows each position is
    weighted by the window's drafts; a window with a shorter list counts 0 beyond its k, a NaN
    entry is left out of that position."""
    if _is_steps(table):
        s = _spec_steps(table)
        if s.height == 0:
            return None
        kmax = int(s["gamma_drafted"].max())
        n = s["n_accepted"]
        return [float((n >= j).sum()) / s.height for j in range(1, kmax + 1)]
    rows = aggregation_rows(table).filter(
        pl.col("per_position_acceptance").is_not_null() & (pl.col("per_position_acceptance").list.len() > 0)
    )
    if rows.height == 0:
        return None
    # column-wise (logs have ~10^6 windows); cum_sum().last() adds in row order like a Python loop, so
    # the floats are bit-identical to the per-row definition (tests/test_analysis_fast.py)
    pp_col = pl.col("per_position_acceptance")
    if rows["_drafts"].null_count():  # no weight for some window: plain mean of window values
        rows = rows.with_columns(pl.lit(1.0, pl.Float64).alias("_drafts"))
    w = pl.col("_drafts")
    kmax = int(rows.select(pp_col.list.len().max()).item())
    exprs = []
    for j in range(kmax):
        x = pp_col.list.get(j, null_on_oob=True)
        valid = x.is_not_null() & x.is_not_nan()  # a NaN entry is unknown, not zero
        beyond = pp_col.list.len() <= j  # beyond this window's k: nothing accepted there
        exprs += [_ordered_sum((w * x).filter(valid)).alias(f"n{j}"),
                  _ordered_sum(w.filter(valid | beyond)).alias(f"d{j}")]
    agg = rows.select(exprs).row(0) if exprs else ()
    out: list[float | None] = []
    for j in range(kmax):
        num, den = agg[2 * j], agg[2 * j + 1]
        out.append(num / den if den > 0 else None)
    while out and out[-1] is None:  # trailing positions no window reported (all NaN): not positions
        out.pop()
    return out or None


@metric("conditional_per_position", "b_j = a_j / a_(j-1), a_0 = 1", "excluded",
         "from the aggregated per-position rates", "fraction per position")
def conditional_per_position(per_position: list[float] | pl.DataFrame | None) -> list[float | None] | None:
    """Probability position j is accepted given j-1 were: estimates the per-position beta. Should be
    roughly flat; a decaying curve points at position/KV bugs or a drafter trained on short chains.
    None where a_(j-1) = 0."""
    pp = per_position_acceptance(per_position) if isinstance(per_position, pl.DataFrame) else per_position
    if not pp:
        return None
    prev: float | None = 1.0
    out: list[float | None] = []
    for a in pp:
        out.append(_div(a, prev) if a is not None and prev else None)
        prev = a
    return out


@metric("system_efficiency", "MAL / (k + 1)", "included", "as MAL", "fraction of the maximum")
def system_efficiency(table: pl.DataFrame, k: int | None = None) -> float | None:
    """vLLM V0 'System efficiency' (= SGLang chain 'accept rate'): tokens per step as a fraction of
    the k+1 a fully accepted step emits."""
    k = k if k is not None else draft_length(table)
    return _div(mean_acceptance_length(table), None if k is None else k + 1)


@metric("k", "most common configured draft length (windows) / gamma requested (steps)", "n/a",
         "mode over aggregated windows / steps", "tokens")
def draft_length(table: pl.DataFrame) -> int | None:
    """The draft length gamma (vLLM num_speculative_tokens). When absent from windows it is inferred
    from the per-position list length, else round(draft_tokens / num_drafts)."""
    if _is_steps(table):
        col = table.filter(pl.col("gamma_requested") > 0)["gamma_requested"] if table.height else None
        return None if col is None or col.len() == 0 else int(col.mode().sort()[-1])
    rows = aggregation_rows(table)
    if rows.height:
        ks = rows["k"].filter(rows["k"] > 0)  # k = 0: baseline runs
        if ks.len() == 0:
            ks = rows["per_position_acceptance"].list.len().drop_nulls()
            ks = ks.filter(ks > 0)
        if ks.len():  # the most common; ties go to the larger k
            vc = ks.rename("v").value_counts(name="n").sort(["n", "v"], descending=True)
            return int(vc["v"][0])
    dt, nd = _sum(rows, "draft_tokens"), _sum(rows, "_drafts")
    r = _div(dt, nd)
    return None if r is None else round(r)


@metric("tokens_per_step", "sum(emitted tokens) / S", "included",
         "steps with drafts / aggregated windows", "tokens per verify step")
def tokens_per_step(table: pl.DataFrame) -> float | None:
    """Tokens actually emitted per speculative step. Like MAL but after EOS / max-length trimming,
    and 1 + accepted only when the bonus was not dropped (BONUS_DROPPED shows as MAL > this)."""
    if _is_steps(table):
        s = _spec_steps(table)
        return _div(emitted_tokens(s), s.height) if s.height else None
    rows = aggregation_rows(table)
    if rows.height:
        rows = rows.filter(pl.col("emitted_tokens").is_not_null() & (pl.col("_drafts") > 0))
    return _div(_sum(rows, "emitted_tokens"), _sum(rows, "_drafts"))


# ---------------------------------------------------------------------------------------------
# alpha estimators
# ---------------------------------------------------------------------------------------------


def alpha_mle_counts(accepted: float, rejections: float) -> float | None:
    """Censored-geometric MLE from counts: accepted / (accepted + rejections)."""
    return _div(accepted, accepted + rejections)


@metric("alpha_mle", "alpha = sum(n) / (sum(n) + #{steps with n < gamma})", "excluded",
         "all steps with drafts (windows: from per-position counts)", "probability")
def alpha_mle(table: pl.DataFrame) -> float | None:
    """Leviathan's alpha by maximum likelihood: each accepted draft is a success, each step that
    stopped early is exactly one failure (censored geometric). From windows, the failures are
    S * (1 - a_k), using the per-position rate at the last position."""
    if _is_steps(table):
        s = _spec_steps(table)
        if s.height == 0:
            return None
        n = int(s["n_accepted"].sum())
        rej = int((s["n_accepted"] < s["gamma_drafted"]).sum())
        return alpha_mle_counts(n, rej)
    rows = aggregation_rows(table).filter(
        pl.col("per_position_acceptance").is_not_null() & pl.col("_drafts").is_not_null()
    )
    if rows.height == 0:
        return None
    pp_col, d = pl.col("per_position_acceptance"), pl.col("_drafts")
    kmax = int(rows.select(pp_col.list.len().max()).item() or 0)
    total = pl.lit(0.0)  # sum(pp) left to right, as Python's sum() adds
    for j in range(kmax):
        total = total + pp_col.list.get(j, null_on_oob=True).fill_null(0.0)
    bad = pp_col.list.eval(pl.element().is_null() | pl.element().is_nan()).list.any()
    ok = (pp_col.list.len() > 0) & ~bad.fill_null(True)
    acc_t = pl.when(pl.col("accepted_tokens").is_not_null()).then(pl.col("accepted_tokens").cast(pl.Float64)) \
        .otherwise(d * total)
    rej_t = d * (1.0 - pp_col.list.last())
    acc, rej = rows.select(_ordered_sum(acc_t.filter(ok)), _ordered_sum(rej_t.filter(ok))).row(0)
    return alpha_mle_counts(acc, rej) if acc + rej > 0 else None


@metric("alpha_tv", "alpha = mean over tested positions of sum_x min(p(x), q(x)) = 1 - TV(p, q)", "n/a",
         "positions i <= min(n+1, gamma) of steps of traces with the exact sampling rule", "probability")
def alpha_tv(steps: pl.DataFrame) -> float | None:
    """Lower-variance alpha from the recorded distributions (Leviathan Cor. 3.6). Only positions the
    acceptance test actually reached are used, to avoid conditioning on drafts after a rejection.
    Needs the trace field ``min_pq``; None otherwise. Valid only for exact speculative sampling: under
    greedy verification acceptance is argmax agreement, which sum min(p, q) of the softmaxes does not
    measure, so the summary uses it only for traces whose rule is ``sampling``."""
    if not _is_steps(steps) or steps.height == 0 or "min_pq" not in steps.columns:
        return None
    s = _spec_steps(steps).filter(pl.col("min_pq").is_not_null())
    if s.height == 0:
        return None
    tested = s.select(pl.col("min_pq").list.head(pl.col("n_accepted") + 1)).explode("min_pq")["min_pq"]
    tested = tested.drop_nulls().drop_nans()
    return float(tested.mean()) if tested.len() else None


def sampling_sources(result: IngestResult) -> list[str]:
    """Trace files verified by exact speculative sampling (header rule ``sampling``): the only ones
    where sum_x min(p, q) is the acceptance probability."""
    out = []
    for h in getattr(result, "headers", []) or []:
        rule = h.get("rule")
        name = rule.get("name") if isinstance(rule, dict) else rule
        lossy = rule.get("lossy") if isinstance(rule, dict) else False
        if name == "sampling" and not lossy and h.get("source"):
            out.append(str(h["source"]))
    return out


@metric("alpha_from_mal", "alpha solving (1 - alpha^(k+1)) / (1 - alpha) = MAL", "n/a",
         "from the aggregated MAL and k", "probability")
def alpha_from_mal(table: pl.DataFrame) -> float | None:
    """Leviathan's alpha implied by the MAL under Eq. 1 (i.i.d. acceptance, fixed k): the only alpha
    estimate available from engines that log MAL but no per-position counts."""
    mal, k = mean_acceptance_length(table), draft_length(table)
    return None if mal is None or k is None else theory.alpha_from_mal(mal, k)


# ---------------------------------------------------------------------------------------------
# time
# ---------------------------------------------------------------------------------------------


def _timed_steps(steps: pl.DataFrame) -> pl.DataFrame:
    s = _spec_steps(steps)
    if s.height == 0:
        return s
    return s.filter(pl.col("draft_ms").is_not_null() & pl.col("verify_ms").is_not_null())


@metric("c", "c = (sum(draft_ms) / sum(gamma_drafted)) / (sum(verify_ms) / S)", "n/a",
         "all timed steps with drafts", "ratio")
def cost_ratio(steps: pl.DataFrame) -> float | None:
    """Leviathan's cost coefficient c: time of one draft forward over time of one target forward,
    measured as per-draft-token draft time over verify time per step (ratio of sums, so long steps
    weigh more). Speculation can only pay when alpha > c."""
    if not _is_steps(steps):
        return None
    s = _timed_steps(steps)
    if s.height == 0:
        return None
    per_token = _div(s["draft_ms"].sum(), s["gamma_drafted"].sum())
    return _div(per_token, s["verify_ms"].sum() / s.height)


@metric("time_breakdown", "sum of draft / verify / overhead ms and their shares of the step time", "n/a",
         "all timed steps (else aggregated windows that carry timings, e.g. TensorRT-LLM iterations)",
         "ms and fraction")
def time_breakdown(table: pl.DataFrame) -> dict[str, float] | None:
    """Where step time goes: a slow drafter, a compute-bound verifier, or bookkeeping."""
    if table.height == 0:
        return None
    if not _is_steps(table):
        if "draft_ms" not in table.columns:
            return None
        table = aggregation_rows(table)
        if table.height == 0:
            return None
    out: dict[str, float] = {}
    for part in ("draft_ms", "verify_ms", "overhead_ms"):
        out[part] = float(table[part].fill_null(0.0).sum())
    total = sum(out.values())
    if total <= 0:
        return None
    out["total_ms"] = total
    for part in ("draft_ms", "verify_ms", "overhead_ms"):
        out[part.replace("_ms", "_share")] = out[part] / total
    return out


@metric("goodput", "sum(emitted tokens) / sum(step time) (steps); mean gen_tps of non-idle "
         "windows (logs)", "included", "all steps / windows with gen_tps > 0", "tokens/s")
def goodput(table: pl.DataFrame) -> float | None:
    """Emitted tokens per second. From traces it is exact (one sequence, batch 1); from engine logs
    it is the engine's generation throughput averaged over windows that generated anything (idle
    windows would otherwise drag it down)."""
    if _is_steps(table):
        if table.height == 0:
            return None
        ms = table.select(
            pl.sum_horizontal(pl.col("draft_ms").fill_null(0), pl.col("verify_ms").fill_null(0),
                              pl.col("overhead_ms").fill_null(0)).sum()
        ).item()
        return _div(emitted_tokens(table), ms / 1000.0 if ms else None)
    if "gen_tps" not in table.columns or table.height == 0:
        return None
    g = table.filter(pl.col("gen_tps").is_not_null() & (pl.col("gen_tps") > 0))
    return float(g["gen_tps"].mean()) if g.height else None


def accepted_length_histogram(steps: pl.DataFrame) -> dict[int, int]:
    """{n accepted: number of steps} over steps with drafts (AIPerf acceptance_histogram, bonus excluded)."""
    s = _spec_steps(steps) if _is_steps(steps) else steps.head(0)
    if s.height == 0:
        return {}
    vc = s["n_accepted"].value_counts().sort("n_accepted")
    return {int(a): int(b) for a, b in zip(vc["n_accepted"].to_list(), vc["count"].to_list(), strict=True)}


def baseline_ms_per_token(result: IngestResult) -> float | None:
    """Plain autoregressive decode time per token, when the inputs carry one: a trace header key
    (``baseline_ms_per_token`` / ``ar_ms_per_token``, top level or under ``baseline``), a config fact
    with that key, or the steps of a trace whose header mode is autoregressive."""
    for h in getattr(result, "headers", []) or []:
        cands = [h.get(key) for key in BASELINE_KEYS]
        if isinstance(h.get("baseline"), dict):
            cands += [h["baseline"].get(key) for key in (*BASELINE_KEYS, "ms_per_token")]
        for v in cands:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                return float(v)
    configs = getattr(result, "configs", None)
    if configs is not None and configs.height:
        hit = configs.filter(pl.col("key").is_in(list(BASELINE_KEYS)))
        for v in hit["value"].to_list():
            try:
                f = float(v)
            except (TypeError, ValueError):
                continue
            if f > 0:
                return f
    ar_sources = [h.get("source") for h in getattr(result, "headers", []) or [] if trace_is_baseline(h)]
    steps = getattr(result, "steps", None)
    if ar_sources and steps is not None and steps.height:
        ar = steps.filter(pl.col("source").is_in(ar_sources))
        if ar.height:
            g = goodput(ar)
            return None if not g else 1000.0 / g
    return None


@metric("speedup_achieved", "T_ar per token / (sum(step ms) / sum(emitted tokens))", "included",
         "all speculative trace steps, against the autoregressive baseline", "x")
def achieved_speedup(result: IngestResult) -> float | None:
    """Measured speed-up of speculative steps over plain decoding; None without a baseline."""
    base = baseline_ms_per_token(result)
    steps = getattr(result, "steps", None)
    if base is None or steps is None or steps.height == 0:
        return None
    ar_sources = {h.get("source") for h in result.headers if trace_is_baseline(h)}
    spec = steps.filter(~pl.col("source").is_in(list(ar_sources))) if ar_sources else steps
    g = goodput(spec)
    return None if not g else base * g / 1000.0


METRICS["speedup_predicted"] = Metric(
    "speedup_predicted", "S = (1 - alpha^(k+1)) / ((1 - alpha)(k c + 1))  (Leviathan Thm 3.8)", "included",
    "alpha = alpha_tv, else alpha_mle, else alpha_from_mal; c = measured c, else 0 (upper bound)", "x",
    "Predicted walltime improvement; assumes verifying k+1 tokens costs one target forward.",
)
METRICS["tokens_per_s"] = Metric(
    "tokens_per_s", "mean of the engine's generation throughput over windows with gen_tps > 0", "included",
    "non-idle windows", "tokens/s", "Engine-reported throughput (vLLM 'Avg generation throughput').",
)
