"""The rule registry: every rule, imported by name. Adding a rule is adding its module under
``rules/<family>/`` and one line here; a test checks that this list and the rule files on disk are
the same set, so a rule file that fails to import fails loudly instead of silently dropping a code.

The order is the run order, and the order of the junit test cases in the report.
"""

from __future__ import annotations

from specdec_diag.analysis.rules.acceptance.acceptance_collapse import AcceptanceCollapse
from specdec_diag.analysis.rules.acceptance.acceptance_decay_context import AcceptanceDecayContext
from specdec_diag.analysis.rules.acceptance.drafter_broken import DrafterBroken
from specdec_diag.analysis.rules.acceptance.k_too_large import KTooLarge
from specdec_diag.analysis.rules.acceptance.low_acceptance import LowAcceptance
from specdec_diag.analysis.rules.acceptance.position_cliff import PositionCliff
from specdec_diag.analysis.rules.acceptance.spec_inactive import SpecInactive
from specdec_diag.analysis.rules.acceptance.temperature_sensitivity import TemperatureSensitivity
from specdec_diag.analysis.rules.base import Rule
from specdec_diag.analysis.rules.config.lossy_acceptance import LossyAcceptance
from specdec_diag.analysis.rules.config.vocab_mismatch import VocabMismatch
from specdec_diag.analysis.rules.correctness.bonus_dropped import BonusDropped
from specdec_diag.analysis.rules.correctness.degenerate_output import DegenerateOutput
from specdec_diag.analysis.rules.correctness.kv_rollback import KvRollback
from specdec_diag.analysis.rules.correctness.pinned_acceptance_length import PinnedAcceptanceLength
from specdec_diag.analysis.rules.correctness.structure_violation import StructureViolation
from specdec_diag.analysis.rules.correctness.suspicious_acceptance import SuspiciousAcceptance
from specdec_diag.analysis.rules.correctness.verifier_mismatch import VerifierMismatch
from specdec_diag.analysis.rules.data.benchmark_artifact import BenchmarkArtifact
from specdec_diag.analysis.rules.data.malformed_input import MalformedInput
from specdec_diag.analysis.rules.data.metric_definition import MetricDefinition
from specdec_diag.analysis.rules.performance.capacity_queueing import CapacityQueueing
from specdec_diag.analysis.rules.performance.compute_bound_batch import ComputeBoundBatch
from specdec_diag.analysis.rules.performance.draft_too_expensive import DraftTooExpensive
from specdec_diag.analysis.rules.performance.no_cuda_graph import NoCudaGraph
from specdec_diag.analysis.rules.performance.no_speedup import NoSpeedup
from specdec_diag.analysis.rules.performance.sequential_verify import SequentialVerify

RULE_CLASSES: tuple[type[Rule], ...] = (
    # acceptance
    DrafterBroken,
    LowAcceptance,
    PositionCliff,
    KTooLarge,
    AcceptanceCollapse,
    AcceptanceDecayContext,
    TemperatureSensitivity,
    SpecInactive,
    # performance
    SequentialVerify,
    DraftTooExpensive,
    NoSpeedup,
    ComputeBoundBatch,
    NoCudaGraph,
    CapacityQueueing,
    # correctness
    StructureViolation,
    KvRollback,
    BonusDropped,
    VerifierMismatch,
    SuspiciousAcceptance,
    PinnedAcceptanceLength,
    DegenerateOutput,
    # config
    VocabMismatch,
    LossyAcceptance,
    # data
    MalformedInput,
    MetricDefinition,
    BenchmarkArtifact,
)


def _instances(classes: tuple[type[Rule], ...]) -> dict[str, Rule]:
    """One instance per rule under its (unique, stable) code."""
    out: dict[str, Rule] = {}
    for cls in classes:
        if cls.code in out:
            raise ValueError(f"rule code {cls.code} registered twice")
        out[cls.code] = cls()
    return out


#: Every rule by code, in run order.
RULES: dict[str, Rule] = _instances(RULE_CLASSES)
