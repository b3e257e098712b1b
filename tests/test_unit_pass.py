"""The grouped per-unit acceptance pass (analysis/unit_pass.py) equals the per-run path bit for bit."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from specdec_diag.analysis import unit_pass
from specdec_diag.analysis.report import build_report
from specdec_diag.analysis.rules.base import Context, window_acceptance
from specdec_diag.analysis.runs import segment
from specdec_diag.ingest import scan

ROOT = Path(__file__).resolve().parents[1]


def generated_fleet(out: Path, hosts: int = 6) -> Path:
    """Hosts like benchmarks/fleet.py's: a vLLM process restarting into another k, rotated by date into
    4 files, one broken drafter; plus the real Prometheus and V0 (cumulative counter) samples."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_fleet as mf

    for h in range(hosts):
        alpha = 0.03 if h == 2 else 0.78
        start = mf.T0 + timedelta(seconds=h)
        lines = mf.vllm_run(h, start, 3, alpha, 12) + mf.vllm_run(100 + h, start + timedelta(minutes=5), 5, alpha, 12)
        per = len(lines) // 4 + 1
        for i in range(4):
            mf.write(out / f"host-{h}" / f"vllm-2026-03-0{i + 1}.log", lines[i * per:(i + 1) * per])
    return out


def _dumps(rep: dict) -> str:
    return json.dumps(rep, sort_keys=True, default=str)


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory) -> Path:
    return generated_fleet(tmp_path_factory.mktemp("fleet"))


@pytest.mark.parametrize("which", ["sample_fleet", "generated", "all_samples"])
def test_grouped_report_equals_the_per_run_report(which, fleet_dir):
    path = {"sample_fleet": ROOT / "sample_logs" / "fleet", "generated": fleet_dir,
            "all_samples": ROOT / "sample_logs"}[which]
    res = scan([path], use_cache=False)
    runs = segment(res)
    grouped = build_report(res, runs=runs)
    assert len(grouped["runs"]) > 1
    assert _dumps(grouped) == _dumps(build_report(res, runs=runs, grouped=False))


@pytest.mark.parametrize("path", [ROOT / "sample_logs", ROOT / "tests" / "fixtures"])
def test_every_unit_of_every_run_is_seeded_with_the_per_unit_acceptance(path):
    res = scan([path], use_cache=False)
    runs = segment(res)
    units = unit_pass.unit_acceptance(runs)
    seen = 0
    for rid, sub in runs.split().items():
        groups = Context(sub).window_groups()
        assert set(units.get(rid, {})) == {key for key, _ in groups}, rid
        for key, g in groups:
            assert units[rid][key] == window_acceptance(g), (rid, key)
            seen += 1
    assert seen > 50  # the samples have cumulative (V0, Prometheus), interval and per-request windows


def test_only_limits_the_pass_to_those_runs(fleet_dir):
    runs = segment(scan([fleet_dir], use_cache=False))
    some = runs.ids[:2]
    assert set(unit_pass.unit_acceptance(runs, some)) == set(some)
