"""Injectable bugs that real serving engines have shipped (off by default).

A fault changes the decoder's behaviour, never its bookkeeping: the trace records what the buggy
decoder really did, exactly as an engine's own counters would. No step field names the fault; only
the trace header's ``fault`` does, so diagnosis rules must find it from the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FaultSpec:
    name: str
    imitates: str
    shows_as: str
    params: dict[str, float] = field(default_factory=dict)


FAULTS: dict[str, FaultSpec] = {
    f.name: f
    for f in (
        FaultSpec(
            "accept-all",
            "a verifier bypassed or short-circuited, every draft taken as accepted ('fast but wrong'; "
            "vLLM/TGI reports of gibberish with speculation on, user_problems P10)",
            "acceptance 100 % on every step, MAL = gamma+1, greedy output differs from the target's",
        ),
        FaultSpec(
            "no-rollback",
            "rejected drafts' KV left in the target cache (transformers #30312 crop bug, #48280 "
            "sliding-window cache corruption; decoder_anchors 5.1)",
            "target_cache_after > context_len + emitted - 1 and growing; output diverges from greedy "
            "after the first partial rejection; acceptance decays",
        ),
        FaultSpec(
            "sequential-verify",
            "verification run as one target forward per position instead of one parallel forward "
            "(decoder_anchors 5.7; Theorem 3.8's premise broken)",
            "target_forwards = gamma_drafted + 1 per step; verify_ms grows linearly with gamma",
        ),
        FaultSpec(
            "drop-bonus",
            "bonus token discarded on fully accepted steps (vLLM #4212 / V0 _disable_bonus_tokens)",
            "fully accepted steps emit gamma tokens, never gamma+1; efficiency capped at gamma/(gamma+1)",
        ),
        FaultSpec(
            "raw-draft-probs",
            "q taken from the draft's RAW logits while the token was sampled from processed ones "
            "(transformers #47932 -> PR #48007; z-lab/dflash #74)",
            "p/q ratios off: acceptance inflated under top-k / low temperature; sampled output no "
            "longer follows the target distribution (greedy unaffected)",
        ),
        FaultSpec(
            "position-shift",
            "verify window given positions off by one (transformers #30042/#30068 cache_position; "
            "jundot/omlx #2363)",
            "verify_pos_first = context_len instead of context_len - 1; greedy output diverges",
        ),
        FaultSpec(
            "nan-verifier",
            "verifier logits become NaN mid-run (TensorRT-LLM PR #5146: Eagle3 on Hopper emitted "
            "'!!!!', acceptance length stuck at exactly 1 or exactly draft_len)",
            "from step after_step on, p is null (NaN) and the verifier's argmax/sampler returns token 0 "
            "('!!!!'); every NaN comparison is false, so n pins at 0 (MAL 1; greedy accepts only a drafted 0). "
            "With draft_too=1 (an EAGLE/MTP head fed the same NaN hidden states) the draft proposes 0 too and "
            "greedy n pins at gamma (MAL gamma+1)",
            {"after_step": 5, "draft_too": 0},
        ),
        FaultSpec(
            "slow-draft",
            "an oversized or badly placed drafter whose cost dominates (transformers #36337, "
            "user_problems P14: high acceptance but no speed-up)",
            "draft_ms inflated ~factor x per drafted token while acceptance is unchanged",
            {"factor": 8},
        ),
    )
}


@dataclass
class Fault:
    """The active fault (or none): boolean switches the decoder consults at the faulty spot."""

    name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name is not None and self.name not in FAULTS:
            raise ValueError(f"unknown fault {self.name!r}; choose one of {', '.join(FAULTS)}")
        if self.name is not None:
            self.params = {**FAULTS[self.name].params, **self.params}

    def is_(self, name: str) -> bool:
        return self.name == name

    def nan_at(self, step: int) -> bool:
        return self.name == "nan-verifier" and step >= int(self.params["after_step"])

    def header(self) -> dict[str, Any]:
        """Header fields: ``fault`` (name or null) and ``fault_params``."""
        return {"fault": self.name, "fault_params": dict(self.params) if self.name else None}
