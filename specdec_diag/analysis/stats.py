"""Small-sample statistics the diagnosis rules share: how much evidence a judgment rests on, and how
uncertain the number it judges is.

Every finding carries ``evidence['sample']`` (what was counted, how many, and the rule's documented
minimum) and, where the judged number is a proportion, ``evidence['interval']`` (a Wilson score
interval). Wilson rather than the normal approximation because the proportions rules judge sit near
0 or 1 (a broken drafter accepts 1 %, a bypassed verifier 100 %), where the normal interval
collapses to a point or leaves [0, 1]. Pure Python: the analysis side stays light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: two-sided 95 % normal quantile
Z95 = 1.959963984540054

__all__ = ["Z95", "wilson", "Sample", "interval", "sample_definitions", "linear_fit"]


def wilson(successes: float, trials: float, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for ``successes`` out of ``trials`` (counts may be fractional when they
    are reconstructed from printed rates); None when there are no trials."""
    if trials is None or successes is None or not trials > 0 or math.isnan(trials) or math.isnan(successes):
        return None
    p = min(max(successes / trials, 0.0), 1.0)
    z2 = z * z
    denom = 1.0 + z2 / trials
    centre = (p + z2 / (2.0 * trials)) / denom
    half = z * math.sqrt(p * (1.0 - p) / trials + z2 / (4.0 * trials * trials)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # exact ends: an all-or-nothing count keeps its own end (float rounding must not exclude it)
    return (0.0 if p <= 0.0 else min(lo, p)), (1.0 if p >= 1.0 else max(hi, p))


@dataclass(frozen=True)
class Sample:
    """The evidence a finding rests on: ``size`` units of ``unit`` (draft tokens, windows, steps, ...)
    against the rule's documented ``minimum``. ``explicit``: the evidence is a fact the engine printed
    (``cuda graph: False``, requests waiting at full KV), which needs no statistics."""

    unit: str
    size: float
    minimum: float
    explicit: bool = False

    @property
    def enough(self) -> bool:
        return self.size >= self.minimum

    def to_evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unit": self.unit, "size": self.size, "minimum": self.minimum}
        if self.explicit:
            out["explicit"] = True
        return out


def interval(of: str, successes: float | None, trials: float | None) -> dict[str, Any] | None:
    """``evidence['interval']`` for a proportion ``of`` (a name such as ``acceptance_rate``): 95 %
    Wilson bounds with the counts they come from; None without counts."""
    if successes is None or trials is None:
        return None
    ci = wilson(successes, trials)
    if ci is None:
        return None
    return {"of": of, "low": ci[0], "high": ci[1], "level": 0.95, "method": "wilson",
            "successes": successes, "trials": trials}


def sample_definitions() -> dict[str, str]:
    """What the two evidence entries mean (merged into a finding's ``definitions``)."""
    return {"sample": "evidence the finding rests on: unit counted, size, and the rule's documented minimum "
                      "(below it a rule abstains or emits an info 'not enough data' note)",
            "interval": "95 % Wilson score interval of the judged proportion (successes / trials)"}


def linear_fit(x: list[float], y: list[float], min_distinct: int = 3) -> tuple[float, float] | None:
    """Least-squares ``(intercept, slope)`` of y on x; None with fewer than ``min_distinct`` distinct
    x values (a slope from two points of one configuration is noise, not growth)."""
    if len(x) != len(y) or len(set(x)) < min_distinct:
        return None
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxx = sum((a - mx) ** 2 for a in x)
    if sxx <= 0:
        return None
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx
    return my - slope * mx, slope
