"""Running the catalog: pick the rules, run each over one shared :class:`Context`, demote symptoms
that a correctness error on the same input explains, and rank (principal bottleneck first)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from specdec_diag.analysis.rules.base import SEVERITY_RANK, Context, Finding, ranked
from specdec_diag.analysis.rules.registry import RULES
from specdec_diag.analysis.rules.thresholds import Thresholds
from specdec_diag.ingest.base import IngestResult


def run_rules(result: IngestResult, thresholds: Thresholds | None = None,
              select: Iterable[str] | None = None, ignore: Iterable[str] | None = None,
              strict: bool = False, facts: dict[str, Any] | None = None) -> list[Finding]:
    """Run the registered rules (all, or the codes in ``select``, minus ``ignore``) over one ingest
    result and return the findings ranked, principal bottleneck first.

    A finding whose rule lists an ``explained_by`` code that fired, at least as severe, on the same
    sources is demoted to info and says which code explains it (a leaked KV cache also lowers
    acceptance; the report should lead with the cause).

    A rule that crashes on unexpected data does not take the report down: unless ``strict`` (tests),
    its exception becomes an info finding naming the rule, so the other findings still arrive.

    ``facts``: numbers measured outside this input that rules may use, seeded into ``ctx.memo``
    (``"measured_speedup"``: this run against a load-matched run without speculation, see
    ``analysis/comparisons.py``)."""
    ctx = Context(result, thresholds or Thresholds(), memo=dict(facts or {}))
    findings: list[Finding] = []
    for code in selected_codes(select, ignore):
        try:
            findings.extend(RULES[code].check(ctx))
        except Exception as exc:
            if strict:
                raise
            findings.append(Finding(
                code, "info", f"{code}: rule could not run on this input ({type(exc).__name__}: {exc})",
                {"internal_error": f"{type(exc).__name__}: {exc}"},
                "Please report this with the input file; the other findings are unaffected."))
    demote_explained(findings)
    return ranked(findings)


def selected_codes(select: Iterable[str] | None = None, ignore: Iterable[str] | None = None) -> list[str]:
    """Registered codes in run order: those in ``select`` (all when None) minus ``ignore``; codes are
    case-insensitive and an unknown selected code is an error."""
    codes = list(RULES)
    if select is not None:
        wanted = {c.upper() for c in select}
        unknown = wanted - set(RULES)
        if unknown:
            raise ValueError(f"unknown rule code(s): {', '.join(sorted(unknown))}")
        codes = [c for c in codes if c in wanted]
    if ignore is not None:
        drop = {c.upper() for c in ignore}
        codes = [c for c in codes if c not in drop]
    return codes


def demote_explained(findings: list[Finding]) -> None:
    """Demote, in place, each finding whose cause (a code in its rule's ``explained_by``) fired at
    least as severely on all of its sources."""
    fired: dict[tuple[str, int], set[str]] = {}  # (code, severity rank) -> sources
    for f in findings:
        fired.setdefault((f.code, SEVERITY_RANK[f.severity]), set()).update(f.sources)
    for f in findings:
        if f.severity == "info":
            continue
        for cause in RULES[f.code].explained_by:
            # the cause must be at least as severe as the symptom and cover all of its sources
            srcs = set().union(*(fired.get((cause, r), set()) for r in range(SEVERITY_RANK[f.severity] + 1)))
            if srcs and f.sources and f.sources <= srcs:
                f.evidence = {**f.evidence, "explained_by": cause, "original_severity": f.severity}
                f.severity = "info"
                f.title = f"{f.title} (consequence of {cause})"
                break
