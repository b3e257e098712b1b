"""A real engine in the loop: llama-server (built by `make llamacpp`) serving the bundled pair as GGUF,
driven by `specdec-diag capture`, judged by `report` and production `replay`.

Each scenario starts its own llama-server on 127.0.0.1 (free port, bounded startup, always killed).
Skipped only where llama.cpp cannot be built (no cmake / compiler); otherwise a missing build is
built first (minutes, once per machine: the cache is reused).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from specdec_diag.capture import llamacpp as lc
from specdec_diag.cli import app

# func_only: a first run may build llama.cpp in the fixture (minutes); each test itself is bounded
pytestmark = [pytest.mark.llamacpp, pytest.mark.timeout(600, func_only=True)]
ROOT = Path(__file__).resolve().parents[1]
N_PREDICT = 48
runner = CliRunner()


@pytest.fixture(scope="module")
def build() -> Path:
    if not lc.built():
        why = lc.build_problem()
        if why:
            pytest.skip(why)
        subprocess.run(["bash", str(ROOT / "scripts" / "build_llamacpp.sh"), sys.executable], check=True,
                       timeout=3600)
    assert lc.built(), "scripts/build_llamacpp.sh finished without a build"
    return lc.cache_dir()


@pytest.fixture(scope="module")
def hf_target():
    pytest.importorskip("torch")
    from specdec_diag.decoder.production_replay import load_target

    return load_target()


@pytest.fixture(scope="module")
def prompts(hf_target, tmp_path_factory) -> tuple[list[list[int]], Path]:
    from specdec_diag.assets import heldout_prompts

    ids = heldout_prompts(hf_target[1], n=3, length=32)
    f = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    f.write_text("".join(json.dumps(p) + "\n" for p in ids))
    return ids, f


def capture(url: str, prompts_file: Path, out: Path, *extra: str, n_predict: int = N_PREDICT) -> list[dict]:
    res = runner.invoke(app, ["capture", url, "--prompts", str(prompts_file), "--out", str(out),
                              "--n-predict", str(n_predict), "--ignore-eos", "--timeout", "120", *extra])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in (out / "requests.jsonl").read_text().splitlines()]
    assert lines[0]["engine"] == "llama.cpp" and lines[-1]["type"] == "summary"
    recs = sorted((x for x in lines if x["type"] == "request"), key=lambda r: r["index"])
    assert all(r["status"] == "ok" for r in recs), [r["error"] for r in recs]
    return recs


def report(path: Path) -> dict:
    out = path.parent / f"report-{path.name}.json"
    res = runner.invoke(app, ["report", str(path), "--format", "json", "--no-cache", "--out", str(out)])
    assert res.exit_code in (0, 1), res.output
    return json.loads(out.read_text())


def run_summary(rep: dict, name: str) -> dict:
    """The summary of the report's run made from the file ``name`` (each file is its own run)."""
    runs = [r for r in rep["runs"] if any(Path(src).name == name for src in r["sources"])]
    assert len(runs) == 1, [r["id"] for r in rep["runs"]]
    return runs[0]["summary"]


def metrics_delta(prom: Path) -> dict:
    """The server's own counters for the capture: after-scrape minus before-scrape (parsed here, not
    by ingest, so the comparison is independent)."""
    scrapes: list[dict[str, float]] = []
    for line in prom.read_text().splitlines():
        if line.startswith("# ") and "scrape_time=" in line:
            scrapes.append({})
        elif m := re.match(r'^llamacpp:(spec_decode_\w+?)(?:\{position="(\d+)"\})? (\S+)$', line):
            key = m.group(1) + (f"_{m.group(2)}" if m.group(2) else "")
            scrapes[-1][key] = float(m.group(3))
    before, after = scrapes
    d = {k: after[k] - before.get(k, 0.0) for k in after}
    k = sum(1 for x in d if x.startswith("spec_decode_num_accepted_tokens_per_pos_total_"))
    drafts = d["spec_decode_num_drafts_total"]
    return {"drafts": drafts, "draft": d["spec_decode_num_draft_tokens_total"],
            "accepted": d["spec_decode_num_accepted_tokens_total"],
            "per_pos": [d[f"spec_decode_num_accepted_tokens_per_pos_total_{j}"] / drafts for j in range(k)]}


def assert_report_matches_metrics(summary: dict, delta: dict) -> None:
    """`report` on the capture directory gives the server's own numbers (6-digit rounding)."""
    assert (summary["num_drafts"], summary["draft_tokens"], summary["accepted_tokens"]) == (
        delta["drafts"], delta["draft"], delta["accepted"])
    assert summary["acceptance_rate"] == pytest.approx(delta["accepted"] / delta["draft"], abs=1e-6)
    assert summary["mean_acceptance_length"] == pytest.approx(1 + delta["accepted"] / delta["drafts"], abs=1e-6)
    assert summary["per_position_acceptance"] == pytest.approx(delta["per_pos"], abs=1e-6)
    assert summary["k"] == len(delta["per_pos"])


def codes(rep: dict, levels: tuple[str, ...] = ("error", "warning")) -> set[str]:
    return {f["code"] for f in rep["findings"] if f.get("severity") in levels}


def test_healthy_pair_three_engines_agree(build, hf_target, prompts, tmp_path):
    import torch

    from specdec_diag.decoder.models import load_pair
    from specdec_diag.decoder.speculative import DecodeConfig, generate

    ids, pfile = prompts
    with lc.LlamaServer(lc.pair_args(k=4, extra=["-c", "1024", "-np", "1"]), tmp_path / "server.log") as srv:
        recs = capture(srv.url, pfile, tmp_path / "cap")
    engine_out = [r["output_token_ids"] for r in recs]
    assert [r["prompt_token_ids"] for r in recs] == ids and all(len(o) == N_PREDICT for o in engine_out)
    spec = [r["spec"] for r in recs]
    assert all(s["draft_tokens"] > 0 and 0 < s["accepted_tokens"] <= s["draft_tokens"] for s in spec)

    delta = metrics_delta(tmp_path / "cap" / "metrics.prom")
    assert delta["draft"] == sum(s["draft_tokens"] for s in spec)  # per-request timings add up to /metrics
    assert delta["accepted"] == sum(s["accepted_tokens"] for s in spec)
    rep = report(tmp_path / "cap")
    assert_report_matches_metrics(run_summary(rep, "metrics.prom"), delta)
    req = run_summary(rep, "requests.jsonl")  # the per-request timings: the same counts, no verify steps
    assert (req["draft_tokens"], req["accepted_tokens"]) == (delta["draft"], delta["accepted"])
    assert req["acceptance_rate"] == pytest.approx(delta["accepted"] / delta["draft"], abs=1e-6)
    assert {r["engine"] for r in rep["runs"]} == {"llama.cpp"}
    assert not codes(rep) & {"LOW_ACCEPTANCE", "VERIFIER_MISMATCH", "SPEC_INACTIVE", "POSITION_CLIFF"}
    log = report(tmp_path / "server.log")  # the server's own per-request lines agree too
    assert run_summary(log, "server.log")["acceptance_rate"] == pytest.approx(delta["accepted"] / delta["draft"],
                                                                              abs=1e-6)

    # three engines agree: llama.cpp (f32 GGUF), our reference decoder, transformers generate
    model, _tok = hf_target
    with torch.no_grad():
        hf = [model.generate(torch.tensor([p]), max_new_tokens=N_PREDICT, min_new_tokens=N_PREDICT,
                             do_sample=False)[0, len(p):].tolist() for p in ids]
    pair = load_pair()
    ref = generate(pair, ids, DecodeConfig(gamma=4, max_new_tokens=N_PREDICT, stop_at_eos=False)).tokens
    assert engine_out == hf == ref

    res = runner.invoke(app, ["replay", str(tmp_path / "cap" / "requests.jsonl"), "--json"])
    assert res.exit_code == 0, res.output
    totals = json.loads(res.stdout)["totals"]
    assert totals["greedy"] == 3 and totals["greedy_divergent"] == 0 and totals["verdict"] == "ok"


def test_synthetic_rates_match(build, prompts, tmp_path):
    rates = [0.8, 0.6, 0.4, 0.2]
    ids, pfile = prompts
    args = lc.pair_args(k=4, extra=["-c", "1024", "-np", "1", "--spec-draft-p-min", "0",
                                    "--spec-synth-rates", ",".join(map(str, rates))])
    with lc.LlamaServer(args, tmp_path / "server.log") as srv:
        capture(srv.url, pfile, tmp_path / "cap", n_predict=160)
    delta = metrics_delta(tmp_path / "cap" / "metrics.prom")
    rep = report(tmp_path / "cap")
    assert_report_matches_metrics(run_summary(rep, "metrics.prom"), delta)
    n = delta["drafts"]
    for got, want in zip(run_summary(rep, "metrics.prom")["per_position_acceptance"], rates, strict=True):
        assert abs(got - want) <= 4 * math.sqrt(want * (1 - want) / n) + 0.02, (got, want, n)


def test_long_draft_flagged(build, prompts, tmp_path):
    _, pfile = prompts
    args = lc.pair_args(k=16, extra=["-c", "1024", "-np", "1", "--spec-draft-p-min", "0"])
    with lc.LlamaServer(args, tmp_path / "server.log") as srv:
        # 96 tokens a prompt: at k = 16 a pair that writes code accepts ~0.22 of its drafts, and 48 tokens
        # left K_TOO_LARGE below its 500 drafted tokens (llama.cpp drafts less near the end of a budget)
        capture(srv.url, pfile, tmp_path / "cap", n_predict=96)
    rep = report(tmp_path / "cap")
    assert run_summary(rep, "metrics.prom")["k"] == 16
    assert codes(rep) & {"K_TOO_LARGE", "POSITION_CLIFF"}, [f["code"] for f in rep["findings"]]


def test_ngram_on_unrepetitive_prompts_is_low(build, prompts, tmp_path):
    """Prompt-lookup drafting needs repetition. Sampled (T=0.4) continuations of held-out code repeat
    little, so 1-gram lookups mostly propose tokens the target does not sample (~13 % accepted; at
    T=1 ~1 %, which is DRAFTER_BROKEN). Greedy continuations of the tiny target do repeat - "self,
    self, self" - and there the same drafter accepts ~80 %."""
    _, pfile = prompts
    args = lc.pair_args(draft=None, k=4, spec_type="ngram-simple",
                        extra=["-c", "1024", "-np", "1", "--spec-ngram-simple-size-n", "1",
                               "--spec-ngram-simple-size-m", "4"])
    with lc.LlamaServer(args, tmp_path / "server.log") as srv:
        capture(srv.url, pfile, tmp_path / "cap", "--temperature", "0.4", n_predict=200)
    delta = metrics_delta(tmp_path / "cap" / "metrics.prom")
    rep = report(tmp_path / "cap")
    assert_report_matches_metrics(run_summary(rep, "metrics.prom"), delta)
    assert delta["draft"] >= 500 and 0.05 <= run_summary(rep, "metrics.prom")["acceptance_rate"] < 0.3
    assert "LOW_ACCEPTANCE" in codes(rep), [f["code"] for f in rep["findings"]]


def test_parallel_slots_under_concurrency(build, hf_target, prompts, tmp_path):
    ids, _ = prompts
    pfile = tmp_path / "p8.jsonl"
    pfile.write_text("".join(json.dumps(p) + "\n" for p in (ids * 3)[:8]))
    args = lc.pair_args(k=4, extra=["-c", "4096", "-np", "4"])
    with lc.LlamaServer(args, tmp_path / "server.log") as srv:
        recs = capture(srv.url, pfile, tmp_path / "cap", "--concurrency", "4")
    assert len({r["slot"] for r in recs}) >= 2
    delta = metrics_delta(tmp_path / "cap" / "metrics.prom")
    assert delta["draft"] == sum(r["spec"]["draft_tokens"] for r in recs)
    rep = report(tmp_path / "cap")
    assert_report_matches_metrics(run_summary(rep, "metrics.prom"), delta)
    from specdec_diag.capture.format import read_requests
    from specdec_diag.decoder.production_replay import replay_requests

    res = replay_requests(read_requests(tmp_path / "cap" / "requests.jsonl"), loaded=hf_target)
    assert res["totals"]["greedy_divergent"] == 0, res["totals"]


def test_quantized_target_divergence_located(build, hf_target, prompts, tmp_path):
    from specdec_diag.capture.format import read_requests
    from specdec_diag.decoder.production_replay import replay_requests

    ids, pfile = prompts
    outs = {}
    for name in ("target.gguf", QUANT_TARGET):
        with lc.LlamaServer(lc.pair_args(target=name, k=4, extra=["-c", "1024", "-np", "1"]),
                            tmp_path / f"{name}.log") as srv:
            outs[name] = capture(srv.url, pfile, tmp_path / name)
    res = replay_requests(read_requests(tmp_path / QUANT_TARGET / "requests.jsonl"), loaded=hf_target)
    assert res["totals"]["verdict"] == "divergent" and res["totals"]["greedy_divergent"] >= 1
    for r, q, f in zip(res["requests"], outs[QUANT_TARGET], outs["target.gguf"], strict=True):
        qo, fo = q["output_token_ids"], f["output_token_ids"]
        first_diff = next((j for j, (a, b) in enumerate(zip(qo, fo, strict=True)) if a != b), None)
        fd = r["first_divergence"]
        if first_diff is None:  # this request was not changed by quantization
            assert fd is None
            continue
        # replay puts the first divergence exactly where the f32 server's output first differs
        assert fd is not None and fd["position"] == first_diff and fd["reference"]["id"] == fo[first_diff]


#: the quantized target the tests serve (see scripts/build_llamacpp.sh; chosen in docs/capture.md)
QUANT_TARGET = "target-q4_0.gguf"
