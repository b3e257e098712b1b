"""Diagnosis rule catalog (ruff-style): every finding code of ARCHITECTURE.md §5 is one registered
rule with a stable code, a documentation page (its docstring, rendered to ``docs/rules/CODE.md``) and
a fixture. ``run_rules(result)`` runs them over an :class:`~specdec_diag.ingest.base.IngestResult`.

Families: :mod:`.acceptance` (level, shape, change), :mod:`.performance` (speed, cost, capacity),
:mod:`.correctness` (trace step invariants, verifier), :mod:`.config` (setup facts),
:mod:`.data` (input quality and metric definitions).
"""

from __future__ import annotations

import importlib

from specdec_diag.analysis.rules.base import (
    RULES,
    SEVERITIES,
    Context,
    Finding,
    Rule,
    insufficient,
    ranked,
    register,
    run_rules,
)
from specdec_diag.analysis.rules.thresholds import Thresholds, threshold_docs

FAMILIES = ("acceptance", "performance", "correctness", "config", "data")

__all__ = ["RULES", "SEVERITIES", "Context", "Finding", "Rule", "Thresholds", "FAMILIES", "insufficient",
           "load_all", "ranked", "register", "run_rules", "threshold_docs"]


def load_all() -> dict[str, Rule]:
    """Import every family module (registering its rules) and return the registry."""
    for fam in FAMILIES:
        importlib.import_module(f"specdec_diag.analysis.rules.{fam}")
    return RULES


load_all()
