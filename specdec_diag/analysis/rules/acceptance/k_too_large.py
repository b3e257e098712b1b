"""K_TOO_LARGE: Tail draft positions rarely accept; a smaller k is predicted faster."""

from __future__ import annotations

import math

from specdec_diag.analysis import theory
from specdec_diag.analysis.rules.acceptance._helpers import (
    CORRECTNESS_CAUSES,
    enough_drafts,
    find_cliff,
    units,
)
from specdec_diag.analysis.rules.base import ACCEPTANCE_DEFINITIONS, Context, Finding, Rule


class KTooLarge(Rule):
    """Tail draft positions rarely accept; a smaller k is predicted faster.

    **What it detects.** At least ``tail_positions`` trailing positions accept less than
    ``tail_position_rate``, and the measured per-position profile predicts a faster step at a smaller
    k: expected tokens per step at k' is ``1 + sum(pp[:k'])`` (exact from the data), the step cost is
    ``1 + k' c`` target-forward units (Leviathan Thm 3.8); the best k' must beat the configured k by
    ``min_gain``. ``c`` is measured on traces and ``assumed_cost_ratio`` otherwise.

    **Why it matters.** Each drafted position costs a draft forward and verify compute; positions that
    almost never accept cost without paying (AEON DFlash #6 lowered k 15 → 10; vLLM PR #16937 found
    K=2 faster than K=4; koboldcpp #2262 n-max 8 slower than no speculation).

    **Evidence.** ``k``, ``per_position_acceptance``, ``recommended_k``, ``predicted_gain``,
    ``cost_ratio`` (and whether assumed), ``alpha_estimate`` and theory's ``optimal_gamma``.

    **Example.** k = 15, positions 9-15 below 5 %: k = 8 predicted 9 % faster.

    **Fix.** Lower k to ``recommended_k`` (vLLM ``num_speculative_tokens``, SGLang
    ``--speculative-num-steps``/``--speculative-num-draft-tokens``, llama.cpp ``--draft-max``), or use
    a dynamic-k policy.
    """

    code = "K_TOO_LARGE"
    name = "k too large"
    severity = "warning"
    thresholds = ("tail_position_rate", "tail_positions", "keep_position_rate", "min_gain",
                  "assumed_cost_ratio", "min_draft_tokens")
    problems = (8,)
    theory = ("1.4",)
    explained_by = CORRECTNESS_CAUSES + ("POSITION_CLIFF", "DRAFTER_BROKEN")

    def check(self, ctx: Context) -> list[Finding]:
        from specdec_diag.analysis import metrics

        th = ctx.thresholds
        out = []
        for u in units(ctx):
            pp = u.acc.per_position
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
            c = metrics.cost_ratio(u.frame) if u.kind == "steps" else None
            assumed = c is None
            c = th.assumed_cost_ratio if c is None else c
            k = len(pp)
            speed = [(1.0 + sum(pp[:g])) / (1.0 + g * c) for g in range(1, k + 1)]
            best = max(range(1, k + 1), key=lambda g: (speed[g - 1], -g))
            gain = speed[best - 1] / speed[k - 1] - 1.0
            if best >= k or gain < th.min_gain:
                continue
            keep = max([j + 1 for j, x in enumerate(pp) if x >= th.keep_position_rate], default=1)
            opt = theory.optimal_gamma(u.acc.alpha, c) if u.acc.alpha is not None else (None, None)
            ev = {"k": k, "per_position_acceptance": pp, "tail_positions_below": tail,
                  "recommended_k": best, "last_position_above_keep_rate": keep, "predicted_gain": gain,
                  "cost_ratio": c, "cost_ratio_assumed": assumed, "alpha_estimate": u.acc.alpha,
                  "optimal_gamma_iid": opt[0],
                  "definitions": {
                      "predicted_gain": "S(recommended_k)/S(k) - 1 with S(k') = (1 + sum(pp[:k'])) / (1 + k' c)",
                      "cost_ratio": "c = draft forward time / target forward time (measured on traces, "
                                    "else assumed_cost_ratio)",
                      "optimal_gamma_iid": "Leviathan optimal gamma for alpha_estimate and c (i.i.d. model)",
                      "per_position_acceptance": ACCEPTANCE_DEFINITIONS["per_position_acceptance"]}}
            out.append(self.finding(
                ctx, f"k={k} too large in {u.label}: the last {tail} positions accept < "
                     f"{100 * th.tail_position_rate:.0f} %; k={best} predicted {100 * gain:.0f} % faster", ev,
                f"Lower k to {best} (vLLM num_speculative_tokens, SGLang --speculative-num-steps, llama.cpp "
                "--draft-max) or use a dynamic-k policy.",
                u.frame, score=gain))
        return out
