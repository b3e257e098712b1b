"""PINNED_ACCEPTANCE_LENGTH: Mean acceptance length pinned at exactly 1 or exactly k + 1 (NaN logits in the
verifier)."""

from __future__ import annotations

from typing import Any

import polars as pl

from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule


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
    thresholds = ("min_windows",)
    needs = (Need("windows", "min_windows", "contiguous windows pinned at 1 or k + 1"),
             Need("steps", 1, "trace steps with NaN target probabilities (explicit evidence)"))
    problems = (10,)

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
                rows, score=1.0, sample=self.sample(ctx, "steps", nan.height)))
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
