"""`capture` without a real engine: the response readers on JSON in the shapes the engines document,
the client end to end against an in-process fake OpenAI/vLLM server, the specdec-requests@1 ingest
source, and llama-server's Prometheus counters. The real llama-server is in test_llamacpp_live.py.

Sources of the recorded shapes (cited, not copied):
* vLLM: ``CompletionResponse.metrics: PerRequestMetrics`` with ``speculative_decoding:
  SpeculativeDecodingMetrics`` (vllm/entrypoints/generate/base/protocol.py) and
  docs/features/speculative_decoding/acceptance_metrics.md (``--per-request-spec-decode-metrics``);
  ``return_token_ids`` -> ``choices[i].token_ids`` / ``prompt_token_ids``
  (vllm/entrypoints/openai/completion/protocol.py).
* SGLang: ``/generate`` returns ``text``, ``output_ids`` and ``meta_info`` whose ``spec_verify_ct`` is
  set when a speculative algorithm runs (python/sglang/srt/managers/tokenizer_manager.py).
* TensorRT-LLM: ``GET /perf_metrics`` items ``{request_id, perf_metrics: {..., speculative_decoding:
  {acceptance_rate, total_accepted_draft_tokens, total_draft_tokens}}}`` when ``return_perf_metrics``
  is on (tensorrt_llm/serve/openai_server.py).
* llama.cpp: ``/completion`` with ``return_tokens`` -> ``tokens``; ``timings.draft_n`` /
  ``draft_n_accepted`` (tools/server/server-common.cpp, server-task.cpp of the 0.3.36 tree).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from specdec_diag.capture import engines
from specdec_diag.capture.client import capture, detect_server
from specdec_diag.capture.format import REQUESTS_SCHEMA, is_requests_file, read_requests
from specdec_diag.capture.prompts import Prompt, load_prompts

VLLM_RESPONSE = {
    "id": "cmpl-7", "object": "text_completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "text": " world", "logprobs": None, "finish_reason": "length",
                 "stop_reason": None, "token_ids": [11, 12, 13, 14], "prompt_token_ids": [1, 2, 3]}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    "metrics": {"time_to_first_token_ms": 12.5, "generation_time_ms": 40.0, "queue_time_ms": 0.1,
                "mean_itl_ms": 9.0, "tokens_per_second": 100.0,
                "speculative_decoding": {"mean_acceptance_length": 2.0, "draft_acceptance_rate": 0.5,
                                         "acceptance_histogram": [1, 0, 1], "num_spec_steps": 2,
                                         "num_accepted_draft_tokens": 2, "num_draft_tokens": 4,
                                         "num_spec_tokens": 2}},
}
SGLANG_RESPONSE = {
    "text": " world", "output_ids": [11, 12, 13, 14, 15, 16],
    "meta_info": {"id": "abc", "prompt_tokens": 3, "completion_tokens": 6, "finish_reason": {"type": "length"},
                  "e2e_latency": 0.2, "spec_verify_ct": 2, "spec_accept_length": 3.0},
}
TRTLLM_PERF = [{"request_id": 42, "perf_metrics": {
    "first_iter": 1, "last_iter": 9, "timing_metrics": {}, "kv_cache_metrics": {},
    "speculative_decoding": {"acceptance_rate": 0.25, "total_accepted_draft_tokens": 3, "total_draft_tokens": 12}}}]
LLAMACPP_RESPONSE = {
    "index": 0, "content": "abc", "tokens": [5, 6, 7], "id_slot": 1, "stop": True, "model": "t.gguf",
    "tokens_predicted": 3, "tokens_evaluated": 4, "stop_type": "limit",
    "timings": {"cache_n": 0, "prompt_n": 4, "prompt_ms": 1.5, "prompt_per_token_ms": 0.4,
                "prompt_per_second": 2600.0, "predicted_n": 3, "predicted_ms": 3.0,
                "predicted_per_token_ms": 1.0, "predicted_per_second": 1000.0,
                "draft_n": 8, "draft_n_accepted": 2},
}


def test_vllm_shape():
    got = engines.read_response("openai", "vllm", VLLM_RESPONSE)
    assert got["output_token_ids"] == [11, 12, 13, 14] and got["prompt_token_ids"] == [1, 2, 3]
    assert got["engine_stats"]["metrics"]["speculative_decoding"]["num_spec_steps"] == 2  # kept as given
    assert got["spec"] == {"num_drafts": 2, "draft_tokens": 4, "accepted_tokens": 2, "k": 2,
                           "accepted_per_pos": [1, 1], "source": "metrics.speculative_decoding"}
    assert got["ttft_ms"] == 12.5


def test_histogram_to_per_position():
    # 3 steps accepted 0, 5 accepted 1, 2 accepted 2 of k=2: position 0 accepted in 7, position 1 in 2
    assert engines.per_pos_from_histogram([3, 5, 2]) == [7, 2]
    assert engines.per_pos_from_histogram([4]) is None


def test_sglang_shape():
    got = engines.read_response("sglang", "sglang", SGLANG_RESPONSE)
    assert got["output_token_ids"] == [11, 12, 13, 14, 15, 16] and got["finish_reason"] == "length"
    assert got["spec"]["num_drafts"] == 2 and got["spec"]["accepted_tokens"] == 4  # 6 tokens - 2 steps
    assert got["engine_stats"]["meta_info"]["spec_accept_length"] == 3.0
    body = engines.build_body("sglang", (1, 2, 3), engines.Sampling(n_predict=6))
    assert body["input_ids"] == (1, 2, 3) and body["sampling_params"]["max_new_tokens"] == 6


def test_trtllm_perf_attached_by_request_id():
    recs = [{"id": "cmpl-42", "spec": None}, {"id": "cmpl-43", "spec": None}]
    assert engines.attach_trtllm_perf(recs, TRTLLM_PERF) == 1
    assert recs[0]["spec"]["draft_tokens"] == 12 and recs[0]["spec"]["accepted_tokens"] == 3
    assert recs[1]["spec"] is None


def test_llamacpp_shape_and_body():
    got = engines.read_response("llamacpp", "llama.cpp", LLAMACPP_RESPONSE)
    assert got["output_token_ids"] == [5, 6, 7] and got["slot"] == 1
    assert got["spec"]["draft_tokens"] == 8 and got["spec"]["accepted_tokens"] == 2
    assert got["spec"]["num_drafts"] is None  # llama.cpp does not report verify steps per request
    body = engines.build_body("llamacpp", (1, 2), engines.Sampling(n_predict=5, temperature=0.7), seed=3)
    assert body["prompt"] == (1, 2) and body["return_tokens"] is True and body["seed"] == 3
    assert body["top_k"] == 0 and body["top_p"] == 1.0 and body["min_p"] == 0.0


def test_prompt_files(tmp_path: Path):
    (tmp_path / "p.jsonl").write_text('"text one"\n[1, 2, 3]\n{"prompt_token_ids": [4], "text": "x"}\n')
    ps = load_prompts(tmp_path / "p.jsonl")
    assert ps == [Prompt("text one", "text one"), Prompt((1, 2, 3)), Prompt((4,), "x")]
    (tmp_path / "p.txt").write_text("a\\nb\n\nc\n")
    assert [p.prompt for p in load_prompts(tmp_path / "p.txt")] == ["a\nb", "c"]
    (tmp_path / "bad.jsonl").write_text("{1}\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_prompts(tmp_path / "bad.jsonl")


class _FakeVllm(BaseHTTPRequestHandler):
    """Answers like vLLM with per-request spec metrics; prompt [9] fails with HTTP 400."""

    scrapes = 0

    def log_message(self, *a):  # keep pytest output clean
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/version":
            self._send(200, b'{"version": "0.99.0"}')
        elif self.path == "/v1/models":
            self._send(200, b'{"data": [{"id": "fake-model"}]}')
        elif self.path == "/metrics":
            type(self).scrapes += 1
            n = 10 * type(self).scrapes
            text = (f"vllm:spec_decode_num_drafts_total{{model_name=\"fake-model\"}} {n}\n"
                    f"vllm:spec_decode_num_draft_tokens_total{{model_name=\"fake-model\"}} {2 * n}\n"
                    f"vllm:spec_decode_num_accepted_tokens_total{{model_name=\"fake-model\"}} {n}\n")
            self._send(200, text.encode(), "text/plain")
        else:
            self._send(404, b'{"error": "not found"}')

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/completions" and body["return_token_ids"] is True
        if body["prompt"] == [9]:
            self._send(400, b'{"error": {"message": "bad prompt"}}')
            return
        resp = json.loads(json.dumps(VLLM_RESPONSE))
        resp["choices"][0]["prompt_token_ids"] = body["prompt"]
        resp["model"] = body["model"]
        self._send(200, json.dumps(resp).encode())


@pytest.fixture()
def fake_vllm():
    _FakeVllm.scrapes = 0
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FakeVllm)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_capture_end_to_end_fake_vllm(fake_vllm: str, tmp_path: Path):
    assert detect_server(fake_vllm)["engine"] == "vllm"
    prompts = [Prompt((1, 2, 3)), Prompt((4, 5)), Prompt((9,)), Prompt((6,))]
    summary = capture(fake_vllm, prompts, tmp_path, sampling=engines.Sampling(n_predict=4), concurrency=2)
    assert summary["requests"] == 4 and summary["ok"] == 3 and summary["errors"] == 1
    assert summary["draft_tokens"] == 12 and summary["accepted_tokens"] == 6
    path = tmp_path / "requests.jsonl"
    assert is_requests_file(path)
    rf = read_requests(path)
    assert rf.header["schema"] == REQUESTS_SCHEMA and rf.engine == "vllm" and rf.header["model"] == "fake-model"
    assert sorted(r["index"] for r in rf.requests) == [0, 1, 2, 3] and rf.summary is not None
    bad = next(r for r in rf.requests if r["index"] == 2)
    assert bad["status"] == "error" and "HTTP 400" in bad["error"]
    good = next(r for r in rf.requests if r["index"] == 1)
    assert good["prompt_token_ids"] == [4, 5] and good["output_token_ids"] == [11, 12, 13, 14]
    prom = (tmp_path / "metrics.prom").read_text()
    assert prom.count("scrape_time=") == 2  # before and after, one file

    from specdec_diag.ingest import scan

    res = scan([tmp_path], use_cache=False)
    req = res.windows.filter(res.windows["window"] == "request")
    assert req.height == 3 and set(req["engine"].to_list()) == {"vllm"}
    assert req["per_position_acceptance"].to_list()[0] == [0.5, 0.5]
    assert res.malformed.filter(res.malformed["reason"].str.contains("request failed")).height == 1
    interval = res.windows.filter((res.windows["window"] == "interval")
                                  & (res.windows["format"] == "prometheus-vllm-v1"))
    assert interval["draft_tokens"].to_list() == [20] and interval["accepted_tokens"].to_list() == [10]
    assert req["draft_tokens"].to_list() == [4, 4, 4] and req["acceptance_rate"].to_list() == [0.5] * 3


def test_prometheus_llamacpp_two_scrapes(tmp_path: Path):
    def scrape(t: str, drafts: int, draft: int, acc: int, pp: list[int]) -> str:
        lines = [f"# {t}", "# TYPE llamacpp:spec_decode_num_draft_tokens_total counter",
                 "llamacpp:prompt_tokens_total 7", f"llamacpp:spec_decode_num_draft_tokens_total {draft}",
                 f"llamacpp:spec_decode_num_accepted_tokens_total {acc}",
                 f"llamacpp:spec_decode_num_drafts_total {drafts}", "llamacpp:requests_processing 0"]
        lines += [f'llamacpp:spec_decode_num_accepted_tokens_per_pos_total{{position="{j}"}} {c}'
                  for j, c in enumerate(pp)]
        return "\n".join(lines) + "\n"

    (tmp_path / "metrics.prom").write_text(scrape("2026-01-01T00:00:00Z", 10, 40, 20, [8, 6, 4, 2])
                                           + scrape("2026-01-01T00:01:00Z", 35, 140, 50, [23, 12, 9, 6]))
    from specdec_diag.analysis.metrics import summarize
    from specdec_diag.ingest import scan

    res = scan([tmp_path], use_cache=False)
    assert set(res.windows["engine"].to_list()) == {"llama.cpp"}
    s = summarize(res)
    # only the difference of the two scrapes counts: counters from before the capture do not
    assert (s["num_drafts"], s["draft_tokens"], s["accepted_tokens"], s["k"]) == (25, 100, 30, 4)
    assert s["acceptance_rate"] == pytest.approx(0.3)
    assert s["per_position_acceptance"] == pytest.approx([15 / 25, 6 / 25, 5 / 25, 4 / 25])


def test_requests_source_windows_per_engine(tmp_path: Path):
    """The ingest source turns each engine's normalised counters into request windows."""
    from specdec_diag.analysis.metrics import summarize
    from specdec_diag.ingest import scan

    sg = engines.read_response("sglang", "sglang", SGLANG_RESPONSE)
    header = {"type": "header", "schema": REQUESTS_SCHEMA, "engine": "sglang", "api": "sglang", "k": 3,
              "sampling": {"temperature": 0.0}}
    rec = {"type": "request", "index": 0, "status": "ok", "prompt_token_ids": [1, 2, 3],
           "sampling": {"temperature": 0.0}, **sg}
    (tmp_path / "requests.jsonl").write_text(json.dumps(header) + "\n" + json.dumps(rec) + "\n")
    res = scan([tmp_path], use_cache=False)
    w = res.windows.row(0, named=True)
    assert (w["engine"], w["window"], w["request"], w["num_drafts"], w["accepted_tokens"]) == ("sglang", "request", "0", 2, 4)
    assert w["mean_acceptance_length"] == pytest.approx(3.0)  # SGLang's own completion_tokens / spec_verify_ct
    assert w["context_len"] == 9
    cfg = dict(res.configs.select("key", "value").iter_rows())
    assert cfg["num_speculative_tokens"] == "3" and cfg["engine"] == "sglang"
    assert summarize(res)["mean_acceptance_length"] == pytest.approx(3.0)


def test_cli_capture_exit_codes(fake_vllm: str, tmp_path: Path):
    from typer.testing import CliRunner

    from specdec_diag.cli import app

    (tmp_path / "p.jsonl").write_text("[1, 2]\n[9]\n")
    r = CliRunner().invoke(app, ["capture", fake_vllm, "--prompts", str(tmp_path / "p.jsonl"),
                                 "--out", str(tmp_path / "o"), "--n-predict", "4"])
    assert r.exit_code == 1 and "1/2 requests" in r.output  # one failed request: recorded, exit 1
    r = CliRunner().invoke(app, ["capture", "http://127.0.0.1:9", "--prompts", str(tmp_path / "p.jsonl"),
                                 "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2
