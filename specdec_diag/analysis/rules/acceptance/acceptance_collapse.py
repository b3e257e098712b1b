"""ACCEPTANCE_COLLAPSE: Acceptance drops sharply mid-run and stays down."""

from __future__ import annotations

import math

import polars as pl

from specdec_diag.analysis.rules.acceptance._helpers import CORRECTNESS_CAUSES, Unit, change_point, units
from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule, timeline
from specdec_diag.analysis.stats import interval


def series(u: Unit, ctx: Context) -> tuple[list[float], list[float], pl.DataFrame] | None:
    """Acceptance over time: per window (rate, else (MAL-1)/k) or per block of trace steps."""
    if u.kind == "windows":
        t = timeline(u.frame)
        if t.is_empty():
            return None
        t = started_order(t)
        # the rate, else accepted / drafted, else (MAL - 1) / k; weight drafted tokens, else drafts, else 1
        dt, nd, k = pl.col("draft_tokens"), pl.col("num_drafts"), pl.col("k")
        v = (pl.when(pl.col("acceptance_rate").is_not_null()).then(pl.col("acceptance_rate"))
             .when(pl.col("accepted_tokens").is_not_null() & dt.is_not_null() & (dt != 0))
             .then(pl.col("accepted_tokens") / dt)
             .when(pl.col("mean_acceptance_length").is_not_null() & k.is_not_null() & (k != 0))
             .then((pl.col("mean_acceptance_length") - 1.0) / k))
        w = pl.when(dt.is_not_null() & (dt != 0)).then(dt).when(nd.is_not_null() & (nd != 0)).then(nd).otherwise(1)
        t = t.with_columns(v.cast(pl.Float64).alias("_v"), w.cast(pl.Float64).alias("_w"))
        t = t.filter(pl.col("_v").is_not_null() & pl.col("_v").is_not_nan())
        return t["_v"].to_list(), t["_w"].to_list(), t.drop("_v", "_w")
    # traces: one point per request, in order. Blocks of steps inside a request are not used: one
    # hard prompt (a greedy loop the draft cannot follow) is not a collapse, and within one long
    # request time and context length move together (ACCEPTANCE_DECAY_CONTEXT's territory)
    g = u.frame.group_by("request", maintain_order=True).agg(
        pl.col("n_accepted").sum().alias("a"), pl.col("gamma_drafted").sum().alias("d"),
        pl.col("line").min().alias("line"), pl.col("source").first().alias("source"))
    g = g.filter(pl.col("d") > 0).sort("request")
    vals = (g["a"] / g["d"]).to_list()
    ws = g["d"].cast(pl.Float64).to_list()
    return vals, ws, g


def per_request(rows: pl.DataFrame) -> bool:
    """Whether a timeline's rows are per-request records (llama-server ``print_timing``, captured
    request traces, benchmark per-request files) rather than intervals of the engine's time."""
    return "window" in rows.columns and rows.height > 0 and rows.select((pl.col("window") == "request").all()).item()


def started_order(t: pl.DataFrame) -> pl.DataFrame:
    """Per-request records in the order their requests started. A log prints a request when it
    finishes; with several slots / sequences in flight a short request started later finishes first,
    so file order mixes prompts of different lengths and difficulty into a false trend. Order by start
    time when every record has one, else by the engine's request number when every record has one
    (llama-server numbers tasks as they arrive: ``task 32``), else as logged."""
    if not per_request(t):
        return t
    if t["time"].null_count() == 0:
        return t.sort(["time", "line"], maintain_order=True)
    if "request" in t.columns:
        num = pl.col("request").cast(pl.Utf8).str.extract(r"(\d+)\s*$").cast(pl.Int64, strict=False)
        if t.select(num.is_not_null().all()).item():
            return t.sort(num, pl.col("line"), maintain_order=True)
    return t


def request_t(before: list[float], after: list[float]) -> float | None:
    """Welch's t of the mean per-request acceptance before vs after: requests differ by prompt far
    more than the binomial noise of their tokens, so a drop between requests is judged against the
    spread between requests, not against a token count (None when a side has no spread estimate)."""
    n1, n2 = len(before), len(after)
    if n1 < 2 or n2 < 2:
        return None
    m1, m2 = sum(before) / n1, sum(after) / n2
    v1 = sum((x - m1) ** 2 for x in before) / (n1 - 1)
    v2 = sum((x - m2) ** 2 for x in after) / (n2 - 1)
    se = math.sqrt(v1 / n1 + v2 / n2)
    return (m1 - m2) / se if se > 0 else math.inf if m1 > m2 else None


class AcceptanceCollapse(Rule):
    """Acceptance drops sharply mid-run and stays down.

    **What it detects.** A change point in one engine's acceptance timeline (its interval rows, or the
    differences of cumulative counters) or across a trace's requests: the draft-weighted mean after the
    split is at least ``collapse_relative_drop`` lower than before, at least ``collapse_absolute_drop``
    lower in absolute terms, significant (two-proportion z >= 3 where draft counts exist), with
    ``min_windows`` windows (or requests) on each side. One hard prompt inside a trace is not a collapse.
    Per-request records (llama-server ``print_timing`` lines, captured request traces) are printed as
    requests finish; with several slots in flight that order mixes prompts, so they are judged in the
    order the requests started (start time, else the engine's request number) and the drop must stand
    out from the spread between requests (Welch t >= 3 over the request rates, not a token count).

    **Why it matters.** A drafter does not get worse by itself mid-run. A sustained collapse follows a
    state corruption (draft KV, hidden-state transfer in PD mode, a bad batch-expansion path) or a
    traffic change; vLLM #36872 (61 % → 0.9 % while output degraded), vllm-ascend #13523 (gradual fall
    to 0), vLLM PR #52816 (window collapsing to 0.057, 0.000, ...).

    **Evidence.** ``before`` / ``after`` mean acceptance, ``relative_drop``, ``windows_before`` /
    ``windows_after``, ``change_at`` (the first collapsed window's line and time).

    **Example.** Acceptance 0.58 over 12 windows, then 0.04 over 9 windows from line 1,204.

    **Fix.** Check outputs around the change point for garbage; compare with speculation off at T=0;
    restart to see if it recovers (state corruption) and look for what changed (traffic, a PD transfer,
    batch size crossing a threshold).
    """

    code = "ACCEPTANCE_COLLAPSE"
    name = "acceptance collapse"
    severity = "warning"
    thresholds = ("collapse_relative_drop", "collapse_absolute_drop", "min_windows")
    needs = (Need("windows", "min_windows", "windows (or trace requests) on each side of the change point"),)
    problems = (10, 12, 18)
    # in one long request time and context grow together: a drop at a context size is the better story
    explained_by = CORRECTNESS_CAUSES + ("ACCEPTANCE_DECAY_CONTEXT",)

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for u in units(ctx):
            if u.frame.height < 2 * th.min_windows:  # its timeline / requests are fewer still: no split
                continue
            ser = series(u, ctx)
            if not ser:
                continue
            vals, ws, rows = ser
            cp = change_point(vals, ws, th.min_windows)
            if not cp:
                continue
            t, before, after = cp
            drop = before - after
            if drop < th.collapse_absolute_drop or after > before * (1 - th.collapse_relative_drop):
                continue
            n1, n2 = sum(ws[:t]), sum(ws[t:])
            pool = (before * n1 + after * n2) / (n1 + n2)
            counted = any(w > 1 for w in ws)  # weights are draft counts (else one per window: no test)
            requests = u.kind == "windows" and per_request(rows)
            if requests:
                z = request_t(vals[:t], vals[t:])
            else:
                z = ((before - after) / math.sqrt(pool * (1 - pool) * (1 / n1 + 1 / n2))
                     if counted and 0 < pool < 1 else None)
            if (z is not None and z < 3.0) or (requests and z is None):
                continue
            first = rows.row(t, named=True)
            ev = {"before": before, "after": after, "relative_drop": drop / before if before else None,
                  "windows_before": t, "windows_after": len(vals) - t,
                  "change_at": {"line": first["line"], "time": str(first.get("time")) if first.get("time")
                                else None},
                  "z": z, "unit": ("requests, as started" if requests else "windows") if u.kind == "windows"
                  else "requests of the trace",
                  "definitions": {"before": "draft-weighted acceptance rate before the change point",
                                  "after": "draft-weighted acceptance rate from the change point on",
                                  "relative_drop": "(before - after) / before",
                                  "z": "per-request records: Welch t of the request rates before vs after; "
                                       "else two-proportion z of before vs after (draft counts; null without "
                                       "counts)"}}
            out.append(self.finding(
                ctx, f"Acceptance collapsed in {u.label}: {before:.2f} → {after:.2f} from line {first['line']}",
                ev,
                "Inspect outputs after the change point for garbage; A/B with speculation off at T=0; check "
                "for state corruption (draft KV, PD hidden-state transfer) or a traffic change.",
                rows.slice(t), score=drop / before if before else 0.0,
                sample=self.sample(ctx, "windows", min(t, len(vals) - t)),
                interval=interval("acceptance_rate (after)", after * n2, n2) if counted else None))
        return out
