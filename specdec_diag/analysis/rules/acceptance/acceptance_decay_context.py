"""ACCEPTANCE_DECAY_CONTEXT: Acceptance falls as the context grows; a sharp drop at one size points at a
window bug."""

from __future__ import annotations

import math

import polars as pl

from specdec_diag.analysis.rules.acceptance._helpers import CORRECTNESS_CAUSES, Unit, change_point, units
from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule, timeline
from specdec_diag.analysis.stats import interval

#: context lengths a pasted summary table needs, and the share of its adjacent steps that must fall
TABLE_MIN_POINTS = 3
TABLE_FALLING_SHARE = 0.6
#: the ingest format of a pasted acceptance-vs-context table (ingest/bench_context.py)
TABLE_FORMAT = "bench-context-table"


def _summary_table(frame: pl.DataFrame) -> bool:
    return frame.height > 0 and "format" in frame.columns and bool(frame["format"].eq_missing(TABLE_FORMAT).all())


class AcceptanceDecayContext(Rule):
    """Acceptance falls as the context grows; a sharp drop at one size points at a window bug.

    **What it detects.** Records with a context length (SGLang ``#token`` / request lengths in logs,
    ``context_len`` in traces) split into ``decay_bins`` equal-count bins: the longest-context bin's
    acceptance is at least ``decay_relative_drop`` below the shortest's, and the difference is
    significant (two-proportion z >= 3 when counts exist). When one adjacent-bin step carries at
    least ``sharp_drop_share`` of the decline the drop is called sharp and located.

    A pasted acceptance-vs-context table (ingest ``bench-context-table``: one summary value per
    context length, no counts) is judged on its own: at least ``TABLE_MIN_POINTS`` (3) lengths, a
    first-to-last drop of at least ``decay_relative_drop`` in the acceptance rate (or, without one,
    in accepted tokens per step = acceptance length - 1), and at least ``TABLE_FALLING_SHARE`` (60 %)
    of the steps between adjacent lengths falling; no significance test (speculators #684: EAGLE3
    2.30 at 2k -> 1.08 at 20k, the sliding-window drafter flat and not flagged).

    **Why it matters.** A one-layer draft head loses long-range information (smooth decay: vLLM #47602,
    sglang #30763); drafter sliding-window layers run as full attention fall off a cliff at the window
    size (AEON DFlash #6: collapse past ~2k tokens, fixed by vLLM PR #40898).

    **Evidence.** ``bins`` (context range, acceptance, drafts), ``relative_drop``, ``z``, ``sharp``,
    ``drop_at_context``.

    **Example.** acceptance 0.71 at 0-1.9k tokens, 0.69 at 1.9-2.0k, 0.18 at 2.1-8k: sharp drop at 2,048.

    **Fix.** Sharp: check the drafter's attention window / RoPE scaling at that length. Smooth: use a
    smaller k for long-context traffic or a drafter trained on long contexts.
    """

    code = "ACCEPTANCE_DECAY_CONTEXT"
    name = "acceptance decays with context"
    severity = "warning"
    thresholds = ("decay_relative_drop", "decay_bins", "sharp_drop_share", "min_draft_tokens")
    needs = (Need("draft_tokens", "min_draft_tokens", "drafted tokens over the context-length bins"),
             Need("context_points", TABLE_MIN_POINTS, "context lengths of a pasted acceptance-vs-context table"))
    problems = (6, 22)
    explained_by = CORRECTNESS_CAUSES

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for u in units(ctx):
            if u.kind == "windows" and _summary_table(u.frame):
                out.extend(f for f in [self._table_trend(ctx, u)] if f is not None)
                continue
            pts = self._points(u)
            if pts is None or pts.height < 2 * th.decay_bins or float(pts["d"].sum()) < th.min_draft_tokens:
                continue
            pts = pts.sort("ctx")
            n = pts.height
            bins = []
            for b in range(th.decay_bins):
                part = pts.slice(b * n // th.decay_bins, (b + 1) * n // th.decay_bins - b * n // th.decay_bins)
                d = float(part["d"].sum())
                if d <= 0:
                    return out
                bins.append({"from": int(part["ctx"].min()), "to": int(part["ctx"].max()),
                             "acceptance": float(part["a"].sum()) / d, "drafts": d})
            first, last = bins[0], bins[-1]
            if first["acceptance"] <= 0:
                continue
            rel = (first["acceptance"] - last["acceptance"]) / first["acceptance"]
            p1, p2, n1, n2 = first["acceptance"], last["acceptance"], first["drafts"], last["drafts"]
            pool = (p1 * n1 + p2 * n2) / (n1 + n2)
            se = math.sqrt(pool * (1 - pool) * (1 / n1 + 1 / n2)) if 0 < pool < 1 else 0.0
            z = (p1 - p2) / se if se > 0 else 0.0
            if rel < th.decay_relative_drop or z < 3.0:
                continue
            steps = [bins[i]["acceptance"] - bins[i + 1]["acceptance"] for i in range(len(bins) - 1)]
            total = first["acceptance"] - last["acceptance"]
            i_max = max(range(len(steps)), key=lambda i: steps[i])
            sharp = steps[i_max] >= th.sharp_drop_share * total
            at = None
            if sharp:
                cp = change_point(pts["a"].cast(pl.Float64).to_list(), pts["d"].cast(pl.Float64).to_list(),
                                  max(3, n // 20))
                at = int(pts["ctx"][cp[0]]) if cp else bins[i_max + 1]["from"]
            ev = {"bins": bins, "relative_drop": rel, "z": z, "sharp": sharp, "drop_at_context": at,
                  "definitions": {"bins": "equal-count context-length bins: range, acceptance = accepted/"
                                          "drafted, drafts = draft tokens",
                                  "relative_drop": "(first bin - last bin) / first bin",
                                  "z": "two-proportion z of first vs last bin",
                                  "drop_at_context": "context length of the sharp drop (change point)"}}
            title = (f"Acceptance drops sharply near context {at} in {u.label}" if sharp else
                     f"Acceptance decays with context length in {u.label}: {first['acceptance']:.2f} → "
                     f"{last['acceptance']:.2f}")
            rec = ("Sharp drop at one length: check the drafter's attention window / sliding-window layers and "
                   "RoPE scaling at that size." if sharp else
                   "Smooth decay: lower k for long-context traffic (or disable speculation past a length) or "
                   "use a drafter trained on long contexts.")
            out.append(self.finding(ctx, title, ev, rec, u.frame.filter(pl.col("line").is_in(
                pts.filter(pl.col("ctx") >= last["from"])["line"].to_list())), score=rel,
                sample=self.sample(ctx, "draft_tokens", float(pts["d"].sum())),
                interval=interval("acceptance_rate (longest-context bin)", last["acceptance"] * n2, n2)))
        return out

    def _table_trend(self, ctx: Context, u: Unit) -> Finding | None:
        """A pasted acceptance-vs-context table: one summary value per context length, no draft counts,
        so no z test. The decay must be large (``decay_relative_drop``, first to last context) and
        steady (at least ``TABLE_FALLING_SHARE`` of the steps between adjacent lengths fall)."""
        rate = u.frame["acceptance_rate"].drop_nulls().len() > 0
        value = pl.col("acceptance_rate") if rate else pl.col("mean_acceptance_length") - 1.0
        pts = (u.frame.select(pl.col("context_len").alias("ctx"), value.alias("v"), "line").drop_nulls()
               .group_by("ctx").agg(pl.col("v").mean(), pl.col("line").first()).sort("ctx"))
        if pts.height < TABLE_MIN_POINTS:
            return None
        v, c = pts["v"].to_list(), pts["ctx"].to_list()
        rel = (v[0] - v[-1]) / v[0] if v[0] > 0 else 0.0
        falling = sum(b < a for a, b in zip(v[:-1], v[1:], strict=True)) / (len(v) - 1)
        if rel < ctx.thresholds.decay_relative_drop or falling < TABLE_FALLING_SHARE:
            return None
        measure = "acceptance_rate" if rate else "accepted_per_step"
        ev = {"points": [{"context": x, measure: y} for x, y in zip(c, v, strict=True)], "relative_drop": rel,
              "falling_share": falling, "basis": "summary table as printed: no draft counts, no significance test",
              "definitions": {"accepted_per_step": "mean acceptance length - 1 (bonus token excluded): proportional "
                                                   "to the acceptance rate at a fixed k",
                              "relative_drop": "(shortest-context value - longest-context value) / shortest-context value",
                              "falling_share": "share of steps between adjacent context lengths where the value falls"}}
        title = (f"Acceptance decays with context length in {u.label}: {measure} {v[0]:.2f} at {c[0]:,} tokens → "
                 f"{v[-1]:.2f} at {c[-1]:,}")
        rec = ("Use a smaller k (or no speculation) past the length where acceptance no longer pays, or a drafter "
               "trained on long contexts; a sliding-window drafter keeps acceptance flat.")
        return self.finding(ctx, title, ev, rec, u.frame.filter(pl.col("line").is_in(pts["line"].to_list())),
                            score=rel, sample=self.sample(ctx, "context_points", pts.height))

    @staticmethod
    def _points(u: Unit) -> pl.DataFrame | None:
        f = u.frame
        if u.kind == "steps":
            return f.select(pl.col("context_len").alias("ctx"), pl.col("n_accepted").cast(pl.Float64).alias("a"),
                            pl.col("gamma_drafted").cast(pl.Float64).alias("d"), "line")
        f = timeline(f).filter(pl.col("context_len").is_not_null())
        if f.is_empty():
            return None
        d = pl.coalesce(pl.col("draft_tokens").cast(pl.Float64), pl.col("num_drafts").cast(pl.Float64),
                        pl.lit(1.0))
        rate = pl.coalesce(pl.col("accepted_tokens").cast(pl.Float64) / pl.col("draft_tokens").cast(pl.Float64),
                           pl.col("acceptance_rate"),
                           (pl.col("mean_acceptance_length") - 1.0) / pl.col("k").cast(pl.Float64))
        return f.select(pl.col("context_len").alias("ctx"), (rate * d).alias("a"), d.alias("d"), "line").drop_nulls()
