"""POSITION_CLIFF: Later draft positions accept almost never while position 1 is fine: a multi-step drafting
bug."""

from __future__ import annotations

from specdec_diag.analysis.rules.acceptance._helpers import drafted_per_position, find_cliff, units
from specdec_diag.analysis.rules.base import ACCEPTANCE_DEFINITIONS, Context, Finding, Need, Rule
from specdec_diag.analysis.stats import interval


class PositionCliff(Rule):
    """Later draft positions accept almost never while position 1 is fine: a multi-step drafting bug.

    **What it detects.** A draft position j >= 2 whose conditional acceptance
    ``P(j accepted | j-1 accepted)`` is below ``cliff_conditional`` (and whose overall rate is below
    ``cliff_zero``) although position 1 accepts at least ``cliff_first_position`` and enough drafts
    reached position j-1 (``min_position_trials``) for the zero not to be noise.

    **Why it matters.** Under a healthy drafter the conditional rates are roughly flat; a cliff means
    the drafter's second and later steps are computed from the wrong state: MTP embedding taken before
    RMS norm (ik_llama.cpp #1815), pre- instead of post-norm hidden state (LightLLM #1402), sliding-window
    layers run as full attention (vLLM PR #40898). Every draft beyond the cliff is wasted compute.

    **Evidence.** ``position`` (1-based, first dead position), ``conditional_rate`` there,
    ``conditional_before`` (mean before it), ``first_position_rate``, ``conditional_rates``, ``trials``.

    **Example.** ``Per-position acceptance rate: 0.600, 0.385, 0.215, 0.108, 0.062, 0.000, 0.000``.

    **Fix.** Debug the drafter's multi-step path (hidden state, norm, KV and positions of draft steps
    2..k); until then set k to the position before the cliff.
    """

    code = "POSITION_CLIFF"
    name = "per-position cliff"
    severity = "error"
    thresholds = ("cliff_first_position", "cliff_conditional", "cliff_zero", "min_position_trials")
    needs = (Need("trials", "min_position_trials", "drafts that reached the dead position (its previous one accepted)"),)
    problems = (7, 6)
    theory = ("1.10",)
    explained_by = ("KV_ROLLBACK", "STRUCTURE_VIOLATION", "PINNED_ACCEPTANCE_LENGTH")

    def check(self, ctx: Context) -> list[Finding]:
        out = []
        for u in units(ctx):
            cliff = find_cliff(u, ctx, thin=True)
            if not cliff:
                continue
            ev = {**cliff, "k": u.acc.k, "per_position_acceptance": drafted_per_position(u.acc),
                  "definitions": {"position": "first draft position (1-based) that about never accepts",
                                  "conditional_rate": "P(position accepted | previous accepted)",
                                  "trials": "drafts that reached this position",
                                  "per_position_acceptance": ACCEPTANCE_DEFINITIONS["per_position_acceptance"]}}
            j = cliff["position"]
            out.append(self.finding(
                ctx, f"Per-position cliff in {u.label}: position {j} accepts "
                     f"{100 * cliff['conditional_rate']:.1f} % of the drafts that reach it (earlier positions "
                     f"{100 * cliff['conditional_before']:.0f} %)", ev,
                f"Debug the drafter's steps 2..k (hidden state/norm, draft KV, positions); meanwhile set "
                f"k = {j - 1} (e.g. vLLM num_speculative_tokens, SGLang --speculative-num-steps).",
                u.frame, score=1.0 - (j - 1) / max(u.acc.k or j, 1),
                sample=self.sample(ctx, "trials", cliff["trials"]),
                interval=interval(f"conditional_rate at position {j}", cliff["accepted"], cliff["trials"])))
        return out
