"""MALFORMED_INPUT: Lines or records that looked like metrics but could not be parsed."""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule, label


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
    thresholds = ("malformed_error_share", "max_locations")
    needs = (Need("lines", 1, "lines that looked like metrics and did not parse"),)
    problems = (9, 17)

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
            steps = ctx.result.steps.filter(pl.col("source") == src).height
            if steps:  # a trace's records are its step lines (its windows are one per request)
                records = steps
            elif records is None:
                records = ctx.result.windows.filter(pl.col("source") == src).height
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
