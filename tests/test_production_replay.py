"""Production replay on hand-built captures of the bundled target: its own greedy outputs match,
a planted wrong token is located, honest samples are consistent and argmax "samples" are not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from specdec_diag.assets import heldout_prompts  # noqa: E402
from specdec_diag.capture.format import REQUESTS_SCHEMA, read_requests  # noqa: E402
from specdec_diag.decoder.production_replay import load_target, replay_requests  # noqa: E402


@pytest.fixture(scope="module")
def target():
    return load_target()


def _write(path: Path, recs: list[dict]) -> Path:
    header = {"type": "header", "schema": REQUESTS_SCHEMA, "engine": "llama.cpp", "api": "llamacpp"}
    path.write_text("\n".join(json.dumps(r) for r in [header, *recs]) + "\n")
    return path


def _rec(i: int, prompt: list[int], out: list[int], temp: float) -> dict:
    return {"type": "request", "index": i, "status": "ok", "prompt_token_ids": prompt,
            "output_token_ids": out, "sampling": {"temperature": temp}}


@torch.no_grad()
def _greedy(model, prompt: list[int], n: int) -> list[int]:
    out = model.generate(torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, len(prompt):].tolist()


@torch.no_grad()
def _sample(model, prompt: list[int], n: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    ids = list(prompt)
    for _ in range(n):
        p = torch.softmax(model(torch.tensor([ids])).logits[0, -1].double(), -1)
        ids.append(int(torch.multinomial(p, 1, generator=g)))
    return ids[len(prompt):]


def test_greedy_match_and_planted_divergence(target, tmp_path: Path):
    model, tok = target
    prompts = heldout_prompts(tok, n=3, length=24)
    outs = [_greedy(model, p, 20) for p in prompts]
    ok = replay_requests(read_requests(_write(tmp_path / "ok.jsonl",
                                              [_rec(i, p, o, 0.0) for i, (p, o) in enumerate(zip(prompts, outs, strict=True))])),
                         loaded=target)
    assert ok["totals"]["verdict"] == "ok" and ok["totals"]["greedy_divergent"] == 0
    assert ok["totals"]["greedy_positions"] == 60

    bad = [list(o) for o in outs]
    lp = torch.log_softmax(model(torch.tensor([prompts[1] + outs[1][:7]])).logits[0, -1], -1)
    bad[1][7] = int(lp.argmin())  # the least likely token: far from any near-tie
    res = replay_requests(read_requests(_write(tmp_path / "bad.jsonl",
                                               [_rec(i, p, o, 0.0) for i, (p, o) in enumerate(zip(prompts, bad, strict=True))])),
                         loaded=target)
    assert res["totals"]["verdict"] == "divergent" and res["totals"]["greedy_divergent"] == 1
    r1 = res["requests"][1]
    fd = r1["first_divergence"]
    assert fd["position"] == 7 and fd["engine"]["id"] == bad[1][7] and fd["reference"]["id"] == outs[1][7]
    assert fd["reference"]["p"] > fd["engine"]["p"] and fd["context_ids"][-1] == outs[1][6]


def test_sampled_consistency(target, tmp_path: Path):
    model, tok = target
    prompts = heldout_prompts(tok, n=4, length=24)
    honest = [_rec(i, p, _sample(model, p, 40, seed=i), 1.0) for i, p in enumerate(prompts)]
    res = replay_requests(read_requests(_write(tmp_path / "s.jsonl", honest)), z_crit=4.0, loaded=target)
    assert res["totals"]["verdict"] == "ok", res["totals"]
    assert abs(res["totals"]["pooled_z"]) < 4.0
    # an engine that claims T=1 but emits the argmax: far too likely under the target
    greedy = [_rec(i, p, _greedy(model, p, 40), 1.0) for i, p in enumerate(prompts)]
    res = replay_requests(read_requests(_write(tmp_path / "g.jsonl", greedy)), z_crit=4.0, loaded=target)
    assert res["totals"]["verdict"] == "suspect" and res["totals"]["pooled_z"] > 4.0


def test_skips_requests_without_ids(target, tmp_path: Path):
    recs = [{"type": "request", "index": 0, "status": "ok", "prompt": "x", "output_text": "y",
             "sampling": {"temperature": 0.0}},
            {"type": "request", "index": 1, "status": "error", "error": "HTTP 500"}]
    res = replay_requests(read_requests(_write(tmp_path / "n.jsonl", recs)), loaded=target)
    assert [r["verdict"] for r in res["requests"]] == ["skipped", "skipped"]
    assert res["totals"]["skipped"] == 2
