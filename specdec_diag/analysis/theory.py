"""Leviathan et al. (2023, arXiv 2211.17192) expectations for speculative decoding.

Pure functions of the i.i.d. acceptance probability alpha (Leviathan's alpha = E[sum_x min(p, q)]),
the draft length gamma and the draft cost ratio c. The analysis compares what the engine achieved with
what these formulas predict, so they live apart from the measurements in :mod:`metrics`.
No numpy/torch: the analysis side must stay light.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "expected_tokens_per_step",
    "expected_accepted_per_step",
    "speedup",
    "ops_factor",
    "optimal_gamma",
    "alpha_from_mal",
    "alpha_from_acceptance_rate",
    "expected_acceptance_rate_vllm",
    "expected_per_position",
    "predicted_speedup_measured",
    "predicted_vs_achieved",
    "verify_cost_roofline",
    "verify_cost_linear",
    "speedup_with_verify_cost",
    "optimal_gamma_with_verify_cost",
]


def _check(alpha: float, gamma: int) -> None:
    if not 0.0 <= alpha <= 1.0 or math.isnan(alpha):
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if gamma < 0 or int(gamma) != gamma:
        raise ValueError(f"gamma must be a non-negative integer, got {gamma}")


def expected_tokens_per_step(alpha: float, gamma: int) -> float:
    """Eq. 1: E[tokens per step] = (1 - alpha^(gamma+1)) / (1 - alpha); gamma + 1 at alpha = 1.

    This is the expected mean acceptance length (bonus token included)."""
    _check(alpha, gamma)
    if alpha >= 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def expected_accepted_per_step(alpha: float, gamma: int) -> float:
    """E[n] = alpha (1 - alpha^gamma) / (1 - alpha): accepted drafts per step, bonus excluded."""
    return expected_tokens_per_step(alpha, gamma) - 1.0


def speedup(alpha: float, gamma: int, c: float, c_v: float = 1.0) -> float:
    """Theorem 3.8: S = (1 - alpha^(gamma+1)) / ((1 - alpha)(gamma c + 1)).

    One step costs gamma draft runs (c each, in target-run units) plus one target run, and yields
    Eq. 1 tokens. Assumes verification of gamma+1 tokens costs one target run (memory-bound)."""
    # c_v: a measured verify cost in target runs (> 1 when compute-bound) replaces that 1
    if c < 0 or math.isnan(c):
        raise ValueError(f"c must be >= 0, got {c}")
    return speedup_with_verify_cost(expected_tokens_per_step(alpha, gamma), gamma, c, c_v)


def ops_factor(alpha: float, gamma: int, c_hat: float) -> float:
    """Theorem 3.11: factor of increase in total arithmetic operations,
    (1 - alpha)(gamma c_hat + gamma + 1) / (1 - alpha^(gamma+1)). Why speculation stops paying
    off once the target is compute-bound (large batches)."""
    return (gamma * c_hat + gamma + 1.0) / expected_tokens_per_step(alpha, gamma)


def optimal_gamma(alpha: float, c: float, max_gamma: int = 63) -> tuple[int, float]:
    """argmax over integer gamma in 1..max_gamma of :func:`speedup` (Leviathan Sec. 3.5), as
    ``(gamma, speedup)``. Ties go to the smaller gamma (cheaper, same speed)."""
    if max_gamma < 1:
        raise ValueError("max_gamma must be >= 1")
    best_g, best_s = 1, speedup(alpha, 1, c)
    for g in range(2, max_gamma + 1):
        s = speedup(alpha, g, c)
        if s > best_s + 1e-12:
            best_g, best_s = g, s
    return best_g, best_s


def _bisect(f, target: float, lo: float = 0.0, hi: float = 1.0, iters: int = 100) -> float:
    """Solve f(x) = target for increasing f on [lo, hi]."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def alpha_from_mal(mal: float, gamma: int) -> float | None:
    """Invert Eq. 1: the alpha whose expected tokens per step at this gamma equals ``mal``
    (bisection; Eq. 1 is increasing in alpha). Clamped to [0, 1]; None for gamma < 1 or a NaN."""
    if mal is None or gamma is None or gamma < 1 or math.isnan(mal):
        return None
    if mal <= 1.0:
        return 0.0
    if mal >= gamma + 1:
        return 1.0
    return _bisect(lambda a: expected_tokens_per_step(a, gamma), mal)


def expected_acceptance_rate_vllm(alpha: float, gamma: int) -> float:
    """vLLM V1 draft acceptance rate (accepted/drafted, prefix counting) under i.i.d. alpha:
    alpha (1 - alpha^gamma) / (gamma (1 - alpha)); 1 at alpha = 1. Not Leviathan's alpha:
    alpha = 0.8, gamma = 5 gives 0.538."""
    _check(alpha, gamma)
    if gamma == 0:
        return 0.0
    return expected_accepted_per_step(alpha, gamma) / gamma


def alpha_from_acceptance_rate(rate: float, gamma: int) -> float | None:
    """Invert :func:`expected_acceptance_rate_vllm` for alpha (bisection); None when undefined."""
    if rate is None or gamma is None or gamma < 1 or math.isnan(rate):
        return None
    if rate <= 0.0:
        return 0.0
    if rate >= 1.0:
        return 1.0
    return _bisect(lambda a: expected_acceptance_rate_vllm(a, gamma), rate)


def expected_per_position(alpha: float, gamma: int) -> list[float]:
    """vLLM per-position acceptance P(n >= j) = alpha^j for j = 1..gamma."""
    _check(alpha, gamma)
    return [alpha**j for j in range(1, gamma + 1)]


def predicted_speedup_measured(
    tokens_per_step: float, t_ar_ms: float, draft_ms: float, verify_ms: float, overhead_ms: float = 0.0
) -> float | None:
    """Speed-up from measured times: tokens_per_step * T_ar / (draft + verify + overhead per step).

    Generalises Theorem 3.8 (which assumes verify = T_ar and draft = gamma c T_ar); with real
    timings it also captures a compute-bound verifier and bookkeeping overhead."""
    step = draft_ms + verify_ms + overhead_ms
    if step <= 0 or t_ar_ms <= 0:
        return None
    return tokens_per_step * t_ar_ms / step


def predicted_vs_achieved(
    alpha: float | None, gamma: int | None, c: float | None, achieved: float | None
) -> dict[str, Any]:
    """Theorem 3.8 prediction next to a measured speed-up, with the gap ``achieved / predicted``.

    ``c`` unknown is taken as 0, so the prediction is then an upper bound (flagged in the result).
    Also reports the optimal gamma for this alpha and a measured c. Fields are None where inputs are missing."""
    out: dict[str, Any] = {
        "alpha": alpha, "gamma": gamma, "c": c, "c_assumed_zero": c is None,
        "predicted": None, "achieved": achieved, "ratio": None,
        "optimal_gamma": None, "optimal_speedup": None,
    }
    if alpha is None or gamma is None or gamma < 1:
        return out
    cc = 0.0 if c is None else c
    out["predicted"] = speedup(alpha, gamma, cc)
    if c is not None:  # with c = 0 a longer draft is always better: no optimum worth reporting
        out["optimal_gamma"], out["optimal_speedup"] = optimal_gamma(alpha, c)
    if achieved is not None and out["predicted"] > 0:
        out["ratio"] = achieved / out["predicted"]
    return out


# ---------------------------------------------------------------------------------------------
# Verification that is not free in gamma (batch > 1)
# ---------------------------------------------------------------------------------------------


def verify_cost_roofline(gamma: int, batch: float, saturation_tokens: float) -> float:
    """Cost of verifying gamma + 1 tokens for each of ``batch`` requests, in plain decode steps (one
    token per request) at the same batch, under a roofline: a forward costs the weight read until it
    carries ``saturation_tokens`` tokens, then grows linearly with them,
    ``max(1, b (gamma + 1) / N) / max(1, b / N)``. At batch 1 and small gamma this is 1 (Leviathan's
    assumption, Thm 3.8); at batch 64 and N = 256, gamma = 4 costs 1.25 steps, gamma = 8 2.25."""
    if gamma < 0 or batch <= 0 or saturation_tokens <= 0:
        raise ValueError("gamma >= 0, batch > 0 and saturation_tokens > 0 required")
    return max(1.0, batch * (gamma + 1) / saturation_tokens) / max(1.0, batch / saturation_tokens)


def verify_cost_linear(gamma: int, intercept_ms: float, slope_ms: float) -> float:
    """Cost of verifying gamma + 1 tokens from a measured fit ``verify_ms = a + b (gamma + 1)``, in
    units of a one-token forward ``a + b`` (clamped at >= 1: more tokens never cost less)."""
    one = intercept_ms + slope_ms
    if one <= 0:
        return 1.0
    return max(1.0, (intercept_ms + slope_ms * (gamma + 1)) / one)


def speedup_with_verify_cost(tokens_per_step: float, gamma: int, c: float, verify_cost: float) -> float:
    """Theorem 3.8 with the verify forward costing ``verify_cost`` target forwards instead of one:
    tokens per step over ``gamma c + verify_cost``."""
    if c < 0 or verify_cost <= 0:
        raise ValueError("c >= 0 and verify_cost > 0 required")
    return tokens_per_step / (gamma * c + verify_cost)


def optimal_gamma_with_verify_cost(alpha: float, c: float, verify_cost: Callable[[int], float],
                                   max_gamma: int = 63) -> tuple[int, float]:
    """:func:`optimal_gamma` with a verify cost that grows with gamma (``verify_cost(gamma)``, e.g.
    :func:`verify_cost_roofline` at the served batch); ties go to the smaller gamma."""
    best_g, best_s = 1, -1.0
    for g in range(1, max_gamma + 1):
        s = speedup_with_verify_cost(expected_tokens_per_step(alpha, g), g, c, verify_cost(g))
        if s > best_s + 1e-12:
            best_g, best_s = g, s
    return best_g, best_s
