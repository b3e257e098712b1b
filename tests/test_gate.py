"""The CI gate: noise passes, a real drop fails (exit 1), too little data gives 3, bad input gives 2."""

from __future__ import annotations

import json
import random
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from specdec_diag.analysis import gate
from specdec_diag.cli import app
from specdec_diag.render import github
from specdec_diag.schema import conform_windows

runner = CliRunner()


def write_vllm_log(path: Path, alpha: float, windows: int = 30, seed: int = 0, k: int = 3, spread: float = 0.04,
                   drafts: tuple[int, int] = (60, 140)) -> Path:
    """A vLLM V1 (format E) log whose windows are simulated draft by draft: each window has its own
    alpha (workload mix, +-spread), each draft accepts a capped-geometric prefix."""
    rnd = random.Random(seed)
    lines = []
    for i in range(windows):
        a = min(0.99, max(0.0, rnd.gauss(alpha, spread)))
        d = rnd.randint(*drafts)
        per_pos = [0] * k
        for _ in range(d):
            n = 0
            while n < k and rnd.random() < a:
                n += 1
            for j in range(n):
                per_pos[j] += 1
        acc, dt = sum(per_pos), d * k
        ts = f"05-06 {6 + i // 360:02d}:{(i // 6) % 60:02d}:{(i * 10) % 60:02d}"
        lines.append(f"(APIServer pid=1) INFO {ts} [metrics.py:101] SpecDecoding metrics: Mean acceptance length: "
                     f"{1 + acc / d:.2f}, Accepted throughput: {acc / 10:.2f} tokens/s, Drafted throughput: "
                     f"{dt / 10:.2f} tokens/s, Accepted: {acc} tokens, Drafted: {dt} tokens, Per-position acceptance "
                     f"rate: {', '.join(f'{c / d:.3f}' for c in per_pos)}, Avg Draft acceptance rate: "
                     f"{100 * acc / dt:.1f}%")
    path.write_text("\n".join(lines) + "\n")
    return path


def baseline_report(tmp: Path, alpha: float = 0.7, seed: int = 100, windows: int = 30) -> Path:
    log = write_vllm_log(tmp / f"base-{seed}.log", alpha, windows=windows, seed=seed)
    out = tmp / f"base-{seed}.json"
    r = runner.invoke(app, ["report", str(log), "--format", "json", "--windows", "--out", str(out), "--no-cache"])
    assert r.exit_code == 0, r.output
    return out


def invoke(args: list[str], **kw):
    return runner.invoke(app, ["check", *args, "--no-cache"], **kw)


# ---- the statistics --------------------------------------------------------------------------------


def units(rates_and_drafts):
    return pl.DataFrame({"drafted": [float(d) for _, d in rates_and_drafts],
                         "accepted": [r * d for r, d in rates_and_drafts]})


def test_pooled_rate_and_median_mad_hand_checked():
    u = units([(0.5, 100), (0.8, 300), (0.2, 100)])
    assert gate.pooled_rate(u) == pytest.approx((50 + 240 + 20) / 500)
    med, mad = gate.median_mad(u)
    assert med == pytest.approx(0.5) and mad == pytest.approx(0.3)


def test_bootstrap_is_deterministic_and_covers_the_difference():
    rnd = random.Random(3)
    cur = units([(rnd.gauss(0.60, 0.03), rnd.randint(50, 150)) for _ in range(40)])
    base = units([(rnd.gauss(0.70, 0.03), rnd.randint(50, 150)) for _ in range(40)])
    a = gate.bootstrap_diff(cur, base, n=1000, seed=7)
    assert a == gate.bootstrap_diff(cur, base, n=1000, seed=7)
    diff = gate.pooled_rate(cur) - gate.pooled_rate(base)
    assert a[0] < diff < a[1] < 0


def test_false_alarm_rate_is_low_and_power_is_high():
    """30 same-distribution pairs: at most one may fail; 30 pairs with a 10-point drop: all fail."""
    cfg = gate.GateConfig(bootstrap=400)
    rnd = random.Random(11)

    def run(alpha):
        return units([(min(1, max(0, rnd.gauss(alpha, 0.04))), rnd.randint(60, 140)) for _ in range(25)])

    same = sum(gate.baseline_check(run(0.55), {"windows": _rows(run(0.55))}, cfg, "b").status == "fail"
               for _ in range(30))
    drop = sum(gate.baseline_check(run(0.45), {"windows": _rows(run(0.55))}, cfg, "b").status == "fail"
               for _ in range(30))
    assert same <= 1 and drop == 30


def _rows(u: pl.DataFrame) -> list[dict]:
    return [{"source": "b.log", "line": i + 1, "window": "interval", "draft_tokens": int(d), "accepted_tokens": a}
            for i, (d, a) in enumerate(zip(u["drafted"].to_list(), u["accepted"].to_list(), strict=True))]


def test_units_from_rate_only_windows_and_from_steps():
    w = conform_windows(pl.DataFrame({"source": ["s"] * 2, "line": [1, 2], "window": ["interval"] * 2,
                                      "acceptance_rate": [0.5, 0.7], "num_drafts": [10, 30], "k": [4, 4]}))
    u = gate.acceptance_units(w)
    assert u["drafted"].to_list() == [40.0, 120.0]
    assert gate.pooled_rate(u) == pytest.approx((20 + 84) / 160)


def test_findings_check_policy():
    rep = {"findings": [{"code": "LOW_ACCEPTANCE", "severity": "warning"},
                        {"code": "METRIC_DEFINITION", "severity": "info"}]}
    assert gate.findings_check(rep, "error").status == "pass"
    assert gate.findings_check(rep, "warning").status == "fail"
    assert gate.findings_check({"findings": [{"code": "X", "severity": "error"}]}, "never").status == "pass"


def test_github_annotations_escape_and_summary(tmp_path):
    rep = {"summary": {"acceptance_rate": 0.4}, "findings": [
        {"code": "DRAFTER_BROKEN", "severity": "error", "title": "50% of drafts: broken\nreally",
         "recommendation": "check weights", "locations": [{"path": "logs/a,b:c.log", "line": 12}]}]}
    res = gate.GateResult([gate.Check("acceptance_rate", "fail", "0.4 < 0.5")], rep)
    ann = github.github_annotations(res)
    assert ann[0].startswith("::error title=specdec-diag check acceptance_rate::0.4 < 0.5")
    assert ann[1].startswith("::error file=logs/a%2Cb%3Ac.log,line=12,title=DRAFTER_BROKEN::50%25 of drafts")
    assert "%0A" in ann[1] and "\n" not in ann[1]
    summary = tmp_path / "summary.md"
    printed = []
    assert github.emit_github(res, printed.append, {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert printed == ann and "FAILED" in summary.read_text()
    assert not github.emit_github(res, printed.append, {})


# ---- the command ----------------------------------------------------------------------------------


def test_noisy_but_same_run_passes(tmp_path):
    base = baseline_report(tmp_path, 0.7, seed=100)
    cur = write_vllm_log(tmp_path / "cur.log", 0.7, seed=5)
    r = invoke([str(cur), "--baseline", str(base)])
    assert r.exit_code == 0, r.output
    assert "baseline_acceptance" in r.output and "PASSED" in r.output


def test_real_drop_fails_with_exit_1_and_junit(tmp_path):
    base = baseline_report(tmp_path, 0.7, seed=100)
    cur = write_vllm_log(tmp_path / "cur.log", 0.55, seed=5)
    junit = tmp_path / "out" / "gate.xml"
    r = invoke([str(cur), "--baseline", str(base), "--junit", str(junit)])
    assert r.exit_code == 1, r.output
    assert "acceptance dropped" in r.output
    root = ET.parse(junit).getroot()
    case = next(c for c in root.iter("testcase") if c.get("name") == "baseline_acceptance")
    fail = case.find("failure")
    assert fail is not None and "baseline_rate" in fail.text and "ci_high" in fail.text


def test_too_little_data_gives_3_and_says_what_is_needed(tmp_path):
    base = baseline_report(tmp_path, 0.7, seed=100)
    cur = write_vllm_log(tmp_path / "cur.log", 0.7, windows=2, seed=5)
    r = invoke([str(cur), "--baseline", str(base)])
    assert r.exit_code == 3, r.output
    assert "need at least 5 windows" in r.output
    r = invoke([str(write_vllm_log(tmp_path / "tiny.log", 0.7, windows=1, drafts=(10, 10))),
                "--min-acceptance", "0.1"])
    assert r.exit_code == 3 and "need at least 500 draft tokens" in r.output


def test_no_spec_data_gives_3(tmp_path):
    f = tmp_path / "plain.log"
    f.write_text("INFO nothing to see here\n")
    r = invoke([str(f)])
    assert r.exit_code == 3, r.output


def test_floors(tmp_path):
    cur = write_vllm_log(tmp_path / "cur.log", 0.7, seed=5)
    assert invoke([str(cur), "--min-acceptance", "0.4", "--min-mal", "1.5"]).exit_code == 0
    r = invoke([str(cur), "--min-acceptance", "0.9"])
    assert r.exit_code == 1 and "< minimum 0.9000" in r.output
    assert invoke([str(cur), "--min-mal", "3.9"]).exit_code == 1


def test_usage_errors_give_2(tmp_path):
    cur = write_vllm_log(tmp_path / "cur.log", 0.7, seed=5)
    r = invoke([str(tmp_path / "missing.log")])
    assert r.exit_code == 2 and "missing.log: no such file" in r.output
    assert invoke([str(cur), "--min-acceptance", "57"]).exit_code == 2      # a percentage, not a fraction
    assert invoke([str(cur), "--fail-on", "sometimes"]).exit_code == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "specdec-diag/report@1",\n "windows": [1,, 2]}')
    r = invoke([str(cur), "--baseline", str(bad)])
    assert r.exit_code == 2 and f"{bad}:2: baseline is not valid JSON" in r.output
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "something-else"}))
    r = invoke([str(cur), "--baseline", str(other)])
    assert r.exit_code == 2 and "is not a specdec-diag/report@2 (or @1) report" in r.output
    assert "Traceback" not in r.output


def test_config_file_and_flag_override(tmp_path, monkeypatch):
    cur = write_vllm_log(tmp_path / "cur.log", 0.7, seed=5)
    cfg = tmp_path / "specdec-check.toml"
    cfg.write_text("[check]\nmin_acceptance = 0.9\nfail_on = 'never'\n")
    assert invoke([str(cur), "--config", str(cfg)]).exit_code == 1
    assert invoke([str(cur), "--config", str(cfg), "--min-acceptance", "0.3"]).exit_code == 0
    # discovered in the working directory without --config
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "specdec-check.toml").write_text("[check]\nmin_mal = 3.95\n")
    monkeypatch.chdir(wd)
    assert runner.invoke(app, ["check", str(cur), "--no-cache"]).exit_code == 1
    monkeypatch.chdir(tmp_path)
    cfg.write_text("[check]\nmin_acceptence = 0.5\n")
    r = invoke([str(cur), "--config", str(cfg)])
    assert r.exit_code == 2 and "unknown key 'min_acceptence'" in r.output
    cfg.write_text("[check]\nmin_acceptance = 'high'\n")
    assert invoke([str(cur), "--config", str(cfg)]).exit_code == 2
    cfg.write_text("[check\n")
    r = invoke([str(cur), "--config", str(cfg)])
    assert r.exit_code == 2 and "not valid TOML" in r.output


def test_baseline_in_config_is_relative_to_it(tmp_path):
    base = baseline_report(tmp_path, 0.7, seed=100)
    sub = tmp_path / "ci"
    sub.mkdir()
    (sub / "specdec-check.toml").write_text(f"[check]\nbaseline = '../{base.name}'\nmax_drop = 0.02\n")
    cur = write_vllm_log(tmp_path / "cur.log", 0.5, seed=5)
    r = invoke([str(cur), "--config", str(sub / "specdec-check.toml")])
    assert r.exit_code == 1, r.output


def test_github_actions_output_from_the_command(tmp_path):
    cur = write_vllm_log(tmp_path / "cur.log", 0.7, seed=5)
    summary = tmp_path / "step.md"
    r = invoke([str(cur), "--min-acceptance", "0.95"],
               env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert r.exit_code == 1
    assert "::error title=specdec-diag check acceptance_rate::" in r.output
    assert "| acceptance_rate | ❌ fail |" in summary.read_text()


def test_write_report_makes_the_next_baseline(tmp_path):
    cur = write_vllm_log(tmp_path / "cur.log", 0.7, seed=5)
    out = tmp_path / "next.json"
    assert invoke([str(cur), "--write-report", str(out)]).exit_code == 0
    assert gate.load_baseline(out)["schema"] == "specdec-diag/report@2"
    assert invoke([str(cur), "--baseline", str(out)]).exit_code == 0  # identical run: difference 0


# ---- issue 16 row 10: baselines are matched by engine + method + k, and validated ----------------


def _baseline_with(tmp: Path, **changes) -> Path:
    """A valid @2 baseline (from a real report) with the first run's fields / first window changed."""
    data = json.loads(baseline_report(tmp, 0.7, seed=100).read_text())
    run = data["runs"][0]
    for key, value in changes.items():
        if key.startswith("w_"):
            run["windows"][0][key[2:]] = value
        else:
            run[key] = value
    out = tmp / "edited.json"
    out.write_text(json.dumps(data))
    return out


@pytest.mark.parametrize("change, why", [({"engine": "sglang"}, "engine vllm"), ({"k": 4}, "k=3"),
                                         ({"engine": "specdec-diag", "method": "draft_model"}, "engine vllm")])
def test_baseline_from_another_engine_or_k_is_refused_with_a_reason(tmp_path, change, why):
    base = _baseline_with(tmp_path, **change)
    cur = write_vllm_log(tmp_path / "cur.log", 0.55, seed=5)  # a real drop: would fail if compared
    r = invoke([str(cur), "--baseline", str(base)])
    assert r.exit_code == 3, r.output
    assert "baseline refused" in r.output and why in r.output


@pytest.mark.parametrize("change, msg", [({"w_draft_tokens": "9000"}, "draft_tokens must be a non-negative integer"),
                                        ({"w_accepted_tokens": -1}, "accepted_tokens must be a non-negative"),
                                        ({"w_acceptance_rate": 1.5}, "acceptance_rate must be a fraction"),
                                        ({"w_accepted_tokens": 10**9}, "accepted_tokens 1000000000 > draft_tokens"),
                                        ({"k": "3"}, "k must be a non-negative integer")])
def test_invalid_baseline_fields_are_rejected(tmp_path, change, msg):
    base = _baseline_with(tmp_path, **change)
    cur = write_vllm_log(tmp_path / "cur.log", 0.7, seed=5)
    r = invoke([str(cur), "--baseline", str(base)])
    assert r.exit_code == 2 and msg in r.output, r.output


def test_nan_count_in_baseline_is_rejected(tmp_path):
    base = baseline_report(tmp_path, 0.7, seed=100)
    lines = base.read_text().splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.lstrip().startswith('{"source"'))  # the first window row
    lines[i] = lines[i].replace('"accepted_tokens": ', '"accepted_tokens": NaN, "x": ', 1)
    base.write_text("\n".join(lines))
    r = invoke([str(write_vllm_log(tmp_path / "cur.log", 0.7, seed=5)), "--baseline", str(base)])
    assert r.exit_code == 2 and "accepted_tokens must be a non-negative integer" in r.output, r.output


def test_baseline_without_windows_is_refused(tmp_path):
    log = write_vllm_log(tmp_path / "b.log", 0.7, seed=100)
    out = tmp_path / "b.json"
    assert runner.invoke(app, ["report", str(log), "--format", "json", "--out", str(out), "--no-cache"]).exit_code == 0
    r = invoke([str(write_vllm_log(tmp_path / "cur.log", 0.7, seed=5)), "--baseline", str(out)])
    assert r.exit_code == 2 and "baseline report has no windows" in r.output


def test_select_limits_the_gate_and_failures_name_the_run(tmp_path):
    d = tmp_path / "fleet"
    (d / "a").mkdir(parents=True)
    (d / "b").mkdir()
    write_vllm_log(d / "a" / "good.log", 0.7, seed=5)
    write_vllm_log(d / "b" / "bad.log", 0.3, seed=6)
    r = invoke([str(d), "--min-acceptance", "0.5"])
    assert r.exit_code == 1 and "b/bad.log#vllm" in r.output and "< minimum" in r.output
    assert invoke([str(d), "--min-acceptance", "0.5", "--select", "a/*"]).exit_code == 0
    r = invoke([str(d), "--select", "nosuch/*"])
    assert r.exit_code == 2 and "matches no run" in r.output


def test_fleet_baseline_prefers_the_same_deployment(tmp_path):
    """Each run meets its own deployment's baseline run when the baseline has it (not the pool of every
    run with the same engine, method and k, which would mix in a broken replica)."""
    d = tmp_path / "fleet"
    for host, alpha in (("a", 0.7), ("b", 0.2)):
        (d / host).mkdir(parents=True)
        write_vllm_log(d / host / "vllm.log", alpha, seed=ord(host))
    base = tmp_path / "base.json"
    assert invoke([str(d), "--write-report", str(base), "--fail-on", "never"]).exit_code in (0, 1)
    write_vllm_log(d / "a" / "vllm.log", 0.7, seed=99)  # host a again, same quality
    r = invoke([str(d), "--baseline", str(base), "--fail-on", "never", "--select", "a/*"])
    assert r.exit_code == 0, r.output
    data = gate.load_baseline(base)
    run = next(x for x in data["baseline_runs"] if x["id"].startswith("a/"))
    from specdec_diag.analysis import baseline as B

    matched, _ = B.match({"id": run["id"].split("@")[0] + "@later", "engine": run["engine"], "method": run["method"],
                          "k": run["k"], "model": None}, data)
    assert [m["id"] for m in matched] == [run["id"]]
