"""NO_SPEEDUP: Speculation is no faster (or slower) than decoding without it."""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis import theory
from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule, label, step_acceptance
from specdec_diag.analysis.rules.performance._helpers import timed_rows


class NoSpeedup(Rule):
    """Speculation is no faster (or slower) than decoding without it.

    **What it detects.** A plain-decoding baseline in the same input - a baseline-mode trace (or a
    baseline time per token in a trace header), or engine logs without any speculative record next to
    logs with them - and a speculative run whose tokens per second are at most
    ``no_speedup_ratio`` times the baseline's. Engine logs are compared on windows that generated
    (``gen_tps`` above ``idle_gen_tps``), by median, per engine. A trace without a baseline is judged
    by the predicted speed-up ``S(alpha, gamma, c)`` from its own acceptance and measured cost ratio.

    **Why it matters.** Speculation trades extra compute for fewer sequential target steps; when the trade
    does not pay, users get a slower server with more memory pressure (problem 1 in docs/problems.md#p01,
    vllm #8439: 61.8 vs 69.8 tok/s; koboldcpp #2262; llama.cpp #25908). The other findings (draft cost, batch size,
    cuda graphs, low acceptance) say why.

    **Benchmarks.** A benchmark output that prints speed with and without speculation (ExLlamaV2's
    ``speed, -SD`` / ``speed, +SD``, Spec-Bench, two ``bench_serving`` summaries, a pasted table of
    runs; ingest ``bench``) is a measured pair: per load level (concurrency / batch size) the fastest
    speculative run against the baseline printed nearest to it, speeds of one definition only (output
    tok/s, else 1000 / TPOT); it fires where that speed-up is at most ``no_speedup_ratio``.

    **Evidence.** ``speculative_tps``, ``baseline_tps``, ``speedup`` (their ratio), the sources compared;
    for a benchmark every load level's comparison and the speed definition.

    **Example.** speculative 61.8 tok/s vs baseline 69.8 tok/s: 0.89x.

    **Fix.** Read the accompanying findings; typical knobs: lower k, disable speculation above a batch
    size (vLLM ``disable_by_batch_size``), a cheaper drafter, or no speculation for this workload.
    """

    code = "NO_SPEEDUP"
    name = "no speed-up"
    severity = "warning"
    thresholds = ("no_speedup_ratio", "idle_gen_tps", "min_windows", "min_steps", "broken_acceptance_rate",
                  "broken_mal")
    needs = (Need("steps", "min_steps", "timed trace steps"),
             Need("windows", "min_windows", "windows with and without speculation"),
             Need("runs", 1, "a measured baseline and a speculative run"))
    problems = (1, 14, 22)
    theory = ("1.4",)

    def check(self, ctx: Context) -> list[Finding]:
        from specdec_diag.analysis import metrics

        th = ctx.thresholds
        measured = ctx.memo.get("measured_speedup")
        if measured:  # a load-matched run without speculation was measured: that, not a model, decides
            return self._measured(ctx, measured)
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
                        _REC, s, score=1.0 - ratio, sample=self.sample(ctx, "runs", 1)))
        else:
            out.extend(self._predicted(ctx))
        out.extend(self._logs(ctx))
        out.extend(self._benchmarks(ctx))
        return out

    def _benchmarks(self, ctx: Context) -> list[Finding]:
        """A benchmark that printed runs with and without speculation (comparisons.benchmark_speedups):
        one finding per file, naming each load level where no speculative run beat the baseline."""
        from specdec_diag.analysis.comparisons import benchmark_speedups

        th = ctx.thresholds
        by_src: dict[str, list[dict]] = {}
        for c in benchmark_speedups(ctx.windows):
            by_src.setdefault(c["source"], []).append(c)
        out = []
        for src, comps in by_src.items():
            slow = [c for c in comps if c["speedup"] <= th.no_speedup_ratio]
            if not slow:
                continue
            worst = min(slow, key=lambda c: c["speedup"])
            lines = [(src, c["baseline"]["line"]) for c in slow] + [
                (src, s["line"]) for c in slow for s in c["speculative"]]
            ev = {"speculative_tps": worst["speculative_tps"], "baseline_tps": worst["baseline_tps"],
                  "speedup": worst["speedup"], "basis": "measured (benchmark output)", "load": worst["load"],
                  "comparisons": [{k: c[k] for k in ("load", "speedup", "best", "baseline", "speculative")} for c in comps],
                  "comparisons_without_speedup": len(slow), "comparisons_made": len(comps),
                  "definitions": {"speedup": "best speculative run's speed / the baseline run's speed, "
                                             + worst["definition"],
                                  "speculative_tps": "speed of the fastest speculative run (same definition)",
                                  "baseline_tps": "speed of the run without speculation (same definition)"}}
            at = f" at {worst['load']} running requests" if worst["load"] is not None else ""
            out.append(self.finding(
                ctx, f"Benchmark in {label(src)}: the fastest speculative run is {worst['speedup']:.2f}x the baseline"
                     f"{at} ({worst['speculative_tps']:.4g} vs {worst['baseline_tps']:.4g}; "
                     f"{len(slow)} of {len(comps)} comparison(s) without a speed-up)", ev, _REC, lines,
                score=1.0 - worst["speedup"], sample=self.sample(ctx, "runs", len(slow))))
        return out

    def _measured(self, ctx: Context, m: dict) -> list[Finding]:
        """This run against the paired run without speculation (same model, matched load)."""
        ratio = m["speedup"]
        if ratio is None or ratio > ctx.thresholds.no_speedup_ratio:
            return []
        rows = ctx.spec_windows if ctx.spec_windows.height else ctx.spec_steps
        ev = {"speculative_tps": m.get("speculative_tps"), "baseline_tps": m.get("baseline_tps"), "speedup": ratio,
              "basis": "measured", "baseline_run": m.get("baseline_run"), "load": m.get("load"),
              "definitions": {"speedup": "speculative_tps / baseline_tps, generation throughput at matched load",
                              "baseline_run": "the run of the same model without speculation it is paired with"}}
        return [self.finding(ctx, f"Measured speed-up {ratio:.2f}x against {m.get('baseline_run')} "
                                  f"({m.get('speculative_tps') or 0:.1f} vs {m.get('baseline_tps') or 0:.1f} tok/s)",
                             ev, _REC, rows, score=1.0 - ratio)]

    def _predicted(self, ctx: Context) -> list[Finding]:
        """No baseline in the input: Leviathan's S(alpha, gamma, c) from the trace's own alpha and
        measured c is the best available estimate of the speed-up."""
        from specdec_diag.analysis import metrics

        th = ctx.thresholds
        out = []
        for src, s in ctx.step_groups():
            timed = timed_rows(s)
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
                score=1.0 - pred, sample=self.sample(ctx, "steps", timed.height)))
        return out

    def _logs(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        w = ctx.windows
        if w.is_empty() or w["gen_tps"].null_count() == w.height:
            return []
        spec_src = set(ctx.spec_windows["source"].unique().to_list()) if ctx.spec_windows.height else set()
        # benchmark runs are compared within their benchmark (_benchmarks), never pooled as windows
        busy = w.filter((pl.col("gen_tps") > th.idle_gen_tps) & ~pl.col("format").fill_null("").str.starts_with("bench"))
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
                     f"({ratio:.2f}x)", ev, _REC, spec, score=1.0 - ratio,
                sample=self.sample(ctx, "windows", min(spec.height, base.height))))
        return out


_REC = ("See the other findings for the cause; typical knobs: lower k, disable speculation above a batch size "
        "(vLLM speculative_config disable_by_batch_size / SGLang batch gate), a cheaper drafter, CUDA graphs "
        "for the served batch sizes - or no speculation for this workload.")
