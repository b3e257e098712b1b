"""What if gamma were different? Tokens per step and speed-up per gamma from one trace's own steps.

Replay checks a trace; this explains it. Pure Python over the trace's step records (dicts, as
``schema.read_trace`` returns them), built on :mod:`theory` (Eq. 1, Theorem 3.8, the measured-time
speed-up) and :func:`metrics.alpha_mle_counts`. The CLI's ``replay`` prints it next to the replay
verdict; ``scripts/make_sample_logs.py`` records it in the sample manifest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from specdec_diag.analysis import theory
from specdec_diag.analysis.metrics import alpha_mle_counts

Step = dict[str, Any]


@dataclass
class WhatIfRow:
    gamma: int
    tokens_per_step: float
    step_ms: float
    ms_per_token: float
    speedup: float | None
    leviathan_speedup: float | None
    used: bool


@dataclass
class WhatIf:
    """Predicted tokens/step and speed-up per gamma from the trace's own acceptance and timings.

    tokens/step(g) = 1 + sum_{j<=g} prod_{i<=j} beta_i, with beta_i the conditional acceptance at draft
    position i (measured where at least ``min_trials`` steps reached it, else the fitted alpha);
    step time(g) = g * draft_ms_per_token + verify_ms(g) + overhead_ms; speed-up = tokens/step * T_ar /
    step time, T_ar from a baseline trace or, failing that, the verify time of a 1-token window.
    """

    gamma_used: int
    gammas_seen: list[int]
    steps: int
    alpha_mle: float | None
    conditional_rates: list[float | None]
    rate_trials: list[int]
    draft_ms_per_token: float
    verify_ms_intercept: float
    verify_ms_per_token: float
    overhead_ms: float
    c: float | None
    verify_over_ar: float | None  # c_v = mean verify time / T_ar; >> 1 means verification is not free
    t_ar_ms: float
    t_ar_source: str
    measured_tokens_per_step: float
    measured_speedup: float | None
    best_gamma: int | None
    rows: list[WhatIfRow]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def acceptance_steps(steps: Sequence[Step]) -> list[Step]:
    """Speculative steps usable for acceptance statistics (drafted, not trimmed: trimming censors n)."""
    return [s for s in steps if s["gamma_drafted"] > 0 and (s.get("trimmed_by") or "none") == "none"]


def alpha_mle(steps: Sequence[Step]) -> float | None:
    """Censored-geometric MLE over untrimmed speculative steps: sum n / (sum n + #steps with a rejection)."""
    spec = acceptance_steps(steps)
    acc = sum(s["n_accepted"] for s in spec)
    rej = sum(1 for s in spec if s["n_accepted"] < s["gamma_drafted"])
    return alpha_mle_counts(acc, rej)


def conditional_rates(steps: Sequence[Step]) -> tuple[list[float | None], list[int]]:
    """beta_j = P(n >= j | n >= j-1, drafted >= j) for j = 1..max drafted, with the trial counts
    (drafts that reached position j). Unlike per-position rates it is not diluted by shorter drafts."""
    spec = acceptance_steps(steps)
    gmax = max((s["gamma_drafted"] for s in spec), default=0)
    rates: list[float | None] = []
    trials: list[int] = []
    for j in range(1, gmax + 1):
        tried = [s for s in spec if s["gamma_drafted"] >= j and s["n_accepted"] >= j - 1]
        trials.append(len(tried))
        rates.append(sum(s["n_accepted"] >= j for s in tried) / len(tried) if tried else None)
    return rates, trials


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares y = a + b x; b = 0 when x does not vary. A negative slope is noise: clamp to 0."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return my, 0.0
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    if b < 0:
        return my, 0.0
    return my - b * mx, b


def _verify_cost(spec: list[Step], gammas: Counter) -> tuple[float, float, float]:
    """(intercept, ms per drafted token, mean) of verify time. A line is fitted only where gamma really
    varied (>= 3 values with >= 5 steps each, e.g. the heuristic policy); else, and when the fit is
    unphysical, Leviathan's constant verify cost."""
    mean_verify = sum(s["verify_ms"] for s in spec) / len(spec)
    a_v, b_v = mean_verify, 0.0
    if sum(1 for cnt in gammas.values() if cnt >= 5) >= 3:
        a_v, b_v = fit_line([float(s["gamma_drafted"]) for s in spec], [float(s["verify_ms"]) for s in spec])
        if a_v <= 0:
            a_v, b_v = mean_verify, 0.0
    return a_v, b_v, mean_verify


def _t_ar(baseline_steps: Sequence[Step] | None, one_token_ms: float) -> tuple[float, str, bool]:
    """Autoregressive ms per token: from a baseline trace's steps, else the 1-token-window estimate."""
    base = [s for s in (baseline_steps or []) if s["gamma_drafted"] == 0]
    if base:
        t_ar = sum(s["draft_ms"] + s["verify_ms"] + s["overhead_ms"] for s in base) / sum(
            max(len(s["emitted_token_ids"]), 1) for s in base)
        return t_ar, "baseline trace (mean ms per emitted token)", True
    return one_token_ms, "estimated: verify time of a 1-token window + overhead (no baseline trace given)", False


def _tokens_per_step(beta: list[float], g: int) -> float:
    """1 + sum_{j<=g} prod_{i<=j} beta_i (Eq. 1 when every beta is alpha)."""
    surv, tokens = 1.0, 1.0
    for j in range(g):
        surv *= beta[j]
        tokens += surv
    return tokens


def what_if(steps: Sequence[Step], baseline_steps: Sequence[Step] | None = None,
            max_gamma: int | None = None, min_trials: int = 10) -> WhatIf | None:
    """Predict tokens/step and speed-up for gamma = 1 .. max_gamma (default 2 x the gamma used).

    Returns None when the trace has no speculative step (nothing to extrapolate from)."""
    spec = [s for s in steps if s["gamma_drafted"] > 0]
    if not spec:
        return None
    gammas = Counter(s["gamma_drafted"] for s in spec)
    gamma_used = gammas.most_common(1)[0][0]
    max_gamma = max_gamma or max(2 * gamma_used, 2)
    alpha = alpha_mle(steps)
    rates, trials = conditional_rates(steps)
    fallback = alpha if alpha is not None else 0.0
    beta = [float(rates[j]) if j < len(rates) and rates[j] is not None and trials[j] >= min_trials else fallback
            for j in range(max_gamma)]
    t_d = sum(s["draft_ms"] for s in spec) / sum(s["gamma_drafted"] for s in spec)
    a_v, b_v, mean_verify = _verify_cost(spec, gammas)
    t_o = sum(s["overhead_ms"] for s in spec) / len(spec)
    c = t_d / mean_verify if mean_verify > 0 else None
    t_ar, source, measured = _t_ar(baseline_steps, a_v + b_v + t_o)
    rows: list[WhatIfRow] = []
    for g in range(1, max_gamma + 1):
        tokens = _tokens_per_step(beta, g)
        draft_ms, verify_ms = g * t_d, a_v + b_v * g
        step_ms = draft_ms + verify_ms + t_o
        speedup = theory.predicted_speedup_measured(tokens, t_ar, draft_ms, verify_ms, t_o)
        lev = theory.speedup(alpha, g, c) if alpha is not None and c is not None and c >= 0 else None
        rows.append(WhatIfRow(g, tokens, step_ms, step_ms / tokens, speedup, lev, g == gamma_used))
    emitted = sum(len(s["emitted_token_ids"]) for s in spec)
    measured_ms = sum(s["draft_ms"] + s["verify_ms"] + s["overhead_ms"] for s in spec) / emitted
    best = max((r for r in rows if r.speedup is not None), key=lambda r: r.speedup, default=None)
    return WhatIf(
        gamma_used=gamma_used, gammas_seen=sorted(gammas), steps=len(spec), alpha_mle=alpha,
        conditional_rates=rates, rate_trials=trials, draft_ms_per_token=t_d, verify_ms_intercept=a_v,
        verify_ms_per_token=b_v, overhead_ms=t_o, c=c, verify_over_ar=mean_verify / t_ar if t_ar > 0 else None,
        t_ar_ms=t_ar, t_ar_source=source, measured_tokens_per_step=emitted / len(spec),
        measured_speedup=t_ar / measured_ms if measured and measured_ms > 0 else None,
        best_gamma=best.gamma if best else None, rows=rows,
    )
