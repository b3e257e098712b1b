"""Evidence numbers checked against independent computations from the raw records (JSON lines or
the printed log values), not against the rule's own helpers."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "rules"))

from cases import LOGS, corrupt_structure  # noqa: E402
from synth import Spec, make_trace, write_trace  # noqa: E402

from specdec_diag.analysis.rules import run_rules  # noqa: E402
from specdec_diag.analysis.rules.acceptance._helpers import change_point  # noqa: E402
from specdec_diag.analysis.rules.performance.sequential_verify import verify_fit  # noqa: E402
from specdec_diag.ingest import scan  # noqa: E402


def steps_of(path: Path) -> list[tuple[int, dict]]:
    out = []
    for no, line in enumerate(path.read_text().splitlines(), start=1):
        rec = json.loads(line)
        if rec["type"] == "step":
            out.append((no, rec))
    return out


def only(findings, code):
    hits = [f for f in findings if f.code == code]
    assert len(hits) == 1, [(f.code, f.severity) for f in findings]
    return hits[0]


def test_bonus_dropped_counts_every_full_accept(tmp_path):
    p = write_trace(Spec(drop_bonus=True, noise=0.3, seed=10), tmp_path / "t.jsonl")
    full = [(no, s) for no, s in steps_of(p) if s["n_accepted"] == s["gamma_drafted"] > 0]
    f = only(run_rules(scan([p], use_cache=False)), "BONUS_DROPPED")
    assert f.evidence["dropped"] == f.evidence["full_accept_steps"] == len(full) > 10
    assert [loc["line"] for loc in f.locations] == [no for no, _ in full][:20]


def test_structure_violation_finds_the_one_bad_step(tmp_path):
    p = write_trace(Spec(seed=14), tmp_path / "t.jsonl")
    corrupt_structure(p, line_no=12)
    f = only(run_rules(scan([p], use_cache=False)), "STRUCTURE_VIOLATION")
    assert f.evidence["violations"] == 1 and f.evidence["by_reason"] == {"emitted_count": 1}
    assert f.locations == [{"path": str(p), "line": 12}]


def test_flipped_flags_are_counted_exactly(tmp_path):
    """Flip accept flags after the first rejection (n unchanged, shape intact): exactly those flips
    disagree with r < p/q."""
    recs = make_trace(Spec(seed=31))
    flipped = []
    for i, r in enumerate(recs):
        if r["type"] == "step" and r["gamma_drafted"] - r["n_accepted"] >= 2 and len(flipped) < 7:
            j = r["n_accepted"] + 1
            r["accept_flags"][j] = not r["accept_flags"][j]
            flipped.append(i + 1)
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    f = only(run_rules(scan([p], use_cache=False)), "VERIFIER_MISMATCH")
    assert f.evidence["sampling_flag_mismatches"] == 7
    assert [loc["line"] for loc in f.locations] == flipped


def test_kv_excess_equals_leaked_entries(tmp_path):
    p = write_trace(Spec(no_rollback=True, seed=7), tmp_path / "t.jsonl")
    leaked = max(s["target_cache_after"] - (s["context_len"] + len(s["emitted_token_ids"]) - 1)
                 for _, s in steps_of(p))
    f = only(run_rules(scan([p], use_cache=False)), "KV_ROLLBACK")
    assert f.evidence["excess_cache_entries"] == leaked > 0
    assert f.evidence["by_reason"]["cache_after"] == f.evidence["violations"]


def test_position_shift_is_located_on_every_step(tmp_path):
    p = write_trace(Spec(position_shift=True, seed=8), tmp_path / "t.jsonl")
    f = only(run_rules(scan([p], use_cache=False)), "KV_ROLLBACK")
    assert f.evidence["by_reason"] == {"verify_start": len(steps_of(p))}


def test_suspicious_expected_accepts_match_the_recorded_ratios(tmp_path):
    p = write_trace(Spec(accept_all=True, seed=5), tmp_path / "t.jsonl")
    exp = 0.0
    for _, s in steps_of(p):
        for i, (pi, qi) in enumerate(zip(s["p"], s["q"], strict=True)):
            if i > s["n_accepted"]:
                break
            exp += min(1.0, pi / qi)
    f = only(run_rules(scan([p], use_cache=False)), "SUSPICIOUS_ACCEPTANCE")
    assert f.evidence["expected_accepted"] == pytest.approx(exp, rel=1e-6)
    assert f.evidence["observed_accepted"] == sum(s["n_accepted"] for _, s in steps_of(p))


def test_draft_cost_prediction_matches_leviathan(tmp_path):
    p = write_trace(Spec(slow_draft=12, seed=13), tmp_path / "t.jsonl")
    st = [s for _, s in steps_of(p)]
    c = (sum(s["draft_ms"] for s in st) / sum(s["gamma_drafted"] for s in st)) / (
        sum(s["verify_ms"] for s in st) / len(st))
    n = sum(s["n_accepted"] for s in st)
    a = n / (n + sum(s["n_accepted"] < s["gamma_drafted"] for s in st))
    g = 4
    s_expected = (1 - a ** (g + 1)) / ((1 - a) * (g * c + 1))
    f = only(run_rules(scan([p], use_cache=False)), "DRAFT_TOO_EXPENSIVE")
    assert f.evidence["cost_ratio"] == pytest.approx(c, rel=1e-9)
    assert f.evidence["predicted_speedup"] == pytest.approx(s_expected, rel=1e-9) and s_expected < 1.1


def test_cliff_position_from_printed_rates(tmp_path):
    f = only(run_rules(scan([LOGS / "vllm_position_cliff.log"], use_cache=False)), "POSITION_CLIFF")
    assert f.evidence["position"] == 6 and f.evidence["conditional_rate"] == 0.0


def test_k_recommendation_is_the_argmax_of_measured_speed():
    text = (LOGS / "vllm_k_too_large.log").read_text()
    rows = [[float(x) for x in line.split("Per-position acceptance rate: ")[1].split(", Avg")[0].split(", ")]
            for line in text.splitlines() if "SpecDecoding" in line]
    drafts = [int(line.split("Drafted: ")[1].split()[0]) // 8 for line in text.splitlines() if "SpecDecoding" in line]
    pp = [sum(r[j] * d for r, d in zip(rows, drafts, strict=True)) / sum(drafts) for j in range(8)]
    c = 0.05
    speed = {g: (1 + sum(pp[:g])) / (1 + g * c) for g in range(1, 9)}
    best = max(speed, key=speed.get)
    f = only(run_rules(scan([LOGS / "vllm_k_too_large.log"], use_cache=False)), "K_TOO_LARGE")
    assert f.evidence["recommended_k"] == best == 3
    assert f.evidence["predicted_gain"] == pytest.approx(speed[best] / speed[8] - 1, abs=1e-3)


def test_collapse_is_located_at_the_first_bad_window():
    f = only(run_rules(scan([LOGS / "vllm_collapse.log"], use_cache=False)), "ACCEPTANCE_COLLAPSE")
    lines = (LOGS / "vllm_collapse.log").read_text().splitlines()
    first_bad = next(i for i, ln in enumerate(lines, start=1) if "Per-position acceptance rate: 0.04" in ln)
    assert f.evidence["change_at"]["line"] == first_bad
    assert f.evidence["windows_before"] == 8 and f.evidence["windows_after"] == 5


def test_temperature_gap_from_raw_counts(tmp_path):
    a = write_trace(Spec(rule="greedy", noise=0.4, seed=20), tmp_path / "cold.jsonl")
    b = write_trace(Spec(temperature=1.0, noise=2.0, seed=21), tmp_path / "hot.jsonl")
    rate = {}
    for name, p in (("cold", a), ("hot", b)):
        st = [s for _, s in steps_of(p)]
        rate[name] = sum(s["n_accepted"] for s in st) / sum(s["gamma_drafted"] for s in st)
    f = only(run_rules(scan([a, b], use_cache=False)), "TEMPERATURE_SENSITIVITY")
    assert f.evidence["gap"] == pytest.approx(rate["cold"] - rate["hot"], rel=1e-9)


def test_change_point_and_verify_fit():
    t, before, after = change_point([0.6, 0.62, 0.58, 0.61, 0.05, 0.04, 0.06], [1] * 7, 3)
    assert t == 4 and before == pytest.approx(0.6025) and after == pytest.approx(0.05)
    assert change_point([0.5] * 4, [1] * 4, 3) is None
    import polars as pl

    g = [1, 2, 3, 4, 5, 6] * 5
    seq = pl.DataFrame({"gamma_drafted": g, "verify_ms": [10.0 * (x + 1) for x in g]})
    par = pl.DataFrame({"gamma_drafted": g, "verify_ms": [10.0 + 0.3 * (x + 1) for x in g]})
    assert verify_fit(seq)["marginal_cost"] == pytest.approx(1.0)
    assert verify_fit(par)["marginal_cost"] == pytest.approx(0.3 / 10.3)
    assert verify_fit(pl.DataFrame({"gamma_drafted": [4] * 9, "verify_ms": [1.0] * 9})) is None
    assert math.isfinite(verify_fit(seq)["slope_ms"])


def test_hidden_sequential_verify_caught_against_the_baseline(tmp_path):
    """An engine that reports one forward but verifies token by token: only the timing gives it away."""
    recs = make_trace(Spec(sequential=True, seed=9))
    for r in recs:
        if r["type"] == "step":
            r["target_forwards"] = 1
    p = tmp_path / "hidden.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    base = write_trace(Spec(mode="baseline", seed=4), tmp_path / "base.jsonl")
    f = only(run_rules(scan([p, base], use_cache=False)), "SEQUENTIAL_VERIFY")
    vb = f.evidence["verify_vs_baseline"]
    assert vb["ratio"] == pytest.approx(5.0 / 1.03, rel=0.1) and vb["marginal_cost"] > 0.6
    healthy = write_trace(Spec(seed=3), tmp_path / "healthy.jsonl")
    assert not [x for x in run_rules(scan([healthy, base], use_cache=False)) if x.code == "SEQUENTIAL_VERIFY"]
