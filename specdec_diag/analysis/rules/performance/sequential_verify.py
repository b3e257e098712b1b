"""SEQUENTIAL_VERIFY: Verification costs grow like gamma + 1 forwards: the target is run once per draft
token."""

from __future__ import annotations

import statistics
from typing import Any

import polars as pl

from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule, label


class SequentialVerify(Rule):
    """Verification costs grow like gamma + 1 forwards: the target is run once per draft token.

    **What it detects.** Trace steps with more than one target forward (share at least
    ``sequential_forwards_share``); or a verify window whose marginal cost per extra token is at least
    ``sequential_marginal_cost`` of a whole one-token forward - fitted by least squares of
    ``verify_ms`` on ``gamma + 1`` when the draft length varies - or, against a baseline trace's
    single-token forward when the input has one, at least ``sequential_baseline_cost`` (this catches an
    engine that hides per-token verification inside one "forward" call).

    **Why it matters.** Theorem 3.8's speed-up assumes the ``gamma + 1`` verify positions cost one
    target forward (memory-bound). Verifying one position at a time makes every step cost up to
    ``gamma + 1`` target runs and speculation slower than plain decoding (docs/theory.md §5.7;
    llama.cpp #3649: ``T1 < TN < N*T1`` when it works).

    **Evidence.** ``steps_multi_forward``, ``mean_target_forwards``, ``forwards_equal_gamma_plus_1``,
    ``verify_fit`` (intercept ms, slope ms per token, ``marginal_cost``, gammas), ``verify_vs_baseline``.

    **Example.** target_forwards = gamma + 1 on 200 of 200 steps; verify_ms = 0.1 + 9.8 (gamma+1).

    **Fix.** Verify all drafts in one forward over ``[last token] + drafts`` with a causal mask and
    keep logits for every position (HF ``logits_to_keep = gamma + 1``); check that the attention
    backend supports multi-token decode (no fallback to token-by-token).
    """

    code = "SEQUENTIAL_VERIFY"
    name = "sequential verification"
    severity = "error"
    thresholds = ("sequential_forwards_share", "sequential_marginal_cost", "sequential_baseline_cost", "min_steps")
    needs = (Need("steps", "min_steps", "timed trace steps"),)
    problems = (14, 22)
    theory = ("5.7",)

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for src, s in ctx.step_groups():
            multi = s.filter(pl.col("target_forwards") > 1)
            ev: dict[str, Any] = {"steps": s.height, "steps_multi_forward": multi.height,
                                  "mean_target_forwards": float(s["target_forwards"].mean())}
            why = []
            if multi.height and multi.height / s.height >= th.sequential_forwards_share:
                eq = s.filter(pl.col("target_forwards") == pl.col("gamma_drafted") + 1).height
                ev["forwards_equal_gamma_plus_1"] = eq
                why.append(f"{multi.height} of {s.height} steps ran the target more than once "
                           f"(mean {ev['mean_target_forwards']:.2f} forwards)")
            fit = verify_fit(s) if s.height >= th.min_steps else None
            if fit:
                ev["verify_fit"] = fit
                if fit["marginal_cost"] >= th.sequential_marginal_cost:
                    why.append(f"verify time grows {fit['slope_ms']:.2f} ms per verified token "
                               f"({100 * fit['marginal_cost']:.0f} % of a one-token forward)")
            base = ctx.baseline_steps
            base = base.filter(pl.col("verify_ms").is_not_null()) if base.height else base
            if base.height >= th.min_steps and s.height >= th.min_steps:
                # a baseline step is one single-token target forward: compare the verify window with it
                one = float(base["verify_ms"].mean())
                g = float(s["gamma_drafted"].mean())
                ratio = float(s["verify_ms"].mean()) / one if one > 0 else None
                if ratio is not None and g > 0:
                    marginal = (ratio - 1.0) / g
                    ev["verify_vs_baseline"] = {"verify_ms": float(s["verify_ms"].mean()), "baseline_forward_ms": one,
                                                "ratio": ratio, "marginal_cost": marginal}
                    if marginal >= th.sequential_baseline_cost:
                        why.append(f"a verify of {g + 1:.1f} tokens costs {ratio:.1f} single-token forwards of the "
                                   "baseline")
            if not why:
                continue
            ev["definitions"] = {
                "steps_multi_forward": "steps with target_forwards > 1",
                "mean_target_forwards": "mean target forward passes per step (healthy: 1)",
                "verify_fit": "least squares verify_ms = intercept + slope * (gamma_drafted + 1); "
                              "marginal_cost = slope / (intercept + slope)",
                "verify_vs_baseline": "mean verify_ms over the baseline trace's mean single-token forward; "
                                      "marginal_cost = (ratio - 1) / mean gamma (healthy batched verify: small, "
                                      "one forward per token: about 1)"}
            out.append(self.finding(
                ctx, f"Verification is sequential in {label(src)}: " + "; ".join(why), ev,
                "Verify all drafts in ONE target forward over [last token] + drafts (causal mask, logits for "
                "all gamma+1 positions); check the attention backend does not fall back to per-token decode.",
                multi if multi.height else s, score=min(1.0, ev["mean_target_forwards"] - 1.0 + 0.5),
                sample=self.sample(ctx, "steps", s.height)))
        return out


def verify_fit(s: pl.DataFrame) -> dict[str, Any] | None:
    x = (s["gamma_drafted"] + 1).cast(pl.Float64).to_list()
    y = s["verify_ms"].cast(pl.Float64).to_list()
    if len(set(x)) < 3:
        return None
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxx = sum((a - mx) ** 2 for a in x)
    if sxx <= 0:
        return None
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx
    intercept = my - slope * mx
    one = intercept + slope
    if one <= 0:
        return {"intercept_ms": intercept, "slope_ms": slope, "marginal_cost": 1.0 if slope > 0 else 0.0,
                "gammas": sorted({int(a) - 1 for a in x})}
    return {"intercept_ms": intercept, "slope_ms": slope, "marginal_cost": max(0.0, slope / one),
            "gammas": sorted({int(a) - 1 for a in x})}
