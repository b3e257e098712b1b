"""Diagnosis rule catalog (ruff-style): every finding code of docs/architecture.md §5 is one rule
with a stable code, a documentation page (its docstring, rendered to ``docs/rules/CODE.md``) and
fixtures. ``run_rules(result)`` runs them over an :class:`~specdec_diag.ingest.base.IngestResult`.

Layout: one module per rule, ``<family>/<code in snake case>.py`` (``acceptance/low_acceptance.py``),
helpers a family shares in ``<family>/_helpers.py``, the list of rules in :mod:`.registry`, the
machinery in :mod:`.base` and :mod:`.run`, every threshold in :mod:`.thresholds`.

Families: ``acceptance`` (level, shape, change), ``performance`` (speed, cost, capacity),
``correctness`` (trace step invariants, verifier), ``config`` (setup facts), ``data`` (input
quality and metric definitions).
"""

from __future__ import annotations

from specdec_diag.analysis.rules.base import SEVERITIES, Context, Finding, Rule, insufficient, ranked
from specdec_diag.analysis.rules.registry import RULES
from specdec_diag.analysis.rules.run import run_rules
from specdec_diag.analysis.rules.thresholds import Thresholds, threshold_docs

FAMILIES = ("acceptance", "performance", "correctness", "config", "data")

__all__ = ["RULES", "SEVERITIES", "Context", "Finding", "Rule", "Thresholds", "FAMILIES", "insufficient",
           "load_all", "ranked", "run_rules", "threshold_docs"]


def load_all() -> dict[str, Rule]:
    """The registry (every rule is imported with this package); kept for callers that ask for it."""
    return RULES
