"""Production replay: re-score what a serving engine emitted (a ``specdec-requests@1`` capture)
under the reference target, to catch "fast but wrong" engines.

Speculative decoding is lossless: a greedy request must emit, at every position, the target's argmax
given the tokens before it; a sampled request's tokens must be draws from the target's distribution.
So one teacher-forced target forward over prompt + output per request is enough (docs/theory.md §1):

* greedy requests: the first position whose emitted token is not the target's argmax is the first
  divergence (position, context, both tokens and their target probabilities); a flip within
  ``tie_logp`` of the top is a near-tie (numerics), reported but not a divergence;
* sampled requests: the emitted tokens' log-likelihood under the target at the request's
  temperature, against its expectation and variance given the same contexts (a sum of per-step
  entropies and variances, a martingale CLT), as a z-score per request and pooled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from specdec_diag.capture.format import RequestsFile

REPLAY_SCHEMA = "specdec-diag/production-replay@1"
#: a greedy flip whose log-prob gap to the argmax is below this is a near-tie (f32 rounding), not a bug
TIE_LOGP = 1e-3
#: emitted tokens below this target probability at the request's temperature are out of support
TINY_P = 1e-6


def load_target(target: str | Path | None = None, device: str = "cpu", dtype: str = "float32") -> tuple[Any, Any]:
    """The target model and tokenizer (default: the bundled pair's target)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from specdec_diag.decoder.models import ModelLoadError, _check_dir, _torch_dtype, default_pair_dirs

    path = Path(target) if target is not None else default_pair_dirs()[0]
    _check_dir(path, "target")
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=_torch_dtype(dtype))
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; report in one line
        raise ModelLoadError(f"{path}: cannot load target: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval(), tok


@torch.no_grad()
def target_logprobs(model: Any, prompt: list[int], output: list[int], temperature: float,
                    device: str = "cpu") -> torch.Tensor:
    """log p_T(. | prompt + output[:j]) for j = 0..len(output)-1, shape (len(output), vocab), float64."""
    ids = torch.tensor([prompt + output], device=device)
    logits = model(ids).logits[0, len(prompt) - 1 : len(prompt) + len(output) - 1].double()
    if temperature > 0:
        logits = logits / temperature
    return torch.log_softmax(logits, dim=-1)


def _tok(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False) if tokenizer is not None else ""


def check_greedy(lp: torch.Tensor, prompt: list[int], output: list[int], tokenizer: Any = None,
                 context: int = 8, tie_logp: float = TIE_LOGP) -> dict[str, Any]:
    """Positions where the emitted token is not the target's argmax; the first one in detail."""
    out = torch.tensor(output)
    top = lp.argmax(dim=-1).cpu()
    lp_emitted = lp.gather(1, out.view(-1, 1).to(lp.device)).view(-1).cpu()
    gap = lp.max(dim=-1).values.cpu() - lp_emitted
    differ = (top != out).nonzero().view(-1).tolist()
    real = [j for j in differ if gap[j] > tie_logp]
    ties = [j for j in differ if gap[j] <= tie_logp]
    res: dict[str, Any] = {"mode": "greedy", "positions": len(output), "divergent_positions": real,
                           "near_ties": ties, "first_divergence": None,
                           "verdict": "divergent" if real else "match"}
    if real:
        j = real[0]
        ctx = (prompt + output[:j])[-context:]
        ref = int(top[j])
        res["first_divergence"] = {
            "position": j, "context_ids": ctx, "context_text": _tok(tokenizer, ctx),
            "engine": {"id": output[j], "text": _tok(tokenizer, [output[j]]), "p": math.exp(float(lp_emitted[j]))},
            "reference": {"id": ref, "text": _tok(tokenizer, [ref]), "p": math.exp(float(lp[j, ref]))},
            "logp_gap": float(gap[j]),
        }
    return res


def check_sampled(lp: torch.Tensor, output: list[int], z_crit: float) -> dict[str, Any]:
    """Log-likelihood of the emitted tokens vs its expectation under the target (same contexts)."""
    p = lp.exp()
    plogp = torch.where(p > 0, p * lp, torch.zeros_like(p))
    mean_t = plogp.sum(dim=-1)                                   # E[log p(X_t)] = -H_t
    var_t = (torch.where(p > 0, p * lp * lp, torch.zeros_like(p))).sum(dim=-1) - mean_t**2
    ll_t = lp.gather(1, torch.tensor(output, device=lp.device).view(-1, 1)).view(-1)
    ll, e, v = float(ll_t.sum()), float(mean_t.sum()), float(var_t.clamp_min(0).sum())
    z = (ll - e) / math.sqrt(v) if v > 0 else 0.0
    tiny = (ll_t.exp() < TINY_P).nonzero().view(-1).tolist()
    return {"mode": "sampled", "positions": len(output), "loglik": ll, "loglik_expected": e, "loglik_var": v,
            "z": z, "out_of_support": tiny,
            "verdict": "suspect" if abs(z) > z_crit or tiny else "consistent"}


def _request(rec: dict[str, Any], model: Any, tok: Any, device: str, z_crit: float, tie_logp: float) -> dict[str, Any]:
    base = {"index": rec.get("index"), "id": rec.get("id")}
    prompt, output = rec.get("prompt_token_ids"), rec.get("output_token_ids")
    if rec.get("status") != "ok":
        return {**base, "verdict": "skipped", "reason": f"request failed: {rec.get('error')}"}
    if not prompt or not output:
        return {**base, "verdict": "skipped", "reason": "no prompt/output token ids in the capture"}
    temp = float((rec.get("sampling") or {}).get("temperature") or 0.0)
    vocab = model.get_output_embeddings().weight.shape[0]
    if max(prompt + output) >= vocab:
        return {**base, "verdict": "skipped", "reason": f"token id beyond the target's vocabulary ({vocab})"}
    lp = target_logprobs(model, list(prompt), list(output), temp, device)
    res = check_greedy(lp, list(prompt), list(output), tok, tie_logp=tie_logp) if temp == 0 else \
        check_sampled(lp, list(output), z_crit)
    return {**base, **res}


def replay_requests(rf: RequestsFile, target: str | Path | None = None, *, device: str = "cpu",
                    dtype: str = "float32", z_crit: float = 4.0, tie_logp: float = TIE_LOGP,
                    progress: Callable[[int, int], None] | None = None,
                    loaded: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """Re-score every request of a capture; returns the ``production-replay@1`` result.
    ``loaded``: a (model, tokenizer) already in memory, instead of loading ``target``."""
    model, tok = loaded if loaded is not None else load_target(target, device, dtype)
    results = []
    for i, rec in enumerate(rf.requests, 1):
        results.append(_request(rec, model, tok, device, z_crit, tie_logp))
        if progress:
            progress(i, len(rf.requests))
    return {"schema": REPLAY_SCHEMA, "source": rf.path, "engine": rf.engine,
            "target": str(target) if target else "bundled pair target", "dtype": dtype,
            "requests": results, "totals": totals(results, z_crit)}


def totals(results: list[dict[str, Any]], z_crit: float) -> dict[str, Any]:
    """Counts over requests, the pooled z of sampled ones, and the overall verdict."""
    greedy = [r for r in results if r.get("mode") == "greedy"]
    sampled = [r for r in results if r.get("mode") == "sampled"]
    div = [r for r in greedy if r["verdict"] == "divergent"]
    e = sum(r["loglik_expected"] for r in sampled)
    v = sum(r["loglik_var"] for r in sampled)
    z = (sum(r["loglik"] for r in sampled) - e) / math.sqrt(v) if v > 0 else None
    suspect = [r for r in sampled if r["verdict"] == "suspect"]
    pooled_bad = z is not None and abs(z) > z_crit
    verdict = "divergent" if div else "suspect" if suspect or pooled_bad else "ok"
    return {
        "requests": len(results), "skipped": sum(r["verdict"] == "skipped" for r in results),
        "greedy": len(greedy), "greedy_divergent": len(div),
        "greedy_positions": sum(r["positions"] for r in greedy),
        "divergent_positions": sum(len(r["divergent_positions"]) for r in greedy),
        "near_ties": sum(len(r["near_ties"]) for r in greedy),
        "sampled": len(sampled), "sampled_suspect": len(suspect), "pooled_z": z, "z_crit": z_crit,
        "verdict": verdict,
    }
