"""VERIFIER_MISMATCH: Recorded accept decisions or tokens differ from what the verifier rule implies."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule

# A ratio test r*q < p within this relative distance of equality is a floating-point tie: skipped.
_TIE = 1e-6


# Importance weights p/q are clipped here: E_q[min(p/q, C)] <= 1 still holds, with bounded variance.
_CLIP = 10.0


class VerifierMismatch(Rule):
    """Recorded accept decisions or tokens differ from what the verifier rule implies.

    **What it detects.** Three model-free replays of the recorded numbers:
    (1) greedy traces: an accept flag that disagrees with ``draft == argmax p`` at that position, or a
    verifier token that is not the target's argmax; (2) sampling traces: an accept flag that
    disagrees with ``r < min(1, p/q)`` for the recorded uniform ``r`` (lenient rule:
    ``r < p/(l q)``); (3) two identities of sampled drafts (``x ~ q``): ``E[min(p/q, 10)] <= 1``, and
    ``E[min(1, p(x)/q(x))] = sum_x min(p, q)``, the recorded overlap ``min_pq``. A mean clearly above 1,
    or implied acceptance clearly off the recorded overlap (|z| >= ``suspicious_z``), means the
    recorded ``q`` is not the distribution the drafts were sampled from (raw instead of processed
    draft logits).

    **Why it matters.** The output distribution equals the target's only if the test uses the same
    ``p`` and ``q`` the tokens were drawn from. A wrong ``q`` (transformers #47932 → PR #48007,
    z-lab/dflash #74) inflates acceptance and silently changes sampled outputs; a decision that
    ignores the test is a bypassed verifier.

    **Evidence.** ``greedy_flag_mismatches``, ``greedy_token_mismatches``, ``sampling_flag_mismatches``
    with the positions checked, ``importance_weight_mean`` with its ``z`` score, and
    ``implied_acceptance`` vs ``recorded_overlap`` with ``overlap_z``.

    **Example.** Mean clipped p/q = 1.42 over 1,200 drafted positions (z = 11): q is not the draft's
    sampling distribution.

    **Fix.** Compute ``q`` from the *processed* draft logits (the same temperature/top-k/top-p as the
    target), use the same uniforms for the test and the residual draw, and make the accept decision
    only from ``r < p/q`` (or argmax match under greedy). Replay with ``specdec-diag replay`` to confirm.
    """

    code = "VERIFIER_MISMATCH"
    name = "verifier decisions inconsistent"
    severity = "error"
    thresholds = ("suspicious_z", "min_steps")
    needs = (Need("steps", 1, "steps whose recorded decision differs from the rule (explicit evidence)"),
             Need("positions", "min_steps", "drafted positions in a statistical test"))
    problems = (10,)
    theory = ("5.6", "1.1")

    def check(self, ctx: Context) -> list[Finding]:
        out = []
        th = ctx.thresholds
        for src, steps in ctx.step_groups():
            rule = steps["rule_name"][0]
            tally = _replay(steps, rule, _lenience(ctx.headers.get(src, {})))
            ev: dict[str, Any] = {"rule": rule}
            bad = [(src, ln) for ln in tally.bad_lines]
            problems = _decision_problems(tally, ev)
            score = (len(bad) / steps.height) if bad else 0.0
            for found, s in (_weight_problem(tally, ev, th.min_steps, th.suspicious_z),
                             _overlap_problem(tally, ev, th.min_steps, th.suspicious_z)):
                if found:
                    problems.append(found)
                    score = max(score, s)
                    if not bad:
                        bad = [(src, ln) for ln in steps["line"].to_list()]
            if not problems:
                continue
            ev["definitions"] = _DEFINITIONS
            out.append(self.finding(
                ctx, "Verifier inconsistent with its own recorded numbers: " + "; ".join(problems), ev,
                "Compute q from the processed draft logits (same temperature/top-k/top-p as the target), "
                "decide acceptance only by r < min(1, p/q) (argmax match under greedy), and replay the "
                "trace with `specdec-diag replay` against reference models.",
                bad, score=score))
        return out


_DEFINITIONS = {
    "greedy_flag_mismatches": "positions where accept flag != (draft == argmax_p)",
    "greedy_token_mismatches": "steps whose verifier token != argmax_p at position n",
    "sampling_flag_mismatches": "positions where accept flag != (r * l * q < p), l = lenience (1)",
    "importance_weight_mean": "mean of min(p/q, 10) over drafted positions; <= 1 when drafts "
                              "are sampled from the recorded q",
    "importance_weight_z": "(mean - 1) / standard error",
    "implied_acceptance": "mean of min(1, p/q) over drafted positions (recorded p, q)",
    "recorded_overlap": "mean of the recorded min_pq = sum_x min(p(x), q(x)) at those positions",
    "overlap_z": "(sum implied - sum recorded) / sqrt(sum min_pq (1 - min_pq)); the two agree in "
                 "expectation when the drafts were sampled from the recorded q"}


@dataclass
class _Tally:
    """What replaying one trace's recorded numbers found, position by position."""

    g_flag: int = 0
    g_tok: int = 0
    g_checked: int = 0
    s_flag: int = 0
    s_checked: int = 0
    weights: list[float] = field(default_factory=list)
    implied: float = 0.0
    recorded: float = 0.0
    var_mpq: float = 0.0
    n_mpq: int = 0
    bad_lines: list[int] = field(default_factory=list)


def _replay(steps: pl.DataFrame, rule: str | None, lenience: float) -> _Tally:
    """Replay every step's decisions under its rule and collect the p/q statistics."""
    t = _Tally()
    for r in steps.iter_rows(named=True):
        row_bad = False
        if rule == "greedy" and r.get("argmax_p"):
            row_bad = _greedy_row(r, t)
        elif rule in ("sampling", "lenient") and r.get("uniforms"):
            row_bad = _sampling_row(r, lenience if rule == "lenient" else 1.0, t)
        if rule not in (None, "greedy"):
            _weights_row(r, t)
        if row_bad:
            t.bad_lines.append(r["line"])
    return t


def _greedy_row(r: dict[str, Any], t: _Tally) -> bool:
    """Greedy: each flag is ``draft == argmax p``, the verifier token is the argmax at position n."""
    drafts, flags, argmax = r["draft_token_ids"] or [], r["accept_flags"] or [], r["argmax_p"]
    row_bad = False
    for i, d in enumerate(drafts):
        if i < len(argmax) and argmax[i] is not None:
            t.g_checked += 1
            if bool(flags[i]) != (d == argmax[i]):
                t.g_flag += 1
                row_bad = True
    n, em = r["n_accepted"], r["emitted_token_ids"] or []
    if len(em) == n + 1 and n < len(argmax) and argmax[n] is not None and em[n] != argmax[n]:
        t.g_tok += 1
        row_bad = True
    return row_bad


def _sampling_row(r: dict[str, Any], scale: float, t: _Tally) -> bool:
    """Sampling (lenient: ``scale`` = lenience): each flag is ``r * scale * q < p``; ties skipped."""
    p, q, flags, u = r["p"] or [], r["q"] or [], r["accept_flags"] or [], r["uniforms"]
    row_bad = False
    for i in range(min(len(flags), len(u), len(p), len(q))):
        if _bad(p[i]) or _bad(q[i]) or _bad(u[i]):
            continue
        lhs, rhs = u[i] * scale * q[i], p[i]
        if abs(lhs - rhs) <= _TIE * max(abs(lhs), abs(rhs), 1e-30):
            continue
        t.s_checked += 1
        if bool(flags[i]) != (lhs < rhs):
            t.s_flag += 1
            row_bad = True
    return row_bad


def _weights_row(r: dict[str, Any], t: _Tally) -> None:
    """Clipped importance weights p/q and, where ``min_pq`` is recorded, implied vs recorded overlap."""
    p, q = r["p"] or [], r["q"] or []
    mpq = r.get("min_pq") or [None] * len(p)
    for pi, qi, mi in zip(p, q, mpq, strict=False):
        if not _bad(pi) and not _bad(qi) and qi > 0:
            t.weights.append(min(pi / qi, _CLIP))
            if not _bad(mi):
                t.implied += min(1.0, pi / qi)
                t.recorded += mi
                t.var_mpq += mi * (1.0 - mi)
                t.n_mpq += 1


def _decision_problems(t: _Tally, ev: dict[str, Any]) -> list[str]:
    """Accept decisions or verifier tokens that disagree with the rule (evidence added to ``ev``)."""
    problems = []
    if t.g_flag or t.g_tok:
        ev.update(greedy_flag_mismatches=t.g_flag, greedy_token_mismatches=t.g_tok,
                  greedy_positions_checked=t.g_checked)
        problems.append(f"{t.g_flag + t.g_tok} greedy decisions disagree with the target argmax")
    if t.s_flag:
        ev.update(sampling_flag_mismatches=t.s_flag, sampling_positions_checked=t.s_checked)
        problems.append(f"{t.s_flag} of {t.s_checked} accept flags disagree with r < p/q")
    return problems


def _weight_problem(t: _Tally, ev: dict[str, Any], min_steps: int, z_min: float) -> tuple[str | None, float]:
    """``E_q[min(p/q, 10)] <= 1`` when the drafts were sampled from q: a mean clearly above 1 is not."""
    if len(t.weights) < min_steps:
        return None, 0.0
    w = t.weights
    m = sum(w) / len(w)
    var = sum((x - m) ** 2 for x in w) / max(len(w) - 1, 1)
    z = (m - 1.0) / math.sqrt(var / len(w)) if var > 0 else (math.inf if m > 1 else 0.0)
    if not (m > 1.0 and z >= z_min):
        return None, 0.0
    ev.update(importance_weight_mean=m, importance_weight_z=z, positions=len(w))
    return (f"mean clipped p/q = {m:.2f} > 1 (z = {z:.1f}): q is not the distribution the drafts were "
            "sampled from"), min(1.0, m - 1.0)


def _overlap_problem(t: _Tally, ev: dict[str, Any], min_steps: int, z_min: float) -> tuple[str | None, float]:
    """E_{x~q}[min(1, p(x)/q(x))] = sum_x min(p, q): per position the implied acceptance probability
    must average to the recorded overlap min_pq."""
    if t.n_mpq < min_steps or t.var_mpq <= 0:
        return None, 0.0
    z2 = (t.implied - t.recorded) / math.sqrt(t.var_mpq)
    if not abs(z2) >= z_min:
        return None, 0.0
    n = t.n_mpq
    ev.update(implied_acceptance=t.implied / n, recorded_overlap=t.recorded / n, overlap_z=z2, overlap_positions=n)
    return (f"acceptance implied by the recorded p/q ({t.implied / n:.2f}) differs from the recorded overlap "
            f"sum min(p, q) ({t.recorded / n:.2f}), z = {z2:.1f}"), min(1.0, abs(t.implied - t.recorded) / n)


def _lenience(h: dict[str, Any]) -> float:
    rule = h.get("rule") or {}
    params = rule.get("params") if isinstance(rule, dict) else None
    v = (params or {}).get("lenience", 1.0)
    return float(v) if isinstance(v, (int, float)) else 1.0


def _bad(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))
