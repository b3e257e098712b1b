"""VERIFIER_MISMATCH: Recorded accept decisions or tokens differ from what the verifier rule implies."""

from __future__ import annotations

import math
from typing import Any

from specdec_diag.analysis.rules.base import Context, Finding, Rule

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
    problems = ("P10", "decoder_anchors §5.6", "decoder_anchors §1.1")

    def check(self, ctx: Context) -> list[Finding]:
        out = []
        th = ctx.thresholds
        for src, steps in ctx.step_groups():
            rule = steps["rule_name"][0]
            lenience = _lenience(ctx.headers.get(src, {}))
            ev: dict[str, Any] = {"rule": rule}
            bad: list[tuple[str, int]] = []
            g_flag = g_tok = s_flag = 0
            g_checked = s_checked = 0
            weights: list[float] = []
            implied = recorded = var_mpq = 0.0
            n_mpq = 0
            for r in steps.iter_rows(named=True):
                p, q = r["p"] or [], r["q"] or []
                drafts, flags = r["draft_token_ids"] or [], r["accept_flags"] or []
                argmax = r.get("argmax_p")
                row_bad = False
                if rule == "greedy" and argmax:
                    for i, d in enumerate(drafts):
                        if i < len(argmax) and argmax[i] is not None:
                            g_checked += 1
                            if bool(flags[i]) != (d == argmax[i]):
                                g_flag += 1
                                row_bad = True
                    n, em = r["n_accepted"], r["emitted_token_ids"] or []
                    if len(em) == n + 1 and n < len(argmax) and argmax[n] is not None and em[n] != argmax[n]:
                        g_tok += 1
                        row_bad = True
                elif rule in ("sampling", "lenient") and r.get("uniforms"):
                    u = r["uniforms"]
                    scale = lenience if rule == "lenient" else 1.0
                    for i in range(min(len(flags), len(u), len(p), len(q))):
                        if _bad(p[i]) or _bad(q[i]) or _bad(u[i]):
                            continue
                        lhs, rhs = u[i] * scale * q[i], p[i]
                        if abs(lhs - rhs) <= _TIE * max(abs(lhs), abs(rhs), 1e-30):
                            continue
                        s_checked += 1
                        if bool(flags[i]) != (lhs < rhs):
                            s_flag += 1
                            row_bad = True
                if rule not in (None, "greedy"):
                    mpq = r.get("min_pq") or [None] * len(p)
                    for pi, qi, mi in zip(p, q, mpq, strict=False):
                        if not _bad(pi) and not _bad(qi) and qi > 0:
                            weights.append(min(pi / qi, _CLIP))
                            if not _bad(mi):
                                implied += min(1.0, pi / qi)
                                recorded += mi
                                var_mpq += mi * (1.0 - mi)
                                n_mpq += 1
                if row_bad:
                    bad.append((src, r["line"]))
            problems = []
            if g_flag or g_tok:
                ev.update(greedy_flag_mismatches=g_flag, greedy_token_mismatches=g_tok,
                          greedy_positions_checked=g_checked)
                problems.append(f"{g_flag + g_tok} greedy decisions disagree with the target argmax")
            if s_flag:
                ev.update(sampling_flag_mismatches=s_flag, sampling_positions_checked=s_checked)
                problems.append(f"{s_flag} of {s_checked} accept flags disagree with r < p/q")
            score = (len(bad) / steps.height) if bad else 0.0
            if len(weights) >= th.min_steps:
                m = sum(weights) / len(weights)
                var = sum((w - m) ** 2 for w in weights) / max(len(weights) - 1, 1)
                z = (m - 1.0) / math.sqrt(var / len(weights)) if var > 0 else (math.inf if m > 1 else 0.0)
                if m > 1.0 and z >= th.suspicious_z:
                    ev.update(importance_weight_mean=m, importance_weight_z=z, positions=len(weights))
                    problems.append(f"mean clipped p/q = {m:.2f} > 1 (z = {z:.1f}): q is not the "
                                    "distribution the drafts were sampled from")
                    score = max(score, min(1.0, m - 1.0))
                    if not bad:
                        bad = [(src, ln) for ln in steps["line"].to_list()]
            if n_mpq >= th.min_steps and var_mpq > 0:
                # E_{x~q}[min(1, p(x)/q(x))] = sum_x min(p, q): per position the implied acceptance
                # probability must average to the recorded overlap min_pq
                z2 = (implied - recorded) / math.sqrt(var_mpq)
                if abs(z2) >= th.suspicious_z:
                    ev.update(implied_acceptance=implied / n_mpq, recorded_overlap=recorded / n_mpq,
                              overlap_z=z2, overlap_positions=n_mpq)
                    problems.append(f"acceptance implied by the recorded p/q ({implied / n_mpq:.2f}) differs from "
                                    f"the recorded overlap sum min(p, q) ({recorded / n_mpq:.2f}), z = {z2:.1f}")
                    score = max(score, min(1.0, abs(implied - recorded) / n_mpq))
                    if not bad:
                        bad = [(src, ln) for ln in steps["line"].to_list()]
            if not problems:
                continue
            ev["definitions"] = {
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
            out.append(self.finding(
                ctx, "Verifier inconsistent with its own recorded numbers: " + "; ".join(problems), ev,
                "Compute q from the processed draft logits (same temperature/top-k/top-p as the target), "
                "decide acceptance only by r < min(1, p/q) (argmax match under greedy), and replay the "
                "trace with `specdec-diag replay` against reference models.",
                bad, score=score))
        return out


def _lenience(h: dict[str, Any]) -> float:
    rule = h.get("rule") or {}
    params = rule.get("params") if isinstance(rule, dict) else None
    v = (params or {}).get("lenience", 1.0)
    return float(v) if isinstance(v, (int, float)) else 1.0


def _bad(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))
