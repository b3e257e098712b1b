"""Correctness rules: invariants every speculative step must satisfy, checked on trace steps
(decoder_anchors.md §6) and, where engine logs carry the signal, on windows. These catch "fast but
wrong" decoders: a verifier that is bypassed, a cache that is not rolled back, a dropped bonus token.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import polars as pl

from specdec_diag.analysis.rules.base import (
    ACCEPTANCE_DEFINITIONS,
    Context,
    Finding,
    Rule,
    label,
    register,
    step_acceptance,
)

# A ratio test r*q < p within this relative distance of equality is a floating-point tie: skipped.
_TIE = 1e-6
# Importance weights p/q are clipped here: E_q[min(p/q, C)] <= 1 still holds, with bounded variance.
_CLIP = 10.0


def _trimmed(row: dict[str, Any]) -> bool:
    return row.get("trimmed_by") not in (None, "none")


def _leading_run(flags: list[Any]) -> int:
    n = 0
    for f in flags:
        if not f:
            break
        n += 1
    return n


def _by_request(steps: pl.DataFrame) -> Iterable[list[dict[str, Any]]]:
    for _, g in steps.group_by(["source", "request"], maintain_order=True):
        yield g.sort("step").to_dicts()


def _bad(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


@register
class StructureViolation(Rule):
    """A step's output is not "context + accepted prefix + one verifier token".

    **What it detects.** Trace steps that break the shape of a speculative step: the accepted count
    ``n`` is not the leading run of true accept flags; the emitted tokens are not the first ``n``
    drafts followed by exactly one verifier token (unless trimmed by EOS / max length); the last token
    is called a ``bonus`` although a draft was rejected (or a ``correction`` although all were
    accepted); or the next step's context length does not continue from this one.

    **Why it matters.** Speculative decoding is only lossless when every step appends exactly the
    accepted prefix plus one target token. Any other shape means tokens were skipped, duplicated or
    taken from the draft without verification (mlx-lm #846: "1 3 5 6 8 ..."); outputs are then wrong
    no matter how good acceptance looks.

    **Evidence.** ``violations`` (steps broken), ``steps`` (steps checked), ``by_reason`` (count per
    broken invariant), ``first`` (the first bad step with its numbers).

    **Example.** ``n_accepted=3 but the leading run of accept_flags is 1`` on 40 of 200 steps.

    **Fix.** Make the accept/emit path follow the reference: ``n`` = leading run of accepted
    positions, emit ``drafts[:n] + [verifier token]``, advance the context by ``n + 1``. Re-run the
    traced reference decoder (``specdec-diag decode``) on the same prompts and diff the traces.
    """

    code = "STRUCTURE_VIOLATION"
    name = "step structure violated"
    severity = "error"
    family = "correctness"
    problems = ("P10", "decoder_anchors §6")

    def check(self, ctx: Context) -> list[Finding]:
        out = []
        for src, steps in ctx.step_groups():
            reasons: dict[str, int] = {}
            bad_rows: list[tuple[str, int]] = []
            first: dict[str, Any] | None = None
            for rows in _by_request(steps):
                for i, r in enumerate(rows):
                    why = _structure_problem(r, rows[i + 1] if i + 1 < len(rows) else None)
                    if why:
                        reasons[why[0]] = reasons.get(why[0], 0) + 1
                        bad_rows.append((src, r["line"]))
                        if first is None:
                            first = {"line": r["line"], "step": r["step"], "request": r["request"],
                                     "problem": why[1]}
            if not bad_rows:
                continue
            share = len(bad_rows) / steps.height
            out.append(self.finding(
                ctx, f"{len(bad_rows)} of {steps.height} steps do not have the shape "
                     "context + accepted prefix + one verifier token",
                {"violations": len(bad_rows), "steps": steps.height, "by_reason": reasons, "first": first,
                 "definitions": {"violations": "steps breaking at least one structural invariant",
                                 "by_reason": "count of steps per broken invariant"}},
                "Fix the accept/emit path: n must be the leading run of accepted positions and each step "
                "must emit drafts[:n] plus one verifier token; compare against `specdec-diag decode`.",
                bad_rows, score=share))
        return out


def _structure_problem(r: dict[str, Any], nxt: dict[str, Any] | None) -> tuple[str, str] | None:
    n, g = r["n_accepted"], r["gamma_drafted"]
    flags = r["accept_flags"] or []
    emitted = r["emitted_token_ids"] or []
    drafts = r["draft_token_ids"] or []
    lead = _leading_run(flags)
    if lead != n:
        return "n_not_leading_run", f"n_accepted={n} but the leading run of accept_flags is {lead}"
    full_drop = n == g and g > 0 and len(emitted) == g and not _trimmed(r)
    if not full_drop:  # a dropped bonus is BONUS_DROPPED's finding, not a structure error
        if not _trimmed(r) and len(emitted) != n + 1:
            return "emitted_count", f"emitted {len(emitted)} tokens, expected n+1 = {n + 1}"
        if _trimmed(r) and len(emitted) > n + 1:
            return "emitted_count", f"emitted {len(emitted)} tokens, more than n+1 = {n + 1}"
        if not _trimmed(r):
            kind = "bonus" if n == g else "correction"
            if r["last_token_kind"] != kind:
                return "last_token_kind", f"last_token_kind={r['last_token_kind']!r} but n={n}, gamma={g}"
    m = min(n, len(emitted))
    if list(emitted[:m]) != list(drafts[:m]):
        return "prefix_not_drafts", "emitted tokens do not start with the accepted drafts"
    if nxt is not None and nxt["context_len"] != r["context_len"] + len(emitted):
        return ("context_discontinuity",
                f"next step's context_len={nxt['context_len']}, expected {r['context_len'] + len(emitted)}")
    return None


@register
class KvRollback(Rule):
    """Rejected positions left in the KV cache, or verify positions not contiguous.

    **What it detects.** Trace steps whose target cache length after the step is not
    ``sequence length - 1`` (rejected drafts' keys/values kept, or too much cropped), whose next step
    does not start from the cache this step left, whose verify window does not start at position
    ``context_len - 1``, or whose window positions are not contiguous (``last - first != gamma``).

    **Why it matters.** Keys/values of rejected drafts make every later token attend to text that was
    never emitted; a shifted position id mis-rotates RoPE keys. Both silently change the model's output
    and usually make acceptance decay over the generation (transformers #30312, #30042/#30068,
    jundot/omlx #2363, vllm #54498).

    **Evidence.** ``violations``, ``steps``, ``by_reason`` (cache_after, cache_continuity,
    verify_start, verify_span), ``excess_cache_entries`` (max cache length above sequence - 1),
    ``first`` (first bad step).

    **Example.** ``target_cache_after=131, expected 127 (sequence 128 - 1)`` growing by the number of
    rejected drafts every step.

    **Fix.** Crop the target (and draft) cache to the accepted length after verification
    (``crop(seq_len - 1)`` / ``num_computed_tokens -= rejected``) and start the next verify window at
    position ``L - 1``; assert ``cache_len == seq_len - 1`` after every step.
    """

    code = "KV_ROLLBACK"
    name = "KV cache not rolled back"
    severity = "error"
    family = "correctness"
    problems = ("P10", "decoder_anchors §5.1", "decoder_anchors §5.2")

    def check(self, ctx: Context) -> list[Finding]:
        out = []
        for src, steps in ctx.step_groups():
            reasons: dict[str, int] = {}
            bad: list[tuple[str, int]] = []
            first = None
            excess = 0
            checked = 0
            for rows in _by_request(steps):
                prev_after = None
                for r in rows:
                    seq = r["context_len"] + len(r["emitted_token_ids"] or [])
                    probs = []
                    after, before = r.get("target_cache_after"), r.get("target_cache_before")
                    vf, vl = r.get("verify_pos_first"), r.get("verify_pos_last")
                    if after is None and vf is None:
                        prev_after = None
                        continue
                    checked += 1
                    if after is not None and after != seq - 1:
                        probs.append(("cache_after", f"target_cache_after={after}, expected sequence-1={seq - 1}"))
                        excess = max(excess, after - (seq - 1))
                    if before is not None and prev_after is not None and before != prev_after:
                        probs.append(("cache_continuity",
                                      f"target_cache_before={before} but the previous step left {prev_after}"))
                    if vf is not None and vf != r["context_len"] - 1:
                        probs.append(("verify_start",
                                      f"verify_pos_first={vf}, expected context_len-1={r['context_len'] - 1}"))
                    if vf is not None and vl is not None and vl - vf != r["gamma_drafted"]:
                        probs.append(("verify_span",
                                      f"verify window spans {vl - vf + 1} positions, expected gamma+1="
                                      f"{r['gamma_drafted'] + 1}"))
                    prev_after = after
                    if probs:
                        for key, _ in probs:
                            reasons[key] = reasons.get(key, 0) + 1
                        bad.append((src, r["line"]))
                        if first is None:
                            first = {"line": r["line"], "step": r["step"], "request": r["request"],
                                     "problem": probs[0][1]}
            if not bad:
                continue
            out.append(self.finding(
                ctx, f"KV cache / positions inconsistent with the accepted sequence on {len(bad)} of "
                     f"{checked} steps",
                {"violations": len(bad), "steps": checked, "by_reason": reasons,
                 "excess_cache_entries": excess, "first": first,
                 "definitions": {
                     "cache_after": "target_cache_after != context_len + emitted - 1",
                     "cache_continuity": "target_cache_before != previous step's target_cache_after",
                     "verify_start": "verify_pos_first != context_len - 1",
                     "verify_span": "verify_pos_last - verify_pos_first != gamma_drafted",
                     "excess_cache_entries": "largest number of cache entries beyond sequence - 1"}},
                "Crop the KV cache to the accepted length after each verification and feed the verify "
                "window consecutive positions starting at context_len - 1; assert cache_len == seq_len - 1.",
                bad, score=len(bad) / max(checked, 1)))
        return out


@register
class BonusDropped(Rule):
    """Fully accepted steps emit gamma tokens, not gamma + 1.

    **What it detects.** Trace steps where all ``gamma`` drafts were accepted, nothing was trimmed by
    EOS / max length, yet only ``gamma`` tokens were emitted: the verifier's free (bonus) token was
    discarded.

    **Why it matters.** The bonus token is where speculative decoding gets its best case: without it
    tokens per step are capped at ``gamma`` and system efficiency at ``gamma/(gamma+1)``. Engines
    shipped this (vLLM #4212 disabled bonus tokens for KV-cache proposers; PR #5765 re-enabled them,
    ~33 % faster at k=1).

    **Evidence.** ``full_accept_steps`` (steps with n = gamma), ``dropped`` (of those, emitting only
    gamma), ``max_tokens_per_step`` seen, ``gamma``.

    **Example.** 57 of 57 fully accepted steps emitted 4 tokens at gamma = 4; tokens per step never
    reached 5.

    **Fix.** On a full accept, sample the extra token from the target's last distribution
    ``p[gamma]`` and emit it; back-fill the draft model's KV for the last draft token so its cache
    stays in step.
    """

    code = "BONUS_DROPPED"
    name = "bonus token dropped"
    severity = "error"
    family = "correctness"
    problems = ("decoder_anchors §5.4",)

    def check(self, ctx: Context) -> list[Finding]:
        out = []
        for _src, steps in ctx.step_groups():
            full = steps.filter((pl.col("n_accepted") == pl.col("gamma_drafted"))
                                & (pl.col("trimmed_by").fill_null("none") == "none"))
            if full.is_empty():
                continue
            dropped = full.filter(pl.col("emitted_token_ids").list.len() == pl.col("gamma_drafted"))
            if dropped.is_empty():
                continue
            share = dropped.height / full.height
            out.append(self.finding(
                ctx, f"{dropped.height} of {full.height} fully accepted steps emitted gamma tokens instead "
                     "of gamma + 1 (bonus token dropped)",
                {"full_accept_steps": full.height, "dropped": dropped.height,
                 "max_tokens_per_step": int(steps["emitted_token_ids"].list.len().max()),
                 "gamma": int(full["gamma_drafted"].max()),
                 "definitions": {"full_accept_steps": "steps with n_accepted == gamma_drafted, not trimmed",
                                 "dropped": "of those, steps that emitted only gamma tokens"}},
                "Emit the bonus token: on a full accept sample it from the target's distribution at "
                "position gamma (p[gamma]) and back-fill the draft cache for the last draft token.",
                dropped, score=share * 0.5))
        return out


@register
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
    family = "correctness"
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


@register
class SuspiciousAcceptance(Rule):
    """Acceptance about 100 % where it cannot be: a verifier bypassed ("fast but wrong").

    **What it detects.** On traces: more accepted drafts than the recorded target/draft probabilities
    allow. Under the sampling rule each tested draft is accepted with probability ``min(1, p/q)``, so
    the accepted count has a known mean and variance; a count ``z`` standard deviations above it is
    impossible for a working verifier. Under greedy, accepted drafts that are not the target's argmax.
    On engine logs: acceptance rate >= 99 % sustained over many drafted tokens (an error when the
    windows were sampled at temperature > 0, otherwise a warning).

    **Why it matters.** A skipped or short-circuited verifier makes decoding look excellent (MAL =
    gamma + 1) while emitting draft-model text (vLLM/TGI/TensorRT-LLM gibberish reports, P10). Near-100 %
    acceptance can also come from over-strict draft gating (llama.cpp p_accept, P15), so the logs-only
    form stays a warning.

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
    family = "correctness"
    thresholds = ("suspicious_acceptance", "suspicious_z", "min_draft_tokens", "min_steps")
    problems = ("P10", "P15")

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
        for key, g in ctx.window_groups():
            acc = ctx.window_acceptance(key, g)
            if acc.rate is None or (acc.draft_tokens or 0) < th.min_draft_tokens or (acc.k or 0) < 2:
                continue
            if acc.rate < th.suspicious_acceptance:
                continue
            temps = g["temperature"].drop_nulls()
            hot = bool(temps.len() and float(temps.max()) > 0)
            ev = {**acc.evidence(), "temperature": float(temps.max()) if temps.len() else None,
                  "definitions": ACCEPTANCE_DEFINITIONS}
            out.append(self.finding(
                ctx, f"Acceptance {100 * acc.rate:.1f} % in {label(*key)} over {acc.draft_tokens} drafted tokens "
                     f"at k={acc.k}"
                     + (" while sampling at T > 0" if hot else ""), ev,
                "Verify outputs: A/B at T=0 with speculation off. If outputs match, the drafter is gated "
                "too strictly (llama.cpp --draft-p-min / -pa) and rarely speculates.",
                g, severity="error" if hot else "warning", score=0.8))
        return out


@register
class PinnedAcceptanceLength(Rule):
    """Mean acceptance length pinned at exactly 1 or exactly k + 1 (NaN logits in the verifier).

    **What it detects.** Traces whose recorded target probabilities become null (NaN) - the steps
    after that accept nothing or everything, and the verifier keeps emitting one token id; engine
    windows whose MAL sits at exactly 1.00 or exactly k + 1 for several windows after having been in
    between, or at exactly 1 or k + 1 in nearly every window (windows of fewer than 4 drafts are not
    judged: they are legitimately all-or-nothing). A trace that merely loops on one token is not
    enough: greedy decoding of a healthy small model does that.

    **Why it matters.** NaN logits make every comparison false (or every argmax token 0): TensorRT-LLM
    PR #5146 (Eagle3 on Hopper) emitted "!!!!" with acceptance length stuck at exactly 1 or exactly
    draft_len. The engine keeps running and the numbers look merely odd.

    **Evidence.** ``nan_steps`` (steps with null p), ``first_nan_step``, ``pinned_steps`` (n = 0 or
    gamma after the first NaN); for windows
    ``pinned_windows``, ``pinned_mal``, ``normal_windows_before`` or ``windows_at_1`` /
    ``windows_at_k_plus_1``.

    **Example.** From step 5 on every p is null; n = 0 for 30 steps then n = gamma; the verifier emits
    token 0 each time.

    **Fix.** Find where the verifier's logits go NaN (fp16 overflow, uninitialised buffers, a kernel on
    this architecture); run the target in fp32/bf16 or eager mode to confirm, add a NaN guard on
    logits.
    """

    code = "PINNED_ACCEPTANCE_LENGTH"
    name = "acceptance length pinned"
    severity = "error"
    family = "correctness"
    thresholds = ("min_windows",)
    problems = ("P10",)

    def check(self, ctx: Context) -> list[Finding]:
        out = []
        for _src, steps in ctx.step_groups():
            nan = steps.filter(pl.col("p").list.eval(pl.element().is_null()).list.any())
            ev: dict[str, Any] = {}
            rows = None
            if nan.height:
                after = steps.filter(pl.col("step") >= nan["step"].min())
                pinned = after.filter((pl.col("n_accepted") == 0)
                                      | (pl.col("n_accepted") == pl.col("gamma_drafted")))
                ev.update(nan_steps=nan.height, first_nan_step=int(nan["step"].min()),
                          first_nan_line=int(nan["line"].min()), pinned_steps=pinned.height,
                          steps_after=after.height)
                rows = nan
            if not ev:
                continue
            # (a run of one repeated token with every draft rejected is NOT used: greedy decoding of a
            # healthy small model loops exactly like that - measured on sample_logs/traces/healthy-greedy)
            ev["definitions"] = {"nan_steps": "steps whose recorded target probability p is null (NaN)",
                                 "pinned_steps": "steps after the first NaN with n = 0 or n = gamma"}
            out.append(self.finding(
                ctx, f"Verifier output degenerate: target probabilities are NaN from step {ev['first_nan_step']} on",
                ev,
                "Find where the verifier logits become NaN (fp16 overflow, uninitialised buffer, kernel "
                "bug); confirm with the target in fp32/bf16 or eager mode; add a NaN guard on logits.",
                rows, score=1.0))
        out.extend(self._windows(ctx))
        return out

    def _windows(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for (_src, _eng), g in ctx.window_groups():
            # a window of one or two drafts is legitimately all-or-nothing; judge windows with >= 4
            g = g.filter(pl.col("mean_acceptance_length").is_not_null() & pl.col("k").is_not_null()
                         & (pl.col("num_drafts").is_null() | (pl.col("num_drafts") >= 4)))
            if g.height < 2 * th.min_windows:
                continue
            mal = pl.col("mean_acceptance_length")
            flags = g.select(low=(mal - 1.0).abs() < 0.005, high=(mal - (pl.col("k") + 1)).abs() < 0.005)
            n_low, n_high = int(flags["low"].sum()), int(flags["high"].sum())
            pinned_s = flags["low"] | flags["high"]
            n_pinned = int(pinned_s.sum())
            defs = {"pinned_mal": "mean acceptance length (bonus included) of the pinned windows: exactly 1 "
                                  "or exactly k+1",
                    "mal_before": "mean MAL of the earlier unpinned windows",
                    "windows_at_1": "windows with MAL exactly 1.00", "windows_at_k_plus_1": "windows with MAL "
                    "exactly k+1"}
            # (a) nearly every window at exactly 1 or exactly k+1 (TRT-LLM PR #5146), with k+1 among them
            # (all at exactly 1.00 is a drafter that never hits: DRAFTER_BROKEN's case)
            k0 = int(g["k"][0])
            if n_pinned >= 0.9 * g.height and n_high >= th.min_windows:
                out.append(self.finding(
                    ctx, f"Mean acceptance length is exactly 1 or exactly k+1 = {k0 + 1} in {n_pinned} of "
                         f"{g.height} windows", {"windows_at_1": n_low, "windows_at_k_plus_1": n_high,
                                                 "windows": g.height, "k": k0, "definitions": defs},
                    _PIN_REC, g.filter(pinned_s), score=1.0))
                continue
            if n_pinned == 0:
                continue
            # (b) the first pinned run that follows at least min_windows normal windows
            mals, ks, pinned = g["mean_acceptance_length"].to_list(), g["k"].to_list(), pinned_s.to_list()
            i = seen_pinned = 0  # pinned windows before i
            while i < len(pinned):
                if pinned[i]:
                    j = i
                    while j < len(pinned) and pinned[j] and abs(mals[j] - mals[i]) < 0.005:
                        j += 1
                    normal_before = i - seen_pinned
                    if j - i >= th.min_windows and normal_before >= th.min_windows:
                        sub = g.slice(i, j - i)
                        out.append(self.finding(
                            ctx, f"Mean acceptance length pinned at exactly {mals[i]:.2f} for {j - i} windows "
                                 f"after {normal_before} normal ones",
                            {"pinned_windows": j - i, "pinned_mal": mals[i], "k": ks[i],
                             "normal_windows_before": normal_before,
                             "mal_before": sum(m for m, p in zip(mals[:i], pinned[:i], strict=True) if not p)
                             / max(normal_before, 1), "definitions": defs},
                            _PIN_REC, sub, score=1.0))
                        break
                    seen_pinned += j - i
                    i = j
                else:
                    i += 1
        return out


_PIN_REC = ("Check outputs for repeated tokens; look for NaN logits in the verifier (fp16 overflow, kernel bug); "
            "retry in eager mode / bf16.")
