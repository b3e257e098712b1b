"""vLLM and SGLang lines from the real-excerpt corpus (tests/fixtures/real/, sources in the sidecars)
that once failed: each test names the general cause it guards, on the verbatim published lines."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from specdec_diag.ingest import scan

REAL = Path(__file__).parent / "fixtures" / "real"


def _scan(tmp_path: Path, rel: str):
    dst = tmp_path / Path(rel).name
    shutil.copy(REAL / rel, dst)
    return scan([dst], use_cache=False)


def _throughput(res) -> list[dict]:
    return res.windows.filter(pl.col("format").str.ends_with("throughput")).sort("line").to_dicts()


def test_engine_throughput_lines_read_by_the_fast_pattern_alone(tmp_path):
    """A batch whose throughput lines all match the fast pattern (no Deferred/Preemptions groups)
    used to fail with an internal error; now the queue and KV numbers come through."""
    res = _scan(tmp_path, "vllm/v1_mtp_healthy_2x3090_club105.log")
    assert res.malformed.height == 0
    (thr,) = _throughput(res)
    assert (thr["running_reqs"], thr["waiting_reqs"], thr["kv_usage"]) == (1, 0, 0.074)


def test_engines_aggregated_lines_of_two_processes(tmp_path):
    res = _scan(tmp_path, "vllm/ascend_engines_aggregated_glm5_mtp3_9803.log")
    assert res.malformed.height == 0
    assert [(t["line"], t["running_reqs"], t["kv_usage"]) for t in _throughput(res)] == [(1, 8, 0.329), (3, 8, 0.326)]


def test_capacity_queueing_lines_keep_the_waiting_count(tmp_path):
    res = _scan(tmp_path, "vllm/v1_mtp_capacity_waiting_43295.log")
    assert res.malformed.height == 0
    assert [t["waiting_reqs"] for t in _throughput(res)] == [56, 55]


def test_specdecoding_line_with_spaces_lost_in_the_paste(tmp_path):
    """'394.48tokens/s' and '0.000,0.000' (a paste that dropped spaces) still make a window."""
    res = _scan(tmp_path, "vllm/dflash_near_zero_squashed_spaces_speculators613.log")
    assert res.malformed.height == 0
    spec = res.windows.filter(pl.col("format").str.starts_with("vllm-v1-specdecoding")).sort("line").to_dicts()
    assert [(w["accepted_tokens"], w["draft_tokens"]) for w in spec] == [(49, 2160), (57, 3945)]
    assert len(spec[1]["per_position_acceptance"]) == 15 and spec[1]["per_position_acceptance"][0] == 0.217


def _codes(tmp_path: Path, rel: str) -> dict[str, str]:
    from specdec_diag.analysis.rules import Thresholds, run_rules
    return {f.code: f.severity for f in run_rules(_scan(tmp_path, rel), Thresholds())}


def test_benchmark_run_average_near_one_is_a_likely_broken_drafter(tmp_path):
    """'Average Accept length: 1.037' of a whole benchmark run (no counts) is not one log interval:
    DRAFTER_BROKEN as a warning ('likely'), where it used to abstain for want of 6 windows."""
    assert _codes(tmp_path, "sglang/mmstar_accept_length_one_specforge310.log").get("DRAFTER_BROKEN") == "warning"


def test_benchmark_run_average_of_a_working_drafter_stays_silent(tmp_path):
    for rel in ("sglang/mmstar_quoted_accept_length_specforge310.log", "sglang/bench_serving_ngram_threshold_pr13376.log"):
        assert "DRAFTER_BROKEN" not in _codes(tmp_path, rel)


def _runs(res) -> list[dict]:
    return res.windows.filter(pl.col("window") == "run").sort("line").to_dicts()


def test_pretty_printed_benchmark_json_keeps_its_accept_length(tmp_path):
    """One key a line ('"accept_length": 3.18...,'): the line used to be dropped before parsing."""
    (run,) = _runs(_scan(tmp_path, "sglang/bench_json_spec_v1_accept_length_pr14063.log"))
    assert round(run["mean_acceptance_length"], 2) == 3.18 and round(run["gen_tps"], 2) == 198.13


def test_send_one_key_equals_value_lines(tmp_path):
    """SGLang send_one.py: 'acc_length=2.20' then 'speed=125.59 token/s' is one run."""
    runs = _runs(_scan(tmp_path, "sglang/fa3_send_one_disable_cuda_graph_pr4951.log"))
    assert [(r["gen_tps"], r["mean_acceptance_length"]) for r in runs] == [(84.82, None), (125.59, 2.2)]


def test_bench_serve_block_cut_right_after_the_speculative_header(tmp_path):
    """A paste that ends at '-----Speculative Decoding-----' has nothing of that section to read: the
    serving numbers stay, and the bare header is no malformed line."""
    res = _scan(tmp_path, "vllm/bench_serve_hybrid_spec_section_cut_pr51742.log")
    assert res.malformed.height == 0
    (run,) = _runs(res)
    assert run["gen_tps"] == 371.88 and run["tpot_ms"] == 2.38


def test_full_acceptance_on_one_request_is_a_loop_note_not_a_verdict(tmp_path):
    """club-3090 #34: MAL 4.00 / per-position 1.000 at k=3 with one running request is a token loop
    (the maintainer's reading), not a bypassed verifier: SUSPICIOUS_ACCEPTANCE only as info."""
    codes = _codes(tmp_path, "vllm/v1_mtp_token_loop_full_acceptance_club34.log")
    assert codes.get("SUSPICIOUS_ACCEPTANCE") == "info"
    assert "PINNED_ACCEPTANCE_LENGTH" not in codes or codes["PINNED_ACCEPTANCE_LENGTH"] == "info"


def test_full_acceptance_across_a_concurrent_batch_stays_a_verdict(tmp_path):
    dst = tmp_path / "v1_suspicious_pinned.log"
    shutil.copy(Path(__file__).parent.parent / "sample_logs" / "engines" / "vllm" / "v1_suspicious_pinned.log", dst)
    from specdec_diag.analysis.rules import Thresholds, run_rules
    codes = {f.code: f.severity for f in run_rules(scan([dst], use_cache=False), Thresholds())}
    assert codes.get("SUSPICIOUS_ACCEPTANCE") == "warning"


def test_a_startup_version_decides_only_the_lines_after_it(tmp_path):
    """Two logs in one file (or a server restarted on another version): the V1 lines before the old
    server's startup line are read under their own definition, not under its version."""
    fix = Path(__file__).parent / "fixtures" / "vllm"
    alone = scan([fix / "v1_e_docker_dp.log"], use_cache=False)
    p = tmp_path / "both.log"
    p.write_bytes((fix / "v1_e_docker_dp.log").read_bytes() + (fix / "v0_2024_typo.log").read_bytes())
    both = scan([p], use_cache=False)
    spec = pl.col("format").str.starts_with("vllm-v1-specdecoding")
    assert both.windows.filter(spec)["mean_acceptance_length"].to_list() == \
        alone.windows.filter(spec)["mean_acceptance_length"].to_list()
    assert both.malformed.filter(pl.col("reason").str.contains("per-position")).height == 0
