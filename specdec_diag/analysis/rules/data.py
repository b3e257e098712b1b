"""Input-quality rules: lines that did not parse, numbers that engines define differently from what
users assume, and benchmark artifacts that make the numbers unrepresentative.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from specdec_diag.analysis.rules.base import (
    ACCEPTANCE_DEFINITIONS,
    Context,
    Finding,
    Rule,
    label,
    register,
)


@register
class MalformedInput(Rule):
    """Lines or records that looked like metrics but could not be parsed.

    **What it detects.** Rows of the ingest's malformed table (per file: count, the most common
    reasons, the first offending lines) and input files that could not be read at all. It is an error
    when at least ``malformed_error_share`` of a file's records are malformed (the numbers from that
    file cannot be trusted) or the file is unreadable, otherwise a warning.

    **Why it matters.** A log format variant the parser does not know, a truncated line or a pasted log
    with a wrapper prefix silently drops windows; the findings would then describe part of the run.

    **Evidence.** ``malformed`` (lines), ``records`` (parsed), ``share``, ``reasons`` (count per reason),
    ``example`` (the first malformed line's text).

    **Example.** ``vllm.log: 12 malformed lines (SpecDecoding line without Drafted count)``.

    **Fix.** Look at the listed lines: fix the logging wrapper or the truncation, or report the new
    format variant (with a sample line) so the parser can learn it.
    """

    code = "MALFORMED_INPUT"
    name = "malformed input"
    severity = "warning"
    family = "data"
    thresholds = ("malformed_error_share", "max_locations")
    problems = ("P09", "P17")

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        res = ctx.result
        out = []
        inputs = {r["path"]: r for r in res.inputs.iter_rows(named=True)} if res.inputs.height else {}
        for path, r in inputs.items():
            if r.get("error"):
                out.append(self.finding(
                    ctx, f"Could not read {path}: {r['error']}",
                    {"error": r["error"], "definitions": {"error": "why the file could not be read"}},
                    "Check the path, permissions and compression of the file.", [(path, None)],
                    severity="error", score=1.0))
        m = res.malformed
        if m.is_empty():
            return out
        for src in m["source"].unique(maintain_order=True).to_list():
            rows = m.filter(pl.col("source") == src).sort("line")
            records = (inputs.get(src) or {}).get("records")
            if records is None:
                records = (ctx.result.windows.filter(pl.col("source") == src).height
                           + ctx.result.steps.filter(pl.col("source") == src).height)
            share = rows.height / max(rows.height + records, 1)
            reasons = dict(rows.group_by("reason").len().sort("len", descending=True).head(5).iter_rows())
            sev = "error" if share >= th.malformed_error_share else "warning"
            ev = {"malformed": rows.height, "records": records, "share": share, "reasons": reasons,
                  "example": (rows["text"][0] or "")[:200],
                  "definitions": {"malformed": "lines that looked like metrics records but did not parse",
                                  "records": "records parsed from the file",
                                  "share": "malformed / (malformed + records)"}}
            out.append(self.finding(
                ctx, f"{rows.height} malformed line(s) in {label(src)} ({100 * share:.0f} % of its records)", ev,
                "Inspect the listed lines: fix wrapper prefixes or truncation, or report the format variant with "
                "a sample line so the parser learns it.", rows, severity=sev, score=share))
        return out


@register
class MetricDefinition(Rule):
    """An engine number that users commonly misread, explained.

    **What it detects.** Every conversion ingest applied to an engine's own numbers (its
    ``definition_note``: SGLang's bonus-including accept rate, vLLM V0's non-prefix counting and
    cumulative counters, llama.cpp lifetime statistics, ...), and - where a prefix acceptance rate
    and k are known - the gap between that rate and Leviathan's per-token alpha.

    **Why it matters.** The same word means different numbers across engines (P09: "27 % is too low"
    with MAL 2.9 at k = 7; "accept length > k" in SGLang because it counts the target's own token; V0
    counters are cumulative). Comparing raw "acceptance rates" across engines or k is meaningless.

    **Evidence.** ``note`` (the conversion) and ``windows`` it applies to; or ``acceptance_rate`` vs
    ``alpha_estimate`` with ``k`` and ``mean_acceptance_length``.

    **Example.** vLLM acceptance rate 27 % at k = 7 is alpha ≈ 0.66: MAL 2.9 tokens per step is healthy.

    **Fix.** Nothing to fix: compare alpha or MAL at equal k, not raw rates; see docs/metrics.md.
    """

    code = "METRIC_DEFINITION"
    name = "metric definition note"
    severity = "info"
    family = "data"
    problems = ("P09",)

    def check(self, ctx: Context) -> list[Finding]:
        out = []
        w = ctx.windows
        if w.height and w["definition_note"].null_count() < w.height:
            notes = w.filter(pl.col("definition_note").is_not_null() & (pl.col("definition_note") != ""))
            # one note per kind of conversion: numbers inside notes vary per line
            notes = notes.with_columns(pl.col("definition_note").str.replace_all(r"\d+(?:\.\d+)?", "N")
                                       .alias("_kind"))
            for (eng, _kind), g in notes.group_by(["engine", "_kind"], maintain_order=True):
                note = g["definition_note"][0]
                out.append(self.finding(
                    ctx, f"{eng}: {note}", {"engine": eng, "note": note, "windows": g.height,
                                            "formats": sorted({str(x) for x in g["format"].to_list()}),
                                            "definitions": {"note": "conversion applied to the engine's numbers"}},
                    "Compare normalised numbers (acceptance rate bonus-excluded, MAL bonus-included, at equal k); "
                    "see docs/metrics.md.", g, score=0.0))
        units: list[tuple[str, Any, pl.DataFrame]] = [
            (label(src, e), ctx.window_acceptance((src, e), g), g)
            for (src, e), g in ctx.window_groups()]
        units += [(label(src), ctx.step_acceptance(src, s), s) for src, s in ctx.step_groups()]
        for unit_name, acc, rows in units:
            if acc.rate is None or acc.alpha is None or not acc.k or acc.k < 2:
                continue
            if acc.alpha - acc.rate < 0.05:
                continue
            out.append(self.finding(
                ctx, f"{unit_name}: acceptance rate {100 * acc.rate:.1f} % at k={acc.k} is not the per-token "
                     f"acceptance: alpha ≈ {acc.alpha:.2f}, {acc.mal or 0:.2f} tokens per step",
                {**acc.evidence(), "definitions": ACCEPTANCE_DEFINITIONS},
                "Judge speculation by alpha or mean acceptance length at a given k: the prefix acceptance rate "
                "falls with k even when every position is equally good.", rows.head(1), score=0.0))
        return out


@register
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
    family = "data"
    thresholds = ("min_draft_tokens", "idle_gen_tps", "idle_share", "identical_windows",
                  "min_request_draft_tokens", "min_windows")
    problems = ("P17", "P09")
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
            run = _identical_run(g, th.identical_windows)
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


def _identical_run(g: pl.DataFrame, need: int) -> pl.DataFrame | None:
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
