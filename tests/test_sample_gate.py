"""The committed sample traces are fit for the CI gate, and their README says what the manifest says.

`check --min-acceptance 0.5` (0.4 for the T = 0.8 sampling trace) must pass on the healthy traces
(enough draft tokens to judge) and fail with exit 1 on every correctness fault; the README table must
be exactly what the generator renders from `.meta/traces.json`, and the manifest's report codes what `report` raises now. No torch needed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT / "sample_logs" / "traces"
MANIFEST = ROOT / "sample_logs" / ".meta" / "traces.json"

#: faults that make the output wrong (speed-only faults, sequential-verify and slow-draft, are not here)
CORRECTNESS_FAULTS = ("accept-all", "no-rollback", "drop-bonus", "raw-draft-probs", "position-shift",
                      "nan-verifier")

pytestmark = pytest.mark.skipif(not MANIFEST.exists(), reason="sample traces not generated")


def _trace(stem: str) -> Path:
    hits = sorted(TRACES.glob(f"{stem}.jsonl*"))
    assert len(hits) == 1, f"{stem}: {hits}"
    return hits[0]


def _check(path: Path, tmp_path: Path, *extra: str, min_acceptance: float = 0.5):
    import os

    from typer.testing import CliRunner

    from specdec_diag.cli import app

    # run from an empty directory so no ./specdec-check.toml changes the gate's defaults
    args = ["check", str(path), "--min-acceptance", str(min_acceptance), "--no-cache", *extra]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        return CliRunner().invoke(app, args)
    finally:
        os.chdir(cwd)


# sampling at T = 0.8 accepts less than greedy with a pair that writes code (the README's demo gates greedy)
@pytest.mark.parametrize(("stem", "floor"), [("healthy-greedy", 0.5), ("healthy-sampling", 0.4)])
def test_check_passes_on_healthy_samples(stem, floor, tmp_path):
    res = _check(_trace(stem), tmp_path, min_acceptance=floor)
    assert res.exit_code == 0, res.output
    assert "PASSED" in res.output
    # not a pass by default: there really were enough draft tokens to judge (check's min_drafts = 500)
    entry = json.loads(MANIFEST.read_text())["files"][_trace(stem).name]
    assert entry["drafted"] >= 500 and entry["acceptance_rate"] >= floor


@pytest.mark.parametrize("fault", CORRECTNESS_FAULTS)
def test_check_fails_on_correctness_faults(fault, tmp_path):
    path = _trace(f"fault-{fault}")
    res = _check(path, tmp_path)
    assert res.exit_code == 1, res.output
    assert "FAILED" in res.output
    want = json.loads(MANIFEST.read_text())["files"][path.name]["report_findings"]
    errors = [c for c in want if c in res.output]
    assert errors, (want, res.output)


def test_check_without_enough_data_is_not_a_pass(tmp_path):
    # the same healthy trace judged against a floor above its draft count: exit 3, not 0
    cfg = tmp_path / "gate.toml"
    cfg.write_text("[check]\nmin_drafts = 100000\n")
    res = _check(_trace("healthy-greedy"), tmp_path, "--config", str(cfg))
    assert res.exit_code == 3, res.output


def _generator():
    spec = importlib.util.spec_from_file_location("make_sample_logs", ROOT / "scripts" / "make_sample_logs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_table_is_the_manifest():
    gen = _generator()
    manifest = json.loads(MANIFEST.read_text())
    text = (ROOT / "sample_logs" / "README.md").read_text(encoding="utf-8")
    i, j = text.index(gen.BEGIN) + len(gen.BEGIN), text.index(gen.END)
    assert text[i:j].strip() == gen.render_table(manifest).strip()
    # every committed trace has its row, with its step count
    for name, entry in manifest["files"].items():
        row = next(line for line in text[i:j].splitlines() if line.startswith(f"| `{name}` |"))
        assert f"| {entry['steps']} |" in row
    assert {p.name for p in TRACES.glob("*.jsonl*")} == set(manifest["files"])


def test_update_readme_rewrites_only_between_markers(tmp_path):
    gen = _generator()
    manifest = json.loads(MANIFEST.read_text())
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{gen.BEGIN}\nstale | table\n{gen.END}\noutro\n", encoding="utf-8")
    assert gen.update_readme(readme, manifest) == 0
    out = readme.read_text(encoding="utf-8")
    assert out.startswith("intro\n") and out.endswith(f"{gen.END}\noutro\n") and "stale" not in out
    assert gen.render_table(manifest) in out
    readme.write_text("no markers\n", encoding="utf-8")
    assert gen.update_readme(readme, manifest) == 2


def test_manifest_report_codes_are_what_report_raises():
    from specdec_diag.analysis.report import build_report
    from specdec_diag.ingest.scan import scan

    manifest = json.loads(MANIFEST.read_text())
    rep = build_report(scan([TRACES], use_cache=False))
    got: dict[str, set[str]] = {name: set() for name in manifest["files"]}
    for f in rep["findings"]:
        if f["severity"] in ("error", "warning"):
            for loc in f.get("locations") or []:
                name = Path(loc.get("path") or "").name
                if name in got:
                    got[name].add(f["code"])
    timing = {"NO_SPEEDUP", "DRAFT_TOO_EXPENSIVE"}  # measured wall-clock: may move with machine load
    for name, entry in manifest["files"].items():
        assert got[name] - timing == set(entry["report_findings"]) - timing, name
        assert set(entry["expected_findings"]) - timing <= got[name], name
