"""TensorRT-LLM iteration stats and per-request perf metrics in every layout we accept; numbers
checked by hand against SpecDecodingStats (docs/log-formats.md §6): acceptance length =
(accepted + requests with drafts) / requests."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from _helpers import parse_samples

from specdec_diag.ingest import trtllm
from specdec_diag.ingest._textparse import lines_frame
from specdec_diag.schema import MALFORMED_SCHEMA, WINDOW_SCHEMA

FIX = Path(__file__).parent / "fixtures" / "trtllm"


def parse(name: str):
    p = trtllm.parse_file(FIX / name, str(FIX / name))
    assert dict(p.windows.schema) == WINDOW_SCHEMA
    return p


EXPECTED = [  # (iter, k, drafts, draft tokens, accepted, AR, MAL, draft_ms, verify_ms, kv)
    ("iter 120", 3, 4, 12, 7, 7 / 12, 11 / 4, 3.0, 17.0, 0.25),
    ("iter 121", 3, 4, 12, 12, 1.0, 4.0, 3.0, 15.0, 0.26),
    ("iter 122", None, 0, 0, 0, None, None, 0.0, 40.0, None),
]


def check_iterations(p) -> None:
    got = p.windows.select(
        "request",
        "k",
        "num_drafts",
        "draft_tokens",
        "accepted_tokens",
        "acceptance_rate",
        "mean_acceptance_length",
        "draft_ms",
        "verify_ms",
        "kv_usage",
    ).rows()
    assert len(got) == len(EXPECTED)
    for g, e in zip(got, EXPECTED, strict=True):
        assert g[:5] == e[:5]
        assert g[5:] == pytest.approx(e[5:])


def test_json_lines():
    p = parse("iteration_stats.jsonl")
    check_iterations(p)
    w = p.windows
    assert w["line"].to_list() == [1, 2, 3]
    assert set(w["window"]) == {"interval"} and set(w["format"]) == {"trtllm-iteration-stats"}
    assert w["time"][0].isoformat() == "2025-01-08T10:34:55+00:00"
    assert w["running_reqs"].to_list() == [4, 4, 5] and w["waiting_reqs"].to_list() == [1, 0, 0]
    assert w["emitted_tokens"].to_list() == [11, 16, 0]
    assert p.malformed.height == 0


def test_line_mode_equals_file_mode_for_json_lines():
    direct = trtllm.parse(lines_frame(FIX / "iteration_stats.jsonl"), str(FIX / "iteration_stats.jsonl"))
    check_iterations(direct)


def test_pretty_printed_array_keeps_element_line_numbers():
    p = parse("iteration_stats_array.json")
    check_iterations(p)
    text = (FIX / "iteration_stats_array.json").read_text().splitlines()
    for ln in p.windows["line"].to_list():
        assert text[ln - 1].strip() == "{"  # each row points at its object's first line


def test_pretty_stream_with_cut_last_object():
    p = parse("iteration_stats_pretty_cut.json")
    assert p.windows["request"].to_list() == ["iter 120", "iter 121"]
    assert p.malformed.height == 1 and "truncated" in p.malformed["reason"][0]


def test_log_prefixed_objects_and_bad_records():
    p = parse("prefixed.log")
    w = p.windows.to_dicts()
    assert [r["request"] for r in w] == ["iter 7", "iter 8"]
    # iteration 7: 6 drafted, none accepted -> acceptance length 1 (pinned)
    assert w[0]["acceptance_rate"] == 0.0 and w[0]["mean_acceptance_length"] == 1.0 and w[0]["k"] == 3
    assert w[1]["acceptance_rate"] == 1.0 and w[1]["mean_acceptance_length"] == 4.0
    assert w[1]["time"].isoformat() == "2025-01-08T10:35:00+00:00"
    assert w[0]["verify_ms"] == 20.0
    bad = dict(zip(p.malformed["line"], p.malformed["reason"], strict=True))
    assert set(bad) == {4, 5} and "JSON" in bad[4] and "iterLatencyMS" in bad[5]


def test_request_perf_metrics():
    p = parse("request_perf.jsonl")
    w = p.windows.to_dicts()
    assert [r["request"] for r in w] == ["1", "2"]  # request 3 had no speculative_decoding block
    assert w[0]["window"] == "request" and w[0]["format"] == "trtllm-request-perf"
    assert (w[0]["draft_tokens"], w[0]["accepted_tokens"], w[0]["acceptance_rate"]) == (200, 120, 0.6)
    assert w[1]["acceptance_rate"] is None  # nothing drafted: no rate, not 0


def test_single_line_array(tmp_path):
    objs = [json.loads(x) for x in (FIX / "iteration_stats.jsonl").read_text().splitlines()]
    f = tmp_path / "stats.json"
    f.write_text(json.dumps(objs))
    check_iterations(trtllm.parse_file(f, str(f)))
    check_iterations(trtllm.parse(lines_frame(f), str(f)))


def test_detect():
    assert trtllm.detect((FIX / "prefixed.log").read_text())
    assert trtllm.detect((FIX / "request_perf.jsonl").read_text())
    assert not trtllm.detect('{"type": "header", "schema": "specdec-trace@1"}')


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[",
        "[]",
        "{}",
        "null",
        '{"specDecodingStats": 5}',
        '{"specDecodingStats": {"numDraftTokens": true}}',
        '{"specDecodingStats": {"numDraftTokens": 1e400, "numAcceptedTokens": -3, '
        '"numRequestsWithDraftTokens": 0}}',
        '{"iterLatencyMS": 1, "specDecodingStats": {"numDraftTokens": 99999999999999999999999999}}',
        '{"perf_metrics": {"speculative_decoding": [1, 2]}}',
        '{"speculative_decoding": {"total_draft_tokens": "x"}}',
        "[" * 100_000,
        '{"iterLatencyMS": ' + "1" * 1_000_000 + "}",
        '{"iterLatencyMS": 1, "x": "' + "a" * 1_000_000,
        '[{"iterLatencyMS": 1}, 3, "x", {"specDecodingStats": {}}]',
    ],
)
def test_never_raises(text, tmp_path):
    f = tmp_path / "junk.json"
    f.write_text(text + "\n" + text)
    for p in (trtllm.parse_file(f, str(f)), trtllm.parse(lines_frame(f), str(f))):
        assert dict(p.windows.schema) == WINDOW_SCHEMA
        assert dict(p.malformed.schema) == MALFORMED_SCHEMA


def test_scan_end_to_end():
    from specdec_diag.ingest import scan

    res = scan(FIX / "iteration_stats_array.json", use_cache=False)
    w = res.windows.filter(pl.col("engine") == "trtllm")
    assert w["acceptance_rate"].to_list()[:2] == pytest.approx([7 / 12, 1.0])


def test_fuzzed_records_never_raise(tmp_path):
    """Arbitrary JSON values where the parser expects iteration stats / perf metrics."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
    values = st.recursive(
        scalars,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
        max_leaves=8,
    )
    keys = st.sampled_from(
        [
            "specDecodingStats",
            "iterLatencyMS",
            "numActiveRequests",
            "kvCacheStats",
            "timestamp",
            "perf_metrics",
            "speculative_decoding",
            "numDraftTokens",
            "numAcceptedTokens",
            "numRequestsWithDraftTokens",
            "iter",
            "rank",
            "request_id",
            "total_draft_tokens",
        ]
    )
    objs = st.recursive(
        st.dictionaries(keys, values, max_size=5),
        lambda c: st.dictionaries(keys, c | values, max_size=4),
        max_leaves=10,
    )

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(objs, min_size=1, max_size=4), st.booleans())
    def run(records, as_array):
        text = json.dumps(records) if as_array else "\n".join(json.dumps(r) for r in records)
        f = tmp_path / "fuzz.json"
        f.write_text(text)
        for p in (trtllm.parse_file(f, "fuzz.json"), trtllm.parse(lines_frame(f), "fuzz.json")):
            assert dict(p.windows.schema) == WINDOW_SCHEMA

    run()


def test_samples_parse_cleanly():
    got = parse_samples(trtllm, "trtllm")
    pinned = got["unhealthy_pinned_acceptance_length"]["mean_acceptance_length"].unique().sort().to_list()
    assert pinned == [1.0, 5.0]  # k = 4: exactly 1 or k + 1
    costly = got["unhealthy_draft_too_expensive"]
    assert (costly["draft_ms"] / (costly["draft_ms"] + costly["verify_ms"])).min() > 0.5
    assert got["healthy_request_perf"].height == 20


def test_array_of_json_strings_and_snake_case_keys(tmp_path):
    """``llm.get_stats()`` can hand back JSON strings; some dumps use snake_case stats keys."""
    objs = [json.loads(x) for x in (FIX / "iteration_stats.jsonl").read_text().splitlines()]
    f = tmp_path / "stats.json"
    f.write_text(json.dumps([json.dumps(o) for o in objs], indent=1))
    check_iterations(trtllm.parse_file(f, str(f)))
    snake = {
        "iter": 5,
        "iterLatencyMS": 10.0,
        "spec_decoding_stats": {
            "num_draft_tokens": 8,
            "num_accepted_tokens": 6,
            "num_requests_with_draft_tokens": 2,
            "iter_latency_ms": 2.0,
        },
    }
    g = tmp_path / "snake.jsonl"
    g.write_text(json.dumps(snake) + "\n")
    r = trtllm.parse_file(g, str(g)).windows.row(0, named=True)
    assert (r["draft_tokens"], r["accepted_tokens"], r["num_drafts"], r["k"]) == (8, 6, 2, 4)
    assert r["mean_acceptance_length"] == 4.0 and r["draft_ms"] == 2.0 and r["verify_ms"] == 8.0


def test_records_accepting_more_than_drafted_are_malformed(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text(
        json.dumps(
            {
                "iter": 1,
                "iterLatencyMS": 5.0,
                "specDecodingStats": {
                    "numDraftTokens": 4,
                    "numAcceptedTokens": 9,
                    "numRequestsWithDraftTokens": 1,
                },
            }
        )
        + "\n"
        + json.dumps(
            {
                "request_id": 7,
                "perf_metrics": {
                    "speculative_decoding": {"total_draft_tokens": 3, "total_accepted_draft_tokens": 4}
                },
            }
        )
        + "\n"
    )
    p = trtllm.parse_file(f, str(f))
    assert p.windows.height == 0
    assert p.malformed["line"].to_list() == [1, 2]
    assert "more tokens (9)" in p.malformed["reason"][0]


def test_stray_bracket_line_before_an_array_keeps_each_record_at_its_line(tmp_path):
    """Regression (junk-line property): a ``[`` line above a pretty-printed array nested it, and the
    inner array was read as one value, so every record took the array's line number."""
    src = Path(__file__).parents[1] / "sample_logs" / "engines" / "trtllm" / "unhealthy_draft_too_expensive.json"
    p = tmp_path / src.name
    p.write_text("[\n" + src.read_text())
    before, after = trtllm.parse_file(src, "t").windows, trtllm.parse_file(p, "t").windows
    assert after.height == before.height > 1
    assert after["line"].to_list() == [n + 1 for n in before["line"].to_list()]
