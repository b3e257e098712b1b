"""What replay reports: the divergence kinds, one step's verdict and the whole result (``--json``).

No torch here: a result is plain data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from specdec_diag.decoder.tracing import clean

#: divergence kind -> (category, finding code it evidences, what it means)
KINDS: dict[str, tuple[str, str, str]] = {
    # decisions and tokens vs the reference verifier
    "accept_flags": ("decision", "VERIFIER_MISMATCH", "recorded accept flags differ from the reference test"),
    "n_accepted": ("decision", "VERIFIER_MISMATCH", "recorded accepted count differs from the reference"),
    "token": ("decision", "VERIFIER_MISMATCH", "an emitted token differs from the reference verifier's"),
    "out_of_support": ("decision", "VERIFIER_MISMATCH",
                       "the verifier's token has zero probability under the distribution it must come from"),
    "impossible_decision": ("decision", "VERIFIER_MISMATCH",
                            "a draft accepted with p = 0, or rejected although p >= q (cannot happen)"),
    "acceptance_statistics": ("decision", "VERIFIER_MISMATCH",
                              "accepted count over the run is inconsistent with sum min(1, p/q)"),
    "p_mismatch": ("decision", "VERIFIER_MISMATCH", "recorded p(token) differs from the reference target's"),
    "q_mismatch": ("decision", "VERIFIER_MISMATCH",
                   "recorded q(token) differs from the reference draft's processed distribution"),
    "nan_p": ("decision", "PINNED_ACCEPTANCE_LENGTH", "recorded p is null/NaN: the verifier produced NaN logits"),
    # step structure
    "context_len": ("structure", "STRUCTURE_VIOLATION", "context_len is not prompt + tokens emitted so far"),
    "emitted_prefix": ("structure", "STRUCTURE_VIOLATION", "emitted tokens do not start with the accepted drafts"),
    "emitted_count": ("structure", "STRUCTURE_VIOLATION", "emitted is not n + 1 tokens and nothing was trimmed"),
    "bonus_dropped": ("structure", "BONUS_DROPPED", "all drafts accepted but no bonus token emitted"),
    "flags_vs_n": ("structure", "STRUCTURE_VIOLATION", "n_accepted is not the leading run of accept_flags"),
    "last_token_kind": ("structure", "STRUCTURE_VIOLATION", "last_token_kind disagrees with n (bonus iff n = gamma)"),
    "target_forwards": ("structure", "SEQUENTIAL_VERIFY", "more than one target forward in the step"),
    "kv_cache": ("structure", "KV_ROLLBACK", "target cache length is not sequence length - 1"),
    "positions": ("structure", "KV_ROLLBACK", "verify window positions are not L-1 .. L-1+gamma"),
    "gamma": ("structure", "STRUCTURE_VIOLATION", "more tokens drafted than requested"),
    "gamma_schedule": ("structure", "STRUCTURE_VIOLATION", "gamma requested differs from the previous gamma_next"),
    "trim": ("structure", "STRUCTURE_VIOLATION", "trimmed_by does not match the emitted tokens"),
}

#: (logit gap, probability tolerance) treated as numerical noise, by the dtype the replay runs in.
TOLERANCE = {"float32": (1e-4, 1e-3), "float16": (5e-2, 2e-2), "bfloat16": (1e-1, 3e-2)}


@dataclass
class Divergence:
    """One disagreement. ``position`` is the index in the step's window (0..gamma; gamma = bonus)
    or None for step-level / run-level findings; ``step`` is None for run-level ones."""

    kind: str
    message: str
    step: int | None = None
    request: int | None = None
    position: int | None = None
    recorded: Any = None
    reference: Any = None
    line: int | None = None

    @property
    def category(self) -> str:
        return KINDS[self.kind][0]

    @property
    def code(self) -> str:
        return KINDS[self.kind][1]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "category": self.category, "code": self.code}


@dataclass
class StepVerdict:
    """Per-step outcome: the recorded and reference n / tokens, and the divergence kinds found."""

    step: int
    request: int
    line: int | None
    gamma: int
    n_recorded: int
    n_reference: int | None
    emitted: list[int]
    reference_emitted: list[int] | None
    kinds: list[str] = field(default_factory=list)
    near_ties: int = 0
    token_prob: float | None = None  # probability of the verifier's token under its reference distribution

    @property
    def agrees(self) -> bool:
        return not self.kinds


@dataclass
class ReplayResult:
    """Everything replay found; :meth:`to_dict` is the ``--json`` output."""

    path: str
    mode: str  # greedy | sampling-exact | sampling-statistical | baseline-greedy | ...
    rule: str
    fault_in_header: str | None
    steps_total: int
    steps_checked: int
    steps_agreeing: int
    steps_diverging: int
    near_ties: int
    by_kind: dict[str, int]
    divergences: list[Divergence]
    first: Divergence | None
    first_context: dict[str, Any] | None
    statistics: dict[str, Any]
    warnings: list[str]
    models: dict[str, Any]
    verdicts: list[StepVerdict]

    @property
    def diverged(self) -> bool:
        return bool(self.divergences)

    @property
    def codes(self) -> list[str]:
        return sorted({d.code for d in self.divergences})

    def to_dict(self, max_divergences: int = 200) -> dict[str, Any]:
        """JSON-ready (non-finite floats become null)."""
        return clean({
            "schema": "specdec-diag/replay@1",
            "path": self.path, "mode": self.mode, "rule": self.rule, "fault_in_header": self.fault_in_header,
            "diverged": self.diverged, "codes": self.codes,
            "counts": {"steps_total": self.steps_total, "steps_checked": self.steps_checked,
                       "steps_agreeing": self.steps_agreeing, "steps_diverging": self.steps_diverging,
                       "near_ties": self.near_ties, "by_kind": dict(self.by_kind)},
            "first_divergence": self.first.to_dict() if self.first else None,
            "first_context": self.first_context,
            "divergences": [d.to_dict() for d in self.divergences[:max_divergences]],
            "divergences_total": len(self.divergences),
            "statistics": self.statistics,
            "warnings": self.warnings,
            "models": self.models,
        })
