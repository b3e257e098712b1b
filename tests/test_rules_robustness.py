"""Rules never crash on odd but schema-conforming tables: random windows (nulls anywhere, zeros,
NaN rates, empty per-position lists) and random trace steps go through every rule in strict mode."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "rules"))

from synth import Spec, make_trace  # noqa: E402

from specdec_diag.analysis.rules import run_rules  # noqa: E402
from specdec_diag.ingest.base import STEPS_SCHEMA, IngestResult  # noqa: E402
from specdec_diag.schema import WINDOW_SCHEMA, conform_windows, steps_to_frame  # noqa: E402

maybe = lambda s: st.one_of(st.none(), s)  # noqa: E731
rate = st.one_of(st.floats(0, 1), st.just(math.nan))
window = st.fixed_dictionaries({
    "source": st.sampled_from(["a.log", "b.log"]), "line": st.integers(1, 500),
    "engine": st.sampled_from(["vllm", "sglang", "llama.cpp"]), "engine_id": maybe(st.sampled_from(["E0", "E1"])),
    "window": maybe(st.sampled_from(["interval", "cumulative", "request", "run"])),
    "k": maybe(st.integers(0, 8)), "num_drafts": maybe(st.integers(0, 3000)),
    "draft_tokens": maybe(st.integers(0, 20000)), "accepted_tokens": maybe(st.integers(0, 20000)),
    "acceptance_rate": maybe(rate), "mean_acceptance_length": maybe(st.floats(0.5, 9)),
    "per_position_acceptance": maybe(st.lists(st.floats(0, 1), max_size=8)),
    "gen_tps": maybe(st.floats(0, 5000)), "running_reqs": maybe(st.integers(0, 400)),
    "waiting_reqs": maybe(st.integers(0, 50)), "kv_usage": maybe(st.floats(0, 1)),
    "cuda_graph": maybe(st.booleans()), "temperature": maybe(st.floats(0, 2)),
    "context_len": maybe(st.integers(0, 100000)), "draft_ms": maybe(st.floats(0, 100)),
    "verify_ms": maybe(st.floats(0, 100)), "ttft_ms": maybe(st.floats(0, 1e5)), "tpot_ms": maybe(st.floats(0, 100)),
    "definition_note": maybe(st.sampled_from(["note 1", "note 2"])),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(window, min_size=0, max_size=30))
def test_random_windows_never_crash(rows):
    res = IngestResult.empty()
    res.windows = conform_windows(pl.DataFrame(rows, schema_overrides={
        k: v for k, v in WINDOW_SCHEMA.items() if k in (rows[0] if rows else {})}) if rows else pl.DataFrame())
    for f in run_rules(res, strict=True):
        assert f.severity in ("error", "warning", "info") and f.code


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.sampled_from(["greedy", "sampling", "lenient"]), st.integers(1, 6),
       st.integers(1, 40), st.data())
def test_random_traces_never_crash(seed, rule, gamma, steps, data):
    spec = Spec(rule=rule, gamma=gamma, steps=steps, requests=data.draw(st.integers(1, 3)), seed=seed,
                noise=data.draw(st.floats(0.0, 10.0)), accept_all=data.draw(st.booleans()),
                nan_after=data.draw(maybe(st.integers(0, 10))), drop_bonus=data.draw(st.booleans()))
    recs = [r for r in make_trace(spec) if r["type"] == "step"]
    frame = steps_to_frame(recs).with_columns(pl.lit("t.jsonl").alias("source"),
                                               pl.Series("line", list(range(2, len(recs) + 2)), dtype=pl.Int64))
    res = IngestResult.empty()
    res.steps = frame.select(list(STEPS_SCHEMA))
    res.headers = [{"source": "t.jsonl", "mode": "speculative", "rule": {"name": rule}}]
    run_rules(res, strict=True)
