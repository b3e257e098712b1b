"""vLLM variants of 2025-2026 on public lines (tests/fixtures/formats/vllm/*.log, each with a sidecar
naming where the line was published): dynamic speculative depth, long per-position vectors, the
throughput line's optional fields, interleaved DP engines, Iteration(N) lines, DiffusionDecoding
lines, and the mean-acceptance-length definition of v0.8.5 versus v0.9.0+ (docs/log-formats.md §2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from specdec_diag.ingest import scan, vllm
from specdec_diag.ingest._textparse import lines_from_texts

FIX = Path(__file__).parent / "fixtures" / "formats" / "vllm"
REAL = Path(__file__).parent / "fixtures" / "real" / "vllm"


def _scan(tmp_path: Path, path: Path):
    dst = tmp_path / path.name
    shutil.copy(path, dst)
    return scan([dst], use_cache=False, sources=[vllm.SOURCE])


def _spec(res) -> list[dict]:
    return res.windows.filter(pl.col("format").str.starts_with("vllm-v1-specdecoding")).sort("line").to_dicts()


def test_every_fixture_has_a_sidecar_naming_its_source():
    for log in FIX.glob("*.log"):
        side = json.loads(log.with_suffix(".json").read_text())
        assert side["source"] and side["retrieved_via"] and side["what"], log.name


def test_current_speculative_depth_is_k(tmp_path):
    res = _scan(tmp_path, FIX / "depth_dflash2_k7.log")
    [w] = _spec(res)
    # Accepted 256, Drafted 308, depth 7 -> 44 drafts (308 / 7), MAL 1 + 256/44 = 6.82 as printed
    assert (w["k"], w["num_drafts"], w["accepted_tokens"], w["draft_tokens"]) == (7, 44, 256, 308)
    assert w["mean_acceptance_length"] == pytest.approx(6.82)
    assert w["acceptance_rate"] == pytest.approx(256 / 308)
    assert w["per_position_acceptance"] == [1.0, 1.0, 1.0, 1.0, 0.795, 0.614, 0.409]
    assert (w["accepted_tps"], w["drafted_tps"]) == (6.46, 7.77)
    assert "current depth 7" in w["definition_note"] and w["engine_id"] == "APIServer pid=1"
    assert res.malformed.height == 0


def test_current_speculative_depth_from_a_table_cell(tmp_path):
    res = _scan(tmp_path, FIX / "depth_5_table_cell.log")
    [w] = _spec(res)
    assert (w["k"], w["num_drafts"], w["accepted_tokens"], w["draft_tokens"]) == (5, 7, 14, 35)
    assert w["mean_acceptance_length"] == pytest.approx(3.0) and w["acceptance_rate"] == pytest.approx(0.4)
    assert len(w["per_position_acceptance"]) == 5


def test_vector_longer_than_depth_keeps_every_printed_entry():
    """The engine's own unit test (vllm tests/v1/metrics, test_spec_decoding_log_reports_current_
    speculative_depth): num_spec_tokens=5, current depth 2, one draft of 2 tokens with 1 accepted. The
    logger prints the 5-entry vector and 'Current speculative depth: 2'; the throughput values
    depend on the clock, the ones here are the line's shape only."""
    line = ("SpecDecoding metrics: Mean acceptance length: 2.00, Current speculative depth: 2, Accepted "
            "throughput: 0.10 tokens/s, Drafted throughput: 0.20 tokens/s, Accepted: 1 tokens, Drafted: 2 tokens, "
            "Per-position acceptance rate: 1.000, 0.000, 0.000, 0.000, 0.000, Avg Draft acceptance rate: 50.0%")
    p = vllm.parse(lines_from_texts([line]), "t")
    [w] = p.windows.to_dicts()
    assert (w["k"], w["num_drafts"], w["accepted_tokens"]) == (2, 1, 1)
    assert w["per_position_acceptance"] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert "5 entries" in w["definition_note"]


def test_fifteen_position_vector_with_a_dead_tail(tmp_path):
    res = _scan(tmp_path, FIX / "dflash_k15_aeon6.log")
    [w] = _spec(res)
    # 975 drafted / k=15 = 65 drafts exactly; MAL 1 + 89/65 = 2.37; rate 9.1 %
    assert (w["k"], w["num_drafts"], w["accepted_tokens"]) == (15, 65, 89)
    assert w["mean_acceptance_length"] == pytest.approx(2.37)
    assert w["acceptance_rate"] == pytest.approx(89 / 975)
    assert w["per_position_acceptance"][5:] == [0.0] * 10
    assert w["definition_note"] is None


def test_mm_cache_hit_rate_field_and_engine_attachment(tmp_path):
    res = _scan(tmp_path, FIX / "mm_cache_genesis24.log")
    thr = res.windows.filter(pl.col("format") == "vllm-v1-throughput").sort("line").to_dicts()
    assert [(t["gen_tps"], t["running_reqs"], t["waiting_reqs"], t["kv_usage"]) for t in thr] == [
        (28.4, 0, 0, 0.0), (0.0, 0, 0, 0.0)]
    [w] = _spec(res)
    assert (w["k"], w["num_drafts"], w["mean_acceptance_length"]) == (3, 65, pytest.approx(2.2))
    assert w["engine_id"] == "APIServer pid=92107 Engine 000"
    assert res.malformed.height == 0


def test_preemptions_field_keeps_kv_usage(tmp_path):
    res = _scan(tmp_path, FIX / "preemptions_tutorial.log")
    [t] = res.windows.to_dicts()
    assert (t["prompt_tps"], t["gen_tps"], t["running_reqs"], t["waiting_reqs"]) == (3021.4, 512.7, 64, 12)
    assert t["kv_usage"] == pytest.approx(0.972)
    assert t["definition_note"] == "Preemptions: 3 in the interval"


def test_interleaved_dp_engines_each_get_their_window(tmp_path):
    """The real excerpt of vllm-ascend#12521 (two API servers, Engine 002 and 004, MTP k=3)."""
    res = _scan(tmp_path, REAL / "ascend_dp_engines_interleaved_12521.log")
    spec = _spec(res)
    assert [(w["engine_id"], w["accepted_tokens"], w["draft_tokens"]) for w in spec] == [
        ("APIServer pid=95669 Engine 002", 282, 453), ("APIServer pid=95673 Engine 004", 299, 453)]
    assert [w["mean_acceptance_length"] for w in spec] == pytest.approx([2.87, 2.98])
    assert res.malformed.height == 0


def test_iteration_lines_are_engine_steps(tmp_path):
    res = _scan(tmp_path, FIX / "iteration_pr31193.log")
    rows = res.windows.sort("line").to_dicts()
    assert [r["format"] for r in rows] == ["vllm-v1-iteration"] * 3
    assert [r["step_ms"] for r in rows] == [10.99, 10.95, 10.79]
    assert {(r["running_reqs"], r["target_forwards"], r["engine_id"]) for r in rows} == {
        (20, 1, "EngineCore_DP0 pid=2010410")}
    assert rows[0]["definition_note"].startswith("iteration 515: 0 context requests (0 tokens), 20 generation")
    assert all(r["draft_tokens"] is None and r["acceptance_rate"] is None for r in rows)


def test_diffusion_lines_are_recognised_not_speculation(tmp_path):
    res = _scan(tmp_path, FIX / "diffusion_format_source.log")
    [w] = res.windows.to_dicts()
    assert w["format"] == "vllm-v1-diffusion" and w["gen_tps"] == 204.8
    for col in ("k", "num_drafts", "draft_tokens", "accepted_tokens", "acceptance_rate", "mean_acceptance_length"):
        assert w[col] is None, col
    assert "not speculation" in w["definition_note"] and "146 denoising steps" in w["definition_note"]
    assert res.malformed.height == 0


# the real counts of mm_cache_genesis24 (78 accepted, 195 drafted, 65 drafts) as vLLM v0.8.5 printed
# them (PR #16665's format: rate first, MAL = accepted / drafts without the bonus token)
V085 = ("INFO 05-08 16:21:55 [metrics.py:86] SpecDecoding metrics: Draft acceptance rate: 40.0%, Mean acceptance "
        "length: 1.20, Accepted: 78 tokens, Drafted: 195 tokens, Per-position acceptance rate: 0.615, 0.415, 0.169")


@pytest.mark.parametrize("banner", [None, "INFO 05-08 16:20:00 [api_server.py:1043] vLLM API server version 0.8.5"])
def test_pre_090_mean_acceptance_length_gets_the_bonus(banner):
    texts = [banner, V085] if banner else [V085]
    p = vllm.parse(lines_from_texts(texts), "t")
    [w] = p.windows.to_dicts()
    assert w["mean_acceptance_length"] == pytest.approx(2.20)
    assert (w["num_drafts"], w["k"]) == (65, 3)
    assert "PR #17908" in w["definition_note"]
    assert ("engine version 0.8.5" in w["definition_note"]) == (banner is not None)
    assert p.malformed.height == 0


def test_current_mal_untouched_and_version_recorded():
    banner = "(APIServer pid=1) INFO 05-08 16:20:00 [api_server.py:1043] vLLM API server version 0.9.2"
    line = V085.replace("length: 1.20", "length: 2.20")
    p = vllm.parse(lines_from_texts([banner, line]), "t")
    [w] = p.windows.to_dicts()
    assert w["mean_acceptance_length"] == pytest.approx(2.20) and w["definition_note"] is None
    assert p.configs.filter(pl.col("key") == "version")["value"].to_list() == ["0.9.2"]


def test_diffusion_line_quoted_without_numbers_is_recognised(tmp_path):
    res = _scan(tmp_path, FIX / "diffusion_elided_dgx_spark.log")
    [w] = res.windows.to_dicts()
    assert w["format"] == "vllm-v1-diffusion" and w["gen_tps"] is None
    assert "elides its numbers" in w["definition_note"]
    assert res.malformed.height == 0


def test_throughput_fields_read_in_any_order():
    """The 2026 logger builds the line from optional parts; a build that orders them differently (or
    adds one between) keeps every count: here Preemptions before Deferred, from the tutorial line."""
    line = (FIX / "preemptions_tutorial.log").read_text().splitlines()[0]
    line = line.replace("Preemptions: 3,", "Preemptions: 3, Deferred: 2 reqs,")
    [t] = vllm.parse(lines_from_texts([line]), "t").windows.to_dicts()
    assert (t["waiting_reqs"], t["kv_usage"]) == (12, pytest.approx(0.972))
    assert t["definition_note"] == "Deferred: 2 of the waiting requests; Preemptions: 3 in the interval"


def test_a_dev_build_leaves_the_definition_to_the_numbers():
    banner = "INFO 05-08 16:20:00 [api_server.py:1043] vLLM API server version 0.8.6.dev45+g1a2b3c"
    [w] = vllm.parse(lines_from_texts([banner, V085]), "t").windows.to_dicts()
    assert w["mean_acceptance_length"] == pytest.approx(2.20)
    assert "the line's numbers" in w["definition_note"]


def test_kv_variant_with_an_empty_value_is_malformed(tmp_path):
    """Regression (junk-line property): ``Total accepted: `` (value lost) used to be skipped as if the
    key were absent, so the line was read with only its drafted count."""
    line = (Path(__file__).parent / "fixtures" / "vllm" / "v1_fork_kv.log").read_text().split("\n")[0]
    p = tmp_path / "empty.log"
    p.write_text(line.replace("Total accepted: 500", "Total accepted: ") + "\n")
    res = scan([p], use_cache=False, sources=[vllm.SOURCE])
    assert _spec(res) == []
    assert res.malformed["line"].to_list() == [1]
    assert "'Total accepted' has no value" in res.malformed["reason"][0]
