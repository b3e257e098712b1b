"""Acceptance rules: how much of the draft the target keeps, how that depends on the draft position,
on time, on context length and on temperature, and whether speculation runs at all.

Each rule judges *units*: one engine's windows (source + engine_id) or one trace's speculative steps,
so two servers or two traces in one input are never mixed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl

from specdec_diag.analysis import theory
from specdec_diag.analysis.rules.base import (
    ACCEPTANCE_DEFINITIONS,
    Acceptance,
    Context,
    Finding,
    Rule,
    insufficient,
    label,
    register,
    timeline,
)

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
    pp, d = u.acc.per_position, u.acc.drafts
    if not pp or not d:
        return []
    out, prev = [], 1.0
    for a in pp:
        out.append((d * prev, d * a))
        prev = a
    return out


def enough_drafts(u: Unit, ctx: Context) -> bool:
    th = ctx.thresholds
    if u.acc.draft_tokens is not None:
        return u.acc.draft_tokens >= th.min_draft_tokens
    if u.kind == "windows" and u.acc.k and u.acc.drafts:
        return u.acc.drafts * u.acc.k >= th.min_draft_tokens
    # SGLang-style windows without counts: judge on the number of windows instead
    return u.kind == "windows" and u.frame.height >= 2 * th.min_windows


def find_cliff(u: Unit, ctx: Context) -> dict[str, Any] | None:
    """First position j >= 2 whose conditional acceptance falls to about zero, with enough trials,
    while position 1 is reasonable."""
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
        if c is None or tr < th.min_position_trials:
            return None
        if c < th.cliff_conditional and reach * c < th.cliff_zero:
            before = [x for x in conds[:j] if x is not None]
            return {"position": j + 1, "trials": tr, "accepted": acc, "conditional_rate": c,
                    "conditional_before": sum(before) / len(before), "first_position_rate": pp1,
                    "conditional_rates": [None if x is None else round(x, 4) for x in conds]}
    return None


@register
class DrafterBroken(Rule):
    """Drafted tokens are many but almost none are accepted: the drafter is broken or mismatched.

    **What it detects.** A unit (one engine's windows or one trace) with at least
    ``min_draft_tokens`` drafted whose acceptance rate is below ``broken_acceptance_rate`` or whose
    mean acceptance length is below ``broken_mal``.

    **Why it matters.** With acceptance near zero every step pays for ``k`` drafts and a ``k+1``-token
    verify and gets one token: speculation is pure overhead. The causes seen in practice are bugs, not
    workload: the drafter's ``lm_head`` overwritten with the target's (vllm-ascend #11374), an engine
    build from an early PR commit (vllm #41789), a converted checkpoint whose MTP layer is unusable
    (vllm #43455), a drafter trained for another serving path (speculators #613).

    **Evidence.** ``draft_tokens``, ``accepted_tokens``, ``acceptance_rate``, ``mean_acceptance_length``,
    ``k``, ``per_position_acceptance`` (the first positions).

    **Example.** ``Drafted: 21,504 tokens, Accepted: 42, MAL 1.03, per-position 0.021, 0.001, 0.000``.

    **Fix.** Check the drafter checkpoint and format (native vs converted), that its ``lm_head`` /
    embeddings are its own, its quantisation vs the target's, the engine build; verify the pair offline
    with ``specdec-diag decode`` on the same prompts.
    """

    code = "DRAFTER_BROKEN"
    name = "drafter broken"
    severity = "error"
    family = "acceptance"
    thresholds = ("min_draft_tokens", "broken_acceptance_rate", "broken_mal")
    problems = ("P03", "P04")
    explained_by = ("PINNED_ACCEPTANCE_LENGTH", "VERIFIER_MISMATCH", "KV_ROLLBACK")

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for u in units(ctx):
            a = u.acc
            low_rate = a.rate is not None and a.rate < th.broken_acceptance_rate
            low_mal = a.mal is not None and a.mal < th.broken_mal
            if not (low_rate or low_mal):
                continue
            if not enough_drafts(u, ctx):
                out.append(insufficient(self, ctx, "draft_tokens", a.draft_tokens or 0, th.min_draft_tokens,
                                        u.frame))
                continue
            ev = {**a.evidence(), "per_position_acceptance": (a.per_position or [])[:4],
                  "definitions": ACCEPTANCE_DEFINITIONS}
            if a.draft_tokens is None and a.mal is not None and abs(a.mal - 1.0) < 0.005:
                # verify steps ran (the engine printed an accept length) but nothing was accepted; an
                # adaptive gate that switched drafting off looks the same (P16), so say so
                ev["note"] = ("MAL exactly 1.00 without draft counts: drafts verified and all rejected, or an "
                              "adaptive gate bypassing the drafter")
            out.append(self.finding(
                ctx, f"Drafter broken or mismatched in {u.label}: acceptance "
                     f"{_pct(a.rate)}, mean acceptance length {_f(a.mal)} over "
                     + (f"{_f(a.draft_tokens, 0)} drafted tokens" if a.draft_tokens is not None
                        else f"{u.frame.height} windows"), ev,
                "Check the drafter: its own lm_head/embeddings (not the target's), checkpoint format "
                "(native vs converted), quantisation matching the target, engine build; reproduce offline "
                "with `specdec-diag decode` on the same prompts.",
                u.frame, score=1.0 - (a.mal or 1.0) / ((a.k or 1) + 1)))
        return out


@register
class LowAcceptance(Rule):
    """Acceptance below what a matched drafter should reach.

    **What it detects.** A unit with enough drafts whose estimated Leviathan ``alpha`` (the
    per-token acceptance probability; from per-position counts, else from MAL and k by inverting
    Eq. 1) is below ``low_alpha`` - but not so low that DRAFTER_BROKEN applies. The per-position
    conditional rates are shown: a flat profile means an i.i.d. mismatch between the two models, a
    falling one means later positions are worse.

    **Why it matters.** Speed-up grows steeply with alpha (Eq. 1: at k = 4, alpha 0.4 gives 1.65
    tokens per step, 0.8 gives 3.36). Raw engine "acceptance rates" understate alpha (vLLM's counts
    positions after the first rejection as failures), so the rule judges alpha, not the printed rate.

    **Evidence.** ``alpha_estimate``, ``acceptance_rate``, ``mean_acceptance_length``, ``k``,
    ``conditional_per_position``, ``expected_mal_at_threshold``.

    **Example.** alpha = 0.31 (AR 24 %, MAL 1.9 at k = 4); conditional rates 0.33, 0.30, 0.31, 0.29.

    **Fix.** Use a drafter trained for this target (same fine-tune, chat template, language; P19),
    check the sampling parameters sent to the drafter, or lower k so fewer drafts are wasted.
    """

    code = "LOW_ACCEPTANCE"
    name = "low acceptance"
    severity = "warning"
    family = "acceptance"
    thresholds = ("min_draft_tokens", "low_alpha", "broken_acceptance_rate", "broken_mal")
    problems = ("P19", "P09", "P12", "P13")
    explained_by = CORRECTNESS_CAUSES + ("DRAFTER_BROKEN", "POSITION_CLIFF")

    def check(self, ctx: Context) -> list[Finding]:
        from specdec_diag.analysis import metrics

        th = ctx.thresholds
        out = []
        for u in units(ctx):
            a = u.acc
            if a.alpha is None or a.alpha >= th.low_alpha:
                continue
            if (a.rate is not None and a.rate < th.broken_acceptance_rate) or (
                    a.mal is not None and a.mal < th.broken_mal):
                continue
            if not enough_drafts(u, ctx):
                out.append(insufficient(self, ctx, "draft_tokens", a.draft_tokens or 0, th.min_draft_tokens,
                                        u.frame))
                continue
            cond = metrics.conditional_per_position(a.per_position)
            exp_mal = theory.expected_tokens_per_step(th.low_alpha, a.k) if a.k else None
            ev = {**a.evidence(), "conditional_per_position": cond, "expected_mal_at_threshold": exp_mal,
                  "definitions": {**ACCEPTANCE_DEFINITIONS,
                                  "conditional_per_position": "P(position j accepted | j-1 accepted)",
                                  "expected_mal_at_threshold": "Eq. 1 MAL at alpha = low_alpha and this k"}}
            out.append(self.finding(
                ctx, f"Low acceptance in {u.label}: alpha {a.alpha:.2f} (acceptance rate {_pct(a.rate)}, "
                     f"MAL {_f(a.mal)}, k={a.k})", ev,
                "Use a drafter trained for this exact target (fine-tune, chat template, language), make sure "
                "the drafter sees the same sampling parameters, and lower k (fewer wasted drafts).",
                u.frame, score=th.low_alpha - a.alpha))
        return out


@register
class PositionCliff(Rule):
    """Later draft positions accept almost never while position 1 is fine: a multi-step drafting bug.

    **What it detects.** A draft position j >= 2 whose conditional acceptance
    ``P(j accepted | j-1 accepted)`` is below ``cliff_conditional`` (and whose overall rate is below
    ``cliff_zero``) although position 1 accepts at least ``cliff_first_position`` and enough drafts
    reached position j-1 (``min_position_trials``) for the zero not to be noise.

    **Why it matters.** Under a healthy drafter the conditional rates are roughly flat; a cliff means
    the drafter's second and later steps are computed from the wrong state: MTP embedding taken before
    RMS norm (ik_llama.cpp #1815), pre- instead of post-norm hidden state (LightLLM #1402), sliding-window
    layers run as full attention (vLLM PR #40898). Every draft beyond the cliff is wasted compute.

    **Evidence.** ``position`` (1-based, first dead position), ``conditional_rate`` there,
    ``conditional_before`` (mean before it), ``first_position_rate``, ``conditional_rates``, ``trials``.

    **Example.** ``Per-position acceptance rate: 0.600, 0.385, 0.215, 0.108, 0.062, 0.000, 0.000``.

    **Fix.** Debug the drafter's multi-step path (hidden state, norm, KV and positions of draft steps
    2..k); until then set k to the position before the cliff.
    """

    code = "POSITION_CLIFF"
    name = "per-position cliff"
    severity = "error"
    family = "acceptance"
    thresholds = ("cliff_first_position", "cliff_conditional", "cliff_zero", "min_position_trials")
    problems = ("P07", "P06", "decoder_anchors §1.10")
    explained_by = ("KV_ROLLBACK", "STRUCTURE_VIOLATION", "PINNED_ACCEPTANCE_LENGTH")

    def check(self, ctx: Context) -> list[Finding]:
        out = []
        for u in units(ctx):
            cliff = find_cliff(u, ctx)
            if not cliff:
                continue
            ev = {**cliff, "k": u.acc.k, "per_position_acceptance": u.acc.per_position,
                  "definitions": {"position": "first draft position (1-based) that about never accepts",
                                  "conditional_rate": "P(position accepted | previous accepted)",
                                  "trials": "drafts that reached this position",
                                  "per_position_acceptance": ACCEPTANCE_DEFINITIONS["per_position_acceptance"]}}
            j = cliff["position"]
            out.append(self.finding(
                ctx, f"Per-position cliff in {u.label}: position {j} accepts "
                     f"{100 * cliff['conditional_rate']:.1f} % of the drafts that reach it (earlier positions "
                     f"{100 * cliff['conditional_before']:.0f} %)", ev,
                f"Debug the drafter's steps 2..k (hidden state/norm, draft KV, positions); meanwhile set "
                f"k = {j - 1} (e.g. vLLM num_speculative_tokens, SGLang --speculative-num-steps).",
                u.frame, score=1.0 - (j - 1) / max(u.acc.k or j, 1)))
        return out


@register
class KTooLarge(Rule):
    """Tail draft positions rarely accept; a smaller k is predicted faster.

    **What it detects.** At least ``tail_positions`` trailing positions accept less than
    ``tail_position_rate``, and the measured per-position profile predicts a faster step at a smaller
    k: expected tokens per step at k' is ``1 + sum(pp[:k'])`` (exact from the data), the step cost is
    ``1 + k' c`` target-forward units (Leviathan Thm 3.8); the best k' must beat the configured k by
    ``min_gain``. ``c`` is measured on traces and ``assumed_cost_ratio`` otherwise.

    **Why it matters.** Each drafted position costs a draft forward and verify compute; positions that
    almost never accept cost without paying (AEON DFlash #6 lowered k 15 → 10; vLLM PR #16937 found
    K=2 faster than K=4; koboldcpp #2262 n-max 8 slower than no speculation).

    **Evidence.** ``k``, ``per_position_acceptance``, ``recommended_k``, ``predicted_gain``,
    ``cost_ratio`` (and whether assumed), ``alpha_estimate`` and theory's ``optimal_gamma``.

    **Example.** k = 15, positions 9-15 below 5 %: k = 8 predicted 9 % faster.

    **Fix.** Lower k to ``recommended_k`` (vLLM ``num_speculative_tokens``, SGLang
    ``--speculative-num-steps``/``--speculative-num-draft-tokens``, llama.cpp ``--draft-max``), or use
    a dynamic-k policy.
    """

    code = "K_TOO_LARGE"
    name = "k too large"
    severity = "warning"
    family = "acceptance"
    thresholds = ("tail_position_rate", "tail_positions", "keep_position_rate", "min_gain",
                  "assumed_cost_ratio", "min_draft_tokens")
    problems = ("P08", "decoder_anchors §1.4")
    explained_by = CORRECTNESS_CAUSES + ("POSITION_CLIFF", "DRAFTER_BROKEN")

    def check(self, ctx: Context) -> list[Finding]:
        from specdec_diag.analysis import metrics

        th = ctx.thresholds
        out = []
        for u in units(ctx):
            pp = u.acc.per_position
            if not pp or len(pp) < 2 or not enough_drafts(u, ctx) or find_cliff(u, ctx):
                continue
            if (u.acc.rate is not None and u.acc.rate < th.broken_acceptance_rate) or (
                    u.acc.mal is not None and u.acc.mal < th.broken_mal):
                continue  # a broken drafter is DRAFTER_BROKEN's finding; k is not the problem
            if any(x is None or math.isnan(x) for x in pp):
                continue
            tail = 0
            for x in reversed(pp):
                if x >= th.tail_position_rate:
                    break
                tail += 1
            if tail < th.tail_positions:
                continue
            c = metrics.cost_ratio(u.frame) if u.kind == "steps" else None
            assumed = c is None
            c = th.assumed_cost_ratio if c is None else c
            k = len(pp)
            speed = [(1.0 + sum(pp[:g])) / (1.0 + g * c) for g in range(1, k + 1)]
            best = max(range(1, k + 1), key=lambda g: (speed[g - 1], -g))
            gain = speed[best - 1] / speed[k - 1] - 1.0
            if best >= k or gain < th.min_gain:
                continue
            keep = max([j + 1 for j, x in enumerate(pp) if x >= th.keep_position_rate], default=1)
            opt = theory.optimal_gamma(u.acc.alpha, c) if u.acc.alpha is not None else (None, None)
            ev = {"k": k, "per_position_acceptance": pp, "tail_positions_below": tail,
                  "recommended_k": best, "last_position_above_keep_rate": keep, "predicted_gain": gain,
                  "cost_ratio": c, "cost_ratio_assumed": assumed, "alpha_estimate": u.acc.alpha,
                  "optimal_gamma_iid": opt[0],
                  "definitions": {
                      "predicted_gain": "S(recommended_k)/S(k) - 1 with S(k') = (1 + sum(pp[:k'])) / (1 + k' c)",
                      "cost_ratio": "c = draft forward time / target forward time (measured on traces, "
                                    "else assumed_cost_ratio)",
                      "optimal_gamma_iid": "Leviathan optimal gamma for alpha_estimate and c (i.i.d. model)",
                      "per_position_acceptance": ACCEPTANCE_DEFINITIONS["per_position_acceptance"]}}
            out.append(self.finding(
                ctx, f"k={k} too large in {u.label}: the last {tail} positions accept < "
                     f"{100 * th.tail_position_rate:.0f} %; k={best} predicted {100 * gain:.0f} % faster", ev,
                f"Lower k to {best} (vLLM num_speculative_tokens, SGLang --speculative-num-steps, llama.cpp "
                "--draft-max) or use a dynamic-k policy.",
                u.frame, score=gain))
        return out


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


def _series(u: Unit, ctx: Context) -> tuple[list[float], list[float], pl.DataFrame] | None:
    """Acceptance over time: per window (rate, else (MAL-1)/k) or per block of trace steps."""
    if u.kind == "windows":
        t = timeline(u.frame)
        if t.is_empty():
            return None
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


@register
class AcceptanceCollapse(Rule):
    """Acceptance drops sharply mid-run and stays down.

    **What it detects.** A change point in one engine's acceptance timeline (its interval rows, or the
    differences of cumulative counters) or across a trace's requests: the draft-weighted mean after the
    split is at least ``collapse_relative_drop`` lower than before, at least ``collapse_absolute_drop``
    lower in absolute terms, significant (two-proportion z >= 3 where draft counts exist), with
    ``min_windows`` windows (or requests) on each side. One hard prompt inside a trace is not a collapse.

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
    family = "acceptance"
    thresholds = ("collapse_relative_drop", "collapse_absolute_drop", "min_windows")
    problems = ("P10", "P12", "P18")
    # in one long request time and context grow together: a drop at a context size is the better story
    explained_by = CORRECTNESS_CAUSES + ("ACCEPTANCE_DECAY_CONTEXT",)

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for u in units(ctx):
            ser = _series(u, ctx)
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
            z = ((before - after) / math.sqrt(pool * (1 - pool) * (1 / n1 + 1 / n2))
                 if counted and 0 < pool < 1 else None)
            if z is not None and z < 3.0:
                continue
            first = rows.row(t, named=True)
            ev = {"before": before, "after": after, "relative_drop": drop / before if before else None,
                  "windows_before": t, "windows_after": len(vals) - t,
                  "change_at": {"line": first["line"], "time": str(first.get("time")) if first.get("time")
                                else None},
                  "z": z, "unit": "windows" if u.kind == "windows" else "requests of the trace",
                  "definitions": {"before": "draft-weighted acceptance rate before the change point",
                                  "after": "draft-weighted acceptance rate from the change point on",
                                  "relative_drop": "(before - after) / before",
                                  "z": "two-proportion z of before vs after (draft counts; null without counts)"}}
            out.append(self.finding(
                ctx, f"Acceptance collapsed in {u.label}: {before:.2f} → {after:.2f} from line {first['line']}",
                ev,
                "Inspect outputs after the change point for garbage; A/B with speculation off at T=0; check "
                "for state corruption (draft KV, PD hidden-state transfer) or a traffic change.",
                rows.slice(t), score=drop / before if before else 0.0))
        return out


@register
class AcceptanceDecayContext(Rule):
    """Acceptance falls as the context grows; a sharp drop at one size points at a window bug.

    **What it detects.** Records with a context length (SGLang ``#token`` / request lengths in logs,
    ``context_len`` in traces) split into ``decay_bins`` equal-count bins: the longest-context bin's
    acceptance is at least ``decay_relative_drop`` below the shortest's, and the difference is
    significant (two-proportion z >= 3 when counts exist). When one adjacent-bin step carries at
    least ``sharp_drop_share`` of the decline the drop is called sharp and located.

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
    family = "acceptance"
    thresholds = ("decay_relative_drop", "decay_bins", "sharp_drop_share", "min_draft_tokens")
    problems = ("P06", "P22")
    explained_by = CORRECTNESS_CAUSES

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for u in units(ctx):
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
                pts.filter(pl.col("ctx") >= last["from"])["line"].to_list())), score=rel))
        return out

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


@register
class TemperatureSensitivity(Rule):
    """Acceptance depends strongly on the sampling temperature.

    **What it detects.** Records whose temperature is known (trace headers, engine fields) split into
    greedy-like (T < 0.3) and sampled (T >= 0.7) traffic, each with at least ``min_draft_tokens``;
    the acceptance-rate gap is at least ``temperature_gap``.

    **Why it matters.** A drafter that proposes its argmax is matched by a sampling target only with
    probability p(argmax) (vLLM PR #16899, vllm #40149; llama.cpp PR #27694: +12-15 % accepted length
    at T 0.6-1.0 with probabilistic drafting). Expected, but it means sampled traffic gets much less
    from speculation and may be better served with a smaller k.

    **Evidence.** ``cold`` / ``hot`` acceptance rate, draft tokens and temperatures, ``gap``.

    **Example.** acceptance 0.71 at T=0, 0.38 at T=1.0.

    **Fix.** Enable probabilistic drafting (draft probabilities in the rejection sampler) where the
    engine supports it, and use a smaller k for sampled traffic.
    """

    code = "TEMPERATURE_SENSITIVITY"
    name = "temperature sensitivity"
    severity = "warning"
    family = "acceptance"
    thresholds = ("temperature_gap", "min_draft_tokens")
    problems = ("P05",)
    explained_by = CORRECTNESS_CAUSES

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        parts = []
        s = ctx.spec_steps
        if s.height and s["temperature"].null_count() < s.height:
            parts.append(s.select("source", "line", pl.col("temperature").alias("t"),
                                  pl.col("n_accepted").cast(pl.Float64).alias("a"),
                                  pl.col("gamma_drafted").cast(pl.Float64).alias("d")))
        w = ctx.spec_windows
        if w.height and w["temperature"].null_count() < w.height:
            w = w.filter(pl.col("temperature").is_not_null() & pl.col("draft_tokens").is_not_null()
                         & pl.col("accepted_tokens").is_not_null())
            parts.append(w.select("source", "line", pl.col("temperature").alias("t"),
                                  pl.col("accepted_tokens").cast(pl.Float64).alias("a"),
                                  pl.col("draft_tokens").cast(pl.Float64).alias("d")))
        if not parts:
            return []
        pts = pl.concat(parts)
        cold = pts.filter(pl.col("t") < 0.3)
        hot = pts.filter(pl.col("t") >= 0.7)
        dc, dh = float(cold["d"].sum() or 0), float(hot["d"].sum() or 0)
        if dc < th.min_draft_tokens or dh < th.min_draft_tokens:
            return []
        rc, rh = float(cold["a"].sum()) / dc, float(hot["a"].sum()) / dh
        gap = rc - rh
        if abs(gap) < th.temperature_gap:
            return []
        ev = {"cold": {"acceptance_rate": rc, "draft_tokens": dc, "temperatures": sorted(set(cold["t"].to_list()))},
              "hot": {"acceptance_rate": rh, "draft_tokens": dh, "temperatures": sorted(set(hot["t"].to_list()))},
              "gap": gap,
              "definitions": {"cold": "records at T < 0.3", "hot": "records at T >= 0.7",
                              "acceptance_rate": "accepted / drafted (bonus excluded)",
                              "gap": "cold - hot acceptance rate"}}
        return [self.finding(
            ctx, f"Acceptance depends on temperature: {rc:.2f} at T<0.3 vs {rh:.2f} at T>=0.7", ev,
            "Enable probabilistic drafting (draft probabilities in the rejection sampler) if the engine "
            "supports it; use a smaller k for sampled traffic.", hot, score=abs(gap))]


SPEC_CONFIG_KEYS = ("num_speculative_tokens", "draft_model", "method", "proposer", "speculative_algorithm",
                    "speculative_num_steps", "speculative_num_draft_tokens", "speculative_draft_model_path",
                    "draft_max", "n_draft", "spec_type")


@register
class SpecInactive(Rule):
    """Speculation is configured but not running.

    **What it detects.** An engine whose speculative records show no drafting at all (zero drafts /
    draft tokens in every window); per-request records where most requests
    drafted nothing after the first ones (llama.cpp ngram only on the first request); a speculative
    setup in the startup configuration with throughput lines but no speculative line anywhere; a
    speculative-mode trace that never drafted.

    **Why it matters.** The server pays the drafter's memory and setup, users believe speculation is on,
    and nothing is gained (llama.cpp #19231, PrismML llama.cpp #203, fastrl PR #4: accept len exactly
    1.00 once adaptive speculation switched itself off).

    **Evidence.** ``windows``, ``windows_without_drafts``, ``requests_without_drafts``, ``busy_windows``,
    ``config`` (the speculative settings seen).

    **Example.** ``speculative_config={'method': 'eagle3', 'num_speculative_tokens': 4}`` at startup, then
    40 throughput lines and not one ``SpecDecoding metrics`` line. (An engine that prints ``accept len:
    1.00`` in every window did verify drafts and accepted none: that is DRAFTER_BROKEN.)

    **Fix.** Check the speculative flags are accepted by this model/engine version (hybrid/recurrent
    targets disable it silently), that adaptive/batch-size gates (``disable_by_batch_size``) are not
    switching it off, and that draft lines appear in the log.
    """

    code = "SPEC_INACTIVE"
    name = "speculation inactive"
    severity = "warning"
    family = "acceptance"
    thresholds = ("min_windows",)
    problems = ("P16", "P21")

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for (src, eng), g in ctx.window_groups():
            n = g.height
            no_drafts = g.filter((pl.col("num_drafts") == 0) | (pl.col("draft_tokens") == 0)).height
            req = g.filter(pl.col("window") == "request")
            req_none = req.filter(pl.col("draft_tokens").fill_null(0) == 0).height
            unit_name = label(src, eng)
            ev = {"windows": n, "windows_without_drafts": no_drafts,
                  "definitions": {"windows_without_drafts": "speculative windows with 0 drafts / draft tokens"}}
            if n >= th.min_windows and no_drafts == n:
                out.append(self.finding(
                    ctx, f"Speculation configured but not running in {unit_name}: no drafts in any window", ev, _REC,
                    g, score=1.0))
            elif req.height >= th.min_windows and req_none / req.height >= 0.5 and req_none < req.height:
                first_none = req.filter(pl.col("draft_tokens").fill_null(0) == 0)
                ev.update(requests=req.height, requests_without_drafts=req_none)
                out.append(self.finding(
                    ctx, f"Speculation stopped in {unit_name}: {req_none} of {req.height} requests drafted nothing",
                    ev, _REC, first_none, score=req_none / req.height))
        out.extend(self._config_only(ctx))
        for src in {s for s in ctx.steps["source"].unique().to_list()} if ctx.steps.height else ():
            h = ctx.headers.get(src, {})
            s = ctx.steps.filter(pl.col("source") == src)
            if s["baseline"][0] or s.height < th.min_windows or int(s["gamma_drafted"].sum()) > 0:
                continue
            if not int(s["gamma_requested"].sum()):
                continue
            out.append(self.finding(
                ctx, f"Speculative trace {label(src)} never drafted a token in {s.height} steps",
                {"steps": s.height, "mode": h.get("mode"),
                 "definitions": {"steps": "steps with gamma_requested > 0 but gamma_drafted == 0"}},
                _REC, s, score=1.0))
        return out

    def _config_only(self, ctx: Context) -> list[Finding]:
        cfg = ctx.configs
        if cfg.is_empty():
            return []
        spec_cfg = cfg.filter(pl.col("key").is_in(list(SPEC_CONFIG_KEYS))
                              & ~pl.col("value").str.to_lowercase().is_in(["none", "null", "0", "false", ""]))
        out = []
        w = ctx.windows
        for src in spec_cfg["source"].unique().to_list():
            mine = w.filter(pl.col("source") == src) if w.height else w
            if mine.is_empty() or ctx.spec_windows.filter(pl.col("source") == src).height:
                continue
            busy = mine.filter(pl.col("gen_tps").fill_null(0) > 0)
            if busy.height < ctx.thresholds.min_windows:
                continue
            conf = {k: v for k, v in spec_cfg.filter(pl.col("source") == src).select("key", "value").iter_rows()}
            out.append(self.finding(
                ctx, f"Speculation configured in {label(src)} but no speculative metrics line in "
                     f"{busy.height} busy windows",
                {"config": conf, "busy_windows": busy.height,
                 "definitions": {"busy_windows": "throughput windows with generation > 0 tok/s",
                                 "config": "speculative settings seen at startup"}},
                _REC, spec_cfg.filter(pl.col("source") == src), score=0.9))
        return out


_REC = ("Check that this engine/model version actually enables the speculative method (hybrid/recurrent "
        "targets may disable it silently), that no batch-size/adaptive gate (disable_by_batch_size) turns it "
        "off, and that drafting appears in the logs (vLLM: log stats enabled).")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _f(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None else f"{x:,.{nd}f}"
