"""The trace-header facts the analysis reads (baseline or speculative, temperature, rule name) have
one definition each, in ``specdec_diag.schema``; the rules' context and the metrics both use it, so a
trace the rules treat as the baseline is the one the speed-up is measured against."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "rules"))

from synth import Spec, write_trace  # noqa: E402

from specdec_diag.analysis import metrics  # noqa: E402
from specdec_diag.analysis.rules import Context  # noqa: E402
from specdec_diag.ingest import scan  # noqa: E402
from specdec_diag.schema import trace_is_baseline, trace_rule_name, trace_temperature  # noqa: E402


@pytest.mark.parametrize(("mode", "baseline"), [
    ("baseline", True), ("AR", True), ("autoregressive", True), ("plain", True), ("no-spec", True),
    ("nospec", True), ("speculative", False), ("", False), (None, False)])
def test_trace_is_baseline(mode, baseline):
    header = {} if mode is None else {"mode": mode}
    assert trace_is_baseline(header) is baseline


@pytest.mark.parametrize(("header", "temperature"), [
    ({"rule": {"name": "greedy"}, "sampling": {"temperature": 1.0, "do_sample": False}}, 0.0),
    ({"rule": "greedy", "sampling": {"temperature": 0.7}}, 0.0),
    ({"rule": {"name": "sampling"}, "sampling": {"temperature": 1.0, "do_sample": False}}, 0.0),
    ({"rule": {"name": "sampling"}, "sampling": {"temperature": 0.8, "do_sample": True}}, 0.8),
    ({"rule": {"name": "sampling"}, "sampling": {"temperature": 1}}, 1.0),
    ({"rule": {"name": "sampling"}, "sampling": {"temperature": True}}, None),
    ({"rule": {"name": "sampling"}, "sampling": "hot"}, None),
    ({}, None)])
def test_trace_temperature(header, temperature):
    assert trace_temperature(header) == temperature


def test_trace_rule_name():
    assert trace_rule_name({"rule": {"name": "lenient", "lossy": True}}) == "lenient"
    assert trace_rule_name({"rule": "greedy"}) == "greedy"
    assert trace_rule_name({"rule": 3}) is None and trace_rule_name({}) is None


@pytest.mark.parametrize("mode", ["baseline", "plain"])
def test_rules_and_metrics_agree_on_the_baseline(tmp_path, mode):
    spec = write_trace(Spec(seed=3), tmp_path / "spec.jsonl")
    base = write_trace(Spec(mode=mode, seed=4), tmp_path / "base.jsonl")
    res = scan([spec, base], use_cache=False)
    ctx = Context(res)
    flagged = set(ctx.steps.filter(pl.col("baseline"))["source"].unique().to_list())
    assert flagged == {str(base)}
    assert set(ctx.spec_steps["source"].unique().to_list()) == {str(spec)}
    ms = metrics.baseline_ms_per_token(res)
    assert ms is not None and ms == pytest.approx(
        1000.0 / metrics.goodput(res.steps.filter(pl.col("source") == str(base))))


def test_context_temperature_is_the_header_temperature(tmp_path):
    greedy = write_trace(Spec(rule="greedy", seed=1), tmp_path / "g.jsonl")
    hot = write_trace(Spec(rule="sampling", temperature=0.9, seed=2), tmp_path / "h.jsonl")
    ctx = Context(scan([greedy, hot], use_cache=False))
    temps = dict(ctx.steps.select("source", "temperature").unique().iter_rows())
    assert temps == {str(greedy): 0.0, str(hot): 0.9}
