"""Helpers shared by the acceptance rules."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl

from specdec_diag.analysis.rules.base import Acceptance, Context, Rule, label
from specdec_diag.analysis.stats import Sample, interval

#: correctness errors that explain an acceptance symptom on the same source (see run_rules)
CORRECTNESS_CAUSES = ("KV_ROLLBACK", "STRUCTURE_VIOLATION", "PINNED_ACCEPTANCE_LENGTH", "VERIFIER_MISMATCH",
                      "SUSPICIOUS_ACCEPTANCE")


@dataclass
class Unit:
    """One timeline to judge: an engine's spec windows or a trace's speculative steps."""

    label: str
    kind: str  # "windows" | "steps"
    frame: pl.DataFrame
    acc: Acceptance


def units(ctx: Context) -> Iterator[Unit]:
    for (src, eng), g in ctx.window_groups():
        unit_name = label(src, eng)
        yield Unit(unit_name, "windows", g, ctx.window_acceptance((src, eng), g))
    for src, s in ctx.step_groups():
        yield Unit(label(src), "steps", s, ctx.step_acceptance(src, s))


def position_profile(u: Unit) -> list[tuple[float, float]]:
    """(trials, accepted) for each draft position 1..k: trials are drafts that reached the position
    (every earlier one accepted, and it was drafted); from windows trials = drafts x pp[j-1]."""
    if u.kind == "steps":
        g, n = u.frame["gamma_drafted"], u.frame["n_accepted"]
        gmax = int(g.max() or 0)
        return [(float(((g >= j) & (n >= j - 1)).sum()), float(((g >= j) & (n >= j)).sum()))
                for j in range(1, gmax + 1)]
    pp, d = drafted_per_position(u.acc), u.acc.drafts
    if not pp or not d:
        return []
    out, prev = [], 1.0
    for a in pp:
        out.append((d * prev, d * a))
        prev = a
    return out


def drafted_per_position(a: Acceptance) -> list[float] | None:
    """The per-position rates of positions that were drafted. Engines print a vector as long as the
    configured k (vLLM's offline ``spec_decode.py`` prints ``acceptance at token 3..5: 0.00`` with
    2025 draft tokens over 675 drafts = depth 3); positions beyond the drafted depth were never tried,
    so their zeros are not evidence of anything."""
    pp = a.per_position
    if not pp or not a.draft_tokens or not a.drafts:
        return pp
    depth = math.ceil(a.draft_tokens / a.drafts - 1e-9)
    return pp[:depth] if 0 < depth < len(pp) else pp


def enough_drafts(u: Unit, ctx: Context) -> bool:
    th = ctx.thresholds
    if u.acc.draft_tokens is not None:
        return u.acc.draft_tokens >= th.min_draft_tokens
    if u.kind == "windows" and u.acc.k and u.acc.drafts:
        return u.acc.drafts * u.acc.k >= th.min_draft_tokens
    # SGLang-style windows without counts: judge on the number of windows instead
    return u.kind == "windows" and u.frame.height >= 2 * th.min_windows


def unit_sample(rule: Rule, ctx: Context, u: Unit) -> Sample:
    """The evidence behind a judgment of ``u``'s acceptance: its drafted tokens (from drafts x k where
    the engine prints no token counts), else - SGLang prints rates only - its windows."""
    a = u.acc
    if a.draft_tokens is not None:
        return rule.sample(ctx, "draft_tokens", a.draft_tokens)
    if u.kind == "windows" and a.k and a.drafts:
        return rule.sample(ctx, "draft_tokens", a.drafts * a.k)
    return rule.sample(ctx, "windows" if u.kind == "windows" else "steps", u.frame.height)


def rate_interval(a: Acceptance) -> dict[str, Any] | None:
    """Wilson interval of the acceptance rate (accepted / drafted) where the counts are known."""
    return interval("acceptance_rate", a.accepted, a.draft_tokens)


def gated_off(frame: pl.DataFrame, ctx: Context) -> bool:
    """Windows that say "nothing was drafted" without printing draft counts: accept length exactly
    1.00 in every one while the running batch is at least ``large_batch`` - where batch-size gates
    (SGLang adaptive speculation, vLLM ``disable_by_batch_size``) switch drafting off. SGLang then
    prints ``accept len: 1.00, accept rate: 0.11`` (1/9: its rate formula with nothing drafted,
    fastrl PR #4), which reads like a broken drafter accepting 11 %."""
    if frame.is_empty() or frame["draft_tokens"].null_count() < frame.height:
        return False
    mal, run = frame["mean_acceptance_length"].drop_nulls(), frame["running_reqs"].drop_nulls()
    if mal.is_empty() or run.is_empty():
        return False
    return bool(((mal - 1.0).abs() < 0.005).all()) and float(run.median()) >= ctx.thresholds.large_batch


def find_cliff(u: Unit, ctx: Context, *, thin: bool = False) -> dict[str, Any] | None:
    """First position j >= 2 whose conditional acceptance falls to about zero, with enough trials,
    while position 1 is reasonable. With ``thin`` a cliff-shaped position reached by fewer than
    ``min_position_trials`` drafts is returned too (its ``trials`` say so): the rule then reports
    "not enough data" instead of staying silent."""
    th = ctx.thresholds
    prof = position_profile(u)
    if len(prof) < 2 or prof[0][0] <= 0:
        return None
    pp1 = prof[0][1] / prof[0][0]
    if pp1 < th.cliff_first_position:
        return None
    conds = [acc / tr if tr > 0 else None for tr, acc in prof]
    reach = 1.0
    for j in range(1, len(prof)):
        tr, acc = prof[j]
        reach *= conds[j - 1] or 0.0
        c = conds[j]
        if c is None or (tr < th.min_position_trials and not thin):
            return None  # (thin: keep scanning - a later zero on few drafts is still worth a note)
        if c < th.cliff_conditional and reach * c < th.cliff_zero:
            before = [x for x in conds[:j] if x is not None]
            return {"position": j + 1, "trials": tr, "accepted": acc, "conditional_rate": c,
                    "conditional_before": sum(before) / len(before), "first_position_rate": pp1,
                    "conditional_rates": [None if x is None else round(x, 4) for x in conds]}
    return None


def change_point(values: list[float], weights: list[float], min_seg: int) -> tuple[int, float, float] | None:
    """Split index t (values[:t] | values[t:]) maximising mean(before) - mean(after), weighted, with
    at least ``min_seg`` items each side; returns (t, before, after)."""
    n = len(values)
    if n < 2 * min_seg:
        return None
    # column-wise; cum_sum adds in order, as the running sums of a Python loop do (same floats)
    f = pl.DataFrame({"v": values, "w": weights}, schema={"v": pl.Float64, "w": pl.Float64})
    f = f.select(cw=pl.col("w").cum_sum(), cv=(pl.col("v") * pl.col("w")).cum_sum())
    f = pl.concat([pl.DataFrame({"cw": [0.0], "cv": [0.0]}), f]).with_row_index("t")
    tw, tv = f["cw"][n], f["cv"][n]
    c = f.slice(min_seg, n - 2 * min_seg + 1).filter((pl.col("cw") > 0) & ((tw - pl.col("cw")) > 0)).select(
        "t", b=pl.col("cv") / pl.col("cw"), a=(tv - pl.col("cv")) / (tw - pl.col("cw")))
    if c.height == 0:
        return None
    c = c.with_columns(d=pl.col("b") - pl.col("a"))
    if not math.isnan(c["d"][0]):  # (a NaN first candidate is never beaten: a Python loop keeps it)
        c = c.filter(pl.col("d").is_not_nan())
        c = c.slice(int(c["d"].arg_max()), 1)  # the first t of the largest drop
    t, b, a = c.row(0)[:3]
    return int(t), b, a


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def fmt(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None else f"{x:,.{nd}f}"
