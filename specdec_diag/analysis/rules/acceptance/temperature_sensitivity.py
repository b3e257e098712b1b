"""TEMPERATURE_SENSITIVITY: Acceptance depends strongly on the sampling temperature."""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis.rules.acceptance._helpers import CORRECTNESS_CAUSES
from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule
from specdec_diag.analysis.stats import interval


class TemperatureSensitivity(Rule):
    """Acceptance depends strongly on the sampling temperature.

    **What it detects.** Records whose temperature is known (trace headers, engine fields) split into
    greedy-like (T < 0.3) and sampled (T >= 0.7) traffic, each with at least ``min_draft_tokens``;
    the acceptance-rate gap is at least ``temperature_gap``.

    **Why it matters.** A drafter that proposes its argmax is matched by a sampling target only with
    probability p(argmax) (vLLM PR #16899, vllm #40149; llama.cpp PR #27694: +12-15 % accepted length
    at T 0.6-1.0 with probabilistic drafting). Expected, but it means sampled traffic gets much less
    from speculation and may be better served with a smaller k.

    **Evidence.** ``cold`` / ``hot`` acceptance rate, draft tokens and temperatures, ``gap``.

    **Example.** acceptance 0.71 at T=0, 0.38 at T=1.0.

    **Fix.** Enable probabilistic drafting (draft probabilities in the rejection sampler) where the
    engine supports it, and use a smaller k for sampled traffic.
    """

    code = "TEMPERATURE_SENSITIVITY"
    name = "temperature sensitivity"
    severity = "warning"
    thresholds = ("temperature_gap", "min_draft_tokens")
    needs = (Need("draft_tokens", "min_draft_tokens", "drafted tokens on each side (greedy and sampled)"),)
    problems = (5,)
    explained_by = CORRECTNESS_CAUSES

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        parts = []
        s = ctx.spec_steps
        if s.height and s["temperature"].null_count() < s.height:
            parts.append(s.select("source", "line", pl.col("temperature").alias("t"),
                                  pl.col("n_accepted").cast(pl.Float64).alias("a"),
                                  pl.col("gamma_drafted").cast(pl.Float64).alias("d")))
        w = ctx.spec_windows
        if w.height and w["temperature"].null_count() < w.height:
            w = w.filter(pl.col("temperature").is_not_null() & pl.col("draft_tokens").is_not_null()
                         & pl.col("accepted_tokens").is_not_null())
            parts.append(w.select("source", "line", pl.col("temperature").alias("t"),
                                  pl.col("accepted_tokens").cast(pl.Float64).alias("a"),
                                  pl.col("draft_tokens").cast(pl.Float64).alias("d")))
        if not parts:
            return []
        pts = pl.concat(parts)
        cold = pts.filter(pl.col("t") < 0.3)
        hot = pts.filter(pl.col("t") >= 0.7)
        dc, dh = float(cold["d"].sum() or 0), float(hot["d"].sum() or 0)
        if dc < th.min_draft_tokens or dh < th.min_draft_tokens:
            return []
        rc, rh = float(cold["a"].sum()) / dc, float(hot["a"].sum()) / dh
        gap = rc - rh
        if abs(gap) < th.temperature_gap:
            return []
        ev = {"cold": {"acceptance_rate": rc, "draft_tokens": dc, "temperatures": sorted(set(cold["t"].to_list()))},
              "hot": {"acceptance_rate": rh, "draft_tokens": dh, "temperatures": sorted(set(hot["t"].to_list()))},
              "gap": gap,
              "definitions": {"cold": "records at T < 0.3", "hot": "records at T >= 0.7",
                              "acceptance_rate": "accepted / drafted (bonus excluded)",
                              "gap": "cold - hot acceptance rate"}}
        return [self.finding(
            ctx, f"Acceptance depends on temperature: {rc:.2f} at T<0.3 vs {rh:.2f} at T>=0.7", ev,
            "Enable probabilistic drafting (draft probabilities in the rejection sampler) if the engine "
            "supports it; use a smaller k for sampled traffic.", hot, score=abs(gap),
            sample=self.sample(ctx, "draft_tokens", min(dc, dh)), interval=interval("acceptance_rate (T >= 0.7)",
                                                                                  float(hot["a"].sum()), dh))]
