"""LOW_ACCEPTANCE: Acceptance below what a matched drafter should reach."""

from __future__ import annotations

from specdec_diag.analysis import theory
from specdec_diag.analysis.rules.acceptance._helpers import (
    CORRECTNESS_CAUSES,
    enough_drafts,
    fmt,
    pct,
    rate_interval,
    unit_sample,
    units,
)
from specdec_diag.analysis.rules.base import (
    ACCEPTANCE_DEFINITIONS,
    Context,
    Finding,
    Need,
    Rule,
    insufficient,
)


class LowAcceptance(Rule):
    """Acceptance below what a matched drafter should reach.

    **What it detects.** A unit with enough drafts whose estimated Leviathan ``alpha`` (the
    per-token acceptance probability; from per-position counts, else from MAL and k by inverting
    Eq. 1) is below ``low_alpha`` - but not so low that DRAFTER_BROKEN applies. The per-position
    conditional rates are shown: a flat profile means an i.i.d. mismatch between the two models, a
    falling one means later positions are worse.

    **Why it matters.** Speed-up grows steeply with alpha (Eq. 1: at k = 4, alpha 0.4 gives 1.65
    tokens per step, 0.8 gives 3.36). Raw engine "acceptance rates" understate alpha (vLLM's counts
    positions after the first rejection as failures), so the rule judges alpha, not the printed rate.

    **Evidence.** ``alpha_estimate``, ``acceptance_rate``, ``mean_acceptance_length``, ``k``,
    ``conditional_per_position``, ``expected_mal_at_threshold``.

    **Example.** alpha = 0.31 (AR 24 %, MAL 1.9 at k = 4); conditional rates 0.33, 0.30, 0.31, 0.29.

    **Fix.** Use a drafter trained for this target (same fine-tune, chat template, language; problem 19 in
    docs/problems.md#p19), check the sampling parameters sent to the drafter, or lower k so fewer drafts are
    wasted.
    """

    code = "LOW_ACCEPTANCE"
    name = "low acceptance"
    severity = "warning"
    thresholds = ("min_draft_tokens", "low_alpha", "broken_acceptance_rate", "broken_mal")
    needs = (Need("draft_tokens", "min_draft_tokens", "drafted tokens of one engine or trace"),
             Need("windows", "2 * min_windows", "windows, where the engine prints no draft counts"))
    problems = (19, 9, 12, 13)
    explained_by = CORRECTNESS_CAUSES + ("DRAFTER_BROKEN", "POSITION_CLIFF")

    def check(self, ctx: Context) -> list[Finding]:
        from specdec_diag.analysis import metrics

        th = ctx.thresholds
        out = []
        for u in units(ctx):
            a = u.acc
            if a.alpha is None or a.alpha >= th.low_alpha:
                continue
            if (a.rate is not None and a.rate < th.broken_acceptance_rate) or (
                    a.mal is not None and a.mal < th.broken_mal):
                continue
            if not enough_drafts(u, ctx):
                s = unit_sample(self, ctx, u)
                out.append(insufficient(self, ctx, s.unit, s.size, s.minimum, u.frame))
                continue
            cond = metrics.conditional_per_position(a.per_position)
            exp_mal = theory.expected_tokens_per_step(th.low_alpha, a.k) if a.k else None
            ev = {**a.evidence(), "conditional_per_position": cond, "expected_mal_at_threshold": exp_mal,
                  "definitions": {**ACCEPTANCE_DEFINITIONS,
                                  "conditional_per_position": "P(position j accepted | j-1 accepted)",
                                  "expected_mal_at_threshold": "Eq. 1 MAL at alpha = low_alpha and this k"}}
            out.append(self.finding(
                ctx, f"Low acceptance in {u.label}: alpha {a.alpha:.2f} (acceptance rate {pct(a.rate)}, "
                     f"MAL {fmt(a.mal)}, k={a.k})", ev,
                "Use a drafter trained for this exact target (fine-tune, chat template, language), make sure "
                "the drafter sees the same sampling parameters, and lower k (fewer wasted drafts).",
                u.frame, score=th.low_alpha - a.alpha, sample=unit_sample(self, ctx, u), interval=rate_interval(a)))
        return out
