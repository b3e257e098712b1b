"""Injectable bugs that real serving engines have shipped (off by default).

A fault changes the decoder's behaviour, never its bookkeeping: the trace records what the buggy
decoder really did, exactly as an engine's own counters would. No step field names the fault; only
the trace header's ``fault`` does, so diagnosis rules must find it from the numbers.

Each fault is one class here: its description (:class:`FaultSpec`) and the one :class:`Hooks` method it
overrides. The speculative step calls the hooks at fixed points (around the draft and verify forwards,
the acceptance test, the emission and the target-cache rollback) and has no fault branch of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from specdec_diag.decoder.verification import AcceptTest, plain_probs

#: a forward bound to one model and cache: (token ids, first position) -> logits [len(ids), V]
Forward = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class FaultSpec:
    name: str
    imitates: str
    shows_as: str
    params: dict[str, float] = field(default_factory=dict)


class Hooks:
    """The healthy decoder: every hook is the plain call. A fault subclass overrides one or two."""

    spec: ClassVar[FaultSpec | None] = None

    def __init__(self, params: dict[str, Any] | None = None):
        self.params = dict(params or {})

    def draft_forward(self, forward: Forward, ids: torch.Tensor, pos0: int, step: int) -> torch.Tensor:
        return forward(ids, pos0)

    def draft_q(self, q: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The q the verifier is given for a drafted token (``q`` is what it was sampled from)."""
        return q

    def after_draft(self, drafted: int, elapsed_s: float) -> None:
        """Called once the draft phase is over (``elapsed_s`` of it)."""

    def verify_position(self, pos0: int) -> int:
        """First position id of the verify window (L - 1 when healthy)."""
        return pos0

    def verify_forward(self, forward: Forward, window: torch.Tensor, pos0: int,
                       step: int) -> tuple[torch.Tensor, int]:
        """Verifier logits for the window and the number of target forwards it took."""
        return forward(window, pos0), 1

    def accept(self, test: AcceptTest) -> AcceptTest:
        """Wrap the acceptance test (called once per run)."""
        return test

    def emit(self, tokens: list[int], kind: str, drafted: int) -> list[int]:
        """The tokens a step emits: accepted drafts + the verifier's token (before trimming)."""
        return tokens

    def rollback_target(self, rollback: Callable[[Any, int], None], cache: Any, keep: int) -> None:
        rollback(cache, keep)


class AcceptAll(Hooks):
    spec = FaultSpec(
        "accept-all",
        "a verifier bypassed or short-circuited, every draft taken as accepted ('fast but wrong'; "
        "vLLM/TGI reports of gibberish with speculation on, docs/problems.md#p10)",
        "acceptance 100 % on every step, MAL = gamma+1, greedy output differs from the target's",
    )

    def accept(self, test: AcceptTest) -> AcceptTest:
        return lambda *args: torch.ones_like(test(*args))


class NoRollback(Hooks):
    spec = FaultSpec(
        "no-rollback",
        "rejected drafts' KV left in the target cache (transformers #30312 crop bug, #48280 "
        "sliding-window cache corruption; docs/theory.md §5.1)",
        "target_cache_after > context_len + emitted - 1 and growing; output diverges from greedy "
        "after the first partial rejection; acceptance decays",
    )

    def rollback_target(self, rollback: Callable[[Any, int], None], cache: Any, keep: int) -> None:
        return None  # the bug: the target cache keeps the rejected drafts' entries


class SequentialVerify(Hooks):
    spec = FaultSpec(
        "sequential-verify",
        "verification run as one target forward per position instead of one parallel forward "
        "(docs/theory.md §5.7; Theorem 3.8's premise broken)",
        "target_forwards = gamma_drafted + 1 per step; verify_ms grows linearly with gamma",
    )

    def verify_forward(self, forward: Forward, window: torch.Tensor, pos0: int,
                       step: int) -> tuple[torch.Tensor, int]:
        outs = [forward(window[i : i + 1], pos0 + i) for i in range(window.shape[0])]
        return torch.cat(outs), len(outs)


class DropBonus(Hooks):
    spec = FaultSpec(
        "drop-bonus",
        "bonus token discarded on fully accepted steps (vLLM #4212 / V0 _disable_bonus_tokens)",
        "fully accepted steps emit gamma tokens, never gamma+1; efficiency capped at gamma/(gamma+1)",
    )

    def emit(self, tokens: list[int], kind: str, drafted: int) -> list[int]:
        return tokens[:-1] if kind == "bonus" and drafted > 0 else tokens


class RawDraftProbs(Hooks):
    spec = FaultSpec(
        "raw-draft-probs",
        "q taken from the draft's RAW logits while the token was sampled from processed ones "
        "(transformers #47932 -> PR #48007; z-lab/dflash #74)",
        "p/q ratios off: acceptance inflated under top-k / low temperature; sampled output no "
        "longer follows the target distribution (greedy unaffected)",
    )

    def draft_q(self, q: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return plain_probs(logits)  # greedy's q already is the raw softmax: unaffected


class PositionShift(Hooks):
    spec = FaultSpec(
        "position-shift",
        "verify window given positions off by one (transformers #30042/#30068 cache_position; "
        "jundot/omlx #2363)",
        "verify_pos_first = context_len instead of context_len - 1; greedy output diverges",
    )

    def verify_position(self, pos0: int) -> int:
        return pos0 + 1


class NanVerifier(Hooks):
    spec = FaultSpec(
        "nan-verifier",
        "verifier logits become NaN mid-run (TensorRT-LLM PR #5146: Eagle3 on Hopper emitted "
        "'!!!!', acceptance length stuck at exactly 1 or exactly draft_len)",
        "from step after_step on, p is null (NaN) and the verifier's argmax/sampler returns token 0 "
        "('!!!!'); every NaN comparison is false, so n pins at 0 (MAL 1; greedy accepts only a drafted 0). "
        "With draft_too=1 (an EAGLE/MTP head fed the same NaN hidden states) the draft proposes 0 too and "
        "greedy n pins at gamma (MAL gamma+1)",
        {"after_step": 5, "draft_too": 0},
    )

    def _on(self, step: int) -> bool:
        return step >= int(self.params["after_step"])

    def draft_forward(self, forward: Forward, ids: torch.Tensor, pos0: int, step: int) -> torch.Tensor:
        logits = forward(ids, pos0)
        if self._on(step) and self.params.get("draft_too"):
            return torch.full_like(logits, float("nan"))  # an EAGLE/MTP head fed NaN hidden states
        return logits

    def verify_forward(self, forward: Forward, window: torch.Tensor, pos0: int,
                       step: int) -> tuple[torch.Tensor, int]:
        logits, count = forward(window, pos0), 1
        return (torch.full_like(logits, float("nan")) if self._on(step) else logits), count


class SlowDraft(Hooks):
    spec = FaultSpec(
        "slow-draft",
        "an oversized or badly placed drafter whose cost dominates (transformers #36337, "
        "docs/problems.md#p14: high acceptance but no speed-up)",
        "draft_ms inflated ~factor x per drafted token while acceptance is unchanged",
        {"factor": 8},
    )

    def after_draft(self, drafted: int, elapsed_s: float) -> None:
        if drafted:
            time.sleep((float(self.params["factor"]) - 1) * elapsed_s)


_HOOKS: dict[str, type[Hooks]] = {
    c.spec.name: c for c in (AcceptAll, NoRollback, SequentialVerify, DropBonus, RawDraftProbs,
                             PositionShift, NanVerifier, SlowDraft)
}
FAULTS: dict[str, FaultSpec] = {name: c.spec for name, c in _HOOKS.items()}


@dataclass
class Fault:
    """The active fault (or none), as configured and recorded in the trace header."""

    name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name is not None and self.name not in FAULTS:
            raise ValueError(f"unknown fault {self.name!r}; choose one of {', '.join(FAULTS)}")
        if self.name is not None:
            self.params = {**FAULTS[self.name].params, **self.params}

    def hooks(self) -> Hooks:
        """The hooks the decoder calls: the fault's class, or the healthy :class:`Hooks`."""
        return _HOOKS[self.name](self.params) if self.name is not None else Hooks()

    def header(self) -> dict[str, Any]:
        """Header fields: ``fault`` (name or null) and ``fault_params``."""
        return {"fault": self.name, "fault_params": dict(self.params) if self.name else None}
