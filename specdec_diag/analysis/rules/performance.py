"""Performance rules: whether speculation pays, and what eats the gain - an expensive drafter, a
sequential verifier, a compute-bound batch, missing CUDA graphs, or a full server.
"""

from __future__ import annotations

import statistics
from typing import Any

import polars as pl

from specdec_diag.analysis import theory
from specdec_diag.analysis.rules.base import (
    Context,
    Finding,
    Rule,
    insufficient,
    label,
    register,
    step_acceptance,
)


@register
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
    ``gamma + 1`` target runs and speculation slower than plain decoding (decoder_anchors §5.7;
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
    family = "performance"
    thresholds = ("sequential_forwards_share", "sequential_marginal_cost", "sequential_baseline_cost", "min_steps")
    problems = ("P14", "P22", "decoder_anchors §5.7")

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
            fit = _fit(s) if s.height >= th.min_steps else None
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
                multi if multi.height else s, score=min(1.0, ev["mean_target_forwards"] - 1.0 + 0.5)))
        return out


def _fit(s: pl.DataFrame) -> dict[str, Any] | None:
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


@register
class DraftTooExpensive(Rule):
    """The drafter's cost ratio c is too high for the achieved acceptance.

    **What it detects.** Traces where the measured cost ratio ``c`` (one draft forward over one target
    forward) makes Leviathan's predicted speed-up ``S(alpha, gamma, c)`` fall below ``min_speedup``
    while either a cheap drafter (``c = assumed_cost_ratio``) would reach it at this alpha - so it is
    the cost, not the acceptance - or drafting takes at least ``draft_share`` of the step time. On
    engine windows with draft/verify times (TRT-LLM ``draftOverhead``), a draft share of at least
    ``draft_share``.

    **Why it matters.** Speculation pays only when ``alpha > c`` (Cor. 3.9), and well above it in
    practice. High acceptance with no speed-up is the classic symptom (vllm #39680: AR 96.6 % at
    342 → 128 tok/s; transformers #36337; Leviathan's T5-large had the best alpha and the worst
    speed-up at c = 0.11).

    **Evidence.** ``cost_ratio`` c, ``alpha_estimate``, ``gamma``, ``predicted_speedup``,
    ``predicted_speedup_cheap_draft``, ``draft_share`` of step time, ``optimal_gamma`` at this c.

    **Example.** c = 0.62, alpha = 0.74, gamma = 4: S = 0.79 (a drafter at c = 0.05 would give 2.3).

    **Fix.** Use a smaller/faster drafter (EAGLE/MTP head, n-gram), run it under CUDA graphs and on the
    same device, lower gamma to the optimal value, and check the drafter is not CPU-offloaded.
    """

    code = "DRAFT_TOO_EXPENSIVE"
    name = "draft too expensive"
    severity = "warning"
    family = "performance"
    thresholds = ("min_speedup", "draft_share", "assumed_cost_ratio", "min_steps")
    problems = ("P14", "decoder_anchors §1.4", "decoder_anchors §5.9")
    # a step that is structurally broken makes alpha and the step cost meaningless: fix that first
    explained_by = ("KV_ROLLBACK", "STRUCTURE_VIOLATION", "PINNED_ACCEPTANCE_LENGTH", "BONUS_DROPPED",
                    "SEQUENTIAL_VERIFY")

    def check(self, ctx: Context) -> list[Finding]:
        from specdec_diag.analysis import metrics

        th = ctx.thresholds
        out = []
        for src, s in ctx.step_groups():
            timed = s.filter(pl.col("draft_ms").is_not_null() & pl.col("verify_ms").is_not_null())
            if timed.height < th.min_steps:
                if timed.height:
                    out.append(insufficient(self, ctx, "timed_steps", timed.height, th.min_steps, timed))
                continue
            c = metrics.cost_ratio(timed)
            tb = metrics.time_breakdown(timed) or {}
            acc = step_acceptance(timed)
            if c is None or acc.alpha is None or not acc.k:
                continue
            k = acc.k
            s_now = theory.speedup(acc.alpha, k, c)
            s_cheap = theory.optimal_gamma(acc.alpha, th.assumed_cost_ratio)[1]
            g_opt, s_opt = theory.optimal_gamma(acc.alpha, c)
            share = tb.get("draft_share", 0.0)
            # blame the drafter only when speculation does not pay, and either a cheap drafter would make
            # it pay at this alpha or drafting dominates the step
            if not (s_now < th.min_speedup and (s_cheap >= th.min_speedup or share >= th.draft_share)):
                continue
            ev = {"cost_ratio": c, "alpha_estimate": acc.alpha, "gamma": k, "predicted_speedup": s_now,
                  "predicted_speedup_cheap_draft": s_cheap, "optimal_gamma": g_opt,
                  "optimal_speedup": s_opt, "draft_share": share, "steps": timed.height,
                  "definitions": {
                      "cost_ratio": metrics.METRICS["c"].definition,
                      "alpha_estimate": "censored-geometric MLE of Leviathan alpha",
                      "predicted_speedup": "Leviathan Thm 3.8 S(alpha, gamma, c)",
                      "predicted_speedup_cheap_draft": f"best S at c = {th.assumed_cost_ratio} (a cheap drafter)",
                      "draft_share": "draft_ms / (draft + verify + overhead ms)"}}
            out.append(self.finding(
                ctx, f"Drafter too expensive in {label(src)}: c = {c:.2f}, drafting {100 * share:.0f} % of step time; "
                     f"predicted speed-up {s_now:.2f}x at alpha {acc.alpha:.2f}", ev,
                f"Use a smaller/faster drafter (EAGLE/MTP head, n-gram) on the same device under CUDA graphs; "
                f"at this c the best gamma is {g_opt} (S = {s_opt:.2f}x).",
                timed, score=max(0.0, 1.0 - s_now / max(s_cheap, 1e-9))))
        out.extend(self._windows(ctx))
        return out

    def _windows(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for (src, _eng), g in ctx.window_groups():
            t = g.filter(pl.col("draft_ms").is_not_null() & pl.col("verify_ms").is_not_null())
            if t.height < th.min_windows:
                continue
            d, v = float(t["draft_ms"].sum()), float(t["verify_ms"].sum())
            o = float(t["overhead_ms"].fill_null(0).sum())
            share = d / (d + v + o) if d + v + o > 0 else 0.0
            if share < th.draft_share:
                continue
            out.append(self.finding(
                ctx, f"Drafting takes {100 * share:.0f} % of speculative step time in {label(src)}",
                {"draft_ms": d, "verify_ms": v, "overhead_ms": o, "draft_share": share,
                 "definitions": {"draft_share": "draft_ms / (draft + verify + overhead ms) over the windows"}},
                "Use a cheaper drafter or lower gamma; check the drafter runs under CUDA graphs and on-device.",
                t, score=share))
        return out


@register
class NoSpeedup(Rule):
    """Speculation is no faster (or slower) than decoding without it.

    **What it detects.** A plain-decoding baseline in the same input - a baseline-mode trace (or a
    baseline time per token in a trace header), or engine logs without any speculative record next to
    logs with them - and a speculative run whose tokens per second are at most
    ``no_speedup_ratio`` times the baseline's. Engine logs are compared on windows that generated
    (``gen_tps`` above ``idle_gen_tps``), by median, per engine. A trace without a baseline is judged
    by the predicted speed-up ``S(alpha, gamma, c)`` from its own acceptance and measured cost ratio.

    **Why it matters.** Speculation trades extra compute for fewer sequential target steps; when the
    trade does not pay, users get a slower server with more memory pressure (P01 vllm #8439: 61.8 vs
    69.8 tok/s; koboldcpp #2262; llama.cpp #25908). The other findings (draft cost, batch size, cuda
    graphs, low acceptance) say why.

    **Evidence.** ``speculative_tps``, ``baseline_tps``, ``speedup`` (their ratio), the sources compared.

    **Example.** speculative 61.8 tok/s vs baseline 69.8 tok/s: 0.89x.

    **Fix.** Read the accompanying findings; typical knobs: lower k, disable speculation above a batch
    size (vLLM ``disable_by_batch_size``), a cheaper drafter, or no speculation for this workload.
    """

    code = "NO_SPEEDUP"
    name = "no speed-up"
    severity = "warning"
    family = "performance"
    thresholds = ("no_speedup_ratio", "idle_gen_tps", "min_windows", "min_steps", "broken_acceptance_rate",
                  "broken_mal")
    problems = ("P01", "P14", "P22", "decoder_anchors §1.4")

    def check(self, ctx: Context) -> list[Finding]:
        from specdec_diag.analysis import metrics

        th = ctx.thresholds
        out = []
        base_ms = metrics.baseline_ms_per_token(ctx.result)
        if base_ms:
            base_tps = 1000.0 / base_ms
            for src, s in ctx.step_groups():
                full = ctx.steps.filter(pl.col("source") == src)
                tps = metrics.goodput(full)
                if not tps:
                    continue
                ratio = tps / base_tps
                if ratio <= th.no_speedup_ratio:
                    out.append(self.finding(
                        ctx, f"Speculation in {label(src)} is {ratio:.2f}x the baseline speed "
                             f"({tps:.1f} vs {base_tps:.1f} tok/s)",
                        {"speculative_tps": tps, "baseline_tps": base_tps, "speedup": ratio,
                         "definitions": {"speculative_tps": metrics.METRICS["goodput"].definition,
                                         "baseline_tps": "1000 / baseline ms per token (baseline trace or "
                                                         "header)", "speedup": "speculative_tps / baseline_tps"}},
                        _REC, s, score=1.0 - ratio))
        else:
            out.extend(self._predicted(ctx))
        out.extend(self._logs(ctx))
        return out

    def _predicted(self, ctx: Context) -> list[Finding]:
        """No baseline in the input: Leviathan's S(alpha, gamma, c) from the trace's own alpha and
        measured c is the best available estimate of the speed-up."""
        from specdec_diag.analysis import metrics

        th = ctx.thresholds
        out = []
        for src, s in ctx.step_groups():
            timed = s.filter(pl.col("draft_ms").is_not_null() & pl.col("verify_ms").is_not_null())
            if timed.height < th.min_steps:
                continue
            c = metrics.cost_ratio(timed)
            acc = step_acceptance(timed)
            if c is None or acc.alpha is None or not acc.k:
                continue
            if (acc.rate or 0.0) < th.broken_acceptance_rate or (acc.mal or 1.0) < th.broken_mal:
                continue  # nothing is accepted: DRAFTER_BROKEN / PINNED_ACCEPTANCE_LENGTH say why
            pred = theory.speedup(acc.alpha, acc.k, c)
            if pred > th.no_speedup_ratio:
                continue
            out.append(self.finding(
                ctx, f"Speculation in {label(src)} is predicted no faster than plain decoding: S = {pred:.2f}x "
                     f"(alpha {acc.alpha:.2f}, gamma {acc.k}, c = {c:.2f}); no baseline in the input to measure",
                {"predicted_speedup": pred, "alpha_estimate": acc.alpha, "gamma": acc.k, "cost_ratio": c,
                 "basis": "predicted (no baseline trace in the input)",
                 "definitions": {"predicted_speedup": "Leviathan Thm 3.8 S(alpha, gamma, c)",
                                 "cost_ratio": metrics.METRICS["c"].definition}},
                _REC + " Record a baseline (`specdec-diag decode --baseline`) to measure it.", timed,
                score=1.0 - pred))
        return out

    def _logs(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        w = ctx.windows
        if w.is_empty() or w["gen_tps"].null_count() == w.height:
            return []
        spec_src = set(ctx.spec_windows["source"].unique().to_list()) if ctx.spec_windows.height else set()
        busy = w.filter(pl.col("gen_tps") > th.idle_gen_tps)
        out = []
        for eng in busy["engine"].unique().to_list():
            e = busy.filter(pl.col("engine") == eng)
            spec = e.filter(pl.col("source").is_in(list(spec_src)))
            base = e.filter(~pl.col("source").is_in(list(spec_src)))
            if spec.height < th.min_windows or base.height < th.min_windows:
                continue
            st, bt = float(spec["gen_tps"].median()), float(base["gen_tps"].median())
            ratio = st / bt if bt else None
            if ratio is None or ratio > th.no_speedup_ratio:
                continue
            ev = {"speculative_tps": st, "baseline_tps": bt, "speedup": ratio,
                  "speculative_sources": sorted(spec["source"].unique().to_list()),
                  "baseline_sources": sorted(base["source"].unique().to_list()),
                  "definitions": {"speculative_tps": "median generation throughput of busy windows in logs with "
                                                     "speculative records",
                                  "baseline_tps": "same for logs of the same engine without speculative records",
                                  "speedup": "speculative_tps / baseline_tps"}}
            for col in ("running_reqs",):
                if spec[col].null_count() < spec.height and base[col].null_count() < base.height:
                    ev["median_running_speculative"] = float(spec[col].median())
                    ev["median_running_baseline"] = float(base[col].median())
            out.append(self.finding(
                ctx, f"{eng}: speculative runs generate {st:.1f} tok/s vs {bt:.1f} tok/s without speculation "
                     f"({ratio:.2f}x)", ev, _REC, spec, score=1.0 - ratio))
        return out


_REC = ("See the other findings for the cause; typical knobs: lower k, disable speculation above a batch size "
        "(vLLM speculative_config disable_by_batch_size / SGLang batch gate), a cheaper drafter, CUDA graphs "
        "for the served batch sizes - or no speculation for this workload.")


@register
class ComputeBoundBatch(Rule):
    """The running batch is large: verification is no longer free.

    **What it detects.** Speculative windows whose running-request count is at least ``large_batch``
    in at least ``compute_bound_share`` of the windows.

    **Why it matters.** Speculation turns idle compute of a memory-bound decode into accepted tokens.
    At large batches the target is compute-bound and the ``k`` extra verify positions per request cost
    real time (Leviathan Thm 3.11; vLLM blog 1.4-1.8x slowdowns at high QPS; P01: vllm #19254,
    ArcticInference #185 maintainer: "high-concurrency scenarios leave less compute for verifying").

    **Evidence.** ``median_running``, ``max_running``, ``windows_at_or_above``, ``windows``,
    ``acceptance_rate``.

    **Example.** Running 180-240 reqs in 95 % of windows with acceptance 52 %.

    **Fix.** Disable speculation above a batch size (vLLM ``speculative_config.disable_by_batch_size``,
    SGLang/TRT-LLM batch gates), lower k at high load, or use a dynamic-k policy.
    """

    code = "COMPUTE_BOUND_BATCH"
    name = "compute-bound batch"
    severity = "warning"
    family = "performance"
    thresholds = ("large_batch", "compute_bound_share", "min_windows")
    problems = ("P01", "P18", "decoder_anchors §5.8")

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


@register
class NoCudaGraph(Rule):
    """Decode batches run without CUDA graphs while speculating.

    **What it detects.** Speculative windows with ``cuda_graph`` false (SGLang ``cuda graph: False``)
    in at least ``no_graph_share`` of one engine's speculative windows. Shows the running batch sizes
    with and without graphs and the configured ``cuda_graph_max_bs`` when the startup line is present.

    **Why it matters.** Drafting is many small kernels; without graphs launch overhead dominates. SGLang
    launched with ``--cuda-graph-max-bs 2`` and served at concurrency > 2 (EAGLE #298, sglang #5274);
    EAGLE-3 276 → 378 tok/s once graphs were on (sglang PR #4247); fastrl PR #4 5.4k → 6.1k tok/s.

    **Evidence.** ``windows_without_graph``, ``windows``, ``max_running_with_graph``,
    ``min_running_without_graph``, ``cuda_graph_max_bs``.

    **Example.** 31 of 40 decode windows ``cuda graph: False`` at 8-16 running requests;
    ``cuda_graph_max_bs=4``.

    **Fix.** Raise ``--cuda-graph-max-bs`` (SGLang) / capture sizes (vLLM ``cuda_graph_sizes``,
    no ``enforce_eager``) to cover the served batch sizes.
    """

    code = "NO_CUDA_GRAPH"
    name = "no CUDA graphs"
    severity = "warning"
    family = "performance"
    thresholds = ("no_graph_share", "min_windows")
    problems = ("P02",)

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for (src, eng), g in ctx.window_groups():
            f = g.filter(pl.col("cuda_graph").is_not_null())
            if f.height < th.min_windows:
                continue
            off = f.filter(~pl.col("cuda_graph"))
            if off.is_empty() or off.height / f.height < th.no_graph_share:
                continue
            on = f.filter(pl.col("cuda_graph"))
            cfg = ctx.configs.filter((pl.col("source") == src) & (pl.col("key") == "cuda_graph_max_bs"))
            ev = {"windows_without_graph": off.height, "windows": f.height,
                  "max_running_with_graph": int(on["running_reqs"].max()) if on.height and
                  on["running_reqs"].null_count() < on.height else None,
                  "min_running_without_graph": int(off["running_reqs"].min()) if
                  off["running_reqs"].null_count() < off.height else None,
                  "cuda_graph_max_bs": cfg["value"][0] if cfg.height else None,
                  "definitions": {"windows_without_graph": "speculative decode windows with cuda_graph false"}}
            unit_name = label(src, eng)
            need = ev["min_running_without_graph"]
            out.append(self.finding(
                ctx, f"{off.height} of {f.height} speculative decode windows ran without CUDA graphs in {unit_name}", ev,
                "Raise SGLang --cuda-graph-max-bs (or vLLM capture sizes; drop enforce_eager) to cover the served "
                "batch sizes" + (f" (at least {need})" if need else "") + ".",
                off, score=0.5 * off.height / f.height))
        return out


@register
class CapacityQueueing(Rule):
    """The server is full: KV cache near capacity, requests waiting, TTFT far above TPOT.

    **What it detects.** Windows with KV-cache usage at least ``kv_full`` or waiting requests > 0 in at
    least ``queue_share`` of an engine's windows (at least 60 % when there are fewer than
    ``2 * min_windows`` windows, e.g. a few Prometheus scrapes); or run summaries whose TTFT / TPOT is
    at least ``ttft_tpot_ratio``.

    **Why it matters.** Slowness blamed on speculation is often capacity: requests wait for KV space or
    a prefill slot while decoding itself is fine (vllm #43295: "MTP seems very slow" at AR 77-89 % with
    KV 82-98 % and 6-7 waiting, mean TTFT 154 s). Speculation also takes KV headroom (draft KV,
    lookahead slots), so it can make queueing worse.

    **Evidence.** ``windows_full_or_waiting``, ``windows``, ``max_kv_usage``, ``max_waiting``,
    ``ttft_ms`` / ``tpot_ms`` ratio.

    **Example.** KV usage 0.93-0.98 and 6-7 waiting in 70 % of windows.

    **Fix.** Lower the request rate or add capacity (more KV memory: ``gpu_memory_utilization``,
    smaller ``max_num_seqs``/context, another replica); account for the drafter's KV when sizing.
    """

    code = "CAPACITY_QUEUEING"
    name = "capacity / queueing"
    severity = "warning"
    family = "performance"
    thresholds = ("kv_full", "queue_share", "ttft_tpot_ratio", "min_windows")
    problems = ("P20", "P01")

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        w = ctx.windows
        if w.is_empty():
            return out
        for (src, eng), g in ctx.window_groups(w):
            f = g.filter(pl.col("kv_usage").is_not_null() | pl.col("waiting_reqs").is_not_null())
            if f.height >= th.min_windows:
                hit = f.filter((pl.col("kv_usage").fill_null(0) >= th.kv_full)
                               | (pl.col("waiting_reqs").fill_null(0) > 0))
                share = hit.height / f.height
                # a handful of windows (Prometheus scrapes) needs a clear majority, not one queued window
                need = th.queue_share if f.height >= 2 * th.min_windows else max(th.queue_share, 0.6)
                if share >= need:
                    ev = {"windows_full_or_waiting": hit.height, "windows": f.height, "share": share,
                          "max_kv_usage": f["kv_usage"].max(), "max_waiting": f["waiting_reqs"].max(),
                          "definitions": {"windows_full_or_waiting": f"windows with kv_usage >= {th.kv_full} or "
                                                                     "waiting requests > 0"}}
                    unit_name = label(src, eng)
                    out.append(self.finding(
                        ctx, f"Server at capacity in {unit_name}: KV full or requests waiting in "
                             f"{100 * share:.0f} % of windows", ev, _CAP_REC, hit, score=share * 0.7))
            t = g.filter(pl.col("ttft_ms").is_not_null() & pl.col("tpot_ms").is_not_null() & (pl.col("tpot_ms") > 0))
            for r in t.iter_rows(named=True):
                ratio = r["ttft_ms"] / r["tpot_ms"]
                if ratio >= th.ttft_tpot_ratio:
                    out.append(self.finding(
                        ctx, f"TTFT {r['ttft_ms']:.0f} ms is {ratio:.0f}x TPOT {r['tpot_ms']:.1f} ms in {label(src)}: "
                             "requests queue before decoding",
                        {"ttft_ms": r["ttft_ms"], "tpot_ms": r["tpot_ms"], "ratio": ratio,
                         "definitions": {"ratio": "ttft_ms / tpot_ms"}}, _CAP_REC, [(src, r["line"])],
                        score=0.6))
                    break
        return out


_CAP_REC = ("Capacity, not the drafter: lower the request rate or add capacity (KV memory via "
            "gpu_memory_utilization, fewer max_num_seqs, another replica); size KV including the drafter's.")
