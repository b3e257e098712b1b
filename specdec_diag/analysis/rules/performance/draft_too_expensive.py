"""DRAFT_TOO_EXPENSIVE: The drafter's cost ratio c is too high for the achieved acceptance."""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis import theory
from specdec_diag.analysis.rules.base import (
    Context,
    Finding,
    Need,
    Rule,
    insufficient,
    label,
    step_acceptance,
)
from specdec_diag.analysis.rules.performance._helpers import timed_rows


class DraftTooExpensive(Rule):
    """The drafter's cost ratio c is too high for the achieved acceptance.

    **What it detects.** Traces where the measured cost ratio ``c`` (one draft forward over one target
    forward) makes Leviathan's predicted speed-up ``S(alpha, gamma, c)`` fall below ``min_speedup``
    while either a cheap drafter (``c = assumed_cost_ratio``) would reach it at this alpha - so it is
    the cost, not the acceptance - or drafting takes at least ``draft_share`` of the step time. On
    engine windows with draft/verify times (TRT-LLM ``draftOverhead``), a draft share of at least
    ``draft_share``; llama-server request rows carry it from the ``dur(g)`` of its ``statistics``
    lines against the request's eval time.

    **Why it matters.** Speculation pays only when ``alpha > c`` (Cor. 3.9), and well above it in
    practice. High acceptance with no speed-up is the classic symptom (vllm #39680: AR 96.6 % at
    342 → 128 tok/s; transformers #36337; Leviathan's T5-large had the best alpha and the worst
    speed-up at c = 0.11).

    **Evidence.** ``cost_ratio`` c, ``alpha_estimate``, ``gamma``, ``predicted_speedup``,
    ``predicted_speedup_cheap_draft``, ``draft_share`` of step time, ``optimal_gamma`` at this c.

    **Example.** c = 0.62, alpha = 0.74, gamma = 4: S = 0.79 (a drafter at c = 0.05 would give 2.3).

    **Fix.** Use a smaller/faster drafter (EAGLE/MTP head, n-gram), run it under CUDA graphs and on the
    same device, lower gamma to the optimal value, and check the drafter is not CPU-offloaded.
    """

    code = "DRAFT_TOO_EXPENSIVE"
    name = "draft too expensive"
    severity = "warning"
    thresholds = ("min_speedup", "draft_share", "assumed_cost_ratio", "min_steps")
    needs = (Need("steps", "min_steps", "timed trace steps"),
             Need("windows", "min_windows", "engine windows with draft and verify times"))
    problems = (14,)
    theory = ("1.4", "5.9")
    # a step that is structurally broken makes alpha and the step cost meaningless: fix that first
    explained_by = ("KV_ROLLBACK", "STRUCTURE_VIOLATION", "PINNED_ACCEPTANCE_LENGTH", "BONUS_DROPPED",
                    "SEQUENTIAL_VERIFY")

    def check(self, ctx: Context) -> list[Finding]:
        from specdec_diag.analysis import metrics

        th = ctx.thresholds
        out = []
        for src, s in ctx.step_groups():
            timed = timed_rows(s)
            if timed.height < th.min_steps:
                if timed.height:
                    out.append(insufficient(self, ctx, "timed_steps", timed.height, th.min_steps, timed))
                continue
            c = metrics.cost_ratio(timed)
            tb = metrics.time_breakdown(timed) or {}
            acc = step_acceptance(timed)
            if c is None or acc.alpha is None or not acc.k:
                continue
            k = acc.k
            s_now = theory.speedup(acc.alpha, k, c)
            s_cheap = theory.optimal_gamma(acc.alpha, th.assumed_cost_ratio)[1]
            g_opt, s_opt = theory.optimal_gamma(acc.alpha, c)
            share = tb.get("draft_share", 0.0)
            measured = (ctx.memo.get("measured_speedup") or {}).get("speedup")
            s_judged = measured if measured is not None else s_now  # a measured pair beats the model
            # blame the drafter only when speculation does not pay, and either a cheap drafter would make
            # it pay at this alpha or drafting dominates the step
            if not (s_judged < th.min_speedup and (s_cheap >= th.min_speedup or share >= th.draft_share)):
                continue
            ev = {"cost_ratio": c, "alpha_estimate": acc.alpha, "gamma": k, "predicted_speedup": s_now,
                  "predicted_speedup_cheap_draft": s_cheap, "optimal_gamma": g_opt,
                  "optimal_speedup": s_opt, "draft_share": share, "steps": timed.height,
                  "measured_speedup": measured,
                  "definitions": {
                      "cost_ratio": metrics.METRICS["c"].definition,
                      "alpha_estimate": "censored-geometric MLE of Leviathan alpha",
                      "predicted_speedup": "Leviathan Thm 3.8 S(alpha, gamma, c)",
                      "predicted_speedup_cheap_draft": f"best S at c = {th.assumed_cost_ratio} (a cheap drafter)",
                      "draft_share": "draft_ms / (draft + verify + overhead ms)"}}
            out.append(self.finding(
                ctx, f"Drafter too expensive in {label(src)}: c = {c:.2f}, drafting {100 * share:.0f} % of step time; "
                     f"predicted speed-up {s_now:.2f}x at alpha {acc.alpha:.2f}", ev,
                f"Use a smaller/faster drafter (EAGLE/MTP head, n-gram) on the same device under CUDA graphs; "
                f"at this c the best gamma is {g_opt} (S = {s_opt:.2f}x).",
                timed, score=max(0.0, 1.0 - s_now / max(s_cheap, 1e-9)), sample=self.sample(ctx, "steps", timed.height)))
        out.extend(self._windows(ctx))
        return out

    def _windows(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        # all windows, not only the aggregation rows: llama-server's draft cost sits on its request rows
        # while its statistics interval rows carry the acceptance (one window kind per group, no overlap)
        for (src, _eng), g in ctx.window_groups(ctx.windows):
            t = timed_rows(g)
            if t.height and t["window"].n_unique() > 1:
                t = t.filter(pl.col("window").eq_missing(t["window"].mode().first()))  # a null mode keeps the null rows
            if t.height < th.min_windows:
                continue
            d, v = float(t["draft_ms"].sum()), float(t["verify_ms"].sum())
            o = float(t["overhead_ms"].fill_null(0).sum())
            share = d / (d + v + o) if d + v + o > 0 else 0.0
            if share < th.draft_share:
                continue
            out.append(self.finding(
                ctx, f"Drafting takes {100 * share:.0f} % of speculative step time in {label(src)}",
                {"draft_ms": d, "verify_ms": v, "overhead_ms": o, "draft_share": share,
                 "definitions": {"draft_share": "draft_ms / (draft + verify + overhead ms) over the windows"}},
                "Use a cheaper drafter or lower gamma; check the drafter runs under CUDA graphs and on-device.",
                t, score=share, sample=self.sample(ctx, "windows", t.height)))
        return out
