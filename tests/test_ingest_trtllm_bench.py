"""trtllm-bench DECODING STATISTICS (console and JSON report) and TensorRT-LLM iteration stats from
the engine's own sample (provenance in tests/fixtures/trtllm/SOURCES.md). Expected numbers by hand
from the 4 requests the fixtures were rendered from: DT = 3 x (iterations + 1), ADT = output -
(iterations + 1), so DT sum 1200, ADT sum 590; DAR average 0.4875 (printed 0.49), AL average 2.4625
(printed 2.46)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from _helpers import marker_lines

from specdec_diag.ingest import scan, trtllm, trtllm_bench
from specdec_diag.ingest._textparse import lines_from_texts

FIX = Path(__file__).parent / "fixtures" / "trtllm"
REAL = Path(__file__).parent / "fixtures" / "real" / "trtllm"


def _console(path: Path):
    return trtllm_bench.parse(marker_lines(path, trtllm_bench.MARKERS), str(path))


def test_console_decoding_statistics_block():
    p = _console(FIX / "bench_decoding_stats_rendered.log")
    assert p.malformed.height == 0
    r = p.windows.row(0, named=True)
    assert (r["engine"], r["format"], r["window"], r["engine_id"]) == ("trtllm", "trtllm-bench-decoding-stats",
                                                                       "run", "Eagle")
    assert r["acceptance_rate"] == 0.49 and r["mean_acceptance_length"] == 2.46  # as printed
    assert (r["draft_tokens"], r["accepted_tokens"]) == (1200, 590)  # averages x 4 requests
    assert r["k"] == 3 and r["num_drafts"] == 400  # (2.46 - 1) / 0.49 = 2.98 -> 3; 1200 / 3
    assert r["gen_tps"] == pytest.approx(1234.5678)
    assert "[DAR] AVERAGE" in r["definition_note"]


def test_json_report_decoding_stats_gives_the_same_row():
    res = scan([FIX / "bench_report_decoding_stats_rendered.json"], use_cache=False)
    r = res.windows.row(0, named=True)
    assert r["format"] == "trtllm-bench-decoding-stats" and r["k"] == 3
    assert r["acceptance_rate"] == pytest.approx(0.4875) and r["mean_acceptance_length"] == pytest.approx(2.4625)
    assert (r["draft_tokens"], r["accepted_tokens"], r["num_drafts"]) == (1200, 590, 400)


def test_block_pasted_without_its_header_and_request_count():
    text = (FIX / "bench_decoding_stats_rendered.log").read_text().splitlines()
    pasted = [t for t in text if t.startswith("[DAR]") or t.startswith("[AL]")]
    r = trtllm_bench.parse(lines_from_texts(pasted), "paste").windows.row(0, named=True)
    assert (r["acceptance_rate"], r["mean_acceptance_length"], r["k"]) == (0.49, 2.46, 3)
    assert r["draft_tokens"] is None and r["num_drafts"] is None  # no request count: never invented


def test_two_reports_in_one_file_are_two_rows():
    text = (FIX / "bench_decoding_stats_rendered.log").read_text().splitlines()
    p = trtllm_bench.parse(lines_from_texts(text + text), "two")
    assert p.windows.height == 2 and p.windows["line"].to_list()[1] > len(text)


def test_bad_values_are_malformed_lines():
    text = (FIX / "bench_decoding_stats_rendered.log").read_text().replace("[DAR] AVERAGE: 0.49", "[DAR] AVERAGE: nan")
    p = trtllm_bench.parse(lines_from_texts(text.splitlines()), "bad")
    assert p.malformed["reason"].to_list() == ["[DAR] AVERAGE is nan (not a finite number)"]
    assert p.windows.row(0, named=True)["acceptance_rate"] is None


def test_report_without_speculation_has_no_row():
    """Real trtllm-bench table without speculation (TensorRT-LLM PR #9459): nothing speculative."""
    res = scan([REAL / "trtllm_bench_no_spec_merged_table_pr9459.log"], use_cache=False)
    assert res.windows.filter(pl.col("format") == "trtllm-bench-decoding-stats").height == 0


def test_json_report_with_bad_percentiles_is_malformed(tmp_path):
    rep = json.loads((FIX / "bench_report_decoding_stats_rendered.json").read_text())
    rep["decoding_stats"]["acceptance_length_percentiles"]["average"] = -1
    p = tmp_path / "report.json"
    p.write_text(json.dumps(rep))
    parsed = trtllm_bench.parse_file(p, "report.json")
    assert parsed.windows.height == 0 and "negative" in parsed.malformed["reason"][0]


def test_engine_sample_iteration_stats_without_request_count():
    """TensorRT-LLM's own SAMPLE_ITERATION_STATS: no numRequestsWithDraftTokens, so the printed
    acceptanceLength is the length; its draftOverhead of 1.2 is no ratio, so no draft time."""
    path = FIX / "collector_sample_iteration_stats.jsonl"
    r = trtllm.parse_file(path, str(path)).windows.row(0, named=True)
    assert (r["draft_tokens"], r["accepted_tokens"], r["acceptance_rate"]) == (20, 15, 0.75)
    assert r["mean_acceptance_length"] == 3.75 and r["num_drafts"] is None
    assert (r["running_reqs"], r["waiting_reqs"], r["kv_usage"]) == (5, 3, 0.6)
    assert r["draft_ms"] is None and r["verify_ms"] is None


def test_draft_overhead_gives_the_draft_time_when_the_draft_latency_is_absent(tmp_path):
    obj = json.loads((FIX / "collector_sample_iteration_stats.jsonl").read_text())
    obj["specDecodingStats"]["draftOverhead"] = 0.2  # a ratio an iteration can have
    path = tmp_path / "stats.jsonl"
    path.write_text(json.dumps(obj) + "\n")
    r = trtllm.parse_file(path, str(path)).windows.row(0, named=True)
    assert r["draft_ms"] == pytest.approx(0.2 * 15.5) and r["verify_ms"] == pytest.approx(0.8 * 15.5)


def test_2024_latency_report_acceptance_rate_is_a_length():
    """The 2024 report's 'Acceptance Rate (Speculative)' is output tokens / decoding iterations."""
    r = _console(FIX / "bench_latency_2024_rendered.log").windows.row(0, named=True)
    assert r["format"] == "trtllm-bench-latency-2024" and r["mean_acceptance_length"] == 2.45
    assert r["acceptance_rate"] is None


def test_2024_latency_report_at_one_token_per_iteration_makes_no_row():
    line = "Acceptance Rate (Speculative):\t  1.00"  # printed even without speculation
    p = trtllm_bench.parse(lines_from_texts([line]), "x")
    assert p.windows.height == 0 and p.malformed.height == 0
