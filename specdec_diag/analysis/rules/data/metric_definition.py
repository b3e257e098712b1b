"""METRIC_DEFINITION: An engine number that users commonly misread, explained."""

from __future__ import annotations

from typing import Any

import polars as pl

from specdec_diag.analysis.rules.base import ACCEPTANCE_DEFINITIONS, Context, Finding, Need, Rule, label


class MetricDefinition(Rule):
    """An engine number that users commonly misread, explained.

    **What it detects.** Every conversion ingest applied to an engine's own numbers (its
    ``definition_note``: SGLang's bonus-including accept rate, vLLM V0's non-prefix counting and
    cumulative counters, llama.cpp lifetime statistics, ...), and - where a prefix acceptance rate
    and k are known - the gap between that rate and Leviathan's per-token alpha.

    **Why it matters.** The same word means different numbers across engines (problem 9 in
    docs/problems.md#p09: "27 % is too low" with MAL 2.9 at k = 7; "accept length > k" in SGLang because it
    counts the target's own token; V0 counters are cumulative). Comparing raw "acceptance rates" across
    engines or k is meaningless.

    **Evidence.** ``note`` (the conversion) and ``windows`` it applies to; or ``acceptance_rate`` vs
    ``alpha_estimate`` with ``k`` and ``mean_acceptance_length``.

    **Example.** vLLM acceptance rate 27 % at k = 7 is alpha ≈ 0.66: MAL 2.9 tokens per step is healthy.

    **Fix.** Nothing to fix: compare alpha or MAL at equal k, not raw rates; see docs/metrics.md.
    """

    code = "METRIC_DEFINITION"
    name = "metric definition note"
    severity = "info"
    needs = (Need("records", 1, "records printing the number explained"),)
    problems = (9,)

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
