"""BENCHMARK_ARTIFACT: The measurement itself is unrepresentative: too few drafts, idle windows, repeated
prompts."""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule, label


class BenchmarkArtifact(Rule):
    """The measurement itself is unrepresentative: too few drafts, idle windows, repeated prompts.

    **What it detects.** (1) fewer than ``min_draft_tokens`` drafted tokens in the whole input (an info
    note: no rule can judge acceptance); (2) speculative windows that are idle - generation below
    ``idle_gen_tps`` - in at least ``idle_share`` of an engine's windows (rates per second then include
    idle time); (3) ``identical_windows`` or more consecutive non-trivial windows with exactly the same
    counts and per-position rates (the same prompt replayed, llama.cpp PR #10455); (4) per-request
    records with fewer than ``min_request_draft_tokens`` drafted in most requests; (5) a random-token
    dataset in the configuration (``dataset_name=random``).

    **Why it matters.** Such numbers describe the benchmark, not the model pair: random prompts are
    antagonistic to drafters (sglang PR #25359: accept rate 0.13-0.27), replayed prompts reuse cached
    draft context, prefill-dominated windows have "not converged" (club-3090 #1251).

    **Evidence.** per artifact: ``draft_tokens``, ``idle_windows``, ``identical_run``,
    ``short_requests``, ``dataset``.

    **Example.** 9 consecutive windows with ``Accepted: 412, Drafted: 800`` and identical per-position rates.

    **Fix.** Benchmark with realistic prompts (ShareGPT, your traffic), distinct prompts per request,
    long enough runs (thousands of drafts), and read rates from busy windows only.
    """

    code = "BENCHMARK_ARTIFACT"
    name = "benchmark artifact"
    severity = "warning"
    thresholds = ("min_draft_tokens", "idle_gen_tps", "idle_share", "identical_windows",
                  "min_request_draft_tokens", "min_windows")
    needs = (Need("records", 1, "records of the measurement itself"),)
    problems = (17, 9)
    explained_by = ("SPEC_INACTIVE", "PINNED_ACCEPTANCE_LENGTH")

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        total = 0.0
        seen = False
        for key, g in ctx.window_groups():
            a = ctx.window_acceptance(key, g)
            if a.draft_tokens is not None:
                total += a.draft_tokens
                seen = True
        if ctx.spec_steps.height:
            total += float(ctx.spec_steps["gamma_drafted"].sum())
            seen = True
        if seen and 0 < total < th.min_draft_tokens:
            rows = ctx.spec_windows if ctx.spec_windows.height else ctx.spec_steps
            out.append(self.finding(
                ctx, f"Only {total:.0f} drafted tokens in the whole input: too few to judge acceptance",
                {"draft_tokens": total, "needed": th.min_draft_tokens,
                 "definitions": {"draft_tokens": "draft tokens over all inputs"}},
                "Run longer (thousands of drafted tokens) before drawing conclusions.", rows, severity="info",
                score=0.2))
        for (src, eng), g in ctx.window_groups():
            unit_name = label(src, eng)
            # idle: the engine generated (almost) nothing; zero drafts alone is SPEC_INACTIVE's signal
            idle = g.filter(pl.col("gen_tps").is_not_null() & (pl.col("gen_tps") <= th.idle_gen_tps))
            if g.height >= th.min_windows and idle.height and idle.height / g.height >= th.idle_share:
                out.append(self.finding(
                    ctx, f"{idle.height} of {g.height} speculative windows in {unit_name} are idle",
                    {"idle_windows": idle.height, "windows": g.height,
                     "definitions": {"idle_windows": f"windows with gen_tps <= {th.idle_gen_tps} tok/s or zero "
                                                     "drafts"}},
                    "Read rates from busy windows only; per-second numbers over idle windows are not decode speed.",
                    idle, score=0.1))
            run = identical_run(g, th.identical_windows)
            if run is not None:
                out.append(self.finding(
                    ctx, f"{run.height} consecutive identical windows in {unit_name}: the same prompt replayed?",
                    {"identical_run": run.height, "draft_tokens": run["draft_tokens"][0],
                     "accepted_tokens": run["accepted_tokens"][0],
                     "definitions": {"identical_run": "consecutive windows with identical drafts, accepted and "
                                                      "per-position rates"}},
                    "Use distinct prompts per request; repeated identical prompts reuse cached draft context and "
                    "only the first run is valid.", run, score=0.2))
            req = g.filter(pl.col("window") == "request")
            if req.height >= th.min_windows:
                short = req.filter(pl.col("draft_tokens").fill_null(0) < th.min_request_draft_tokens)
                if short.height / req.height > 0.5:
                    out.append(self.finding(
                        ctx, f"{short.height} of {req.height} requests in {unit_name} drafted fewer than "
                             f"{th.min_request_draft_tokens} tokens",
                        {"short_requests": short.height, "requests": req.height,
                         "definitions": {"short_requests": "per-request records with few drafted tokens"}},
                        "Aggregate over many requests or generate longer outputs; per-request rates from a few "
                        "drafts are noise.", short, score=0.1))
        cfg = ctx.configs
        if cfg.height:
            rnd = cfg.filter(pl.col("key").is_in(["dataset_name", "dataset"])
                             & (pl.col("value").str.to_lowercase() == "random"))
            if rnd.height:
                out.append(self.finding(
                    ctx, "Benchmark used a random-token dataset",
                    {"dataset": "random", "definitions": {"dataset": "benchmark dataset from the configuration"}},
                    "Random token streams are antagonistic to drafters; benchmark with realistic prompts.",
                    rnd, score=0.3))
        return out


def identical_run(g: pl.DataFrame, need: int) -> pl.DataFrame | None:
    cols = ["num_drafts", "draft_tokens", "accepted_tokens", "per_position_acceptance"]
    rows = g.filter(pl.col("draft_tokens").fill_null(0) > 0)
    if rows.height < need:
        return None
    # runs of equal keys, column-wise; equal as their str() is (NaN equals NaN, -0.0 differs from 0.0),
    # hence the sign-of-zero flags next to the per-position list
    pp = pl.col("per_position_acceptance")
    neg0 = pp.list.eval((pl.element() == 0.0) & ((1.0 / pl.element()) < 0)).alias("_neg0")
    runs = (rows.select(pl.struct(*cols[:3], pp, neg0).rle_id().alias("r")).with_row_index("i")
            .group_by("r", maintain_order=True).agg(pl.col("i").first(), pl.len().alias("n")))
    top = runs.row(int(runs["n"].arg_max()), named=True)  # the first of the longest
    best = (top["i"], top["i"] + top["n"])
    if best[1] - best[0] >= need:
        return rows.slice(best[0], best[1] - best[0])
    return None
