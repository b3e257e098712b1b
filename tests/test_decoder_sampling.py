"""Speculative sampling must be distribution-exact: the emitted tokens follow the target's processed
distribution, computed here directly from the target model. The same test must catch a wrong q
(the raw-draft-probs fault), so it can fail. Seeds are fixed: the outcome is deterministic."""

from __future__ import annotations

import math

import pytest
from conftest import VOCAB

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # 2 shared cores: threads only contend

from specdec_diag.decoder.faults import Fault  # noqa: E402
from specdec_diag.decoder.speculative import DecodeConfig, generate  # noqa: E402
from specdec_diag.decoder.verification import (  # noqa: E402
    AcceptanceRule,
    SamplingConfig,
    plain_probs,
    process_logits,
    residual,
    sample_from,
    verify,
)

SC = SamplingConfig(temperature=0.6, top_k=8)


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int]:
    """Pearson chi-square of counts vs expected, pooling cells with expected < 5. A count in a
    zero-probability cell is an outright failure (returns inf)."""
    n = counts.sum().item()
    exp = probs.double() * n
    if (counts[exp == 0] > 0).any():
        return math.inf, 1
    big = exp >= 5
    c = torch.cat([counts[big].double(), counts[~big].double().sum().view(1)])
    e = torch.cat([exp[big], exp[~big].sum().view(1)])
    keep = e > 0
    stat = (((c - e) ** 2)[keep] / e[keep]).sum().item()
    return stat, int(keep.sum().item()) - 1


def passes(counts: torch.Tensor, probs: torch.Tensor) -> bool:
    """Accept H0 unless chi2 > df + 5*sqrt(2 df) (a ~1e-5 false-alarm level for these df)."""
    stat, df = chi_square(counts, probs)
    return stat <= df + 5 * math.sqrt(2 * df)


def test_chi_square_helper_rejects_and_accepts():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(20, generator=g), -1)
    good = torch.bincount(torch.multinomial(p, 4000, replacement=True, generator=g), minlength=20)
    q = torch.softmax(torch.randn(20, generator=g), -1)
    bad = torch.bincount(torch.multinomial(q, 4000, replacement=True, generator=g), minlength=20)
    assert passes(good, p) and not passes(bad, p)


def test_process_logits_matches_manual_top_k_top_p():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.5, -1.0]])
    pr = process_logits(logits, SamplingConfig(temperature=0.5, top_k=2))
    manual = torch.zeros(5)
    manual[[0, 2]] = torch.softmax(torch.tensor([6.0, 4.0]), -1)
    assert torch.allclose(pr[0], manual)
    # top-p 0.8 on softmax([3,2,1,...]) keeps the tokens until the mass before them reaches 0.8
    base = torch.softmax(logits[0], -1)
    order = base.argsort(descending=True)
    mass_before = base[order].cumsum(0) - base[order]
    kept = order[mass_before < 0.8]
    pr = process_logits(logits, SamplingConfig(top_p=0.8))[0]
    assert set(torch.nonzero(pr).flatten().tolist()) == set(kept.tolist())
    assert torch.allclose(pr[kept], base[kept] / base[kept].sum())


def test_sample_from_inverse_cdf():
    probs = torch.tensor([[0.2, 0.0, 0.5, 0.3]])
    picks = [int(sample_from(probs, torch.tensor([u]))[0]) for u in (0.0, 0.19, 0.21, 0.69, 0.71, 0.999999)]
    assert picks == [0, 0, 2, 2, 3, 3]
    assert int(sample_from(torch.full((1, 4), float("nan")), torch.tensor([0.5]))[0]) == 0


def _one_step_first_tokens(q_for_verifier: str, n_samples: int = 3000) -> tuple[torch.Tensor, torch.Tensor]:
    """Run verify() on a fixed (p, q) pair n times; return the emitted-first-token histogram and p."""
    g = torch.Generator().manual_seed(11)
    v = 24
    p_logits = torch.randn(2, v, generator=g) * 2
    q_logits = p_logits[:1] + torch.randn(1, v, generator=g) * 1.5
    q = process_logits(q_logits, SC)
    q_used = q if q_for_verifier == "processed" else plain_probs(q_logits)
    p = process_logits(p_logits, SC)[0]
    counts = torch.zeros(v, dtype=torch.long)
    drafts = torch.multinomial(q[0], n_samples, replacement=True, generator=g)
    us = torch.rand(n_samples, 2, generator=g)
    rule = AcceptanceRule("sampling")
    for i in range(n_samples):
        d = drafts[i : i + 1]
        res = verify(p_logits, d, q_used, us[i], rule, SC)
        counts[d[0] if res.n == 1 else res.token] += 1
    return counts, p


def test_verify_is_distribution_exact_and_catches_wrong_q():
    counts, p = _one_step_first_tokens("processed")
    assert passes(counts, p)
    bad_counts, p = _one_step_first_tokens("raw")
    assert not passes(bad_counts, p)


def test_residual_identity():
    # P(emit x) = min(p, q)(x) + (1 - sum min(p, q)) * residual(x) == p(x) for any q (Leviathan A.1)
    g = torch.Generator().manual_seed(5)
    p = torch.softmax(torch.randn(50, generator=g), -1)
    q = torch.softmax(torch.randn(50, generator=g) * 3, -1)
    m = torch.minimum(p, q)
    assert torch.allclose(m + (1 - m.sum()) * residual(p, q), p, atol=1e-6)


def exact_target_marginals(pair, prompt: list[int], sc: SamplingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """First-token distribution and second-token marginal sum_x1 p(x1) p(x2 | x1), straight from the
    target with full forwards (no cache, no decoder code beyond the shared processors)."""
    with torch.inference_mode():
        ids = torch.tensor([prompt])
        p1 = process_logits(pair.target(input_ids=ids).logits[0, -1:], sc)[0]
        ext = torch.cat([ids.repeat(VOCAB, 1), torch.arange(VOCAB).view(-1, 1)], dim=1)
        p2_given = process_logits(pair.target(input_ids=ext).logits[:, -1], sc)
        return p1, (p1.view(-1, 1) * p2_given).sum(0)


@pytest.mark.parametrize("fault,expect_exact", [(None, True), ("raw-draft-probs", False)])
def test_generate_sampling_matches_target_distribution(tiny_pair, fault, expect_exact, invariants):
    prompt = tiny_pair.tokenizer("w3 w17 w40")["input_ids"]
    n = 300  # healthy chi2 <= ~12 at df 7-11; the fault gives 34-95 (threshold ~26-35)
    cfg = DecodeConfig(gamma=3, rule=AcceptanceRule("sampling"), sampling=SC, max_new_tokens=3, seed=1234,
                       stop_at_eos=False, fault=Fault(fault))
    res = generate(tiny_pair, [prompt] * n, cfg)
    assert invariants(res.records) == []
    first = torch.bincount(torch.tensor([t[0] for t in res.tokens]), minlength=VOCAB)
    second = torch.bincount(torch.tensor([t[1] for t in res.tokens]), minlength=VOCAB)
    p1, p2 = exact_target_marginals(tiny_pair, prompt, SC)
    ok = passes(first, p1) and passes(second, p2)
    assert ok == expect_exact
    kinds = {s["last_token_kind"] for s in res.steps if s["gamma_drafted"] > 0}
    assert kinds == {"bonus", "correction"}


def test_uniforms_make_verify_replayable(tiny_pair):
    """Re-running verify() with the recorded uniforms and recomputed logits reproduces each step."""
    from transformers import DynamicCache

    cfg = DecodeConfig(gamma=3, rule=AcceptanceRule("sampling"), sampling=SC, max_new_tokens=10, seed=3)
    res = generate(tiny_pair, ["w5 w6 w7"], cfg)
    seq = res.header["prompt_token_ids"][0]
    for s in res.steps:
        L, g = s["context_len"], s["gamma_drafted"]
        drafts = torch.tensor(s["draft_token_ids"], dtype=torch.long)
        with torch.inference_mode():
            full = torch.tensor([seq[:L] + s["draft_token_ids"]])
            p_logits = tiny_pair.target(input_ids=full, cache=DynamicCache()).logits[0, L - 1 :]
            q_logits = tiny_pair.draft(input_ids=full).logits[0, L - 1 : L - 1 + g]
            v = verify(p_logits, drafts, process_logits(q_logits, SC), torch.tensor(s["uniforms"]), cfg.rule, SC)
        assert v.accept_flags.tolist() == s["accept_flags"] and v.n == s["n_accepted"]
        assert (s["draft_token_ids"][: v.n] + [v.token])[: len(s["emitted_token_ids"])] == s["emitted_token_ids"]
        seq = seq[:L] + s["emitted_token_ids"]


def test_lossy_rules_are_labelled_and_accept_more(tiny_pair):
    sc = SamplingConfig(temperature=1.0)
    prompts = ["w1 w2", "w9 w8 w7", "w30"] * 3
    base = generate(tiny_pair, prompts, DecodeConfig(gamma=4, rule=AcceptanceRule("sampling"), sampling=sc,
                                                     max_new_tokens=12, seed=2))
    len_ = generate(tiny_pair, prompts, DecodeConfig(gamma=4, rule=AcceptanceRule("lenient", {"lenience": 0.2}),
                                                     sampling=sc, max_new_tokens=12, seed=2))
    typ = generate(tiny_pair, prompts, DecodeConfig(gamma=4, rule=AcceptanceRule("typical"), sampling=sc,
                                                    max_new_tokens=12, seed=2))
    assert base.header["rule"]["lossy"] is False
    assert len_.header["rule"]["lossy"] is True and typ.header["rule"]["lossy"] is True
    assert len_.header["rule"]["params"] == {"lenience": 0.2}
    assert typ.header["rule"]["params"] == {"epsilon": 0.09, "delta": 0.3}
    assert len_.summary["acceptance_rate"] > base.summary["acceptance_rate"]
    # typical accepts iff p(x) > min(eps, delta*exp(-H)) <= eps: so p > eps is always accepted and a
    # rejected draft always has p <= eps (H is not recorded, so this is the checkable half)
    for s in typ.steps:
        for flag, p in zip(s["accept_flags"], s["p"], strict=True):
            assert flag or p <= 0.09


def test_typical_rule_threshold_by_hand():
    # two positions: a confident one (low entropy) and a flat one; eps=0.09, delta=0.3
    logits = torch.tensor([[5.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    p = torch.softmax(logits, -1)
    h = -(p * p.log()).sum(-1)
    thr = torch.minimum(torch.tensor(0.09), 0.3 * torch.exp(-h))
    drafts = torch.tensor([1, 2])  # a low-probability token at the confident spot, uniform spot
    q = torch.full((2, 4), 0.25)
    v = verify(logits, drafts, q, torch.zeros(3), AcceptanceRule("typical"), SamplingConfig())
    assert v.accept_flags.tolist() == [bool(p[0, 1] > thr[0]), bool(p[1, 2] > thr[1])] == [False, True]
