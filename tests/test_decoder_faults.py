"""Each injected fault must leave the trace looking like the production bug it imitates, and no
step field may name the fault (only the header does)."""

from __future__ import annotations

import json

import pytest
from conftest import random_prompts

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from specdec_diag.decoder.faults import FAULTS, Fault  # noqa: E402
from specdec_diag.decoder.speculative import DecodeConfig, generate  # noqa: E402
from specdec_diag.decoder.verification import AcceptanceRule  # noqa: E402
from specdec_diag.schema import STEP_FIELDS, validate_step  # noqa: E402

PROMPTS = random_prompts(4, seed=9, min_len=3)
MAX_NEW = 20


@pytest.fixture(scope="module")
def healthy(tiny_pair):
    return generate(tiny_pair, PROMPTS, DecodeConfig(gamma=4, max_new_tokens=MAX_NEW, stop_at_eos=False))


def run(pair, fault, prompts=PROMPTS, **kw):
    cfg = DecodeConfig(gamma=kw.pop("gamma", 4), max_new_tokens=kw.pop("max_new", MAX_NEW), stop_at_eos=False,
                       fault=Fault(fault, kw.pop("params", {})), **kw)
    return generate(pair, prompts, cfg)


def test_fault_named_only_in_header(tiny_pair, tmp_path):
    path = tmp_path / "t.jsonl"
    generate(tiny_pair, PROMPTS[:1], DecodeConfig(gamma=2, max_new_tokens=6, fault=Fault("drop-bonus")),
             trace=str(path))
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["fault"] == "drop-bonus"
    for line in lines[1:]:
        assert "fault" not in line and "drop" not in line
        rec = json.loads(line)
        if rec["type"] == "step":
            assert set(rec) - {"type"} <= set(STEP_FIELDS) and validate_step(rec) is None
    assert len(FAULTS) == 8 and all(f.imitates and f.shows_as for f in FAULTS.values())


def test_unknown_fault_rejected():
    with pytest.raises(ValueError, match="unknown fault 'nope'"):
        Fault("nope")


def test_accept_all(tiny_pair, healthy):
    res = run(tiny_pair, "accept-all")
    assert all(s["n_accepted"] == s["gamma_drafted"] and all(s["accept_flags"]) for s in res.steps)
    assert res.summary["acceptance_rate"] == 1.0
    assert res.tokens != healthy.tokens  # fast but wrong
    assert healthy.summary["acceptance_rate"] < 0.9


def test_no_rollback(tiny_pair, healthy, invariants):
    res = run(tiny_pair, "no-rollback")
    over = [s for s in res.steps
            if s["target_cache_after"] > s["context_len"] + len(s["emitted_token_ids"]) - 1]
    assert over, "rejected drafts' KV must stay in the target cache"
    growth = [s["target_cache_after"] - (s["context_len"] + len(s["emitted_token_ids"]) - 1) for s in res.steps
              if s["request"] == 0]
    assert growth == sorted(growth) and growth[-1] > growth[0]  # the phantom entries accumulate
    assert res.tokens != healthy.tokens
    assert any("target cache" in v for v in invariants(res.records))


def test_sequential_verify(tiny_pair, healthy):
    res = run(tiny_pair, "sequential-verify")
    for s in res.steps:
        assert s["target_forwards"] == s["gamma_drafted"] + 1
    assert res.tokens == healthy.tokens  # correct, just slow
    g8 = run(tiny_pair, "sequential-verify", gamma=8)
    assert max(s["target_forwards"] for s in g8.steps) == 9

    def median_verify(r):
        xs = sorted(s["verify_ms"] for s in r.steps if s["gamma_drafted"] >= 4)
        return xs[len(xs) // 2]

    # 9 forwards vs 1: medians resist the stalls of a loaded CI machine
    assert median_verify(g8) > 2 * median_verify(healthy)


def test_drop_bonus(tiny_pair, healthy):
    res = run(tiny_pair, "drop-bonus")
    full = [s for s in res.steps if s["n_accepted"] == s["gamma_drafted"] > 0]
    assert full, "some steps must accept everything"
    assert all(len(s["emitted_token_ids"]) == s["gamma_drafted"] for s in full)
    assert all(len(s["emitted_token_ids"]) <= s["gamma_drafted"] for s in res.steps if s["gamma_drafted"])
    hfull = [s for s in healthy.steps if s["n_accepted"] == s["gamma_drafted"] > 0]
    assert all(len(s["emitted_token_ids"]) == s["gamma_drafted"] + 1 for s in hfull)
    # the output itself stays the target's greedy text: only the free token is lost
    assert all(a == b[: len(a)] or b == a[: len(b)] for a, b in zip(res.tokens, healthy.tokens, strict=True))


def test_raw_draft_probs_changes_q_only_under_sampling(tiny_pair, healthy):
    sc = dict(rule=AcceptanceRule("sampling"))
    from specdec_diag.decoder.verification import SamplingConfig

    sc["sampling"] = SamplingConfig(temperature=0.6, top_k=8)
    ok = run(tiny_pair, None, seed=5, **sc)
    bad = run(tiny_pair, "raw-draft-probs", seed=5, **sc)
    q_ok = [q for s in ok.steps for q in s["q"]]
    q_bad = [q for s in bad.steps for q in s["q"]]
    assert sum(q_bad) / len(q_bad) < 0.8 * sum(q_ok) / len(q_ok)  # raw probs are flatter
    assert bad.summary["acceptance_rate"] > ok.summary["acceptance_rate"]  # ratio inflated
    assert run(tiny_pair, "raw-draft-probs").tokens == healthy.tokens  # greedy unaffected


def test_position_shift(tiny_pair, healthy):
    res = run(tiny_pair, "position-shift")
    assert all(s["verify_pos_first"] == s["context_len"] for s in res.steps)
    assert all(s["verify_pos_last"] == s["context_len"] + s["gamma_drafted"] for s in res.steps)
    assert res.tokens != healthy.tokens


@pytest.mark.parametrize("rule", ["greedy", "sampling"])
def test_nan_verifier_pins_acceptance(tiny_pair, rule):
    res = run(tiny_pair, "nan-verifier", PROMPTS[:2], rule=AcceptanceRule(rule), params={"after_step": 3}, max_new=24)
    late = [s for s in res.steps if s["step"] >= 3]
    for s in res.steps:
        if s["step"] < 3:
            assert all(p is not None for p in s["p"])
        else:
            assert all(p is None for p in s["p"])  # NaN written as null
            assert s["argmax_p"] == [0] * (s["gamma_drafted"] + 1)
            assert s["emitted_token_ids"][-1] == 0  # argmax / sampler of NaN -> token 0 ("!!!!")
            assert all(d == 0 for d in s["draft_token_ids"][: s["n_accepted"]])  # only a drafted 0 passes
    if rule == "sampling":
        assert all(s["n_accepted"] == 0 for s in late)  # NaN comparisons are false: MAL exactly 1
    else:
        assert sum(s["n_accepted"] == 0 for s in late) >= 0.9 * len(late)
    both = run(tiny_pair, "nan-verifier", PROMPTS[:2], rule=AcceptanceRule(rule), params={"after_step": 3, "draft_too": 1},
               max_new=16)
    late = [s for s in both.steps if s["step"] >= 3 and s["gamma_drafted"]]
    want = (lambda s: s["n_accepted"] == s["gamma_drafted"]) if rule == "greedy" else (lambda s: s["n_accepted"] == 0)
    assert late and all(want(s) for s in late)  # greedy: MAL pinned at gamma+1


def test_slow_draft(tiny_pair, healthy):
    res = run(tiny_pair, "slow-draft", params={"factor": 4})

    def per_token(r):
        steps = [s for s in r.steps if s["gamma_drafted"]]
        return sum(s["draft_ms"] for s in steps) / sum(s["gamma_drafted"] for s in steps)

    assert per_token(res) > 2 * per_token(healthy)
    assert res.tokens == healthy.tokens and res.summary["acceptance_rate"] == healthy.summary["acceptance_rate"]


def test_faults_are_hooks_not_branches():
    """Each fault is one Hooks subclass overriding the hook where its bug lives; the step never
    asks which fault is active."""
    import inspect

    from specdec_diag.decoder import faults, speculative

    src = inspect.getsource(speculative)
    assert ".is_(" not in src and "fault.name" not in src and "nan_at" not in src
    hooks = {m for m in vars(faults.Hooks) if not m.startswith("_")} - {"spec"}
    for name in FAULTS:
        cls = type(Fault(name).hooks())
        own = {m for m in vars(cls) if not m.startswith("_")} - {"spec"}
        assert cls.spec.name == name and own and own <= hooks, (name, own)
    assert type(Fault().hooks()) is faults.Hooks
