"""Draft cost from engine logs as DRAFT_TOO_EXPENSIVE evidence: llama-server's cumulative
``dur(b,g,a)`` against each request's eval time, and TensorRT-LLM's ``draftOverhead``. The line
shapes are the engines' own (llama.cpp PR #24536, TensorRT-LLM executor/types.h); the numbers of the
expensive cases are chosen so the expected share is easy to check by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specdec_diag.analysis.rules import run_rules
from specdec_diag.ingest import scan

REAL = Path(__file__).parent / "fixtures" / "real"

_REQ = (
    "0.0{i}.000.000 I slot print_timing: id  1 | task {i} |        eval time =    {ev:.2f} ms /   256 tokens "
    "(    8.97 ms per token,   111.46 tokens per second)\n"
    "0.0{i}.000.001 I slot print_timing: id  1 | task {i} | draft acceptance = 0.64479 (  167 accepted /   259 "
    "generated), mean acceptance length =  2.92, acceptance rate per position = (0.805, 0.632, 0.483)\n"
    "0.0{i}.000.002 I statistics     draft-eagle3: #calls(b,g,a) =    {i}     {g}     {g}, #gen drafts =     {g}, "
    "#acc drafts =    70, #gen tokens =    {dt}, #acc tokens =   {at}, #mean acc len = 2.92, "
    "#acc rate/pos = (0.805, 0.632, 0.483), dur(b,g,a) = 0.005, {dur:.3f}, 0.114 ms\n"
)


def _llama_log(path: Path, eval_ms: float, draft_ms_each: float) -> Path:
    text = "".join(_REQ.format(i=i, ev=eval_ms, g=87 * i, dt=259 * i, at=167 * i, dur=draft_ms_each * i)
                   for i in range(1, 5))
    path.write_text(text)
    return path


def _codes(paths):
    return {f.code: f for f in run_rules(scan(paths, use_cache=False))}


def test_llamacpp_expensive_drafting_is_draft_too_expensive(tmp_path):
    found = _codes([_llama_log(tmp_path / "server.log", eval_ms=2000.0, draft_ms_each=1400.0)])
    f = found["DRAFT_TOO_EXPENSIVE"]
    assert f.evidence["draft_ms"] == pytest.approx(4 * 1400.0)
    assert f.evidence["verify_ms"] == pytest.approx(4 * 600.0)
    assert f.evidence["draft_share"] == pytest.approx(0.7)


def test_llamacpp_cheap_drafting_is_not(tmp_path):
    found = _codes([_llama_log(tmp_path / "server.log", eval_ms=2296.72, draft_ms_each=325.555)])
    assert "DRAFT_TOO_EXPENSIVE" not in found


def test_real_llamacpp_eagle3_excerpt_is_not_draft_too_expensive():
    assert "DRAFT_TOO_EXPENSIVE" not in _codes([REAL / "llamacpp" / "server_print_timing_eagle3_pr24536.log"])


def _trtllm_scrapes(path: Path, overhead: float) -> Path:
    sample = (REAL.parent / "prometheus" / "trtllm_collector_sample.prom").read_text()
    parts = []
    for i in range(4):
        s = sample.replace('draft_overhead{model_name="test_model"} 1.2',
                           f'draft_overhead{{model_name="test_model"}} {overhead}')
        s = s.replace("} 20.0", "} " + str(20.0 * (i + 1))).replace("} 15.0", "} " + str(15.0 * (i + 1)))
        parts.append(f"# 2026-01-01T00:0{i}:00Z\n{s}")
    path.write_text("".join(parts))
    return path


def test_trtllm_draft_overhead_gauge_is_draft_too_expensive(tmp_path):
    f = _codes([_trtllm_scrapes(tmp_path / "metrics.prom", 0.6)])["DRAFT_TOO_EXPENSIVE"]
    assert f.evidence["draft_share"] == pytest.approx(0.6)
    assert f.evidence["draft_ms"] == pytest.approx(4 * 0.6 * 15.5)


def test_trtllm_small_draft_overhead_is_not(tmp_path):
    assert "DRAFT_TOO_EXPENSIVE" not in _codes([_trtllm_scrapes(tmp_path / "metrics.prom", 0.2)])


def test_trtllm_iteration_stats_draft_overhead(tmp_path):
    obj = json.loads((REAL.parent / "trtllm" / "collector_sample_iteration_stats.jsonl").read_text())
    lines = []
    for i in range(4):
        obj["iter"], obj["specDecodingStats"]["draftOverhead"] = i, 0.7
        lines.append(json.dumps(obj))
    p = tmp_path / "stats.jsonl"
    p.write_text("\n".join(lines) + "\n")
    assert _codes([p])["DRAFT_TOO_EXPENSIVE"].evidence["draft_share"] == pytest.approx(0.7)
