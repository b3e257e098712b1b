"""COMPUTE_BOUND_BATCH: The running batch is large: verification is no longer free."""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule, label
from specdec_diag.analysis.stats import interval


class ComputeBoundBatch(Rule):
    """The running batch is large: verification is no longer free.

    **What it detects.** Speculative windows whose running-request count is at least ``large_batch``
    in at least ``compute_bound_share`` of at least ``min_windows`` windows; or, explicitly, a window
    at the running-request cap: at least ``large_batch`` running and requests waiting while the KV
    cache still has room (usage below ``kv_full``) - the batch is as large as the server allows, and
    the queue is not a capacity problem (SGLang #4759: 32 running, 68 queued, token usage 0.01).

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
    thresholds = ("large_batch", "compute_bound_share", "min_windows", "min_explicit_windows", "kv_full")
    needs = (Need("windows", "min_windows", "windows with a running-request count, judged by share"),
             Need("explicit_windows", "min_explicit_windows", "windows at the running-request cap (>= large_batch) with requests waiting while the KV cache has room"))
    problems = (1, 18)
    theory = ("5.8",)

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        capped = ((pl.col("running_reqs") >= th.large_batch) & (pl.col("waiting_reqs").fill_null(0) > 0)
                  & (pl.col("kv_usage") < th.kv_full))
        for (src, eng), g in ctx.engine_windows():
            r = g.filter(pl.col("running_reqs").is_not_null())
            big = r.filter(pl.col("running_reqs") >= th.large_batch)
            at_cap = r.filter(capped)
            share = big.height / r.height if r.height else 0.0
            if r.height >= th.min_windows and share >= th.compute_bound_share:
                sample = self.sample(ctx, "windows", r.height)
            elif at_cap.height >= th.min_explicit_windows and at_cap.height >= big.height / 2:
                sample = self.sample(ctx, "explicit_windows", at_cap.height, explicit=True)
            else:
                continue
            med = float(r["running_reqs"].median())
            ev = {"median_running": med, "max_running": int(r["running_reqs"].max()),
                  "windows_at_or_above": big.height, "windows": r.height, "share": share,
                  "windows_at_request_cap": at_cap.height,
                  "definitions": {"median_running": "median running requests over speculative windows",
                                  "windows_at_or_above": f"windows with running >= large_batch ({th.large_batch})",
                                  "windows_at_request_cap": "windows with running >= large_batch and requests "
                                                            f"waiting while KV usage < kv_full ({th.kv_full}): the "
                                                            "running-request cap, not the cache, holds them back"}}
            unit_name = label(src, eng)
            out.append(self.finding(
                ctx, f"Large running batch in {unit_name}: median {med:.0f} requests while speculating"
                     + (f", {at_cap.height} window(s) at the running-request cap with requests waiting"
                        if at_cap.height else ""), ev,
                f"Disable speculation above ~{th.large_batch} running requests (vLLM speculative_config "
                "disable_by_batch_size; SGLang/TRT-LLM batch gates) or lower k under load.",
                big, score=share * 0.6, sample=sample,
                interval=interval("share of windows at or above large_batch", big.height, r.height)))
        return out
