"""DRAFTER_BROKEN: Drafted tokens are many but almost none are accepted: the drafter is broken or
mismatched."""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis.rules.acceptance._helpers import (
    Unit,
    enough_drafts,
    fmt,
    gated_off,
    pct,
    rate_interval,
    unit_sample,
    units,
)
from specdec_diag.analysis.rules.base import (
    ACCEPTANCE_DEFINITIONS,
    Context,
    Finding,
    Need,
    Rule,
    insufficient,
)
from specdec_diag.analysis.stats import interval


class DrafterBroken(Rule):
    """Drafted tokens are many but almost none are accepted: the drafter is broken or mismatched.

    **What it detects.** A unit (one engine's windows or one trace) with at least
    ``min_draft_tokens`` drafted (one window is enough: 21,504 drafted and 42 accepted is a verdict)
    whose acceptance rate is below ``broken_acceptance_rate`` or whose mean acceptance length is
    below ``broken_mal``. Where the rate alone decides, its 95 % Wilson interval must lie below the
    threshold as well; when it reaches above, the finding is a warning ("likely, not certain").
    Without draft counts (SGLang prints rates only) the evidence is verify steps, at least
    ``decode_log_interval`` (the configured one, else ``sglang_decode_log_interval``) per decode line,
    judged with ``min_verify_steps`` and a Wilson interval of accepted tokens per step (an upper bound
    of the acceptance rate); other engines' windows without counts need ``2 * min_windows`` windows.
    A whole-run benchmark summary without counts (a benchmark client's average accept length, e.g.
    ``Average Accept length: 1.037`` over an MMSTAR run, SpecForge #310) averages every verify step of the
    run, their number unknown: one such run is enough for a warning ("likely, not certain").
    Accept length exactly 1.00 at a batch-size gate is SPEC_INACTIVE, not this.

    **Why it matters.** With acceptance near zero every step pays for ``k`` drafts and a ``k+1``-token
    verify and gets one token: speculation is pure overhead. The causes seen in practice are bugs, not
    workload: the drafter's ``lm_head`` overwritten with the target's (vllm-ascend #11374), an engine
    build from an early PR commit (vllm #41789), a converted checkpoint whose MTP layer is unusable
    (vllm #43455), a drafter trained for another serving path (speculators #613).

    **Evidence.** ``draft_tokens``, ``accepted_tokens``, ``acceptance_rate``, ``mean_acceptance_length``,
    ``k``, ``per_position_acceptance`` (the first positions).

    **Example.** ``Drafted: 21,504 tokens, Accepted: 42, MAL 1.03, per-position 0.021, 0.001, 0.000``.

    **Fix.** Check the drafter checkpoint and format (native vs converted), that its ``lm_head`` /
    embeddings are its own, its quantisation vs the target's, the engine build; verify the pair offline
    with ``specdec-diag decode`` on the same prompts.
    """

    code = "DRAFTER_BROKEN"
    name = "drafter broken"
    severity = "error"
    thresholds = ("min_draft_tokens", "broken_acceptance_rate", "broken_mal", "min_verify_steps",
                  "sglang_decode_log_interval")
    needs = (Need("draft_tokens", "min_draft_tokens", "drafted tokens of one engine or trace"),
             Need("verify_steps", "min_verify_steps",
                  "verify steps, where the engine prints no draft counts (SGLang: decode_log_interval per line)"),
             Need("windows", "2 * min_windows", "windows, where the engine prints neither counts nor its interval"),
             Need("benchmark_runs", 1, "whole-run benchmark summaries without counts (an average over every verify "
                                       "step of the run, their number unknown: the verdict is 'likely')"))
    problems = (3, 4)
    explained_by = ("PINNED_ACCEPTANCE_LENGTH", "VERIFIER_MISMATCH", "KV_ROLLBACK")

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for u in units(ctx):
            a = u.acc
            low_rate = a.rate is not None and a.rate < th.broken_acceptance_rate
            low_mal = a.mal is not None and a.mal < th.broken_mal
            if not (low_rate or low_mal) or (u.kind == "windows" and gated_off(u.frame, ctx)):
                continue  # (gated off: nothing was drafted, SPEC_INACTIVE's finding)
            sample, iv = unit_sample(self, ctx, u), rate_interval(a)
            steps = _sglang_steps(u, ctx)
            if steps is not None:  # no draft counts: each SGLang decode line is >= its log interval in steps
                sample = self.sample(ctx, "verify_steps", steps)
                iv = interval("accepted tokens per verify step (at least the acceptance rate)",
                              max((a.mal or 1.0) - 1.0, 0.0) * steps, steps)
            run = _run_summaries(u)
            if run:  # a benchmark's whole-run average: many steps, how many unknown, so 'likely'
                sample = self.sample(ctx, "benchmark_runs", u.frame.height)
            if not (sample.enough if steps is not None or run else enough_drafts(u, ctx)):
                out.append(insufficient(self, ctx, sample.unit, sample.size, sample.minimum, u.frame))
                continue
            # the rate alone calls it broken: its 95 % interval must stay below the threshold too
            unsure = run or ((not low_mal or steps is not None) and iv is not None
                             and iv["high"] >= th.broken_acceptance_rate)
            ev = {**a.evidence(), "per_position_acceptance": (a.per_position or [])[:4],
                  "definitions": ACCEPTANCE_DEFINITIONS}
            if a.draft_tokens is None and a.mal is not None and abs(a.mal - 1.0) < 0.005:
                # verify steps ran (the engine printed an accept length) but nothing was accepted; an
                # adaptive gate that switched drafting off looks the same (problem 16, docs/problems.md#p16), so say so
                ev["note"] = ("MAL exactly 1.00 without draft counts: drafts verified and all rejected, or an "
                              "adaptive gate bypassing the drafter")
            out.append(self.finding(
                ctx, f"Drafter broken or mismatched in {u.label}: acceptance "
                     f"{pct(a.rate)}, mean acceptance length {fmt(a.mal)} over "
                     + (f"{fmt(a.draft_tokens, 0)} drafted tokens" if a.draft_tokens is not None
                        else f"{u.frame.height} " + ("benchmark run(s)" if run else "windows")
                        + (f" (at least {steps:.0f} verify steps)" if steps else ""))
                + (f" (95 % interval reaches {pct(iv['high'])}: likely, not certain)" if unsure and iv else "")
                + (" (a benchmark run's average, its step count unknown: likely, not certain)" if run else ""), ev,
                "Check the drafter: its own lm_head/embeddings (not the target's), checkpoint format "
                "(native vs converted), quantisation matching the target, engine build; reproduce offline "
                "with `specdec-diag decode` on the same prompts.",
                u.frame, score=1.0 - (a.mal or 1.0) / ((a.k or 1) + 1), sample=sample, interval=iv,
                severity="warning" if unsure else None))
        return out


def _sglang_steps(u: Unit, ctx: Context) -> float | None:
    """Verify steps behind SGLang decode windows that print no draft counts: at least the decode log
    interval (configured, else SGLang's default) per window; None for anything else."""
    if u.kind != "windows" or u.acc.draft_tokens is not None or u.frame.is_empty() or _run_summaries(u):
        return None
    if (u.frame["engine"] != "sglang").any() or u.frame["mean_acceptance_length"].null_count() == u.frame.height:
        return None
    src = str(u.frame["source"][0])
    cfg = ctx.configs
    vals = cfg.filter((pl.col("source") == src) & (pl.col("key") == "decode_log_interval"))["value"].to_list() \
        if cfg.height else []
    per = next((int(v) for v in reversed(vals) if str(v).isdigit() and int(v) > 0),
               ctx.thresholds.sglang_decode_log_interval)
    return float(u.frame.height * per)


def _run_summaries(u: Unit) -> bool:
    """Windows that are all whole-run benchmark summaries without draft counts ('Average Accept length'
    of a benchmark client, bench_serving's 'Accept length:'): not decode lines, and not one interval."""
    return (u.kind == "windows" and u.acc.draft_tokens is None and not u.frame.is_empty()
            and "window" in u.frame.columns and bool((u.frame["window"] == "run").all()))
