"""SGLang variants of 2025-2026 on public lines (tests/fixtures/formats/sglang/*.log, each with a
sidecar naming where it was published): 'Decode batch,' and 'Decode batch.' lines, hybrid SWA and
Mamba pools, optional extras, the accept-rate definition before and after sglang PR #23530 (by the
numbers, or by the engine version when known), and per-request meta_info (docs/log-formats.md §3)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from specdec_diag.ingest import scan, sglang
from specdec_diag.ingest._textparse import lines_from_texts

FIX = Path(__file__).parent / "fixtures" / "formats" / "sglang"
REAL = Path(__file__).parent / "fixtures" / "real" / "sglang"


def _scan(tmp_path: Path, path: Path):
    dst = tmp_path / path.name
    shutil.copy(path, dst)
    return scan([dst], use_cache=False, sources=[sglang.SOURCE])


def _rows(res, fmt_prefix: str) -> list[dict]:
    return res.windows.filter(pl.col("format").str.starts_with(fmt_prefix)).sort("line").to_dicts()


def test_every_fixture_has_a_sidecar_naming_its_source():
    for log in FIX.glob("*.log"):
        side = json.loads(log.with_suffix(".json").read_text())
        assert side["source"] and side["retrieved_via"] and side["what"], log.name


def test_decode_comma_2026_without_speculation(tmp_path):
    res = _scan(tmp_path, FIX / "decode_comma_pr22166.log")
    [d] = _rows(res, "sglang-decode")
    assert (d["format"], d["running_reqs"], d["kv_usage"], d["gen_tps"], d["waiting_reqs"], d["cuda_graph"]) == (
        "sglang-decode", 32, 0.08, 1635.11, 0, True)
    assert d["context_len"] == 11179 // 32 and d["mean_acceptance_length"] is None
    pre = _rows(res, "sglang-prefill")
    assert [(p["running_reqs"], p["waiting_reqs"]) for p in pre] == [(31, 0), (31, 0)]
    assert res.malformed.height == 0


def test_decode_trailing_comma_graph_flag(tmp_path):
    res = _scan(tmp_path, FIX / "decode_trailing_graph_false_pr13023.log")
    rows = _rows(res, "sglang-decode")
    assert [(r["running_reqs"], r["cuda_graph"]) for r in rows] == [(46, False), (36, False), (28, True)]
    assert res.malformed.height == 0


def test_decode_dot_2025_rate_includes_bonus(tmp_path):
    """Real 'Decode batch.' lines of sglang#11948 (EAGLE3, Oct 2025): accept rate 0.54 = 2.17 / 4, the
    bonus-including definition (version A, N = 4 draft tokens, k = 3)."""
    res = _scan(tmp_path, REAL / "eagle3_bs1_decode_lines_11948.log")
    rows = _rows(res, "sglang-decode")
    assert rows and {r["format"] for r in rows} == {"sglang-decode-ar-bonus"}
    first = rows[0]
    assert first["mean_acceptance_length"] == pytest.approx(2.17) and first["k"] == 3
    assert first["acceptance_rate"] == pytest.approx((2.17 - 1) / 3)
    assert "includes the bonus" in first["definition_note"] and "version unknown" in first["definition_note"]


def test_hybrid_swa_with_fixed_rate(tmp_path):
    res = _scan(tmp_path, FIX / "hybrid_swa_accept.log")
    [d] = _rows(res, "sglang-decode")
    # 0.41 = (3.08 - 1) / 5: the fixed definition (B), N = 6 draft tokens, k = 5
    assert (d["format"], d["k"], d["kv_usage"], d["running_reqs"]) == ("sglang-decode-ar", 5, 0.0, 1)
    assert d["acceptance_rate"] == pytest.approx(2.08 / 5)
    assert d["context_len"] == 0
    [p] = _rows(res, "sglang-prefill")
    assert p["kv_usage"] == 0.0  # 'full token usage' is the pool usage; the swa usage is not the KV pool
    assert res.malformed.height == 0


def test_hybrid_swa_npu_graph_flag(tmp_path):
    res = _scan(tmp_path, FIX / "hybrid_swa_npu_graph.log")
    rows = _rows(res, "sglang-decode")
    assert [(r["cuda_graph"], r["gen_tps"], r["context_len"]) for r in rows] == [(False, 0.44, 128), (False, 2.99, 128)]
    assert all("npu graph" in r["definition_note"] for r in rows)


def test_hybrid_mamba_with_mtp(tmp_path):
    res = _scan(tmp_path, FIX / "hybrid_mamba_accept.log")
    [d] = _rows(res, "sglang-decode")
    assert (d["format"], d["k"], d["kv_usage"], d["context_len"]) == ("sglang-decode-ar", 3, 0.83, 768320)
    assert d["acceptance_rate"] == pytest.approx(1.85 / 3)


def test_mamba_lines_behind_a_compose_prefix(tmp_path):
    res = _scan(tmp_path, FIX / "mamba_compose_no_spec.log")
    rows = _rows(res, "sglang-decode")
    assert [(r["gen_tps"], r["context_len"], r["kv_usage"]) for r in rows] == [(0.14, 95186, 0.36), (55.54, 95226, 0.36)]
    assert all(str(r["time"]).startswith("2026-04-18 23:02:15") for r in rows)
    assert res.malformed.height == 0


def test_mtp_lines_without_queue_and_graph(tmp_path):
    res = _scan(tmp_path, FIX / "mtp_no_queue_no_graph.log")
    rows = _rows(res, "sglang-decode")
    assert [r["mean_acceptance_length"] for r in rows] == pytest.approx([3.05, 3.00])
    assert [r["acceptance_rate"] for r in rows] == pytest.approx([2.05 / 3, 2.0 / 3])
    assert {r["cuda_graph"] for r in rows} == {None} and {r["waiting_reqs"] for r in rows} == {None}


def test_prefill_extras_tflops_and_fwd_occupancy(tmp_path):
    res = _scan(tmp_path, FIX / "prefill_tflops_fwd_occupancy.log")
    [p] = _rows(res, "sglang-prefill")
    assert (p["prompt_tps"], p["running_reqs"], p["waiting_reqs"], p["cuda_graph"]) == (178.18, 0, 0, False)
    assert res.malformed.height == 0


def test_version_fixes_the_definition_the_numbers_cannot_tell():
    """accept len 2.00, accept rate 0.50 fits A with N = 4 and B with N = 3: ambiguous from the numbers
    alone; a version after sglang PR #23530 says B (k = 2)."""
    line = ("[2026-09-01 10:00:00 TP0] Decode batch, #running-req: 1, #token: 100, token usage: 0.01, accept len: "
            "2.00, accept rate: 0.50, cuda graph: True, gen throughput (token/s): 50.00, #queue-req: 0")
    alone = sglang.parse(lines_from_texts([line]), "t").windows.to_dicts()[0]
    assert alone["format"] == "sglang-decode-ar-unknown"
    with_version = sglang._decode_rows(  # the banner hook records engine_version; here as a config row
        sglang._split_bad(sglang._fields(lines_from_texts([line])), pl.lit(True))[0],
        pl.DataFrame({"source": ["t"], "line": [0], "engine": ["sglang"], "key": ["engine_version"],
                      "value": ["0.5.19"]})).to_dicts()[0]
    assert with_version["_variant"] == "ar" and with_version["k"] == 2
    assert "0.5.19 >= 0.5.17" in with_version["definition_note"]


def test_meta_info_request_window(tmp_path):
    res = _scan(tmp_path, FIX / "meta_info_mtbench.log")
    [r] = res.windows.to_dicts()
    # SGLang's accept length = 256 / 101; accepted drafts = 256 - 101 = 155 (no draft count printed)
    assert (r["window"], r["format"], r["request"]) == ("request", "sglang-meta-info", "3bb9c5ead109488d8ed5ee9cbecaec29")
    assert (r["num_drafts"], r["accepted_tokens"], r["draft_tokens"]) == (101, 155, None)
    assert r["mean_acceptance_length"] == pytest.approx(256 / 101)
    assert "completion_tokens - spec_verify_ct" in r["definition_note"]
    assert res.malformed.height == 0


def test_meta_info_json_lines_with_draft_counts():
    """A /generate response saved as a JSON line, with the drafts-only counts of sglang PR #23530."""
    resp = {"text": "x", "meta_info": {"id": "r1", "completion_tokens": 128, "spec_verify_ct": 30,
                                       "spec_accept_rate": 0.8166666666666667, "spec_accept_length": 4.266666666666667,
                                       "spec_accept_token_num": 98, "spec_draft_token_num": 120}}
    p = sglang.parse(lines_from_texts([json.dumps(resp), '{"meta_info": {"spec_verify_ct": 3, "completion_tok']), "t")
    [r] = p.windows.to_dicts()
    assert (r["accepted_tokens"], r["draft_tokens"], r["num_drafts"]) == (98, 120, 30)
    assert r["acceptance_rate"] == pytest.approx(0.8166666666666667)
    assert r["mean_acceptance_length"] == pytest.approx(1 + 98 / 30)
    assert p.malformed["line"].to_list() == [2] and "could not be read" in p.malformed["reason"][0]


def test_optional_decode_extras_do_not_move_any_number():
    """The suffixes SGLang appends with --enable-mfu-metrics (', est. decode TFLOPS/s (per GPU): ...,
    est. read BW ..., est. write BW ...', quoted in a published walkthrough, stored file id
    60332448456) and SGLANG_ENABLE_METRICS_DEVICE_TIMER (', fwd occupancy: X%'), and the ' [N]'
    forward counter of SGLANG_LOG_FORWARD_ITERS (scheduler_metrics_mixin.py: iter_msg), added to the
    real PR #22166 line: no decoded number may change and nothing may be reported malformed."""
    base = (FIX / "decode_comma_pr22166.log").read_text().splitlines()[0]
    extras = (", est. decode TFLOPS/s (per GPU): 12.34, est. read BW (GB/s per GPU): 456.78, "
              "est. write BW (GB/s per GPU): 1.23, fwd occupancy: 93.00%")
    variants = [base, base + extras, base.replace("Decode batch,", "Decode batch [1280],"),
                base.replace("cuda graph:", "cpu graph:")]
    p = sglang.parse(lines_from_texts(variants), "t")
    cols = ["running_reqs", "kv_usage", "gen_tps", "waiting_reqs", "cuda_graph", "context_len"]
    rows = p.windows.sort("line").select(cols).rows()
    assert len(rows) == 4 and len(set(rows)) == 1 and p.malformed.height == 0
    assert "cpu graph" in p.windows.sort("line")["definition_note"][3]


def test_forward_counter_ray_prefix_and_rank_tags(tmp_path):
    res = _scan(tmp_path, FIX / "iter_ray_prefix_sglang_test.log")
    rows = _rows(res, "sglang-decode")
    assert [(r["running_reqs"], r["kv_usage"], r["gen_tps"], r["waiting_reqs"]) for r in rows] == [
        (317, 0.67, 14806.57, 0), (78, 0.27, 7269.16, 0), (251, 1.0, 2055.94, 655)]
    assert [r["engine_id"] for r in rows] == ["SGLangEngine pid=35555 TP0", "SGLangEngine pid=111711 TP0", "DP6 TP6 EP6"]
    assert res.malformed.height == 0


def test_forward_counter_on_prefill_and_npu_graph(tmp_path):
    res = _scan(tmp_path, FIX / "iter_npu_graph_prefill_decode.log")
    assert [(r["gen_tps"], r["cuda_graph"], r["waiting_reqs"]) for r in _rows(res, "sglang-decode")] == [
        (0.79, True, 1), (87.33, True, 1)]
    [p] = _rows(res, "sglang-prefill")
    assert (p["prompt_tps"], p["waiting_reqs"], p["cuda_graph"]) == (2.66, 1, False)
    assert res.malformed.height == 0


def test_meta_info_drafts_only_counts(tmp_path):
    res = _scan(tmp_path, FIX / "meta_info_counts_pr33518.log")
    [r] = res.windows.to_dicts()
    assert (r["num_drafts"], r["accepted_tokens"], r["draft_tokens"]) == (43, 63, 215)
    assert r["acceptance_rate"] == pytest.approx(0.2930232558139535)  # = the engine's spec_accept_rate
    assert r["mean_acceptance_length"] == pytest.approx(2.4651162790697674)  # = its spec_accept_length
    assert "as SGLang counts them" in r["definition_note"] and "spec_accept_rate=0.293" in r["definition_note"]
