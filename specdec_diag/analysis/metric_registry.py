"""The metric registry: each metric's formula, bonus-token convention and window, defined once.

Filled by :func:`metric` as the metric functions are defined; the single source of
``docs/metrics.md`` and of the report's ``definitions``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A metric's contract: formula, whether the bonus token is included, and the window it covers."""

    name: str
    formula: str
    bonus: str      # "included" | "excluded" | "n/a"
    window: str     # what the number aggregates over
    unit: str
    doc: str = ""

    @property
    def definition(self) -> str:
        return f"{self.formula} (bonus {self.bonus}; {self.window}; {self.unit})"


#: name -> Metric, filled by @_metric; the single source of docs/metrics.md and report definitions.
METRICS: dict[str, Metric] = {}


def metric(name: str, formula: str, bonus: str, window: str, unit: str) -> Callable:
    def register(fn: Callable) -> Callable:
        METRICS[name] = Metric(name, formula, bonus, window, unit, (fn.__doc__ or "").strip())
        return fn

    return register
