"""Every registered rule fires on its bad fixtures and stays silent (no warning/error) on all others.

A rule's fixtures are found by its code (``cases.firing`` / ``cases.silent`` over the cases in
tests/fixtures/rules/cases.py): real-format engine logs (logs/) and synthetic traces (synth.py).
Inputs go through the real ingest (``scan``) so the rules see what users' files produce.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "rules"))

from cases import CASES, build_case, firing, silent  # noqa: E402

from specdec_diag.analysis.rules import RULES, run_rules  # noqa: E402
from specdec_diag.ingest import scan  # noqa: E402

CODES = sorted(RULES)  # the registry, never a hand-kept list


def fired(findings, strong_only: bool = False) -> set[str]:
    """Codes raised: warning/error, plus info for rules whose default severity is info."""
    return {f.code for f in findings
            if f.severity != "info" or (not strong_only and RULES[f.code].severity == "info")}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, list]:
    root = tmp_path_factory.mktemp("rule_cases")
    return {c.name: run_rules(scan(build_case(c, root / c.name), use_cache=False), strict=True) for c in CASES}


@pytest.mark.parametrize("code", CODES)
def test_every_registered_code_has_firing_and_silent_fixtures(code):
    assert firing(code), f"{code}: no fixture raises it (add one to tests/fixtures/rules/cases.py)"
    quiet = {c.name for c in silent(code)}
    assert quiet >= {c.name for c in CASES if c.healthy}, f"{code} tolerated on a healthy case"
    assert quiet - {c.name for c in CASES if c.healthy}, f"{code}: no bad case of another rule keeps it quiet"


def test_fixtures_name_only_registered_codes():
    named = set().union(*(c.expect | c.also for c in CASES))
    assert named <= set(RULES), f"fixtures name unknown codes: {sorted(named - set(RULES))}"


@pytest.mark.parametrize("code", CODES)
def test_rule_fires_on_its_fixtures(code, results):
    missed = [c.name for c in firing(code) if code not in fired(results[c.name])]
    assert not missed, f"{code} did not fire on {missed}"


@pytest.mark.parametrize("code", CODES)
def test_rule_is_silent_on_the_other_fixtures(code, results):
    loud = [(c.name, f.severity, f.title) for c in silent(code) for f in results[c.name]
            if f.code == code and f.severity != "info"]
    assert not loud, f"{code} fired where it should not: {loud}"


@pytest.mark.parametrize("case", [c for c in CASES if not c.healthy], ids=lambda c: c.name)
def test_findings_point_at_the_input(case, results):
    """Each expected finding names locations inside the fixture's files, with line numbers."""
    for f in results[case.name]:
        if f.code not in case.expect:
            continue
        assert f.locations, f"{f.code} has no locations"
        for loc in f.locations:
            assert case.name in loc["path"]
        assert f.recommendation and f.evidence.get("definitions"), f.code
