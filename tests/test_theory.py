"""Theory against the published numbers (docs/theory.md §1.3-1.5) and its own identities."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specdec_diag.analysis import theory as t

# Eq. 1 table (docs/theory.md §1.3): alpha -> {gamma: E[tokens per step]}, and the 1/(1-alpha) limit.
EQ1 = {
    0.5: {1: 1.50, 2: 1.75, 3: 1.875, 4: 1.938, 5: 1.969, 7: 1.992, 10: 1.999},
    0.6: {1: 1.60, 2: 1.96, 3: 2.176, 4: 2.306, 5: 2.383, 7: 2.458, 10: 2.491},
    0.7: {1: 1.70, 2: 2.19, 3: 2.533, 4: 2.773, 5: 2.941, 7: 3.141, 10: 3.267},
    0.8: {1: 1.80, 2: 2.44, 3: 2.952, 4: 3.362, 5: 3.689, 7: 4.161, 10: 4.571},
    0.9: {1: 1.90, 2: 2.71, 3: 3.439, 4: 4.095, 5: 4.686, 7: 5.695, 10: 6.862},
}


@pytest.mark.parametrize("alpha", sorted(EQ1))
def test_eq1_table(alpha):
    for gamma, want in EQ1[alpha].items():
        assert t.expected_tokens_per_step(alpha, gamma) == pytest.approx(want, abs=0.0015)
    assert t.expected_tokens_per_step(alpha, 500) == pytest.approx(1 / (1 - alpha), rel=1e-9)


def test_eq1_edges():
    assert t.expected_tokens_per_step(1.0, 5) == 6.0
    assert t.expected_tokens_per_step(0.0, 5) == 1.0
    assert t.expected_tokens_per_step(0.999999, 4) == pytest.approx(5.0, abs=1e-4)  # continuous at 1
    with pytest.raises(ValueError):
        t.expected_tokens_per_step(1.2, 3)
    with pytest.raises(ValueError):
        t.expected_tokens_per_step(0.5, -1)


# Leviathan Table 1 (c = c_hat = 0): (alpha, gamma) -> (ops factor, speed)
TABLE1 = [(0.6, 2, 1.53, 1.96), (0.7, 3, 1.58, 2.53), (0.8, 2, 1.23, 2.44), (0.8, 5, 1.63, 3.69),
          (0.9, 2, 1.11, 2.71), (0.9, 10, 1.60, 6.86)]


@pytest.mark.parametrize("alpha,gamma,ops,speed", TABLE1)
def test_leviathan_table1(alpha, gamma, ops, speed):
    assert t.speedup(alpha, gamma, 0.0) == pytest.approx(speed, abs=0.006)
    assert t.ops_factor(alpha, gamma, 0.0) == pytest.approx(ops, abs=0.006)


# Table 4 (App. A.3): Theorem 3.8 "Exp" column, (alpha, gamma, c) -> S
TABLE4 = [(0.75, 7, 0.02, 3.16), (0.8, 7, 0.04, 3.25), (0.82, 7, 0.11, 2.50), (0.62, 7, 0.02, 2.26),
          (0.65, 5, 0.02, 2.40), (0.53, 5, 0.02, 1.89)]


@pytest.mark.parametrize("alpha,gamma,c,want", TABLE4)
def test_leviathan_table4_expected(alpha, gamma, c, want):
    assert t.speedup(alpha, gamma, c) == pytest.approx(want, abs=0.006)


# Optimal-gamma table (§1.4): c -> alpha -> (gamma*, S)
OPTIMAL = {
    0.01: {0.5: (5, 1.88), 0.6: (7, 2.30), 0.7: (9, 2.97), 0.8: (14, 4.23), 0.9: (24, 7.49)},
    0.02: {0.5: (4, 1.79), 0.6: (6, 2.17), 0.7: (8, 2.76), 0.8: (11, 3.82), 0.9: (19, 6.37)},
    0.05: {0.5: (3, 1.63), 0.6: (4, 1.92), 0.7: (6, 2.35), 0.8: (8, 3.09), 0.9: (13, 4.67)},
    0.10: {0.5: (2, 1.46), 0.6: (3, 1.67), 0.7: (4, 1.98), 0.8: (6, 2.47), 0.9: (10, 3.43)},
    0.20: {0.5: (1, 1.25), 0.6: (2, 1.40), 0.7: (3, 1.58), 0.8: (4, 1.87), 0.9: (7, 2.37)},
}


@pytest.mark.parametrize("c", sorted(OPTIMAL))
def test_optimal_gamma_table(c):
    for alpha, (g, s) in OPTIMAL[c].items():
        got_g, got_s = t.optimal_gamma(alpha, c, max_gamma=63)
        assert (got_g, round(got_s, 2)) == (g, s), (alpha, c)


def test_corollary_3_9_gamma1_bound():
    # if alpha > c some gamma helps, and the best is at least (1 + alpha) / (1 + c)
    for alpha, c in [(0.3, 0.1), (0.5, 0.4), (0.9, 0.05)]:
        _, s = t.optimal_gamma(alpha, c)
        assert s >= (1 + alpha) / (1 + c) - 1e-12 and s > 1


def test_vllm_rate_example():
    # alpha = 0.8, gamma = 5: vLLM draft acceptance rate 0.538, MAL 3.69 (docs/theory.md §1.10)
    assert t.expected_acceptance_rate_vllm(0.8, 5) == pytest.approx(0.538, abs=5e-4)
    assert t.expected_tokens_per_step(0.8, 5) == pytest.approx(3.69, abs=5e-3)
    assert t.alpha_from_acceptance_rate(0.537856, 5) == pytest.approx(0.8, abs=1e-5)
    assert t.alpha_from_mal(3.68928, 5) == pytest.approx(0.8, abs=1e-5)


def test_inversion_edges():
    assert t.alpha_from_mal(1.0, 4) == 0.0
    assert t.alpha_from_mal(0.7, 4) == 0.0
    assert t.alpha_from_mal(5.0, 4) == 1.0
    assert t.alpha_from_mal(2.0, 0) is None
    assert t.alpha_from_mal(float("nan"), 3) is None
    assert t.alpha_from_acceptance_rate(0.0, 3) == 0.0
    assert t.alpha_from_acceptance_rate(1.0, 3) == 1.0


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0, 0.995), st.integers(1, 12))
def test_inversions_round_trip(alpha, gamma):
    assert t.alpha_from_mal(t.expected_tokens_per_step(alpha, gamma), gamma) == pytest.approx(alpha, abs=1e-6)
    rate = t.expected_acceptance_rate_vllm(alpha, gamma)
    assert t.alpha_from_acceptance_rate(rate, gamma) == pytest.approx(alpha, abs=1e-6)
    # identities between the cross-walk quantities: MAL = 1 + sum of a_j = 1 + gamma * rate
    pp = t.expected_per_position(alpha, gamma)
    assert 1 + sum(pp) == pytest.approx(t.expected_tokens_per_step(alpha, gamma), rel=1e-9)
    assert 1 + gamma * rate == pytest.approx(t.expected_tokens_per_step(alpha, gamma), rel=1e-9)


def test_measured_speedup_reduces_to_theorem():
    # T_verify = T_ar, draft = gamma c T_ar  ->  Theorem 3.8
    alpha, gamma, c, t_ar = 0.7, 4, 0.05, 20.0
    got = t.predicted_speedup_measured(t.expected_tokens_per_step(alpha, gamma), t_ar, gamma * c * t_ar, t_ar)
    assert got == pytest.approx(t.speedup(alpha, gamma, c))
    assert t.predicted_speedup_measured(2.0, 10.0, 0.0, 0.0) is None


def test_predicted_vs_achieved():
    out = t.predicted_vs_achieved(0.8, 5, 0.05, 2.0)
    assert out["predicted"] == pytest.approx(t.speedup(0.8, 5, 0.05))
    assert out["ratio"] == pytest.approx(2.0 / out["predicted"])
    assert out["optimal_gamma"] == 8 and not out["c_assumed_zero"]
    up = t.predicted_vs_achieved(0.8, 5, None, None)
    assert up["c_assumed_zero"] and up["predicted"] == pytest.approx(3.68928) and up["ratio"] is None
    assert up["optimal_gamma"] is None
    assert t.predicted_vs_achieved(None, 5, 0.1, 1.5)["predicted"] is None


# --- verification that is not free in gamma (issue 12, deliverable 4) ----------------------------------

def test_verify_cost_roofline():
    from specdec_diag.analysis.theory import verify_cost_roofline

    assert verify_cost_roofline(4, 1, 256) == 1.0  # batch 1: Leviathan's free verify
    assert verify_cost_roofline(8, 16, 256) == 1.0  # 144 tokens: still memory-bound
    assert verify_cost_roofline(4, 64, 256) == pytest.approx(1.25)
    assert verify_cost_roofline(8, 64, 256) == pytest.approx(2.25)
    assert verify_cost_roofline(3, 512, 256) == pytest.approx(4.0)  # compute-bound already: k+1 times
    with pytest.raises(ValueError):
        verify_cost_roofline(2, 0, 256)


def test_verify_cost_linear_and_optimum_moves_down_with_batch():
    from specdec_diag.analysis.theory import (
        optimal_gamma,
        optimal_gamma_with_verify_cost,
        verify_cost_linear,
        verify_cost_roofline,
    )

    assert verify_cost_linear(0, 10.0, 1.0) == 1.0
    assert verify_cost_linear(4, 10.0, 1.0) == pytest.approx(15.0 / 11.0)
    g1, s1 = optimal_gamma_with_verify_cost(0.8, 0.05, lambda g: 1.0)
    assert (g1, s1) == optimal_gamma(0.8, 0.05)  # free verify: Leviathan's optimum
    g64, s64 = optimal_gamma_with_verify_cost(0.8, 0.05, lambda g: verify_cost_roofline(g, 64, 256))
    g256, _ = optimal_gamma_with_verify_cost(0.8, 0.05, lambda g: verify_cost_roofline(g, 256, 256))
    assert g256 <= g64 < g1 and s64 < s1


def _k_log(tmp_path, running: int):
    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "rules"))
    from make_logs import _vllm_window

    pp = [0.70, 0.45, 0.25, 0.12, 0.05, 0.012, 0.005, 0.001]
    lines = [ln for t in range(10, 200, 10) for ln in _vllm_window(t, 400, pp, running=running)]
    p = tmp_path / f"k_{running}.log"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_k_too_large_uses_the_logged_batch(tmp_path):
    from specdec_diag.analysis.rules import run_rules
    from specdec_diag.ingest import scan

    small = [f for f in run_rules(scan([_k_log(tmp_path, 4)], use_cache=False)) if f.code == "K_TOO_LARGE"]
    big = [f for f in run_rules(scan([_k_log(tmp_path, 192)], use_cache=False)) if f.code == "K_TOO_LARGE"]
    assert small and big
    es, eb = small[0].evidence, big[0].evidence
    assert es["verify_cost_at_k"] == 1.0 and "roofline" in es["verify_cost_source"]
    assert eb["batch"] == 192 and eb["verify_cost_at_k"] > 1.0
    assert eb["recommended_k"] < es["recommended_k"] and eb["predicted_gain"] > es["predicted_gain"]


def test_k_too_large_says_when_the_batch_is_unknown(tmp_path):
    from specdec_diag.analysis.rules import run_rules
    from specdec_diag.ingest import scan

    p = _k_log(tmp_path, 4)
    p.write_text("\n".join(ln for ln in p.read_text().splitlines() if "SpecDecoding" in ln) + "\n")
    f = next(f for f in run_rules(scan([p], use_cache=False)) if f.code == "K_TOO_LARGE")
    assert "batch unknown" in f.evidence["verify_cost_source"]


def test_speedup_with_measured_verify_cost():
    # c_v = 1 is Theorem 3.8; a verify forward costing c_v target steps divides the step cost by it
    assert t.speedup(0.8, 4, 0.05, c_v=1.0) == t.speedup(0.8, 4, 0.05)
    assert t.speedup(0.8, 4, 0.0, c_v=2.0) == pytest.approx(t.expected_tokens_per_step(0.8, 4) / 2)
