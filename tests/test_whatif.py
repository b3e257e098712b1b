"""The what-if over gamma (analysis.whatif) against Leviathan's closed forms (docs/theory.md §1.3 / §1.4),
on synthetic step records: no torch needed."""

from __future__ import annotations

import pytest

from specdec_diag.analysis.theory import speedup
from specdec_diag.analysis.whatif import alpha_mle, conditional_rates, what_if


def _geometric_steps(alpha=0.8, gamma=4, total=10000, t=10.0, c=0.05):
    counts = [round(total * alpha**j * (1 - alpha)) for j in range(gamma)]
    counts.append(total - sum(counts))
    steps = []
    for n, cnt in enumerate(counts):
        for _ in range(cnt):
            steps.append({"gamma_drafted": gamma, "n_accepted": n, "trimmed_by": "none",
                          "emitted_token_ids": [0] * (n + 1), "draft_ms": gamma * c * t, "verify_ms": t,
                          "overhead_ms": 0.0})
    return steps


def test_what_if_matches_eq1_and_theorem_3_8():
    w = what_if(_geometric_steps(), max_gamma=16)
    assert w.alpha_mle == pytest.approx(0.8, abs=1e-3)
    assert all(r == pytest.approx(0.8, abs=2e-3) for r in w.conditional_rates)
    eq1 = {1: 1.80, 2: 2.44, 3: 2.952, 4: 3.362, 5: 3.689, 7: 4.161, 10: 4.571}  # docs/theory.md §1.3 table
    rows = {r.gamma: r for r in w.rows}
    for g, want in eq1.items():
        assert rows[g].tokens_per_step == pytest.approx(want, abs=6e-3)
    assert w.c == pytest.approx(0.05)
    for r in w.rows:
        assert r.speedup == pytest.approx(r.leviathan_speedup, rel=1e-2)
    # optimal gamma table: c = 0.05, alpha = 0.8 -> g* = 8, S = 3.09
    assert w.best_gamma == 8 and rows[8].speedup == pytest.approx(3.09, abs=0.02)
    assert speedup(0.75, 7, 0.02) == pytest.approx(3.16, abs=0.01)  # Table 4 "Exp"


def test_what_if_uses_measured_position_rates_and_extrapolates():
    # position cliff: position 1 accepts 60 %, later positions never
    steps = []
    for i in range(100):
        n = 1 if i < 60 else 0
        steps.append({"gamma_drafted": 4, "n_accepted": n, "trimmed_by": "none", "emitted_token_ids": [0] * (n + 1),
                      "draft_ms": 1.0, "verify_ms": 5.0, "overhead_ms": 0.5})
    w = what_if(steps)
    assert w.conditional_rates[0] == pytest.approx(0.6) and w.conditional_rates[1] == 0.0
    rows = {r.gamma: r for r in w.rows}
    assert rows[1].tokens_per_step == pytest.approx(1.6)
    assert rows[8].tokens_per_step == pytest.approx(1.6)  # nothing after the cliff
    assert w.best_gamma == 1 and rows[4].used
    assert w.t_ar_ms == pytest.approx(5.5)


def test_what_if_fits_verify_cost_only_when_gamma_varies():
    def steps(gs):
        return [{"gamma_drafted": g, "n_accepted": g // 2, "trimmed_by": "none", "emitted_token_ids": [0] * (g // 2 + 1),
                 "draft_ms": 0.5 * g, "verify_ms": 2.0 + 0.5 * g, "overhead_ms": 0.25} for g in gs]

    varied = what_if(steps([2, 4, 6] * 20))
    assert varied.verify_ms_intercept == pytest.approx(2.0) and varied.verify_ms_per_token == pytest.approx(0.5)
    assert varied.t_ar_ms == pytest.approx(2.0 + 0.5 + 0.25)
    row3 = next(r for r in varied.rows if r.gamma == 3)
    assert row3.step_ms == pytest.approx(3 * 0.5 + 2.0 + 0.5 * 3 + 0.25)
    # constant gamma with two stray short steps: no slope is inferred from them
    const = what_if(steps([4] * 40 + [1, 2]))
    assert const.verify_ms_per_token == 0.0
    assert const.verify_ms_intercept == pytest.approx(sum(2.0 + 0.5 * g for g in [4] * 40 + [1, 2]) / 42)


def test_trimmed_steps_are_censored_out_and_rates_count_only_drafts_that_reached_a_position():
    def st(g, n, trimmed="none"):
        return {"gamma_drafted": g, "n_accepted": n, "trimmed_by": trimmed, "emitted_token_ids": [0] * (n + 1),
                "draft_ms": 1.0, "verify_ms": 2.0, "overhead_ms": 0.0}

    steps = [st(4, 4), st(4, 1), st(2, 2), st(4, 0, "eos"), st(0, 0)]
    # accepted 4 + 1 + 2 = 7, one step stopped early (the trimmed and the baseline step do not count)
    assert alpha_mle(steps) == 7 / 8
    rates, trials = conditional_rates(steps)
    # position 3 is reached only by the first step (the third drafted 2): 1 of 1, not 1 of 3
    assert trials == [3, 3, 1, 1] and rates == [1.0, 2 / 3, 1.0, 1.0]
    assert alpha_mle([st(0, 0)]) is None and what_if([st(0, 0)]) is None


def test_what_if_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, specdec_diag.analysis.whatif; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
