"""Every rule fires on its bad fixture and stays silent (no warning/error) on every healthy one.

Cases live in tests/fixtures/rules/cases.py: real-format engine logs (logs/) and synthetic traces
(synth.py). Inputs go through the real ingest (``scan``) so the rules see what users' files produce.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "rules"))

from cases import CASES, build_case  # noqa: E402

from specdec_diag.analysis.rules import RULES, run_rules  # noqa: E402
from specdec_diag.ingest import scan  # noqa: E402


def fired(findings, strong_only: bool = False) -> set[str]:
    """Codes raised: warning/error, plus info for rules whose default severity is info."""
    return {f.code for f in findings
            if f.severity != "info" or (not strong_only and RULES[f.code].severity == "info")}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, list]:
    root = tmp_path_factory.mktemp("rule_cases")
    return {c.name: run_rules(scan(build_case(c, root / c.name), use_cache=False), strict=True) for c in CASES}


@pytest.mark.parametrize("case", [c for c in CASES if c.healthy], ids=lambda c: c.name)
def test_healthy_case_is_silent(case, results):
    strong = [(f.code, f.severity, f.title) for f in results[case.name] if f.severity != "info"]
    assert strong == []


@pytest.mark.parametrize("case", [c for c in CASES if not c.healthy], ids=lambda c: c.name)
def test_bad_case_raises_its_code(case, results):
    got = fired(results[case.name])
    assert case.expect <= got, f"missing {sorted(case.expect - got)}; got {sorted(got)}"
    extra = fired(results[case.name], strong_only=True) - case.expect - case.also
    assert not extra, f"unexpected findings {sorted(extra)}"


@pytest.mark.parametrize("case", [c for c in CASES if not c.healthy], ids=lambda c: c.name)
def test_findings_point_at_the_input(case, results, tmp_path_factory):
    """Each expected finding names locations inside the fixture's files, with line numbers."""
    for f in results[case.name]:
        if f.code not in case.expect:
            continue
        assert f.locations, f"{f.code} has no locations"
        for loc in f.locations:
            assert case.name in loc["path"]
        assert f.recommendation and f.evidence.get("definitions"), f.code


def test_every_code_has_a_bad_fixture():
    covered = set().union(*(c.expect for c in CASES))
    assert set(RULES) <= covered, f"codes without a fixture: {sorted(set(RULES) - covered)}"
