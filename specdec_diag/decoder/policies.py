"""Gamma (draft length) schedules, as in transformers' assisted generation.

* ``constant``: always gamma.
* ``heuristic``: +2 after a step whose drafts were all accepted, else -1 (min 1); transformers'
  ``num_assistant_tokens_schedule="heuristic"``.
* ``confidence``: draft up to gamma tokens but stop after a drafted token whose draft probability is
  below a threshold (default 0.4); transformers' ``assistant_confidence_threshold`` (ConfidenceCriteria
  keeps the low-confidence token and stops after it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

POLICY_NAMES = ("constant", "heuristic", "confidence")


@dataclass
class GammaPolicy:
    """Stateful schedule for one request; ``reset`` at each new prompt (transient, not persisted)."""

    name: str = "constant"
    gamma: int = 4
    threshold: float = 0.4

    def __post_init__(self) -> None:
        if self.name not in POLICY_NAMES:
            raise ValueError(f"unknown gamma policy {self.name!r}; choose one of {', '.join(POLICY_NAMES)}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        self.current = self.gamma

    def reset(self) -> None:
        self.current = self.gamma

    def requested(self) -> int:
        return self.current

    def stops_draft(self, draft_prob: float) -> bool:
        """Confidence stop: called with the probability of the token just drafted."""
        return self.name == "confidence" and draft_prob < self.threshold

    @property
    def needs_draft_prob(self) -> bool:
        return self.name == "confidence"

    def update(self, drafted: int, accepted: int) -> int:
        """Advance after a step and return the gamma requested next."""
        if self.name == "heuristic" and drafted > 0:
            self.current = self.current + 2 if accepted == drafted else max(1, self.current - 1)
        return self.current

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "gamma": self.gamma}
        if self.name == "confidence":
            d["threshold"] = self.threshold
        return d
