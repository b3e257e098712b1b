"""Every speculative-decoding metric, defined once, with its formula and definition.

Inputs are the normalised window table (``schema.WINDOW_SCHEMA``) and/or the trace steps table
(``ingest.base.STEPS_SCHEMA``); functions that accept either look at the columns (a steps table has
``n_accepted``). Definitions follow vLLM V1 ``spec_decode/metrics.py`` unless named otherwise, and
every metric says whether the bonus token is included and whether it is windowed or cumulative:
engines disagree on both, and users misread them (see ``docs/metrics.md``, generated from
:data:`METRICS` by :func:`metrics_markdown`).

Which windows are aggregated (so cumulative counters are never double counted with their interval
differences): see :func:`aggregation_rows`. Empty tables and nulls give ``None``, never an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from specdec_diag.analysis import theory
from specdec_diag.schema import trace_is_baseline

#: kinds of window rows, in order of preference when one source has several (see aggregation_rows)
WINDOW_PRECEDENCE = ("interval", "request", "run", "cumulative")
#: columns whose presence makes a window row a speculative-decoding record
SPEC_COLUMNS = ("num_drafts", "draft_tokens", "accepted_tokens", "acceptance_rate", "mean_acceptance_length")
#: trace header / config keys that carry a plain autoregressive baseline (ms per emitted token)
BASELINE_KEYS = ("baseline_ms_per_token", "ar_ms_per_token")


@dataclass(frozen=True)
class Metric:
    """A metric's contract: formula, whether the bonus token is included, and the window it covers."""

    name: str
    formula: str
    bonus: str      # "included" | "excluded" | "n/a"
    window: str     # what the number aggregates over
    unit: str
    doc: str = ""

    @property
    def definition(self) -> str:
        return f"{self.formula} (bonus {self.bonus}; {self.window}; {self.unit})"


#: name -> Metric, filled by @_metric; the single source of docs/metrics.md and report definitions.
METRICS: dict[str, Metric] = {}


def _metric(name: str, formula: str, bonus: str, window: str, unit: str) -> Callable:
    def register(fn: Callable) -> Callable:
        METRICS[name] = Metric(name, formula, bonus, window, unit, (fn.__doc__ or "").strip())
        return fn

    return register


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _is_steps(df: pl.DataFrame) -> bool:
    return "n_accepted" in df.columns


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or (isinstance(b, float) and math.isnan(b)):
        return None
    return a / b


def _sum(df: pl.DataFrame, col: str) -> float | None:
    if col not in df.columns or df.height == 0 or df[col].null_count() == df.height:
        return None
    return df[col].sum()


def _spec_steps(steps: pl.DataFrame) -> pl.DataFrame:
    """Steps that carried drafts (gamma_drafted >= 1): vLLM counts a 'draft' only then."""
    if steps.height == 0:
        return steps
    return steps.filter(pl.col("gamma_drafted") >= 1)


def _ordered_sum(e: pl.Expr) -> pl.Expr:
    """Sum adding in row order (0.0 when empty), as a Python loop does: polars' own sum adds pairwise,
    which differs in the last bits."""
    return e.cum_sum().last().fill_null(0.0)


def _has_spec(windows: pl.DataFrame) -> pl.Expr:
    return pl.any_horizontal([pl.col(c).is_not_null() for c in SPEC_COLUMNS if c in windows.columns])


def aggregation_rows(windows: pl.DataFrame) -> pl.DataFrame:
    """The window rows that speculative metrics aggregate, so nothing is counted twice.

    Only rows carrying speculative data count. Per source file, one window kind is used, the first
    present of interval > request > run > cumulative: interval rows (vLLM V1 windows, SGLang decode
    lines, and the per-window differences ingest derives from cumulative counters) partition the run;
    per-request rows partition it too; a run summary stands alone; raw cumulative rows are used only
    when nothing else exists, and then only the last one per (source, engine_id), which is the total.
    A null ``window`` is treated as ``interval``. Adds ``_drafts``: the number of drafts, estimated
    when the source lacks it (draft_tokens / k, else accepted / (MAL - 1)); a frame that already has
    it is returned as is, so callers may aggregate once and pass the rows to every metric.
    """
    if "_drafts" in windows.columns:
        return windows
    if windows.height == 0 or not any(c in windows.columns for c in SPEC_COLUMNS):
        return _with_drafts(windows.head(0))
    w = windows.filter(_has_spec(windows)).with_columns(
        pl.col("window").fill_null("interval"), pl.col("source").fill_null("")
    )
    parts: list[pl.DataFrame] = []
    for _, g in w.group_by("source", maintain_order=True):
        kinds = set(g["window"].unique().to_list())
        kind = next((k for k in WINDOW_PRECEDENCE if k in kinds), None)
        if kind is None:  # unknown window labels: take them as they are
            parts.append(g)
            continue
        sel = g.filter(pl.col("window") == kind)
        if kind == "cumulative":
            sel = (
                sel.with_columns(pl.col("engine_id").fill_null(""))
                .sort("line", nulls_last=False)
                .group_by("engine_id", maintain_order=True)
                .last()
                .select(g.columns)
            )
        parts.append(sel)
    return _with_drafts(pl.concat(parts, how="vertical_relaxed") if parts else w)


def _with_drafts(w: pl.DataFrame) -> pl.DataFrame:
    if "num_drafts" not in w.columns:
        return w.with_columns(pl.lit(None, dtype=pl.Float64).alias("_drafts"))
    mal = pl.col("mean_acceptance_length")
    est_k = pl.when(pl.col("k") > 0).then(pl.col("draft_tokens").cast(pl.Float64) / pl.col("k"))
    est_mal = pl.when((mal > 1.0) & mal.is_not_nan()).then(pl.col("accepted_tokens").cast(pl.Float64) / (mal - 1.0))
    return w.with_columns(
        pl.coalesce(pl.col("num_drafts").cast(pl.Float64), est_k, est_mal).alias("_drafts")
    )


def _weighted_mean(df: pl.DataFrame, col: str) -> float | None:
    """Mean of a per-window rate weighted by drafts; plain mean when no window has a weight."""
    d = df.filter(pl.col(col).is_not_null() & pl.col(col).is_not_nan())
    if d.height == 0:
        return None
    dw = d.filter(pl.col("_drafts").is_not_null() & (pl.col("_drafts") > 0))
    if dw.height == d.height:
        return _div((dw[col] * dw["_drafts"]).sum(), dw["_drafts"].sum())
    return float(d[col].mean())


# ---------------------------------------------------------------------------------------------
# counts
# ---------------------------------------------------------------------------------------------


@_metric("num_drafts", "S = number of verify steps that carried >= 1 draft token", "n/a",
         "summed over aggregated windows / trace steps", "count")
def num_drafts(table: pl.DataFrame) -> int | None:
    """Verify steps with drafts (vLLM ``num_drafts``). From windows it is the sum of ``num_drafts``,
    estimated as draft_tokens / k (or accepted / (MAL - 1)) for sources that do not log it."""
    if _is_steps(table):
        s = _spec_steps(table).height
        return s if table.height else None
    v = _sum(aggregation_rows(table), "_drafts")
    return None if v is None else round(v)


@_metric("draft_tokens", "sum of drafted tokens", "n/a", "summed over aggregated windows / steps", "tokens")
def draft_tokens(table: pl.DataFrame) -> int | None:
    """Draft tokens proposed."""
    v = _sum(table if _is_steps(table) else aggregation_rows(table),
             "gamma_drafted" if _is_steps(table) else "draft_tokens")
    return None if v is None else int(v)


@_metric("accepted_tokens", "sum of accepted draft tokens (prefix counting)", "excluded",
         "summed over aggregated windows / steps", "tokens")
def accepted_tokens(table: pl.DataFrame) -> int | None:
    """Accepted draft tokens; only the accepted prefix counts (vLLM V1), never tokens after the first
    rejection (vLLM V0 counted those; ingest converts)."""
    v = _sum(table if _is_steps(table) else aggregation_rows(table),
             "n_accepted" if _is_steps(table) else "accepted_tokens")
    return None if v is None else int(v)


@_metric("emitted_tokens", "sum of tokens emitted by speculative steps (accepted + 1 verifier token each, "
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


@_metric("acceptance_rate", "sum(accepted) / sum(drafted)", "excluded",
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


@_metric("mean_acceptance_length", "MAL = 1 + sum(accepted) / sum(num_drafts)", "included",
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


@_metric("per_position_acceptance", "a_j = #{steps with n >= j} / S, j = 1..k", "excluded",
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


@_metric("conditional_per_position", "b_j = a_j / a_(j-1), a_0 = 1", "excluded",
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


@_metric("system_efficiency", "MAL / (k + 1)", "included", "as MAL", "fraction of the maximum")
def system_efficiency(table: pl.DataFrame, k: int | None = None) -> float | None:
    """vLLM V0 'System efficiency' (= SGLang chain 'accept rate'): tokens per step as a fraction of
    the k+1 a fully accepted step emits."""
    k = k if k is not None else draft_length(table)
    return _div(mean_acceptance_length(table), None if k is None else k + 1)


@_metric("k", "most common configured draft length (windows) / gamma requested (steps)", "n/a",
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


@_metric("tokens_per_step", "sum(emitted tokens) / S", "included",
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


@_metric("alpha_mle", "alpha = sum(n) / (sum(n) + #{steps with n < gamma})", "excluded",
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


@_metric("alpha_tv", "alpha = mean over tested positions of sum_x min(p(x), q(x)) = 1 - TV(p, q)", "n/a",
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


def sampling_sources(result: Any) -> list[str]:
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


@_metric("alpha_from_mal", "alpha solving (1 - alpha^(k+1)) / (1 - alpha) = MAL", "n/a",
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


@_metric("c", "c = (sum(draft_ms) / sum(gamma_drafted)) / (sum(verify_ms) / S)", "n/a",
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


@_metric("time_breakdown", "sum of draft / verify / overhead ms and their shares of the step time", "n/a",
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


@_metric("goodput", "sum(emitted tokens) / sum(step time) (steps); mean gen_tps of non-idle "
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


def baseline_ms_per_token(result: Any) -> float | None:
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


@_metric("speedup_achieved", "T_ar per token / (sum(step ms) / sum(emitted tokens))", "included",
         "all speculative trace steps, against the autoregressive baseline", "x")
def achieved_speedup(result: Any) -> float | None:
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


# ---------------------------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------------------------


def _first_or_join(values: list[Any]) -> str | None:
    vals = [v for v in dict.fromkeys(values) if v is not None]
    return None if not vals else ", ".join(str(v) for v in vals)


def _round(x: Any, nd: int = 6) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else round(x, nd)
    if isinstance(x, list):
        return [_round(v, nd) for v in x]
    if isinstance(x, dict):
        return {k: _round(v, nd) for k, v in x.items()}
    return x


def summarize(result: Any) -> dict[str, Any]:
    """The report's "summary" object (docs/architecture.md §4) for an ``IngestResult``.

    Counts and rates come from the window table when it has speculative rows, else from trace steps;
    step-only quantities (alpha_mle from events, alpha_tv, c, the time breakdown, the histogram) come
    from steps. ``definitions`` names the formula behind every number."""
    windows: pl.DataFrame = result.windows
    steps: pl.DataFrame = result.steps
    rows = aggregation_rows(windows)
    use_steps = rows.height == 0 and steps.height > 0
    table = steps if use_steps else rows
    spec_steps = _spec_steps(steps) if steps.height else steps

    k = draft_length(table)
    mal = mean_acceptance_length(table)
    pp = per_position_acceptance(table)
    a_tv = alpha_tv(spec_steps.filter(pl.col("source").is_in(sampling_sources(result)))) if steps.height else None
    # the MLE from events when every aggregated row comes from a trace; else from the windows, so it
    # covers the same records as the acceptance rate next to it
    trace_only = spec_steps.height > 0 and set(rows["source"].to_list()) <= set(steps["source"].to_list())
    a_mle = alpha_mle(spec_steps) if trace_only or use_steps else alpha_mle(rows)
    a_mal = theory.alpha_from_mal(mal, k) if mal is not None and k else None
    alpha, basis = next(((a, b) for a, b in ((a_tv, "alpha_tv"), (a_mle, "alpha_mle"), (a_mal, "alpha_from_mal"))
                         if a is not None), (None, None))
    c = cost_ratio(steps) if steps.height else None
    achieved = achieved_speedup(result)
    speed = theory.predicted_vs_achieved(alpha, k, c, achieved)
    speed["alpha_basis"] = basis
    if alpha is not None and k:
        speed["expected_mal"] = theory.expected_tokens_per_step(alpha, k)

    # distinct values in first-seen order (not a 10^6-item list)
    engines = (windows["engine"].drop_nulls().unique(maintain_order=True).to_list() if windows.height
               else ["specdec-diag"] if steps.height else [])
    times = windows["time"].drop_nulls() if windows.height else None
    t0 = times.min() if times is not None and times.len() else None
    t1 = times.max() if times is not None and times.len() else None
    nd_raw = rows["num_drafts"] if rows.height else None

    summary: dict[str, Any] = {
        "engine": _first_or_join(engines),
        "k": k,
        "num_drafts": (nd := num_drafts(table)),
        "num_drafts_estimated": bool(nd is not None and nd_raw is not None and nd_raw.null_count() > 0
                                     and not use_steps),
        "draft_tokens": draft_tokens(table),
        "accepted_tokens": accepted_tokens(table),
        "emitted_tokens": emitted_tokens(table),
        "acceptance_rate": acceptance_rate(table),
        "mean_acceptance_length": mal,
        "per_position_acceptance": pp,
        "conditional_per_position": conditional_per_position(pp),
        "system_efficiency": _div(mal, None if k is None else k + 1),
        "tokens_per_step": tokens_per_step(table),
        "alpha_mle": a_mle,
        "alpha_tv": a_tv,
        "alpha_from_mal": a_mal,
        "c": c,
        "speedup": speed,
        "goodput": goodput(spec_steps) if spec_steps.height else None,
        "tokens_per_s": goodput(windows) if windows.height else None,
        "time_breakdown": time_breakdown(steps) if steps.height else time_breakdown(rows),
        "accepted_length_histogram": {str(n): v for n, v in accepted_length_histogram(steps).items()} or None,
        "time_start": t0.isoformat() if t0 is not None else None,
        "time_end": t1.isoformat() if t1 is not None else None,
        "duration_s": (t1 - t0).total_seconds() if t0 is not None and t1 is not None else None,
        "basis": "trace steps" if use_steps else "windows",
        "windows_used": rows.height,
        "window_kinds": dict(rows.group_by("window", maintain_order=True).len().iter_rows()) if rows.height else {},
        "steps": spec_steps.height,
    }
    summary = _round(summary)
    summary["definitions"] = {
        "acceptance_rate": METRICS["acceptance_rate"].definition,
        "mean_acceptance_length": METRICS["mean_acceptance_length"].definition,
        "per_position_acceptance": METRICS["per_position_acceptance"].definition,
        "conditional_per_position": METRICS["conditional_per_position"].definition,
        "system_efficiency": METRICS["system_efficiency"].definition,
        "tokens_per_step": METRICS["tokens_per_step"].definition,
        "num_drafts": METRICS["num_drafts"].definition,
        "k": METRICS["k"].definition,
        "alpha_mle": METRICS["alpha_mle"].definition,
        "alpha_tv": METRICS["alpha_tv"].definition,
        "alpha_from_mal": METRICS["alpha_from_mal"].definition,
        "c": METRICS["c"].definition,
        "speedup.predicted": METRICS["speedup_predicted"].definition,
        "speedup.achieved": METRICS["speedup_achieved"].definition,
        "goodput": METRICS["goodput"].definition,
        "time_breakdown": METRICS["time_breakdown"].definition,
        "tokens_per_s": METRICS["tokens_per_s"].definition,
        "windows_used": "rows aggregated: per source one window kind, interval > request > run > cumulative "
        "(last row per engine); see docs/metrics.md",
    }
    return summary


def _prose(doc: str | None) -> str:
    """A docstring as one markdown paragraph (its paragraphs joined)."""
    import inspect

    paras = inspect.cleandoc(doc or "").split("\n\n")
    return " ".join(" ".join(x.strip() for x in p.splitlines()) for p in paras)


def metrics_markdown() -> str:
    """docs/metrics.md, generated from :data:`METRICS` and :func:`aggregation_rows`' docstring."""
    lines = [
        "# Metric definitions",
        "",
        "Generated from `specdec_diag/analysis/metrics.py` by "
        "`python -m specdec_diag.analysis.metrics > docs/metrics.md`; do not edit by hand.",
        "",
        "Notation: S = verify steps that carried drafts, n = accepted drafts in a step, k = draft length "
        "(gamma), alpha = Leviathan's per-token acceptance probability, a_j = per-position acceptance.",
        "",
        "## Which windows are aggregated",
        "",
        _prose(aggregation_rows.__doc__),
        "",
        "## Metrics",
        "",
        "| metric | formula | bonus token | aggregated over | unit |",
        "|---|---|---|---|---|",
    ]
    for m in METRICS.values():
        lines.append(f"| `{m.name}` | {m.formula.replace('|', '/')} | {m.bonus} | {m.window} | {m.unit} |")
    lines += ["", "## Notes", ""]
    for m in METRICS.values():
        lines.append(f"- **`{m.name}`**: {_prose(m.doc)}")
    lines += [
        "",
        "## The same words in different engines",
        "",
        "Ingest converts engine numbers to the definitions above (and notes it in `definition_note`); "
        "when reading an engine's own output, mind which one it prints. Under i.i.d. alpha and fixed k:",
        "",
        "| engine number | computed as | i.i.d. value | here |",
        "|---|---|---|---|",
        "| vLLM V1 'Draft acceptance rate', AIPerf draft_acceptance_rate | accepted / drafted (prefix) "
        "| alpha(1-alpha^k) / (k(1-alpha)) | `acceptance_rate` |",
        "| vLLM V1 'Mean acceptance length', SGLang 'accept len', Spec-Bench mean accepted tokens "
        "| 1 + accepted / drafts | (1-alpha^(k+1)) / (1-alpha) | `mean_acceptance_length` |",
        "| vLLM V1 per-position acceptance rate j | #(n >= j) / drafts | alpha^j | `per_position_acceptance` |",
        "| vLLM V0 'Draft acceptance rate' | all positions marked accepted, even after a rejection / drafted "
        "| about alpha | (converted by ingest) |",
        "| vLLM V0 'System efficiency', SGLang chain 'accept rate' | emitted / (drafts (k+1)) | MAL / (k+1) "
        "| `system_efficiency` |",
        "| Leviathan alpha | E[sum_x min(p, q)] | alpha | `alpha_mle`, `alpha_tv`, `alpha_from_mal` |",
        "",
        "Example: alpha = 0.8, k = 5 gives an acceptance rate of 0.538 and a MAL of 3.69; neither is 0.8.",
        "",
        "## Where the achieved speed-up's baseline comes from",
        "",
        "`speedup_achieved` needs the plain autoregressive time per token, T_ar. It is taken from, in order: a "
        "trace header key `baseline_ms_per_token` or `ar_ms_per_token` (top level or under `baseline`); a config "
        "fact with one of those keys; the steps of a trace whose header `mode` is `baseline` / `ar` / "
        "`autoregressive` (`specdec-diag decode --baseline`), as total step time / emitted tokens. Without one "
        "the achieved speed-up is null and only the prediction is shown.",
        "",
        "## Theory (specdec_diag/analysis/theory.py)",
        "",
    ]
    for name in theory.__all__:
        fn = getattr(theory, name)
        lines.append(f"- **`{name}`**: {_prose(fn.__doc__)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(metrics_markdown(), end="")
