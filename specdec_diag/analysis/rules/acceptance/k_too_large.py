"""K_TOO_LARGE: Tail draft positions rarely accept; a smaller k is predicted faster."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import polars as pl

from specdec_diag.analysis import theory
from specdec_diag.analysis.rules.acceptance._helpers import (
    CORRECTNESS_CAUSES,
    Unit,
    drafted_per_position,
    enough_drafts,
    find_cliff,
    rate_interval,
    unit_sample,
    units,
)
from specdec_diag.analysis.rules.base import ACCEPTANCE_DEFINITIONS, Context, Finding, Need, Rule, label
from specdec_diag.analysis.stats import linear_fit


class KTooLarge(Rule):
    """Tail draft positions rarely accept; a smaller k is predicted faster.

    **What it detects.** At least ``tail_positions`` trailing positions accept less than
    ``tail_position_rate``, and the measured per-position profile predicts a faster step at a smaller
    k: expected tokens per step at k' is ``1 + sum(pp[:k'])`` (exact from the data, over the positions
    actually drafted), the step costs ``k' c + V(k')`` target forwards (Leviathan Thm 3.8 has
    ``V = 1``); the best k' must beat the configured k by ``min_gain``. ``c`` is measured on traces and
    on engine windows that carry draft and verify times (TensorRT-LLM iteration statistics), and is
    ``assumed_cost_ratio`` otherwise (``cost_ratio_source`` says which).

    **Verification is not free in k.** At batch b each verify forward carries ``b (k + 1)`` tokens;
    once that passes what one weight read can feed (the roofline ridge point), every extra draft
    position costs real time. ``V(k')`` comes from, in order: (1) the logs - a trace with verify times
    at three or more draft lengths gives a linear fit ``verify_ms = a + b (k' + 1)``; (2) the default
    roofline at the median running batch the engine logged,
    ``V = max(1, b (k' + 1) / N) / max(1, b / N)`` with ``N = verify_saturation_tokens`` (256: the
    fp16 ridge point is about 295 tokens on an H100 SXM - 989 TFLOP/s over 3.35 TB/s - and about 153 on
    an A100 - 312 TFLOP/s over 2.04 TB/s; SmartSpec, arXiv 2406.14066, measures speculation turning
    into a slowdown at high request rates and no single best k across loads; "Mind the Memory Gap",
    arXiv 2503.08311, finds large-batch decode still memory-bound on attention, so a ridge from the
    weights alone is the optimistic end); (3) batch unknown: ``V = 1``, as Leviathan. The evidence says
    which (``verify_cost_source``).

    **Measured at several k.** A benchmark that printed speed at two or more k (a k sweep pasted as a
    table, or runs labelled ``K=2`` / ``k=4``; ingest ``bench``) needs no model: per file, speed
    definition, load and configuration, when the largest k tried is at least ``min_gain`` slower than
    the fastest k, that is the finding (``verify_cost_source``: measured, speed against k), with every
    measured point.

    **Why it matters.** Each drafted position costs a draft forward and verify compute; positions that
    almost never accept cost without paying (AEON DFlash #6 lowered k 15 → 10; vLLM PR #16937 found
    K=2 faster than K=4; koboldcpp #2262 n-max 8 slower than no speculation).

    **Evidence.** ``k``, ``per_position_acceptance``, ``recommended_k``, ``predicted_gain``,
    ``cost_ratio`` (and whether assumed), ``verify_cost_source``, ``batch``, ``verify_cost_at_k`` and
    at the recommended k, ``alpha_estimate`` and theory's ``optimal_gamma`` under the same costs.

    **Example.** k = 15, positions 9-15 below 5 %: k = 8 predicted 9 % faster.

    **Fix.** Lower k to ``recommended_k`` (vLLM ``num_speculative_tokens``, SGLang
    ``--speculative-num-steps``/``--speculative-num-draft-tokens``, llama.cpp ``--spec-draft-n-max``, ``--draft-max`` in older builds), or use
    a dynamic-k policy.
    """

    code = "K_TOO_LARGE"
    name = "k too large"
    severity = "warning"
    thresholds = ("tail_position_rate", "tail_positions", "keep_position_rate", "min_gain",
                  "assumed_cost_ratio", "verify_saturation_tokens", "min_draft_tokens", "min_steps")
    needs = (Need("draft_tokens", "min_draft_tokens", "drafted tokens of one engine or trace"),
             Need("windows", "2 * min_windows", "windows, where the engine prints no draft counts"),
             Need("runs", 2, "benchmark runs at different k (a measured sweep)"))
    problems = (8,)
    theory = ("1.4",)
    explained_by = CORRECTNESS_CAUSES + ("POSITION_CLIFF", "DRAFTER_BROKEN")

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for u in units(ctx):
            pp = drafted_per_position(u.acc)
            if not pp or len(pp) < 2 or not enough_drafts(u, ctx) or find_cliff(u, ctx):
                continue
            if (u.acc.rate is not None and u.acc.rate < th.broken_acceptance_rate) or (
                    u.acc.mal is not None and u.acc.mal < th.broken_mal):
                continue  # a broken drafter is DRAFTER_BROKEN's finding; k is not the problem
            if any(x is None or math.isnan(x) for x in pp):
                continue
            tail = 0
            for x in reversed(pp):
                if x >= th.tail_position_rate:
                    break
                tail += 1
            if tail < th.tail_positions:
                continue
            c, c_source = draft_cost(u)
            assumed = c is None
            c = th.assumed_cost_ratio if c is None else c
            vcost, vinfo = verify_cost_model(ctx, u)
            k = len(pp)
            speed = [theory.speedup_with_verify_cost(1.0 + sum(pp[:g]), g, c, vcost(g)) for g in range(1, k + 1)]
            best = max(range(1, k + 1), key=lambda g: (speed[g - 1], -g))
            gain = speed[best - 1] / speed[k - 1] - 1.0
            if best >= k or gain < th.min_gain:
                continue
            keep = max([j + 1 for j, x in enumerate(pp) if x >= th.keep_position_rate], default=1)
            opt = (theory.optimal_gamma_with_verify_cost(u.acc.alpha, c, vcost) if u.acc.alpha is not None
                   else (None, None))
            ev = {"k": k, "per_position_acceptance": pp, "tail_positions_below": tail,
                  "recommended_k": best, "last_position_above_keep_rate": keep, "predicted_gain": gain,
                  "cost_ratio": c, "cost_ratio_assumed": assumed,
                  "cost_ratio_source": c_source or "assumed (assumed_cost_ratio)", **vinfo,
                  "verify_cost_at_k": vcost(k), "verify_cost_at_recommended_k": vcost(best),
                  "alpha_estimate": u.acc.alpha, "optimal_gamma_iid": opt[0],
                  "definitions": {
                      "predicted_gain": "S(recommended_k)/S(k) - 1 with S(k') = (1 + sum(pp[:k'])) / (k' c + V(k'))",
                      "cost_ratio": "c = draft forward time / target forward time (measured on traces, "
                                    "else assumed_cost_ratio)",
                      "verify_cost_source": "where V(k'), the cost of verifying k'+1 tokens per request in target "
                                            "forwards, comes from: measured (verify time vs k), default roofline "
                                            "at the logged batch, or batch 1 (free in k, Leviathan)",
                      "verify_cost_at_k": "V(k) in one-token target forwards",
                      "optimal_gamma_iid": "optimal gamma for alpha_estimate, c and V (i.i.d. model)",
                      "per_position_acceptance": ACCEPTANCE_DEFINITIONS["per_position_acceptance"]}}
            out.append(self.finding(
                ctx, f"k={k} too large in {u.label}: the last {tail} positions accept < "
                     f"{100 * th.tail_position_rate:.0f} %; k={best} predicted {100 * gain:.0f} % faster", ev,
                f"Lower k to {best} (vLLM num_speculative_tokens, SGLang --speculative-num-steps, llama.cpp "
                "--spec-draft-n-max) or use a dynamic-k policy.",
                u.frame, score=gain, sample=unit_sample(self, ctx, u), interval=rate_interval(u.acc)))
        out.extend(self._measured_sweeps(ctx))
        return out

    def _measured_sweeps(self, ctx: Context) -> list[Finding]:
        """Benchmarks that measured speed at several k (comparisons.benchmark_k_sweeps)."""
        from specdec_diag.analysis.comparisons import benchmark_k_sweeps

        out = []
        for sw in benchmark_k_sweeps(ctx.windows, ctx.thresholds.min_gain):
            if not sw["too_large"]:
                continue
            k, best, gain = sw["largest_k"], sw["best_k"], sw["gain_over_largest"]
            where = f" ({sw['config']})" if sw["config"] else ""
            ev = {"k": k, "recommended_k": best, "measured_gain": gain, "points": sw["points"], "load": sw["load"],
                  "verify_cost_source": "measured: benchmark speed against k", "basis": "measured (benchmark output)",
                  "definitions": {"measured_gain": "speed at recommended_k / speed at k - 1, " + sw["definition"],
                                  "k": "the largest draft length the benchmark tried",
                                  "points": "(k, fastest run's speed at that k)"}}
            out.append(self.finding(
                ctx, f"k={k} measured {100 * gain:.0f} % slower than k={best} in {label(sw['source'])}{where}", ev,
                f"Lower k to {best} (vLLM num_speculative_tokens, SGLang --speculative-num-steps, llama.cpp "
                "--spec-draft-n-max): the benchmark measured it faster.",
                [(sw["source"], ln) for ln in sw["lines"]], score=gain,
                sample=self.sample(ctx, "runs", len(sw["points"]))))
        return out


def draft_cost(u: Unit) -> tuple[float | None, str | None]:
    """The draft cost ratio c where the input measures it: trace steps (draft ms per drafted token
    over verify ms per step), or engine windows that carry draft and verify times (TensorRT-LLM
    iteration statistics, draft overhead): ``sum(draft_ms) / (k sum(verify_ms))``."""
    from specdec_diag.analysis import metrics

    if u.kind == "steps":
        c = metrics.cost_ratio(u.frame)
        return c, ("measured: trace draft_ms / verify_ms" if c is not None else None)
    if "draft_ms" not in u.frame.columns or not u.acc.k:
        return None, None
    t = u.frame.filter(pl.col("draft_ms").is_not_null() & pl.col("verify_ms").is_not_null())
    v = float(t["verify_ms"].sum()) if t.height else 0.0
    if v <= 0:
        return None, None
    return float(t["draft_ms"].sum()) / (u.acc.k * v), f"measured: draft_ms / (k verify_ms) over {t.height} windows"


def verify_cost_model(ctx: Context, u: Unit) -> tuple[Callable[[int], float], dict[str, Any]]:
    """V(k'): what verifying k'+1 tokens per request costs, in one-token target forwards, and where
    that came from. Measured where the input has it (trace verify times at three or more draft
    lengths: a linear fit); else the roofline default at the running batch the engine logged
    (``verify_saturation_tokens``); else batch 1, where verification is free in k (Leviathan)."""
    th = ctx.thresholds
    if u.kind == "steps" and "verify_ms" in u.frame.columns:
        t = u.frame.filter(pl.col("verify_ms").is_not_null())
        fit = linear_fit((t["gamma_drafted"] + 1).cast(pl.Float64).to_list(),
                         t["verify_ms"].cast(pl.Float64).to_list()) if t.height >= th.min_steps else None
        if fit is not None:
            a, b = fit
            return (lambda g: theory.verify_cost_linear(g, a, b)), {
                "verify_cost_source": "measured: trace verify_ms fitted on gamma + 1",
                "verify_ms_per_token": b, "verify_ms_intercept": a}
        return (lambda g: 1.0), {"verify_cost_source": "batch 1 (our trace, verify times at one k): free in k"}
    src, eng = str(u.frame["source"][0]), str(u.frame["engine_id"][0] or "")
    w = ctx.windows
    run = w.filter((pl.col("source") == src) & (pl.col("engine_id") == eng))["running_reqs"].drop_nulls() \
        if w.height else None
    if run is None or run.is_empty():
        return (lambda g: 1.0), {"verify_cost_source": "batch unknown: verification assumed free in k (batch 1)"}
    batch = max(1.0, float(run.median()))
    n = float(th.verify_saturation_tokens)
    return (lambda g: theory.verify_cost_roofline(g, batch, n)), {
        "verify_cost_source": f"default roofline (verify_saturation_tokens = {th.verify_saturation_tokens}) at the "
                              f"logged median batch {batch:g}", "batch": batch}
