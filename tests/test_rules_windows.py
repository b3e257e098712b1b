"""Window-table branches that the engine-log fixtures do not reach, on IngestResults built from
schema-conforming frames: TTFT/TPOT queueing, SGLang lossy thresholds, random datasets, short
requests, context decay with a sharp drop, temperature splits, speculation stopping after the first
requests, vocabulary sizes from configs. Each is paired with the same table made healthy."""

from __future__ import annotations

import polars as pl
import pytest

from specdec_diag.analysis.rules import run_rules
from specdec_diag.ingest.base import IngestResult
from specdec_diag.schema import CONFIG_SCHEMA, conform_windows


def result(rows: list[dict], configs: list[tuple[str, str]] | None = None, source: str = "x.log") -> IngestResult:
    res = IngestResult.empty()
    res.windows = conform_windows(pl.DataFrame([{"source": source, "line": i + 1, "engine": "sglang",
                                                 "window": "interval", **r} for i, r in enumerate(rows)]))
    if configs:
        res.configs = pl.DataFrame([{"source": source, "line": 1, "engine": "sglang", "key": k, "value": v}
                                    for k, v in configs], schema=CONFIG_SCHEMA)
    return res


def codes(res: IngestResult) -> dict[str, object]:
    return {f.code: f for f in run_rules(res, strict=True) if f.severity != "info"}


def spec(i: int, **kw) -> dict:
    base = {"k": 4, "num_drafts": 200 + i, "draft_tokens": 800 + 4 * i, "accepted_tokens": 440,
            "mean_acceptance_length": 3.2, "acceptance_rate": 0.55, "gen_tps": 300.0 + i}
    return {**base, **kw}


def test_ttft_far_above_tpot_is_queueing():
    bad = result([{"window": "run", "gen_tps": 900.0, "ttft_ms": 154000.0, "tpot_ms": 18.0, **spec(0)}])
    ok = result([{"window": "run", "gen_tps": 900.0, "ttft_ms": 300.0, "tpot_ms": 18.0, **spec(0)}])
    f = codes(bad)["CAPACITY_QUEUEING"]
    assert f.evidence["ratio"] == pytest.approx(154000 / 18)
    assert "CAPACITY_QUEUEING" not in codes(ok)


def test_sglang_accept_thresholds_below_one_are_lossy():
    rows = [spec(i) for i in range(4)]
    bad = codes(result(rows, [("speculative_accept_threshold_single", "0.5"),
                              ("speculative_accept_threshold_acc", "1.0")]))
    assert bad["LOSSY_ACCEPTANCE"].evidence["settings"] == {"speculative_accept_threshold_single": "0.5"}
    assert "LOSSY_ACCEPTANCE" not in codes(result(rows, [("speculative_accept_threshold_single", "1.0")]))


def test_random_dataset_and_short_requests_are_artifacts():
    rows = [spec(i) for i in range(4)]
    assert "BENCHMARK_ARTIFACT" in codes(result(rows, [("dataset_name", "random")]))
    assert "BENCHMARK_ARTIFACT" not in codes(result(rows, [("dataset_name", "sharegpt")]))
    short = [{"window": "request", "k": 4, "num_drafts": 5, "draft_tokens": 20 + i, "accepted_tokens": 10,
              "mean_acceptance_length": 3.0} for i in range(6)]
    f = codes(result(short))["BENCHMARK_ARTIFACT"]
    assert f.evidence["short_requests"] == 6
    long = [{**r, "num_drafts": 100, "draft_tokens": 400 + i} for i, r in enumerate(short)]
    assert "BENCHMARK_ARTIFACT" not in codes(result(long))


def test_sharp_context_drop_is_located():
    rows = []
    for i in range(40):
        ctx = 200 + 100 * i
        acc = 480 if ctx < 2048 else 90
        rows.append(spec(i, context_len=ctx, accepted_tokens=acc + (i % 3), acceptance_rate=None,
                         mean_acceptance_length=None))
    f = codes(result(rows))["ACCEPTANCE_DECAY_CONTEXT"]
    assert f.evidence["sharp"] is True and 2000 <= f.evidence["drop_at_context"] <= 2100
    flat = [{**r, "accepted_tokens": 480 + (i % 3)} for i, r in enumerate(rows)]
    assert "ACCEPTANCE_DECAY_CONTEXT" not in codes(result(flat))


def test_temperature_split_on_windows():
    cold = [spec(i, temperature=0.0, accepted_tokens=560) for i in range(5)]
    hot = [spec(i, temperature=1.0, accepted_tokens=240) for i in range(5)]
    f = codes(result(cold + hot))["TEMPERATURE_SENSITIVITY"]
    drafted = sum(800 + 4 * i for i in range(5))
    assert f.evidence["gap"] == pytest.approx(5 * 560 / drafted - 5 * 240 / drafted)
    same = [spec(i, temperature=1.0, accepted_tokens=540) for i in range(5)]
    assert "TEMPERATURE_SENSITIVITY" not in codes(result(cold + same))


def test_speculation_stopping_after_first_requests():
    reqs = [{"window": "request", "k": 4, "num_drafts": 50, "draft_tokens": 200, "accepted_tokens": 90,
             "mean_acceptance_length": 2.8}]
    reqs += [{"window": "request", "k": 4, "num_drafts": 0, "draft_tokens": 0, "accepted_tokens": 0,
              "mean_acceptance_length": None} for _ in range(5)]
    f = codes(result(reqs))["SPEC_INACTIVE"]
    assert f.evidence["requests_without_drafts"] == 5 and f.locations[0]["line"] == 2


def test_vocab_sizes_from_configs():
    rows = [spec(i) for i in range(4)]
    bad = codes(result(rows, [("target_vocab_size", "152064"), ("draft_vocab_size", "151936")]))
    assert bad["VOCAB_MISMATCH"].evidence["target"] == {"vocab_size": "152064"}
    assert "VOCAB_MISMATCH" not in codes(result(rows, [("target_vocab_size", "152064"),
                                                       ("draft_vocab_size", "152064")]))


def test_two_engines_are_judged_apart():
    """A broken engine next to a healthy one: the finding names only the broken one's lines."""
    good = [{**spec(i), "engine_id": "E0"} for i in range(4)]
    bad = [{**spec(i), "engine_id": "E1", "accepted_tokens": 4, "mean_acceptance_length": 1.02,
            "acceptance_rate": 0.005} for i in range(4)]
    res = result(good + bad)
    f = codes(res)["DRAFTER_BROKEN"]
    assert {loc["line"] for loc in f.locations} == {5, 6, 7, 8}
    assert "E1" in f.title
