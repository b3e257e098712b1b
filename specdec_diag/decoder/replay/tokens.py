"""Token checks: the verifier's token at the reference n, then the step's emitted tokens.

The verifier's token is chosen by decode's own functions (:func:`verification.verifier_distribution`,
:func:`verification.verifier_token`). Without the recorded uniforms a sampled token cannot be drawn
again; it is then only checked to lie in the support of the distribution it must come from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specdec_diag.decoder import verification as vf
from specdec_diag.decoder.replay.reference import Forward, Reference
from specdec_diag.decoder.replay.structure import RecordedStep


@dataclass
class TokenCheck:
    """The reference verifier token (None: not re-drawable) and the recorded token's probability."""

    token: int | None
    prob: float | None = None
    near_tie: bool = False


def verifier_check(ref: Reference, s: RecordedStep, f: Forward, n_ref: int) -> TokenCheck:
    """Re-choose the verifier's token at position ``n_ref`` and compare it with the recorded one."""
    rule, pos = ref.rule, n_ref
    rec_tok = s.emitted[pos] if pos < len(s.emitted) else None
    bonus = pos == s.g
    if not rule.stochastic:
        tok = vf.verifier_token(vf.verifier_distribution(f.p[pos], None, rule, bonus), rule, None)
        out = TokenCheck(tok, float(f.p[pos, rec_tok]) if rec_tok is not None else None)
        if rec_tok is not None and rec_tok != tok and float(f.logits[pos].max() - f.logits[pos, rec_tok]) < ref.logit_tol:
            out.token, out.near_tie = rec_tok, True
        return out
    residual = vf.needs_residual(rule, bonus)
    if residual and f.q_full is None:
        return _support_only(ref, s, f, pos, rec_tok)  # the residual needs the draft's full q
    dist = vf.verifier_distribution(f.p[pos], f.q_full[pos] if residual else None, rule, bonus)
    norm = dist / dist.sum().clamp(min=1e-30)
    out = TokenCheck(None)
    u = ref.uniforms(s)
    if u is not None:
        ut = torch.tensor([u[s.g]], dtype=dist.dtype, device=dist.device)
        out.token = vf.verifier_token(dist, rule, ut)
        if rec_tok is not None and rec_tok != out.token:
            cdf = norm.cumsum(-1)
            hi = float(cdf[rec_tok])
            lo = hi - float(norm[rec_tok])
            x = float(ut[0]) * float(cdf[-1])
            if float(norm[rec_tok]) > 0 and lo - ref.logit_tol <= x <= hi + ref.logit_tol:
                out.token, out.near_tie = rec_tok, True
    if rec_tok is not None:
        out.prob = float(norm[rec_tok])
        # zero residual mass only counts when p is clearly below q (not rounding)
        clear = not residual or float(f.p[pos, rec_tok]) < float(
            f.q_full[pos, rec_tok]) * (1 - 10 * ref.logit_tol) - 1e-12
        if out.prob <= 0.0 and clear:
            s.add("out_of_support", f"position {pos}: token {rec_tok} has probability 0 under the "
                  f"{'target' if bonus else 'residual'} distribution", pos, rec_tok, None)
    return out


def _support_only(ref: Reference, s: RecordedStep, f: Forward, pos: int, rec_tok: int | None) -> TokenCheck:
    """No draft q to build the residual from: only what cannot come from norm(max(0, p - q))."""
    if rec_tok is None:
        return TokenCheck(None)
    prob = float(f.p[pos, rec_tok])
    # a rejected draft has p < q, so the residual gives it no mass (standard rule only)
    if prob <= 0.0 or (ref.rule.name == "sampling" and rec_tok == s.drafts[pos]):
        s.add("out_of_support", f"position {pos}: correction token {rec_tok} cannot come from "
              "norm(max(0, p - q))", pos, rec_tok, None)
    return TokenCheck(None, prob)


def check_emitted(ref: Reference, s: RecordedStep, n_ref: int, tok: int | None) -> list[int]:
    """The reference's emitted tokens (accepted drafts + ``tok``, trimmed as decode trims) against the
    recorded ones; returns the reference list. ``tok`` None: the recorded verifier token is taken."""
    rec_tok = s.emitted[n_ref] if n_ref < len(s.emitted) else None
    tok = rec_tok if tok is None else tok
    want = s.drafts[:n_ref] + ([tok] if tok is not None else [])
    if ref.eos is not None and ref.eos in want:
        want = want[: want.index(ref.eos) + 1]
    if ref.max_new is not None:
        want = want[: max(ref.max_new - s.generated, 0)]
    for i in range(min(len(s.emitted), len(want))):
        if s.emitted[i] != want[i]:
            s.add("token", f"position {i}: recorded token {s.emitted[i]}, reference {want[i]}", i, s.emitted[i], want[i])
            return want
    if len(s.emitted) > len(want) and not any(d.kind in ("bonus_dropped", "emitted_count") for d in s.divs):
        s.add("token", f"{len(s.emitted)} tokens emitted, reference emits {len(want)}",
              len(want), s.emitted[len(want)], None)
    return want
