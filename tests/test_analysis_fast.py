"""The column-wise analysis code (metrics over 10^6 windows, rules helpers) gives exactly what the
per-row definitions give: each is compared with a plain Python loop over rows on a 20 k-window frame
with the awkward cases (NaN and null entries, ragged and empty lists, missing weights, -0.0)."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from specdec_diag.analysis import metrics
from specdec_diag.analysis.rules import base
from specdec_diag.analysis.rules.acceptance._helpers import Unit, change_point
from specdec_diag.analysis.rules.acceptance.acceptance_collapse import series
from specdec_diag.analysis.rules.data.benchmark_artifact import identical_run
from specdec_diag.schema import conform_windows

N = 20_000


def _frame(seed: int, weights: bool = True) -> pl.DataFrame:
    rng = random.Random(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    prev = None
    for i in range(N):
        if prev is not None and rng.random() < 0.05:  # replayed window: identical counts and list
            rows.append({**prev, "line": i + 1, "time": t0 + timedelta(seconds=10 * i)})
            continue
        k = rng.choice((3, 3, 3, 5, 0, None))
        n = rng.choice((0, 1, 2, 3, 5, 7))
        pp = sorted((rng.random() for _ in range(n)), reverse=True)
        for j in range(n):
            u = rng.random()
            pp[j] = float("nan") if u < 0.03 else -0.0 if u < 0.05 else pp[j]
        if n and rng.random() < 0.02:
            pp[rng.randrange(n)] = None
        nd = rng.choice((None, rng.randint(1, 4000), rng.randint(1, 4000), 0)) if weights else None
        dt = rng.choice((None, nd * (k or 1) if nd is not None else rng.randint(0, 9000)))
        acc = rng.choice((None, rng.randint(0, 9000)))
        r = {
            "source": rng.choice(("a.log", "b.log")), "line": i + 1, "engine": "vllm",
            "time": t0 + timedelta(seconds=10 * i), "engine_id": rng.choice(("", "Engine 001")),
            "window": rng.choice(("interval", "interval", None)), "k": k, "num_drafts": nd,
            "draft_tokens": dt, "accepted_tokens": acc,
            "acceptance_rate": rng.choice((None, rng.random(), float("nan"))),
            "mean_acceptance_length": rng.choice((None, 1.0 + 3 * rng.random(), float("nan"))),
            "per_position_acceptance": rng.choice((None, pp, pp, pp)), "gen_tps": rng.uniform(0, 100),
        }
        rows.append(r)
        prev = r
    return conform_windows(pl.DataFrame(rows, infer_schema_length=None))


# --- the per-row definitions (as written before the column-wise versions) ------------------------


def _pp_ref(rows: pl.DataFrame) -> list[float | None] | None:
    rows = rows.filter(pl.col("per_position_acceptance").is_not_null()
                       & (pl.col("per_position_acceptance").list.len() > 0))
    if rows.height == 0:
        return None
    lists, weights = rows["per_position_acceptance"].to_list(), rows["_drafts"].to_list()
    if any(w is None for w in weights):
        weights = [1.0] * len(lists)
    out: list[float | None] = []
    for j in range(max(len(x) for x in lists)):
        num = den = 0.0
        for x, w in zip(lists, weights, strict=True):
            if j >= len(x):
                den += w
            elif x[j] is not None and not math.isnan(x[j]):
                num += w * x[j]
                den += w
        out.append(num / den if den > 0 else None)
    while out and out[-1] is None:
        out.pop()
    return out or None


def _mle_ref(rows: pl.DataFrame) -> float | None:
    rows = rows.filter(pl.col("per_position_acceptance").is_not_null() & pl.col("_drafts").is_not_null())
    acc = rej = 0.0
    for pp, d, a in zip(rows["per_position_acceptance"].to_list(), rows["_drafts"].to_list(),
                        rows["accepted_tokens"].to_list(), strict=True):
        if not pp or any(x is None or math.isnan(x) for x in pp):
            continue
        acc += a if a is not None else d * sum(pp)
        rej += d * (1.0 - pp[-1])
    return acc / (acc + rej) if acc + rej > 0 else None


def _k_ref(rows: pl.DataFrame) -> int | None:
    ks = [k for k in rows["k"].drop_nulls().to_list() if k > 0]
    if not ks:
        ks = [len(x) for x in rows["per_position_acceptance"].drop_nulls().to_list() if len(x)]
    if not ks:
        return None
    c = Counter(ks)
    return max(c, key=lambda v: (c[v], v))


def _change_point_ref(values, weights, min_seg):
    n = len(values)
    if n < 2 * min_seg:
        return None
    cw, cv = [0.0], [0.0]
    for v, w in zip(values, weights, strict=True):
        cw.append(cw[-1] + w)
        cv.append(cv[-1] + v * w)
    best = None
    for t in range(min_seg, n - min_seg + 1):
        wb, wa = cw[t], cw[n] - cw[t]
        if wb <= 0 or wa <= 0:
            continue
        b, a = cv[t] / wb, (cv[n] - cv[t]) / wa
        if best is None or b - a > best[1] - best[2]:
            best = (t, b, a)
    return best


def _series_ref(t: pl.DataFrame):
    vals, ws, keep = [], [], []
    for i, r in enumerate(t.iter_rows(named=True)):
        v = r["acceptance_rate"]
        if v is None and r["accepted_tokens"] is not None and r["draft_tokens"]:
            v = r["accepted_tokens"] / r["draft_tokens"]
        if v is None and r["mean_acceptance_length"] is not None and r["k"]:
            v = (r["mean_acceptance_length"] - 1.0) / r["k"]
        if v is None or math.isnan(v):
            continue
        vals.append(float(v))
        ws.append(float(r["draft_tokens"] or r["num_drafts"] or 1))
        keep.append(i)
    return vals, ws, t[keep]


def _identical_ref(g: pl.DataFrame, need: int):
    cols = ["num_drafts", "draft_tokens", "accepted_tokens", "per_position_acceptance"]
    rows = g.filter(pl.col("draft_tokens").fill_null(0) > 0)
    if rows.height < need:
        return None
    keys = [tuple(str(r[c]) for c in cols) for r in rows.iter_rows(named=True)]
    best, i = (0, 0), 0
    while i < len(keys):
        j = i
        while j < len(keys) and keys[j] == keys[i]:
            j += 1
        if j - i > best[1] - best[0]:
            best = (i, j)
        i = j
    return rows.slice(best[0], best[1] - best[0]) if best[1] - best[0] >= need else None


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN, floats bit for bit."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# --- tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed,weights", [(1, True), (2, True), (3, False)])
def test_metrics_equal_per_row_definitions(seed: int, weights: bool) -> None:
    w = _frame(seed, weights)
    rows = metrics.aggregation_rows(w)
    assert rows.height > N // 2
    pp = metrics.per_position_acceptance(rows)
    assert pp and len(pp) == 7
    assert _same(pp, _pp_ref(rows))
    assert _same(metrics.alpha_mle(rows), _mle_ref(rows))
    assert metrics.draft_length(rows) == _k_ref(rows)
    no_k = rows.with_columns(pl.lit(None, pl.Int64).alias("k"))
    assert metrics.draft_length(no_k) == _k_ref(no_k)
    for j in (3, 5):  # per group, as the rules use them
        g = rows.filter(pl.col("line") % j == 0)
        assert _same(metrics.per_position_acceptance(g), _pp_ref(g))
        assert _same(metrics.alpha_mle(g), _mle_ref(g))


def test_summary_window_kinds_and_engines_in_first_seen_order() -> None:
    w = _frame(4).with_columns(
        pl.when(pl.col("line") % 7 == 0).then(pl.lit("request")).otherwise(pl.col("window")).alias("window"),
        pl.when(pl.col("line") % 5 == 0).then(pl.lit("sglang")).when(pl.col("line") % 11 == 0).then(None)
        .otherwise(pl.col("engine")).alias("engine"),
        pl.col("mean_acceptance_length").fill_nan(None))  # NaN MAL and no counts: num_drafts fails (see report)
    from specdec_diag.ingest.base import IngestResult

    e = IngestResult.empty()
    s = metrics.summarize(IngestResult(w, e.steps, e.inputs, e.malformed, e.configs))
    rows = metrics.aggregation_rows(w)
    assert s["window_kinds"] == dict(Counter(rows["window"].to_list()))
    assert list(s["window_kinds"]) == list(dict(Counter(rows["window"].to_list())))
    assert s["engine"] == "vllm, sglang"


def test_rule_helpers_equal_per_row_definitions() -> None:
    w = _frame(5).sort("line")
    for _, g in w.group_by(["source", "engine_id"], maintain_order=True):
        t = base.timeline(g)
        vals, ws, kept = series(Unit("u", "windows", g, None), None)
        rv, rw, rk = _series_ref(t)
        assert _same(vals, rv) and _same(ws, rw) and kept.equals(rk)
        for seg in (1, 3, 500):
            assert _same(change_point(vals, ws, seg), _change_point_ref(vals, ws, seg))
        for need in (2, 3, 4):
            got, ref = identical_run(g, need), _identical_ref(g, need)
            assert (got is None and ref is None) or got.equals(ref)
        for cap in (0, 20, 10**6):
            pairs = {(s, ln): None for s, ln in g.select("source", "line").iter_rows()}
            assert base.locations(g, cap) == ([{"path": p, "line": ln} for p, ln in list(pairs)[:cap]],
                                              max(0, len(pairs) - cap))


def test_change_point_edge_cases() -> None:
    rng = random.Random(6)
    for _ in range(200):
        n = rng.randint(0, 30)
        vals = [rng.choice((rng.random(), 0.0, 1.0)) for _ in range(n)]
        ws = [rng.choice((0.0, 1.0, rng.uniform(0, 50))) for _ in range(n)]
        seg = rng.randint(1, 6)
        assert _same(change_point(vals, ws, seg), _change_point_ref(vals, ws, seg))
    # an identical run of windows whose lists differ only in the sign of a zero is no run
    g = pl.DataFrame({"source": ["a"] * 4, "line": [1, 2, 3, 4], "num_drafts": [5] * 4, "draft_tokens": [15] * 4,
                      "accepted_tokens": [3] * 4, "per_position_acceptance": [[0.5, 0.0], [0.5, -0.0]] * 2})
    assert identical_run(g, 2) is None and _identical_ref(g, 2) is None
    assert identical_run(g.with_columns(pl.lit([0.5, float("nan")]).alias("per_position_acceptance")),
                               4).height == 4


def test_window_groups_and_timeline_equal_group_by_and_sort() -> None:
    from specdec_diag.ingest.base import IngestResult

    w = _frame(7).with_columns(pl.col("engine_id").fill_null(""))
    e = IngestResult.empty()
    ctx = base.Context(IngestResult(w, e.steps, e.inputs, e.malformed, e.configs))
    shuffled = w.sample(fraction=1.0, shuffle=True, seed=7).with_columns(  # not runs: the group_by path
        pl.when(pl.col("line") % 13 == 0).then(None).otherwise(pl.col("time")).alias("time"))
    for df in (ctx.windows, ctx.spec_windows, shuffled, ctx.windows.with_columns(pl.lit(5).alias("line"))):
        got = ctx.window_groups(df)
        ref = [((str(k[0]), str(k[1] or "")), g) for k, g in df.group_by(["source", "engine_id"],
                                                                          maintain_order=True)]
        assert [k for k, _ in got] == [k for k, _ in ref] and len(got) == 4
        for (_, a), (_, b) in zip(got, ref, strict=True):
            assert a.equals(b)
            assert base.timeline(a).equals(metrics.aggregation_rows(a).sort(["time", "line"], nulls_last=True))
