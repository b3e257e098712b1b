"""Decision and token checks: re-decide a recorded step with the reference models.

The reference target (and draft) run once over ``context + drafts`` with a fresh prefill, so no cache
bug of the traced decoder can leak in. The decision itself is :mod:`specdec_diag.decoder.verification`,
the same functions decode calls: the acceptance test (:func:`~verification.accept_flags`) and the
verifier's token (:func:`~verification.verifier_distribution`, :func:`~verification.verifier_token`).
What is replay's own is the numerical tolerance: a near-tie (two logits, or a uniform and its
boundary, within noise) follows the recorded choice and is counted, never reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from specdec_diag.decoder import verification as vf
from specdec_diag.decoder.replay.result import TOLERANCE
from specdec_diag.decoder.replay.structure import RecordedStep, leading_true


@dataclass
class Forward:
    """The reference distributions of one step's window."""

    logits: torch.Tensor  # [g+1, V] target logits at positions L-1 .. L-1+g
    p: torch.Tensor  # [g+1, V] target distributions as the rule sees them
    dt: torch.Tensor  # [g] drafted tokens
    p_tok: torch.Tensor  # [g]
    q_full: torch.Tensor | None  # [g, V] reference draft distributions (None: draft not re-run)
    q_tok: torch.Tensor  # [g] reference q(token), else the recorded one


class Reference:
    """The reference models, the trace's rule and the run-level accumulators."""

    def __init__(self, header: dict[str, Any], pair: Any, dtype: str, use_draft: bool):
        rule = header.get("rule") or {}
        self.rule = vf.AcceptanceRule(rule.get("name", "greedy"), dict(rule.get("params") or {}))
        s = header.get("sampling") or {}
        self.sampling = vf.SamplingConfig(float(s.get("temperature", 1.0) or 1.0), int(s.get("top_k", 0) or 0),
                                          float(s.get("top_p", 1.0) or 1.0))
        self.pair, self.use_draft = pair, use_draft
        self.logit_tol, self.p_tol = TOLERANCE.get(dtype, TOLERANCE["float32"])
        self.device = next(pair.target.parameters()).device
        self.eos = header.get("eos_token_id", getattr(pair, "eos_token_id", None))
        self.max_new = header.get("max_new_tokens")
        # run-level statistics (sampling without uniforms) and the largest recorded-vs-reference errors
        self.stat_obs = self.stat_exp = self.stat_var = 0.0
        self.stat_trials = self.exact_steps = self.stat_steps = 0
        self.p_err_max = self.q_err_max = 0.0

    def _logits(self, model: Any, ids: list[int], start: int, count: int) -> torch.Tensor:
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            out = model(input_ids=x, use_cache=False)
        return out.logits[0, start : start + count].float()

    def forward(self, s: RecordedStep) -> Forward:
        """Target (and draft) distributions over the step's window, one forward each."""
        g, window = s.g, s.context + s.drafts
        logits = self._logits(self.pair.target, window, s.L - 1, g + 1)
        p = vf.target_probs(logits, self.rule, self.sampling)
        dt = torch.tensor(s.drafts, dtype=torch.long, device=p.device)
        ar = torch.arange(g, device=p.device)
        p_tok = p[ar, dt] if g else p.new_zeros(0)
        q_full = None
        if self.use_draft and g > 0:
            q_full = vf.draft_probs(self._logits(self.pair.draft, window, s.L - 1, g), self.rule, self.sampling)
        if q_full is not None:
            q_tok = q_full[ar, dt]
        else:
            q_tok = torch.tensor([float(x) if x is not None else float("nan") for x in s.rec["q"]],
                                 dtype=p.dtype, device=p.device)
        return Forward(logits, p, dt, p_tok, q_full, q_tok)

    # -- decisions ------------------------------------------------------------------------------

    def check_probs(self, s: RecordedStep, f: Forward) -> None:
        """Recorded p(token) and q(token) against the reference (first mismatch of each)."""
        for i, rp in enumerate(s.rec["p"][: s.g]):
            if rp is None or (isinstance(rp, float) and not math.isfinite(rp)):
                s.add("nan_p", f"recorded p at position {i} is null (NaN verifier logits)", i, None, float(f.p_tok[i]))
                break
            ref = float(f.p_tok[i])
            err = abs(rp - ref)
            self.p_err_max = max(self.p_err_max, err)
            if err > self.p_tol:
                s.add("p_mismatch", f"recorded p(token)={rp:.4g} at position {i}, reference {ref:.4g}", i, rp, ref)
                break
        if f.q_full is None:
            return
        for i, rq in enumerate(s.rec["q"][: s.g]):
            ref = float(f.q_tok[i])
            err = abs(rq - ref) if rq is not None else float("inf")
            self.q_err_max = max(self.q_err_max, err if math.isfinite(err) else 0.0)
            if err > self.p_tol:
                s.add("q_mismatch", f"recorded q(token)={rq if rq is None else round(rq, 6)} at position {i}, "
                      f"reference draft gives {ref:.6g}", i, rq, ref)
                break

    def uniforms(self, s: RecordedStep) -> list[float] | None:
        """The recorded uniforms when all gamma + 1 are there (exact replay of a sampling step)."""
        u = s.rec.get("uniforms")
        ok = isinstance(u, list) and len(u) >= s.g + 1 and all(x is not None for x in u[: s.g + 1])
        return u if ok else None

    def decide(self, s: RecordedStep, f: Forward) -> list[bool | None]:
        """Reference accept flags for every drafted position; None marks a near-tie."""
        rule, g = self.rule, s.g
        if rule.name in ("greedy", "typical"):
            ref = vf.accept_flags(f.p, f.dt, f.p_tok, f.q_tok, None, rule).tolist() if g else []
            self.exact_steps += 1
            if rule.name == "typical":
                return list(ref)
            return [ref[i] if gap >= self.logit_tol else None for i, gap in enumerate(self._greedy_gaps(f, g))]
        u = self.uniforms(s)
        if u is None:  # cannot re-decide without the uniforms; test impossibilities instead
            self.stat_steps += 1
            self._impossibilities(s, f)
            return list(s.flags)
        r = torch.tensor(u[:g], dtype=f.p.dtype, device=f.p.device)
        ref = vf.accept_flags(f.p, f.dt, f.p_tok, f.q_tok, r, rule).tolist()
        lhs, rhs = vf.ratio_sides(f.p_tok, f.q_tok, r, vf.ratio_scale(rule))
        # relative: a logit error of e moves a probability by a factor ~(1 + e)
        close = ((lhs - rhs).abs() <= self.logit_tol * torch.maximum(lhs, rhs) + 1e-12).tolist()
        self.exact_steps += 1
        return [None if close[i] else ref[i] for i in range(g)]

    def _greedy_gaps(self, f: Forward, g: int) -> list[float]:
        """|logit(draft) - best other logit| per position: below the tolerance the argmax is a tie."""
        if not g:
            return []
        lg = f.logits[:g]
        others = lg.scatter(-1, f.dt.unsqueeze(-1), float("-inf")).max(-1).values
        return (lg.gather(-1, f.dt.unsqueeze(-1)).squeeze(-1) - others).abs().tolist()

    def _impossibilities(self, s: RecordedStep, f: Forward) -> None:
        """Without uniforms: decisions that cannot happen, and the accept-count martingale terms."""
        ratio = vf.acceptance_probability(f.p_tok, f.q_tok, self.rule) if s.g else f.p_tok
        tested = min(s.n + 1, s.g) if s.trimmed == "none" else min(s.n, s.g)
        for i in range(tested):
            a = float(ratio[i])
            if not math.isfinite(a):
                continue
            self.stat_obs += 1.0 if s.flags[i] else 0.0
            self.stat_exp += a
            self.stat_var += a * (1 - a)
            self.stat_trials += 1
            p_i, q_i = float(f.p_tok[i]), float(f.q_tok[i])
            if s.flags[i] and p_i <= 0.0:
                s.add("impossible_decision", f"draft at position {i} accepted although the reference "
                      "target gives it p = 0", i, True, False)
            if not s.flags[i] and a >= 1.0 + self.p_tol and p_i > q_i + self.p_tol:
                s.add("impossible_decision", f"draft at position {i} rejected although p >= q "
                      f"(p={p_i:.4g}, q={q_i:.4g})", i, False, True)

    def check_flags(self, s: RecordedStep, ref_flags: list[bool | None]) -> int:
        """First differing flag and the accepted count; the reference n follows the recorded choice at
        near-ties. Returns the reference n."""
        for i, ref in enumerate(ref_flags):
            if ref is not None and bool(s.flags[i]) != bool(ref):
                s.add("accept_flags", f"position {i}: recorded {'accept' if s.flags[i] else 'reject'}, reference "
                      f"{'accept' if ref else 'reject'}", i, bool(s.flags[i]), bool(ref))
                break
        n_ref = leading_true([bool(s.flags[i]) if ref is None else bool(ref) for i, ref in enumerate(ref_flags)])
        if s.trimmed == "none" and n_ref != s.n:
            s.add("n_accepted", f"n_accepted {s.n}, reference {n_ref}", None, s.n, n_ref)
        return n_ref
