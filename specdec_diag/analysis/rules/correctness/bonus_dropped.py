"""BONUS_DROPPED: Fully accepted steps emit gamma tokens, not gamma + 1."""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule


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
    needs = (Need("steps", 1, "fully accepted steps that emitted gamma tokens (each one is explicit evidence)"),)
    theory = ("5.4",)

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
