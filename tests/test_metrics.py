"""Metrics on hand-made tables with hand-checked numbers, and the identities between them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specdec_diag.analysis import metrics as m
from specdec_diag.analysis import theory
from specdec_diag.ingest.base import STEPS_SCHEMA, IngestResult
from specdec_diag.schema import conform_windows

ROOT = Path(__file__).resolve().parents[1]


def windows(**cols) -> pl.DataFrame:
    n = len(next(iter(cols.values())))
    cols.setdefault("source", ["a.log"] * n)
    cols.setdefault("line", list(range(1, n + 1)))
    cols.setdefault("window", ["interval"] * n)
    return conform_windows(pl.DataFrame(cols, strict=False))


def steps_frame(ns, gammas=None, min_pq=None, draft_ms=None, verify_ms=None, overhead_ms=None, emitted=None,
                source="t.jsonl") -> pl.DataFrame:
    gammas = gammas or [3] * len(ns)
    rows = []
    for i, (n, g) in enumerate(zip(ns, gammas, strict=True)):
        rows.append({
            "source": source, "line": i + 2, "step": i, "request": 0, "context_len": 10 + i,
            "gamma_requested": g, "gamma_drafted": g, "draft_token_ids": list(range(g)),
            "q": [0.5] * g, "p": [0.5] * g, "uniforms": None, "accept_flags": [j < n for j in range(g)],
            "n_accepted": n,
            "emitted_token_ids": list(range(emitted[i] if emitted else n + 1)),
            "last_token_kind": "bonus" if n == g else "correction", "trimmed_by": "none",
            "target_forwards": 1, "min_pq": min_pq[i] if min_pq else None,
            "draft_ms": draft_ms[i] if draft_ms else float(g), "verify_ms": verify_ms[i] if verify_ms else 10.0,
            "overhead_ms": overhead_ms[i] if overhead_ms else 1.0,
        })
    return pl.DataFrame(rows, schema=STEPS_SCHEMA)


# ---- steps --------------------------------------------------------------------------------------

NS = [3, 0, 1, 2, 3]
MIN_PQ = [[0.9, 0.8, 0.7], [0.2, 0.9, 0.9], [0.6, 0.3, 0.99], [0.7, 0.8, 0.1], [1.0, 1.0, 1.0]]


def test_steps_hand_checked():
    s = steps_frame(NS, min_pq=MIN_PQ)
    assert m.num_drafts(s) == 5
    assert m.draft_tokens(s) == 15 and m.accepted_tokens(s) == 9 and m.emitted_tokens(s) == 14
    assert m.acceptance_rate(s) == pytest.approx(9 / 15)
    assert m.mean_acceptance_length(s) == pytest.approx(2.8)
    assert m.per_position_acceptance(s) == pytest.approx([0.8, 0.6, 0.4])
    assert m.conditional_per_position(s) == pytest.approx([0.8, 0.75, 2 / 3])
    assert m.alpha_mle(s) == pytest.approx(9 / 12)          # 9 successes, 3 early stops
    assert m.alpha_tv(s) == pytest.approx(8.1 / 12)          # only tested positions (12 of 15)
    assert m.cost_ratio(s) == pytest.approx((15 / 15) / (50 / 5))
    assert m.goodput(s) == pytest.approx(14 / 0.070)
    assert m.tokens_per_step(s) == pytest.approx(2.8)
    assert m.system_efficiency(s) == pytest.approx(2.8 / 4)
    assert m.draft_length(s) == 3
    assert m.accepted_length_histogram(s) == {0: 1, 1: 1, 2: 1, 3: 2}
    tb = m.time_breakdown(s)
    assert tb["draft_ms"] == 15 and tb["verify_ms"] == 50 and tb["overhead_ms"] == 5
    assert tb["verify_share"] == pytest.approx(50 / 70)


def test_steps_without_drafts_are_not_drafts():
    s = pl.concat([steps_frame(NS), steps_frame([0], gammas=[0])])
    assert m.num_drafts(s) == 5
    assert m.mean_acceptance_length(s) == pytest.approx(2.8)
    assert m.alpha_mle(s) == pytest.approx(0.75)


def test_trimmed_last_step_lowers_tokens_per_step_not_mal():
    s = steps_frame(NS, emitted=[4, 1, 2, 3, 3])  # last step cut by EOS
    assert m.tokens_per_step(s) == pytest.approx(13 / 5)
    assert m.mean_acceptance_length(s) == pytest.approx(2.8)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 6)), min_size=1, max_size=40))
def test_step_identities(pairs):
    gammas = [g for g, _ in pairs]
    ns = [min(n, g) for g, n in pairs]
    s = steps_frame(ns, gammas=gammas)
    mal = m.mean_acceptance_length(s)
    assert mal == pytest.approx(1 + sum(m.per_position_acceptance(s)))
    assert m.acceptance_rate(s) * sum(gammas) == pytest.approx(sum(ns))
    pp = m.per_position_acceptance(s)
    assert all(a >= b for a, b in zip(pp, pp[1:], strict=False))
    a = m.alpha_mle(s)
    assert a is None or 0 <= a <= 1


# ---- windows ------------------------------------------------------------------------------------


def test_acceptance_rate_is_draft_weighted_not_mean_of_rates():
    w = windows(draft_tokens=[100, 900], accepted_tokens=[90, 90], acceptance_rate=[0.9, 0.1], num_drafts=[25, 225])
    assert m.acceptance_rate(w) == pytest.approx(0.18)
    assert m.mean_acceptance_length(w) == pytest.approx(1 + 180 / 250)


def test_windows_hand_checked_and_identity():
    w = windows(k=[3, 3], num_drafts=[10, 30], draft_tokens=[30, 90], accepted_tokens=[15, 30],
                per_position_acceptance=[[0.8, 0.5, 0.2], [0.5, 0.3, 0.2]])
    assert m.acceptance_rate(w) == pytest.approx(45 / 120)
    assert m.mean_acceptance_length(w) == pytest.approx(1 + 45 / 40)
    pp = m.per_position_acceptance(w)
    assert pp == pytest.approx([(8 + 15) / 40, (5 + 9) / 40, (2 + 6) / 40])
    assert 1 + sum(pp) == pytest.approx(m.mean_acceptance_length(w))
    # 45 accepted; early stops = 10*0.8 + 30*0.8 = 32
    assert m.alpha_mle(w) == pytest.approx(45 / 77)
    assert m.num_drafts(w) == 40 and m.draft_length(w) == 3
    assert m.system_efficiency(w) == pytest.approx((1 + 45 / 40) / 4)


def test_windows_agree_with_the_steps_they_summarise():
    ns = [3, 0, 1, 2, 3, 3, 1, 0]
    s = steps_frame(ns)
    rows = []
    for i in range(0, len(ns), 3):  # aggregate steps 3 at a time, as an engine's logger would
        chunk = ns[i:i + 3]
        rows.append({"num_drafts": len(chunk), "draft_tokens": 3 * len(chunk), "accepted_tokens": sum(chunk),
                     "per_position_acceptance": [sum(n >= j for n in chunk) / len(chunk) for j in (1, 2, 3)],
                     "k": 3})
    w = windows(**{key: [r[key] for r in rows] for key in rows[0]})
    for fn in (m.acceptance_rate, m.mean_acceptance_length, m.alpha_mle):
        assert fn(w) == pytest.approx(fn(s)), fn.__name__
    assert m.per_position_acceptance(w) == pytest.approx(m.per_position_acceptance(s))


def test_cumulative_rows_not_double_counted():
    # one source: cumulative counters and ingest's interval differences of them
    w = windows(window=["cumulative", "interval", "cumulative", "interval"],
                draft_tokens=[100, 100, 300, 200], accepted_tokens=[50, 50, 120, 70], num_drafts=[25, 25, 75, 50])
    assert m.draft_tokens(w) == 300 and m.accepted_tokens(w) == 120
    assert m.acceptance_rate(w) == pytest.approx(0.4)


def test_cumulative_only_takes_last_row_per_engine():
    w = windows(window=["cumulative"] * 4, engine_id=["0", "1", "0", "1"], line=[1, 2, 3, 4],
                draft_tokens=[100, 40, 300, 80], accepted_tokens=[50, 10, 120, 40])
    assert m.draft_tokens(w) == 380 and m.accepted_tokens(w) == 160
    assert len(m.aggregation_rows(w)) == 2


def test_time_breakdown_from_windows_with_timings():
    w = windows(draft_tokens=[30, 30], accepted_tokens=[10, 20], draft_ms=[2.0, 4.0], verify_ms=[14.0, 12.0])
    tb = m.time_breakdown(w)
    assert tb["draft_ms"] == 6 and tb["verify_ms"] == 26 and tb["overhead_ms"] == 0
    assert tb["draft_share"] == pytest.approx(6 / 32)
    assert m.time_breakdown(windows(draft_tokens=[30], accepted_tokens=[10])) is None


def test_kind_chosen_per_source_and_throughput_lines_ignored():
    w = windows(source=["a", "a", "b", "b"], window=["interval", "run", "request", "interval"],
                draft_tokens=[10, 999, 20, None], accepted_tokens=[5, 999, 10, None], gen_tps=[None, None, None, 50.0])
    # a: interval beats run; b: the interval row is a throughput line (no spec data), so request counts
    assert m.draft_tokens(w) == 30 and m.accepted_tokens(w) == 15
    assert m.goodput(w) == 50.0


def test_nan_per_position_entries_are_unknown_not_zero():
    w = windows(num_drafts=[100, 300], draft_tokens=[300, 900], accepted_tokens=[120, 300],
                per_position_acceptance=[[0.6, float("nan"), float("nan")], [0.5, 0.3, float("nan")]])
    assert m.per_position_acceptance(w) == pytest.approx([(60 + 150) / 400, 0.3])
    assert m.alpha_mle(w) is None  # the last position is unknown, so the early stops are too


def test_missing_num_drafts_estimated_from_k_or_mal():
    w = windows(k=[3, None], mean_acceptance_length=[2.0, 1.5], accepted_tokens=[50, 20], draft_tokens=[150, 80])
    # drafts: 150/3 = 50 (k known), 20 / 0.5 = 40 (from MAL)
    assert m.num_drafts(w) == 90
    assert m.mean_acceptance_length(w) == pytest.approx(1 + 70 / 90)


def test_rate_only_windows_fall_back_to_logged_rates():
    w = windows(acceptance_rate=[0.5, 0.7], mean_acceptance_length=[2.0, 3.0], engine=["sglang", "sglang"])
    assert m.acceptance_rate(w) == pytest.approx(0.6)
    assert m.mean_acceptance_length(w) == pytest.approx(2.5)
    assert m.draft_tokens(w) is None


def test_empty_and_null_tables_give_none():
    empty = conform_windows(pl.DataFrame())
    nulls = windows(draft_tokens=[None, None], engine=["vllm", "vllm"])
    zero = windows(draft_tokens=[0], accepted_tokens=[0], num_drafts=[0])
    e_steps = pl.DataFrame(schema=STEPS_SCHEMA)
    for t in (empty, nulls, zero, e_steps):
        for fn in (m.acceptance_rate, m.mean_acceptance_length, m.per_position_acceptance, m.alpha_mle,
                   m.system_efficiency, m.tokens_per_step, m.alpha_from_mal):
            assert fn(t) is None, (fn.__name__, t.height)
    for fn in (m.alpha_tv, m.cost_ratio, m.goodput, m.time_breakdown):
        assert fn(e_steps) is None
    assert m.conditional_per_position([0.5, 0.0, 0.0]) == [0.5, 0.0, None]


def test_summarize_windows_and_steps():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    w = windows(engine=["vllm", "vllm"], k=[3, 3], num_drafts=[10, 30], draft_tokens=[30, 90],
                accepted_tokens=[15, 30], per_position_acceptance=[[0.8, 0.5, 0.2], [0.5, 0.3, 0.2]],
                time=[t0, t0.replace(second=10)], gen_tps=[100.0, 0.0])
    r = IngestResult.empty()
    r.windows = w
    s = m.summarize(r)
    assert s["engine"] == "vllm" and s["k"] == 3 and s["basis"] == "windows"
    assert s["acceptance_rate"] == pytest.approx(0.375) and s["mean_acceptance_length"] == pytest.approx(2.125)
    assert s["duration_s"] == 10 and s["tokens_per_s"] == 100.0
    assert s["speedup"]["alpha_basis"] == "alpha_mle" and s["speedup"]["c_assumed_zero"]
    assert s["speedup"]["predicted"] == pytest.approx(theory.speedup(45 / 77, 3, 0), abs=1e-5)
    for key in ("acceptance_rate", "mean_acceptance_length", "per_position_acceptance", "alpha_mle", "c"):
        assert key in s["definitions"]

    r2 = IngestResult.empty()
    r2.steps = steps_frame(NS, min_pq=MIN_PQ)
    r2.headers = [{"source": "t.jsonl", "mode": "speculative", "baseline_ms_per_token": 20.0,
                   "rule": {"name": "sampling", "lossy": False}}]
    s2 = m.summarize(r2)
    assert s2["basis"] == "trace steps" and s2["num_drafts"] == 5
    assert s2["alpha_tv"] == pytest.approx(0.675) and s2["speedup"]["alpha_basis"] == "alpha_tv"
    assert s2["c"] == pytest.approx(0.1)
    # achieved: 20 ms/token baseline vs 70 ms per 14 tokens = 5 ms/token -> 4x
    assert s2["speedup"]["achieved"] == pytest.approx(4.0)
    assert s2["accepted_length_histogram"] == {"0": 1, "1": 1, "2": 1, "3": 2}


def test_baseline_from_autoregressive_trace():
    r = IngestResult.empty()
    ar = steps_frame([0] * 4, gammas=[0] * 4, source="ar.jsonl", draft_ms=[0.0] * 4, verify_ms=[9.0] * 4,
                     overhead_ms=[1.0] * 4)
    r.steps = pl.concat([steps_frame(NS), ar])
    r.headers = [{"source": "t.jsonl", "mode": "speculative"}, {"source": "ar.jsonl", "mode": "autoregressive"}]
    assert m.baseline_ms_per_token(r) == pytest.approx(10.0)
    assert m.achieved_speedup(r) == pytest.approx(10.0 / 5.0)


def test_summarize_empty_result():
    s = m.summarize(IngestResult.empty())
    assert s["acceptance_rate"] is None and s["num_drafts"] is None and s["windows_used"] == 0


def test_docs_metrics_md_is_generated_from_the_code():
    doc = ROOT / "docs" / "metrics.md"
    assert doc.read_text() == m.metrics_markdown(), "regenerate: python -m specdec_diag.analysis.metrics > docs/metrics.md"


def _write_trace(path: Path, mode: str, steps: list[tuple[int, int, float, float, float]], rule: str = "greedy"
                 ) -> Path:
    """A specdec-trace@1 file: (gamma, n, draft_ms, verify_ms, overhead_ms) per step."""
    import json

    recs = [{"type": "header", "schema": "specdec-trace@1", "mode": mode, "rule": {"name": rule, "lossy": False},
             "gamma_policy": {"name": "constant"}, "sampling": {"temperature": 0.0}}]
    for i, (g, n, d, v, o) in enumerate(steps):
        recs.append({"type": "step", "step": i, "request": 0, "context_len": 8 + i, "gamma_requested": g,
                     "gamma_drafted": g, "draft_token_ids": [5] * g, "q": [1.0] * g, "p": [1.0] * g,
                     "accept_flags": [j < n for j in range(g)], "n_accepted": n, "emitted_token_ids": [5] * (n + 1),
                     "last_token_kind": "bonus" if n == g else "correction", "target_forwards": 1,
                     "min_pq": [0.9] * g, "draft_ms": d, "verify_ms": v, "overhead_ms": o})
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return path


def test_summary_of_real_trace_files_with_a_baseline(tmp_path):
    """Through the real ingest: a speculative trace and a baseline trace give c and the achieved speed-up."""
    from specdec_diag.ingest import scan

    spec = [(4, n, 4.0, 12.0, 2.0) for n in (4, 2, 0, 3, 4, 1, 4, 4)]   # 22 accepted, 30 emitted
    _write_trace(tmp_path / "spec.jsonl", "speculative", spec)
    _write_trace(tmp_path / "base.jsonl", "baseline", [(0, 0, 0.0, 9.0, 1.0)] * 20)   # 10 ms per token
    r = scan([tmp_path], use_cache=False)
    s = m.summarize(r)
    assert s["k"] == 4 and s["num_drafts"] == 8 and s["accepted_tokens"] == 22
    assert s["acceptance_rate"] == pytest.approx(22 / 32)
    assert s["mean_acceptance_length"] == pytest.approx(1 + 22 / 8)
    assert s["c"] == pytest.approx((32 / 32) / 12.0, abs=1e-6)
    assert s["emitted_tokens"] == 30 and s["tokens_per_step"] == pytest.approx(30 / 8)  # baseline tokens left out
    assert s["alpha_tv"] is None            # greedy verification: sum min(p, q) is not the acceptance probability
    assert s["alpha_mle"] == pytest.approx(22 / 26, abs=1e-6) and s["speedup"]["alpha_basis"] == "alpha_mle"
    # achieved: baseline 10 ms/token; speculative 8 steps x 18 ms for 30 tokens -> 4.8 ms/token
    assert s["speedup"]["achieved"] == pytest.approx(10 / (8 * 18 / 30), abs=1e-6)
    assert s["speedup"]["predicted"] == pytest.approx(theory.speedup(22 / 26, 4, 1 / 12), abs=1e-5)

    _write_trace(tmp_path / "spec.jsonl", "speculative", spec, rule="sampling")
    s = m.summarize(scan([tmp_path], use_cache=False))
    assert s["alpha_tv"] == pytest.approx(0.9) and s["speedup"]["alpha_basis"] == "alpha_tv"
    assert s["speedup"]["predicted"] == pytest.approx(theory.speedup(0.9, 4, 1 / 12), abs=1e-5)


def test_mixed_log_and_trace_alpha_covers_the_same_records(tmp_path):
    """alpha_mle sits next to the acceptance rate: with a log and a trace it covers both."""
    from specdec_diag.ingest import scan

    _write_trace(tmp_path / "spec.jsonl", "speculative", [(4, n, 4.0, 12.0, 2.0) for n in (4, 2, 0, 3)])
    (tmp_path / "vllm.log").write_text(
        "INFO 05-06 06:11:10 [metrics.py:101] SpecDecoding metrics: Mean acceptance length: 2.50, Accepted "
        "throughput: 15.00 tokens/s, Drafted throughput: 30.00 tokens/s, Accepted: 150 tokens, Drafted: 400 tokens, "
        "Per-position acceptance rate: 0.700, 0.400, 0.250, 0.150, Avg Draft acceptance rate: 37.5%\n")
    s = m.summarize(scan([tmp_path], use_cache=False))
    assert s["draft_tokens"] == 416 and s["accepted_tokens"] == 159
    # log: 150 accepted, 100 drafts x (1 - 0.15) early stops; trace: 9 accepted, 3 early stops
    assert s["alpha_mle"] == pytest.approx((150 + 9) / (150 + 9 + 85 + 3), abs=1e-6)


def test_nan_mean_acceptance_length_without_counts_does_not_crash() -> None:
    """A window whose MAL is NaN and which carries no draft count must not poison the draft estimate."""
    from specdec_diag.schema import conform_windows

    w = conform_windows(pl.DataFrame({
        "source": ["a", "a"], "line": [1, 2], "window": ["interval", "interval"], "engine": ["vllm", "vllm"],
        "accepted_tokens": [10, 12], "mean_acceptance_length": [float("nan"), 2.0],
    }))
    r = IngestResult.empty()
    r.windows = w
    s = m.summarize(r)
    assert s["num_drafts"] == 12  # only the second window's 12 / (2.0 - 1) is estimable
    assert s["mean_acceptance_length"] == 2.0
