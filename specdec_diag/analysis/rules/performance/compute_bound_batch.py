"""COMPUTE_BOUND_BATCH: The running batch is large: verification is no longer free."""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis.rules.base import Context, Finding, Rule, label


class ComputeBoundBatch(Rule):
    """The running batch is large: verification is no longer free.

    **What it detects.** Speculative windows whose running-request count is at least ``large_batch``
    in at least ``compute_bound_share`` of the windows.

    **Why it matters.** Speculation turns idle compute of a memory-bound decode into accepted tokens. At large
    batches the target is compute-bound and the ``k`` extra verify positions per request cost real time
    (Leviathan Thm 3.11; vLLM blog 1.4-1.8x slowdowns at high QPS; problem 1 in docs/problems.md#p01:
    vllm #19254, ArcticInference #185 maintainer: "high-concurrency scenarios leave less compute for verifying").

    **Evidence.** ``median_running``, ``max_running``, ``windows_at_or_above``, ``windows``,
    ``acceptance_rate``.

    **Example.** Running 180-240 reqs in 95 % of windows with acceptance 52 %.

    **Fix.** Disable speculation above a batch size (vLLM ``speculative_config.disable_by_batch_size``,
    SGLang/TRT-LLM batch gates), lower k at high load, or use a dynamic-k policy.
    """

    code = "COMPUTE_BOUND_BATCH"
    name = "compute-bound batch"
    severity = "warning"
    thresholds = ("large_batch", "compute_bound_share", "min_windows")
    problems = (1, 18)
    theory = ("5.8",)

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for (src, eng), g in ctx.engine_windows():
            r = g.filter(pl.col("running_reqs").is_not_null())
            if r.height < th.min_windows:
                continue
            big = r.filter(pl.col("running_reqs") >= th.large_batch)
            share = big.height / r.height
            if share < th.compute_bound_share:
                continue
            med = float(r["running_reqs"].median())
            ev = {"median_running": med, "max_running": int(r["running_reqs"].max()),
                  "windows_at_or_above": big.height, "windows": r.height, "share": share,
                  "definitions": {"median_running": "median running requests over speculative windows",
                                  "windows_at_or_above": f"windows with running >= large_batch ({th.large_batch})"}}
            unit_name = label(src, eng)
            out.append(self.finding(
                ctx, f"Large running batch in {unit_name}: median {med:.0f} requests while speculating", ev,
                f"Disable speculation above ~{th.large_batch} running requests (vLLM speculative_config "
                "disable_by_batch_size; SGLang/TRT-LLM batch gates) or lower k under load.",
                big, score=share * 0.6))
        return out
