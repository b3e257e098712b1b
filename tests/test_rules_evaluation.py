"""Evaluation of the rule catalog on the project's sample logs (issue 5 §5): healthy samples raise no
error, every decoder-fault trace raises the code its fault calls for (judged from the steps, never the
header's fault label), and precision/recall over the labelled engine logs stay high. The same
evaluation renders docs/rules-evaluation.md (tests/fixtures/rules/evaluate.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "rules"))

import evaluate  # noqa: E402

SAMPLES = evaluate.ROOT / "sample_logs"


@pytest.fixture(scope="module")
def samples():
    got = evaluate.collect_samples(SAMPLES)
    if not got:
        pytest.skip("no sample_logs/ in this checkout")
    return evaluate.run(got)


def test_healthy_samples_raise_no_error(samples):
    for s in samples:
        if s.expect is not None and not (s.expect - {"NO_SPEEDUP", "DRAFT_TOO_EXPENSIVE"}):
            errors = [f.code for f in s.findings if f.severity == "error"]
            assert not errors, f"{s.name}: {errors}"


def test_every_fault_trace_raises_its_code(samples):
    traces = [s for s in samples if s.basis.startswith("trace fault") and "not mapped" not in s.basis]
    faults = [s for s in traces if not s.basis.startswith("trace fault none")]
    if not faults:
        pytest.skip("no decoder-fault traces in sample_logs/")
    for s in faults:
        fault = s.basis.split(";")[0].removeprefix("trace fault ")
        want = evaluate.FAULT_CODES[fault]
        assert want & s.fired, f"{s.name}: fault {fault} should raise one of {sorted(want)}, got {sorted(s.fired)}"


def test_labelled_engine_logs_precision_and_recall(samples):
    engine = [s for s in samples if s.expect is not None and not s.basis.startswith(("trace", "baseline"))]
    if not engine:
        pytest.skip("no labelled engine logs in sample_logs/")
    per = evaluate.score(engine)
    tp = sum(k["tp"] for k in per.values())
    fp = sum(k["fp"] for k in per.values())
    fn = sum(k["fn"] for k in per.values())
    assert tp / (tp + fp) >= 0.85, per
    assert tp / (tp + fn) >= 0.80, per


def test_readme_tables_and_file_names_give_expectations(tmp_path):
    d = tmp_path / "eng"
    d.mkdir()
    (d / "README.md").write_text("| file | story | raises |\n|---|---|---|\n| `a.log` | x | POSITION_CLIFF, K_TOO_LARGE |\n"
                                 "| `b.log` | y | - |\n")
    tables = evaluate.readme_tables(tmp_path)
    assert tables[(d / "a.log").resolve()] == {"POSITION_CLIFF", "K_TOO_LARGE"}
    assert tables[(d / "b.log").resolve()] == set()
    assert evaluate.from_name(Path("unhealthy_vllm_v1_spec_inactive.prom")) == {"SPEC_INACTIVE"}
    assert evaluate.from_name(Path("unhealthy_capacity_pd.log")) == {"CAPACITY_QUEUEING"}
    assert evaluate.from_name(Path("healthy_eagle3.log")) == set()
    assert evaluate.from_name(Path("sglang_gauges.prom")) is None
