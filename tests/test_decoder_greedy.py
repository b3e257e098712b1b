"""Greedy speculative decoding must reproduce the target's own greedy decode token for token, and
every step must satisfy the structural invariants (docs/theory.md §6)."""

from __future__ import annotations

import json

import pytest
from conftest import EOS_ID, random_prompts

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # 2 shared cores: threads only contend

from specdec_diag.decoder.speculative import DecodeConfig, generate  # noqa: E402
from specdec_diag.decoder.verification import AcceptanceRule  # noqa: E402
from specdec_diag.schema import read_trace, trace_to_parquet  # noqa: E402

MAX_NEW = 16
PROMPTS = random_prompts(6, seed=3)


def reference_greedy(pair, prompt_ids: list[list[int]], max_new: int) -> list[list[int]]:
    """The independent reference: transformers' own generate(do_sample=False)."""
    out = []
    for ids in prompt_ids:
        seq = pair.target.generate(torch.tensor([ids]), max_new_tokens=max_new, do_sample=False,
                                   eos_token_id=EOS_ID, pad_token_id=2)
        out.append(seq[0, len(ids):].tolist())
    return out


@pytest.fixture(scope="module")
def reference(tiny_pair):
    ids = [tiny_pair.tokenizer(p)["input_ids"] for p in PROMPTS]
    return reference_greedy(tiny_pair, ids, MAX_NEW)


CASES = [("constant", g) for g in (1, 2, 3, 5, 8)] + [("heuristic", 2), ("heuristic", 6),
                                                       ("confidence", 4), ("confidence", 8)]


@pytest.mark.parametrize("policy,gamma", CASES)
def test_greedy_equals_target_generate(tiny_pair, reference, invariants, policy, gamma):
    res = generate(tiny_pair, PROMPTS, DecodeConfig(gamma=gamma, policy=policy, max_new_tokens=MAX_NEW))
    assert res.tokens == reference
    assert invariants(res.records) == []
    steps = res.steps
    accepts = sum(s["n_accepted"] for s in steps)
    rejects = sum(s["n_accepted"] < s["gamma_drafted"] for s in steps)
    assert accepts > 0 and rejects > 0, "the draft must both agree and disagree for this test to mean anything"
    if policy == "constant":
        assert max(s["gamma_drafted"] for s in steps) == gamma
    if policy == "heuristic":
        # +2 after a fully accepted step, -1 (min 1) otherwise, reset per request
        for a, b in zip(steps, steps[1:], strict=False):
            if a["request"] == b["request"]:
                full = a["n_accepted"] == a["gamma_drafted"] and a["gamma_drafted"] > 0
                want = a["gamma_requested"] + 2 if full else max(1, a["gamma_requested"] - 1)
                assert b["gamma_requested"] == want == a["gamma_next"]
    if policy == "confidence":
        stopped = [s for s in steps if s["gamma_drafted"] < min(s["gamma_requested"], MAX_NEW)]
        assert stopped, "the 0.4 threshold should stop some drafts early"
        for s in steps:
            # a draft stops right after its first token with q below the threshold, and only then
            below = [q < s["threshold"] for q in s["q"]]
            if True in below:
                assert below.index(True) == s["gamma_drafted"] - 1
    s = res.summary
    assert s["emitted_tokens"] == sum(len(t) for t in res.tokens)
    assert s["accepted_tokens"] == accepts


def test_greedy_gpt2_absolute_positions(tiny_gpt2_pair, invariants):
    ids = [tiny_gpt2_pair.tokenizer(p)["input_ids"] for p in PROMPTS[:4]]
    ref = reference_greedy(tiny_gpt2_pair, ids, MAX_NEW)
    for gamma in (1, 4):
        res = generate(tiny_gpt2_pair, PROMPTS[:4], DecodeConfig(gamma=gamma, max_new_tokens=MAX_NEW))
        assert res.tokens == ref
        assert invariants(res.records) == []


def test_baseline_is_one_forward_per_token(tiny_pair, reference, invariants):
    res = generate(tiny_pair, PROMPTS, DecodeConfig(baseline=True, max_new_tokens=MAX_NEW))
    assert res.tokens == reference
    assert invariants(res.records) == []
    assert res.header["mode"] == "baseline" and res.header["models"]["draft"] is None
    for s in res.steps:
        assert s["gamma_drafted"] == 0 and s["n_accepted"] == 0 and s["draft_forwards"] == 0
        assert len(s["emitted_token_ids"]) == 1 and s["target_forwards"] == 1
    assert res.summary["mean_acceptance_length"] == 1.0


def test_eos_inside_accepted_drafts_is_trimmed(tiny_pair, reference, invariants):
    # Make EOS win wherever the most frequent greedy token would: copy that token's lm_head row
    # (slightly amplified) into EOS in both models, so EOS shows up inside accepted draft runs.
    from collections import Counter

    pair = tiny_pair
    common = Counter(t for out in reference for t in out).most_common(1)[0][0]
    heads = [pair.target.get_output_embeddings(), pair.draft.get_output_embeddings()]
    saved = [h.weight[EOS_ID].clone() for h in heads]
    try:
        with torch.no_grad():
            for h in heads:
                h.weight[EOS_ID] = 1.05 * h.weight[common]
        ids = [pair.tokenizer(p)["input_ids"] for p in PROMPTS]
        ref = reference_greedy(pair, ids, 24)
        res = generate(pair, PROMPTS, DecodeConfig(gamma=6, max_new_tokens=24))
        assert res.tokens == ref
        assert invariants(res.records) == []
        assert [t for t in res.tokens if t and t[-1] == EOS_ID], "some request should stop at EOS"
        assert all(EOS_ID not in t[:-1] for t in res.tokens)
        trimmed = [s for s in res.steps if s["trimmed_by"] == "eos"]
        assert trimmed, "EOS should land inside an accepted draft run at least once"
        for s in trimmed:
            assert s["emitted_token_ids"][-1] == EOS_ID and len(s["emitted_token_ids"]) < s["n_accepted"] + 1
        assert all(o["finished_by"] == ("eos" if t[-1] == EOS_ID else "max_length")
                   for o, t in zip(res.summary["outputs"], res.tokens, strict=True))
    finally:
        with torch.no_grad():
            for h, w in zip(heads, saved, strict=True):
                h.weight[EOS_ID] = w


def test_max_new_tokens_budget(tiny_pair, invariants):
    res = generate(tiny_pair, PROMPTS[:3], DecodeConfig(gamma=8, max_new_tokens=5, stop_at_eos=False))
    assert [len(t) for t in res.tokens] == [5, 5, 5]
    assert invariants(res.records) == []
    for s in res.steps:  # drafts never run past the budget (as transformers caps them)
        assert s["gamma_drafted"] <= 5 - 1


def test_trace_round_trip_jsonl_parquet(tiny_pair, tmp_path):
    import polars as pl

    path = tmp_path / "t.jsonl"
    cfg = DecodeConfig(gamma=3, rule=AcceptanceRule("sampling"), max_new_tokens=12, seed=7)
    res = generate(tiny_pair, PROMPTS[:3], cfg, trace=str(path))
    lines = path.read_text().splitlines()
    assert [json.loads(x)["type"] for x in (lines[0], lines[-1])] == ["header", "summary"]
    tr = read_trace(path)
    assert tr.dropped == [] and len(tr.steps) == len(res.steps) == tr.summary["steps"]
    assert tr.header["rule"] == {"name": "sampling", "lossy": False, "params": {}}
    assert tr.header["fault"] is None
    assert tr.steps == res.steps  # JSON keeps every value (floats round-trip exactly)
    pq = trace_to_parquet(tr, tmp_path / "t.parquet")
    back = pl.read_parquet(pq)
    assert back.height == len(res.steps)
    assert back["draft_token_ids"].to_list() == [s["draft_token_ids"] for s in res.steps]
    assert back["uniforms"].to_list() == [s["uniforms"] for s in res.steps]
    assert back["q"].to_list() == [s["q"] for s in res.steps]
    assert back["emitted_token_ids"].to_list() == [s["emitted_token_ids"] for s in res.steps]
    assert back["verify_ms"].to_list() == [s["verify_ms"] for s in res.steps]


def test_summary_definitions_from_steps(tiny_pair):
    res = generate(tiny_pair, PROMPTS[:4], DecodeConfig(gamma=4, max_new_tokens=MAX_NEW))
    steps, s = res.steps, res.summary
    drafted = sum(x["gamma_drafted"] for x in steps)
    acc = sum(x["n_accepted"] for x in steps)
    assert s["acceptance_rate"] == pytest.approx(acc / drafted)
    assert s["mean_acceptance_length"] == pytest.approx(1 + acc / len(steps))
    tried = [x for x in steps if x["gamma_drafted"] >= 1]
    assert s["per_position_acceptance"][0] == pytest.approx(sum(x["n_accepted"] >= 1 for x in tried) / len(tried))
    assert s["per_position_acceptance"] == sorted(s["per_position_acceptance"], reverse=True)
    assert s["outputs"][0]["text"] == tiny_pair.tokenizer.decode(res.tokens[0])
    assert 0 < s["trace_ms_total"] < 0.05 * s["wall_s"] * 1e3 + 5


def test_trim_cuts_after_eos_and_at_the_budget():
    from specdec_diag.decoder.speculative import trim

    assert trim([5, 6, 2, 7], 2, 10) == ([5, 6, 2], "eos", True)
    assert trim([5, 6, 2], 2, 10) == ([5, 6, 2], "none", True)  # EOS last: nothing cut
    assert trim([5, 6, 7], None, 2) == ([5, 6], "max_length", False)
    assert trim([5, 2, 7], 2, 1) == ([5], "max_length", True)
