"""Verification: the acceptance rules as small pure functions over one step's distributions (gpt-fast style).

Both the decoder (:mod:`speculative`) and replay (:mod:`replay`) call these functions, so the code replay
re-runs is the code decode runs. (The diagnosis side's rules about acceptance live in
``analysis/rules/``; nothing here judges a log.)

Conventions (Leviathan et al. 2023): ``p`` is the target (verifier) distribution, ``q`` the draft's.
Every rule tests all drafted positions in one vectorised pass (``accept_flags``); the accepted count
``n`` is the leading run of true flags; the verifier then adds one token: a *correction* at position
``n`` when a draft was rejected, or a *bonus* from ``p[gamma]`` when all were accepted.

Randomness is explicit: the sampling rules take ``uniforms`` of length ``gamma + 1``. The first
``gamma`` are the acceptance draws ``r_i``; the last one draws the verifier's token by inverse CDF.
Recording them in the trace makes :func:`verify` replayable bit for bit.

``greedy`` and ``sampling`` are lossless (output distribution == target's). ``lenient`` and
``typical`` trade exactness for acceptance and are labelled ``lossy`` wherever they appear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

RULE_NAMES = ("greedy", "sampling", "lenient", "typical")
LOSSY_RULES = frozenset({"lenient", "typical"})


@dataclass(frozen=True)
class SamplingConfig:
    """Logits processors applied identically to target and draft (q must be what the draft sampled
    from). ``top_k=0`` and ``top_p=1`` disable those filters."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}


@dataclass(frozen=True)
class AcceptanceRule:
    """An acceptance rule and its parameters. ``lossy`` is derived from the name, never chosen."""

    name: str = "greedy"
    params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in RULE_NAMES:
            raise ValueError(f"unknown acceptance rule {self.name!r}; choose one of {', '.join(RULE_NAMES)}")
        defaults = {"lenient": {"lenience": 0.5}, "typical": {"epsilon": 0.09, "delta": 0.3}}.get(self.name, {})
        merged = {**defaults, **self.params}
        if self.name == "lenient" and not 0.0 < merged["lenience"] <= 1.0:
            raise ValueError(f"lenience must be in (0, 1], got {merged['lenience']}")
        object.__setattr__(self, "params", merged)

    @property
    def lossy(self) -> bool:
        return self.name in LOSSY_RULES

    @property
    def stochastic(self) -> bool:
        """Whether drafting samples from q and the verifier samples (all but greedy)."""
        return self.name != "greedy"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "lossy": self.lossy, "params": dict(self.params)}


def process_logits(logits: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """Probabilities after temperature, top-k and top-p (rows = positions). This exact function is
    applied to both models so p and q are the same kind of adjusted distribution."""
    logits = logits.float() / max(sampling.temperature, 1e-6)
    vocab = logits.shape[-1]
    if 0 < sampling.top_k < vocab:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, dim=-1, descending=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        # drop a token when the mass strictly before it already reaches top_p (keeps at least one)
        drop_sorted = (cum - torch.softmax(sorted_logits, dim=-1)) >= sampling.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.softmax(logits, dim=-1)


def plain_probs(logits: torch.Tensor) -> torch.Tensor:
    """Softmax at temperature 1: what greedy traces record as p and q (the decision uses argmax)."""
    return torch.softmax(logits.float(), dim=-1)


def sample_from(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw from each row of ``probs`` with uniforms ``u`` (one per row). A row that is
    not a distribution (NaN, all zero) yields its argmax, which is token 0 for all-NaN rows, as
    engines' samplers do."""
    cdf = probs.cumsum(-1)
    total = cdf[..., -1:]
    idx = torch.searchsorted(cdf, (u.unsqueeze(-1) * total).clamp(max=total * (1 - 1e-7)), right=True)
    idx = idx.squeeze(-1).clamp(max=probs.shape[-1] - 1)
    bad = ~(torch.isfinite(total.squeeze(-1)) & (total.squeeze(-1) > 0))
    return torch.where(bad, probs.argmax(-1), idx)


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)); falls back to p where p == q leaves no residual mass."""
    r = (p - q).clamp(min=0)
    s = r.sum(-1, keepdim=True)
    return torch.where(s > 0, r / s.clamp(min=1e-30), p)


def leading_run(flags: torch.Tensor) -> torch.Tensor:
    """Number of leading true values (the accepted prefix length) as a 0-d tensor."""
    return flags.to(torch.int64).cumprod(0).sum()


# ---- per-rule acceptance tests: each returns accept flags for all drafted positions at once ----


def greedy_flags(p: torch.Tensor, draft: torch.Tensor) -> torch.Tensor:
    """Exact argmax match: lossless (output == target greedy)."""
    return p[: draft.shape[0]].argmax(-1) == draft


def ratio_sides(p_tok: torch.Tensor, q_tok: torch.Tensor, r: torch.Tensor,
                scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The two sides of the ratio test r < min(1, p/(scale*q)), written without division as
    (r*scale*q, p): accept iff left < right. Replay measures near-ties on these same sides."""
    return r * scale * q_tok, p_tok


def sampling_flags(p_tok: torch.Tensor, q_tok: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Accept x_i iff r_i < min(1, p(x_i)/q(x_i)), written as r*q < p (no division). Lossless."""
    lhs, rhs = ratio_sides(p_tok, q_tok, r)
    return lhs < rhs


def lenient_flags(p_tok: torch.Tensor, q_tok: torch.Tensor, r: torch.Tensor, lenience: float) -> torch.Tensor:
    """LOSSY (Leviathan App. A.5): accept iff r < min(1, p/(l*q)); no token exceeds p/l."""
    lhs, rhs = ratio_sides(p_tok, q_tok, r, lenience)
    return lhs < rhs


def typical_flags(p: torch.Tensor, p_tok: torch.Tensor, epsilon: float, delta: float) -> torch.Tensor:
    """LOSSY (Medusa typical acceptance): accept iff p(x) > min(epsilon, delta * exp(-H(p)))."""
    logp = torch.log(p.clamp(min=1e-30))
    entropy = -(p * logp).sum(-1)
    return p_tok > torch.minimum(torch.full_like(entropy, epsilon), delta * torch.exp(-entropy))




def ratio_scale(rule: AcceptanceRule) -> float:
    """The l of the ratio test: the lenience for ``lenient``, 1 for exact ``sampling``."""
    return float(rule.params["lenience"]) if rule.name == "lenient" else 1.0


def acceptance_probability(p_tok: torch.Tensor, q_tok: torch.Tensor, rule: AcceptanceRule) -> torch.Tensor:
    """P(accept) of each draft under a ratio rule, min(1, p/(l*q)): what the accept count of a
    trace without uniforms should add up to."""
    return (p_tok / (ratio_scale(rule) * q_tok)).clamp(max=1.0)


def target_probs(target_logits: torch.Tensor, rule: AcceptanceRule, sampling: SamplingConfig) -> torch.Tensor:
    """The p a rule compares against: plain softmax for greedy, processed otherwise."""
    return plain_probs(target_logits) if rule.name == "greedy" else process_logits(target_logits, sampling)


def draft_probs(draft_logits: torch.Tensor, rule: AcceptanceRule, sampling: SamplingConfig) -> torch.Tensor:
    """The q a draft token comes from: plain softmax for greedy (argmax), processed otherwise."""
    return process_logits(draft_logits, sampling) if rule.stochastic else plain_probs(draft_logits)


def accept_flags(p: torch.Tensor, draft_tokens: torch.Tensor, p_tok: torch.Tensor, q_tok: torch.Tensor,
                 r: torch.Tensor | None, rule: AcceptanceRule) -> torch.Tensor:
    """The acceptance test of ``rule`` at every drafted position in one pass. ``r`` are the
    acceptance uniforms (unused by greedy and typical)."""
    if rule.name == "greedy":
        return greedy_flags(p, draft_tokens)
    if rule.name == "typical":
        return typical_flags(p[: draft_tokens.shape[0]], p_tok, rule.params["epsilon"], rule.params["delta"])
    if rule.name == "lenient":
        return lenient_flags(p_tok, q_tok, r, rule.params["lenience"])
    return sampling_flags(p_tok, q_tok, r)


def needs_residual(rule: AcceptanceRule, bonus: bool) -> bool:
    """Whether the verifier's token comes from norm(max(0, p - q)): after a rejection by a ratio rule
    (sampling, lenient). The bonus comes from p; Medusa's (typical) token always from the base head p;
    greedy takes the argmax of p."""
    return rule.stochastic and not bonus and rule.name != "typical"


def verifier_distribution(p_n: torch.Tensor, q_n: torch.Tensor | None, rule: AcceptanceRule,
                          bonus: bool) -> torch.Tensor:
    """The distribution the verifier's token at position n is chosen from (see :func:`needs_residual`)."""
    return residual(p_n, q_n) if needs_residual(rule, bonus) else p_n


def verifier_token(dist: torch.Tensor, rule: AcceptanceRule, u: torch.Tensor | None) -> int:
    """The verifier's token: argmax for greedy, else an inverse-CDF draw with the last uniform ``u`` [1]."""
    if not rule.stochastic:
        return int(dist.argmax())
    return int(sample_from(dist.unsqueeze(0), u)[0])


AcceptTest = Callable[..., torch.Tensor]


@dataclass
class Verdict:
    """Outcome of one verification (tensors stay on the model's device until the trace asks)."""

    accept_flags: torch.Tensor  # [gamma] bool
    n: int
    token: int
    kind: str  # correction | bonus
    p_tok: torch.Tensor  # [gamma] target prob of each draft
    q_tok: torch.Tensor  # [gamma] draft prob of each draft
    p: torch.Tensor  # [gamma+1, V] processed target distributions


def verify(target_logits: torch.Tensor, draft_tokens: torch.Tensor, q: torch.Tensor,
           uniforms: torch.Tensor | None, rule: AcceptanceRule, sampling: SamplingConfig,
           *, accept: AcceptTest = accept_flags) -> Verdict:
    """Decide one step. ``target_logits`` [gamma+1, V] raw verifier logits for the window (last
    token + drafts); ``draft_tokens`` [gamma]; ``q`` [gamma, V] the distributions the drafts were
    sampled from; ``uniforms`` [gamma+1] (ignored by greedy). ``accept`` is the acceptance test (a
    fault may wrap it). Returns flags, n, the verifier token and whether it is a correction or the bonus."""
    gamma = int(draft_tokens.shape[0])
    p = target_probs(target_logits, rule, sampling)
    ar = torch.arange(gamma, device=p.device)
    p_tok = p[ar, draft_tokens]
    q_tok = q[ar, draft_tokens] if gamma else p_tok
    if rule.stochastic and (uniforms is None or uniforms.shape[0] < gamma + 1):
        raise ValueError(f"rule {rule.name!r} needs gamma+1 = {gamma + 1} uniforms")
    u = uniforms.to(p.dtype) if rule.stochastic else None
    flags = accept(p, draft_tokens, p_tok, q_tok, u[:gamma] if u is not None else None, rule)
    n = int(leading_run(flags))
    bonus = n == gamma
    dist = verifier_distribution(p[n], None if bonus else q[n], rule, bonus)
    token = verifier_token(dist, rule, u[gamma : gamma + 1] if u is not None else None)
    return Verdict(flags, n, token, "bonus" if bonus else "correction", p_tok, q_tok, p)
