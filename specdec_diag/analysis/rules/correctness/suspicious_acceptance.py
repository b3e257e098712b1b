"""SUSPICIOUS_ACCEPTANCE: Acceptance about 100 % where it cannot be: a verifier bypassed ("fast but
wrong")."""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from specdec_diag.analysis.rules.base import (
    ACCEPTANCE_DEFINITIONS,
    Context,
    Finding,
    Need,
    Rule,
    label,
    step_acceptance,
)
from specdec_diag.analysis.stats import interval


class SuspiciousAcceptance(Rule):
    """Acceptance about 100 % where it cannot be: a verifier bypassed ("fast but wrong").

    **What it detects.** On traces: more accepted drafts than the recorded target/draft probabilities
    allow. Under the sampling rule each tested draft is accepted with probability ``min(1, p/q)``, so
    the accepted count has a known mean and variance; a count ``z`` standard deviations above it is
    impossible for a working verifier. Under greedy, accepted drafts that are not the target's argmax.
    On engine logs: acceptance rate >= 99 % sustained over many drafted tokens (an error when the
    windows were sampled at temperature > 0, otherwise a warning).

    **Why it matters.** A skipped or short-circuited verifier makes decoding look excellent (MAL = gamma + 1)
    while emitting draft-model text (vLLM/TGI/TensorRT-LLM gibberish reports, problem 10 in
    docs/problems.md#p10). Near-100 % acceptance can also come from over-strict draft gating (llama.cpp
    p_accept, problem 15 in docs/problems.md#p15), so the logs-only form stays a warning. On a single
    running request it is only a note (info): one sequence that repeats itself - a token loop, or text
    the drafter can copy - accepts every draft legitimately (``MAL 4.00, per-position 1.000, 1.000,
    1.000`` at k=3 is "the signature of a token-loop", club-3090 #34); across a concurrent batch every
    sequence would have to loop at once.

    **Evidence.** ``acceptance_rate``, ``expected_accepted`` / ``observed_accepted`` with ``z`` (traces),
    ``accepted_not_argmax`` (greedy), ``draft_tokens``, ``temperature``.

    **Example.** 1,000 of 1,000 drafts accepted at T = 0.8 while the recorded p/q ratios predict 612
    (z = 21).

    **Fix.** Check that the verification forward actually runs and that its decision is used (no
    ``accept_all`` / debug short-circuit); A/B at temperature 0 with speculation off and compare
    outputs token for token.
    """

    code = "SUSPICIOUS_ACCEPTANCE"
    name = "acceptance impossibly high"
    severity = "error"
    thresholds = ("suspicious_acceptance", "suspicious_z", "min_draft_tokens", "min_steps")
    needs = (Need("steps", "min_steps", "trace steps with recorded p and q"),
             Need("draft_tokens", "min_draft_tokens", "drafted tokens of one engine"))
    problems = (10, 15)

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for _src, steps in ctx.step_groups():
            s = steps.filter(~pl.col("p").list.eval(pl.element().is_null()).list.any())
            if s.height < th.min_steps:
                continue
            acc = step_acceptance(s)
            rule = s["rule_name"][0]
            ev: dict[str, Any] = {**acc.evidence(), "rule": rule}
            why = None
            if rule == "sampling":
                exp = var = 0.0
                obs = 0
                for r in s.iter_rows(named=True):
                    n = r["n_accepted"]
                    for i, (pi, qi) in enumerate(zip(r["p"], r["q"], strict=False)):
                        if i > n:  # only tested positions: those up to the first rejection
                            break
                        if qi is None or qi <= 0:
                            continue
                        a = min(1.0, pi / qi)
                        exp += a
                        var += a * (1 - a)
                        obs += 1 if i < n else 0
                z = (obs - exp) / math.sqrt(var) if var > 0 else (math.inf if obs > exp + 0.5 else 0.0)
                ev.update(observed_accepted=obs, expected_accepted=exp, z=z)
                if z >= th.suspicious_z:
                    why = (f"{obs} drafts accepted where the recorded p/q allow {exp:.0f} "
                           f"(z = {z:.1f})")
            elif rule == "greedy" and s["argmax_p"].null_count() < s.height:
                bad = 0
                tested = 0
                for r in s.iter_rows(named=True):
                    am = r["argmax_p"] or []
                    for i in range(min(r["n_accepted"], len(am))):
                        tested += 1
                        bad += am[i] is not None and r["draft_token_ids"][i] != am[i]
                ev.update(accepted_not_argmax=bad, accepted_checked=tested)
                if tested and bad / tested >= 0.01 and (acc.rate or 0) >= 0.5:
                    why = f"{bad} of {tested} accepted drafts are not the target's argmax under greedy"
            if why:
                ev["definitions"] = {**ACCEPTANCE_DEFINITIONS,
                                     "expected_accepted": "sum of min(1, p/q) over tested positions",
                                     "z": "(observed - expected) / sqrt(sum a(1-a))",
                                     "accepted_not_argmax": "accepted drafts != argmax_p (greedy)"}
                out.append(self.finding(
                    ctx, f"Acceptance {100 * (acc.rate or 0):.1f} % is impossibly high: {why}", ev,
                    "Check that the verification forward runs and that its accept decision is used (no "
                    "accept-all short-circuit); A/B at T=0 with speculation off and diff the outputs.",
                    s, score=1.0))
        out.extend(self._windows(ctx))
        return out

    def _windows(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        engines = dict(ctx.engine_windows())  # throughput lines too: the running-request count
        for key, g in ctx.window_groups():
            acc = ctx.window_acceptance(key, g)
            if acc.rate is None or (acc.draft_tokens or 0) < th.min_draft_tokens or (acc.k or 0) < 2:
                continue
            if acc.rate < th.suspicious_acceptance:
                continue
            temps = g["temperature"].drop_nulls()
            hot = bool(temps.len() and float(temps.max()) > 0)
            single = _single_stream(engines.get(key, g))
            ev = {**acc.evidence(), "temperature": float(temps.max()) if temps.len() else None,
                  "definitions": ACCEPTANCE_DEFINITIONS}
            if single:
                ev["note"] = ("one running request throughout: a sequence repeating itself (a token loop) or "
                              "text the drafter can copy accepts every draft without any bypass")
            out.append(self.finding(
                ctx, f"Acceptance {100 * acc.rate:.1f} % in {label(*key)} over {acc.draft_tokens} drafted tokens "
                     f"at k={acc.k}"
                     + (" while sampling at T > 0" if hot else "")
                     + (" on a single request: a token loop in the output, or a bypassed verifier" if single else ""),
                ev,
                ("Read the output: a repeated token or phrase means the target loops (raise the repetition "
                 "penalty, cap max_tokens); if the text is fine, " if single else "")
                + "Verify outputs: A/B at T=0 with speculation off. If outputs match, the drafter is gated "
                "too strictly (llama.cpp --draft-p-min / -pa) and rarely speculates.",
                g, severity="info" if single else ("error" if hot else "warning"), score=0.8,
                sample=self.sample(ctx, "draft_tokens", acc.draft_tokens),
                interval=interval("acceptance_rate", acc.accepted, acc.draft_tokens)))
        return out


def _single_stream(g: pl.DataFrame) -> bool:
    """True when the engine's own lines say one request ran throughout (running count known, never
    above 1): its acceptance is one sequence's, which a repetition loop can make 100 %."""
    if "running_reqs" not in g.columns:
        return False
    run = g["running_reqs"].drop_nulls()
    return bool(run.len()) and int(run.max()) <= 1
