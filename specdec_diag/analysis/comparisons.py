"""Comparisons between runs (docs/runs.md §3): a speculative run against a run of the same model and
engine without speculation (the measured speed-up), configurations of one model against each other
(k, method), and a run's acceptance against earlier runs of its own configuration (regression).

**How load is matched.** Generation throughput depends on the batch, so two runs are compared only at
the same load: busy windows (``gen_tps`` above ``idle_gen_tps``) are bucketed by running requests on
a log2 scale (1, 2-3, 4-7, ...); a bucket counts when both runs have at least :data:`MIN_BUCKET` windows
in it; the speed-up is the window-weighted geometric mean of the per-bucket median ratios. Without a
shared bucket (or without running-request counts) the pair is listed with ``fair: false`` and the
reason, and no finding is drawn from it. Our traces decode one sequence at a time, so two traces of
the same target are compared directly (goodput against the baseline's ms per token).
"""

from __future__ import annotations

import math
import re
from typing import Any

import polars as pl

from specdec_diag.analysis import metrics
from specdec_diag.analysis.rules import Thresholds
from specdec_diag.analysis.rules.base import Finding
from specdec_diag.analysis.stats import acceptance_units, bootstrap_diff, pooled_rate
from specdec_diag.ingest.base import IngestResult

#: busy windows both runs need at one load level before it is compared
MIN_BUCKET = 3
#: acceptance drop (absolute) against earlier runs of the same configuration that is a regression
REGRESSION_DROP = 0.05
#: windows with drafts each side needs before a regression is judged
REGRESSION_MIN_WINDOWS = 5

CONFIG_KEYS = ("engine", "model", "method", "k")


def _busy(w: pl.DataFrame, th: Thresholds) -> pl.DataFrame:
    if w.height == 0 or "gen_tps" not in w.columns:
        return w.clear() if w.height else w
    return w.filter(pl.col("gen_tps").is_not_null() & (pl.col("gen_tps") > th.idle_gen_tps))


def load_matched(spec: pl.DataFrame, base: pl.DataFrame, th: Thresholds) -> dict[str, Any]:
    """Speed-up of ``spec`` over ``base`` windows at matched load (see the module docstring)."""
    a, b = _busy(spec, th), _busy(base, th)
    out: dict[str, Any] = {"speedup": None, "speculative_tps": None, "baseline_tps": None, "fair": False,
                           "load": {"matched_by": "running requests, log2 buckets", "buckets": []},
                           "busy_windows": [a.height, b.height]}
    if a.height < MIN_BUCKET or b.height < MIN_BUCKET:
        out["reason"] = f"too few busy windows (speculative {a.height}, baseline {b.height}; need {MIN_BUCKET})"
        return out
    if a["running_reqs"].null_count() == a.height or b["running_reqs"].null_count() == b.height:
        out["reason"] = "running requests not logged: load cannot be matched"
        out["speculative_tps"], out["baseline_tps"] = float(a["gen_tps"].median()), float(b["gen_tps"].median())
        return out
    bucket = (pl.col("running_reqs").clip(1).cast(pl.Float64).log(2).floor().cast(pl.Int64)).alias("bucket")
    ga = a.drop_nulls("running_reqs").group_by(bucket).agg(pl.col("gen_tps").median().alias("a"), pl.len().alias("na"))
    gb = b.drop_nulls("running_reqs").group_by(bucket).agg(pl.col("gen_tps").median().alias("b"), pl.len().alias("nb"))
    j = ga.join(gb, on="bucket").filter((pl.col("na") >= MIN_BUCKET) & (pl.col("nb") >= MIN_BUCKET)).sort("bucket")
    if j.height == 0:
        out["reason"] = (f"no shared load level: median running requests {a['running_reqs'].median():.0f} with "
                         f"speculation, {b['running_reqs'].median():.0f} without")
        return out
    w = j.select(pl.min_horizontal("na", "nb").cast(pl.Float64).alias("w"), "a", "b")
    wsum = float(w["w"].sum())
    log_ratio = sum(wi * math.log(ai / bi) for wi, ai, bi in w.iter_rows() if ai > 0 and bi > 0) / wsum
    out.update({"speedup": math.exp(log_ratio), "fair": True,
                "speculative_tps": float((w["w"] * w["a"]).sum() / wsum),
                "baseline_tps": float((w["w"] * w["b"]).sum() / wsum)})
    out["load"]["buckets"] = [{"running_reqs": f"{2 ** k}-{2 ** (k + 1) - 1}", "speculative_windows": na,
                               "baseline_windows": nb, "ratio": av / bv if bv else None}
                              for k, av, na, bv, nb in j.select("bucket", "a", "na", "b", "nb").iter_rows()]
    return out


def trace_pair(spec: IngestResult, base: IngestResult) -> dict[str, Any]:
    """Two traces of one target: goodput with speculation against 1000 / baseline ms per token."""
    out: dict[str, Any] = {"speedup": None, "speculative_tps": None, "baseline_tps": None, "fair": False,
                           "load": {"matched_by": "single-sequence decode (traces)", "buckets": []}}
    s = spec.steps.filter(pl.col("gamma_drafted") > 0) if spec.steps.height else spec.steps
    tps = metrics.goodput(s) if s.height else None
    ms = metrics.baseline_ms_per_token(base)
    if not tps or not ms:
        out["reason"] = "a trace lacks timings (goodput or baseline ms per token)"
        return out
    out.update({"speculative_tps": tps, "baseline_tps": 1000.0 / ms, "speedup": tps * ms / 1000.0, "fair": True})
    return out


def speculation_pairs(table: pl.DataFrame, parts: dict[str, IngestResult], th: Thresholds) -> list[dict[str, Any]]:
    """Each speculative run of a known model against the best run of the same engine and model
    without speculation (the one with the most load-matched windows)."""
    base = table.filter(~pl.col("speculative") & pl.col("model").is_not_null())
    if base.height == 0:
        return []
    out = []
    for r in table.filter(pl.col("speculative") & pl.col("model").is_not_null()).iter_rows(named=True):
        cands = base.filter((pl.col("model") == r["model"]) & (pl.col("engine") == r["engine"]))
        best: dict[str, Any] | None = None
        for b in cands["id"].to_list():
            if r["engine"] == "specdec-diag":
                m = trace_pair(parts[r["id"]], parts[b])
            else:
                m = load_matched(parts[r["id"]].windows, parts[b].windows, th)
            m = {"kind": "speculation", "run": r["id"], "baseline_run": b, "model": r["model"],
                 "engine": r["engine"], **m}
            matched = sum(x["speculative_windows"] for x in m["load"]["buckets"])
            if best is None or (m["fair"], matched) > (best["fair"], best["_matched"]):
                best = {**m, "_matched": matched}
        if best is not None:
            best.pop("_matched")
            out.append(best)
    return out


def config_pairs(table: pl.DataFrame, parts: dict[str, IngestResult], th: Thresholds) -> list[dict[str, Any]]:
    """Speculative configurations of one engine and model against each other (different k or method),
    their runs' windows taken together, at matched load."""
    spec = table.filter(pl.col("speculative") & pl.col("model").is_not_null() & (pl.col("engine") != "specdec-diag"))
    groups: dict[tuple[Any, ...], list[str]] = {}
    for r in spec.iter_rows(named=True):
        groups.setdefault(tuple(r[k] for k in CONFIG_KEYS), []).append(r["id"])
    keys = list(groups)
    out = []
    for i, ka in enumerate(keys):
        for kb in keys[i + 1:]:
            if ka[:2] != kb[:2]:
                continue
            wa = pl.concat([parts[x].windows for x in groups[ka]], how="vertical_relaxed")
            wb = pl.concat([parts[x].windows for x in groups[kb]], how="vertical_relaxed")
            m = load_matched(wa, wb, th)
            kind = "k" if ka[2] == kb[2] else "method"
            out.append({"kind": kind, "engine": ka[0], "model": ka[1],
                        "a": {"method": ka[2], "k": ka[3], "runs": groups[ka]},
                        "b": {"method": kb[2], "k": kb[3], "runs": groups[kb]}, **m})
    return out


def regressions(table: pl.DataFrame, parts: dict[str, IngestResult], th: Thresholds
                ) -> tuple[list[dict[str, Any]], dict[str, list[Finding]]]:
    """Each run against the runs of its configuration that ended before it started: comparisons, and an
    ACCEPTANCE_COLLAPSE warning where acceptance fell by more than :data:`REGRESSION_DROP` and the
    bootstrap interval of the difference lies below zero."""
    comps: list[dict[str, Any]] = []
    found: dict[str, list[Finding]] = {}
    # our traces are experiments (fault injections, sampling settings), not deployments over time
    spec = table.filter(pl.col("speculative") & pl.col("start").is_not_null()
                        & (pl.col("engine") != "specdec-diag")).sort("start")
    for key, g in spec.group_by(list(CONFIG_KEYS), maintain_order=True):
        if g.height < 2:
            continue
        rows = g.select("id", "start", "end").rows()
        history = {rid: [u for u, _s, e in rows if e is not None and e < start] for rid, start, _ in rows}
        # units only of the runs a comparison reads (replicas running side by side have no history)
        needed = {u for rid, earlier in history.items() if earlier for u in (rid, *earlier)}
        units = {rid: acceptance_units(parts[rid].windows, parts[rid].steps) for rid in g["id"].to_list()
                 if rid in needed}
        for rid, _start, _ in rows:
            earlier = history[rid]
            if not earlier or units[rid].height < REGRESSION_MIN_WINDOWS:
                continue
            cur = units[rid]
            prev = pl.concat([units[u] for u in earlier])
            if prev.height < REGRESSION_MIN_WINDOWS:
                continue
            rc, rb = pooled_rate(cur), pooled_rate(prev)
            lo, hi = bootstrap_diff(cur, prev, n=1000)
            comp = {"kind": "history", "run": rid, "earlier_runs": earlier,
                    "engine": key[0], "model": key[1], "method": key[2], "k": key[3],
                    "acceptance_rate": rc, "earlier_acceptance_rate": rb, "difference": rc - rb,
                    "ci": [lo, hi], "regression": bool(rc - rb < -REGRESSION_DROP and hi < 0)}
            comps.append(comp)
            if comp["regression"]:
                found.setdefault(rid, []).append(_regression_finding(comp, parts[rid], th))
    return comps, found


def _regression_finding(c: dict[str, Any], part: IngestResult, th: Thresholds) -> Finding:
    from specdec_diag.analysis.rules.base import locations

    rows = metrics.aggregation_rows(part.windows) if part.windows.height else part.windows
    locs, more = locations(rows, th.max_locations)
    ev = {"acceptance_rate": c["acceptance_rate"], "earlier_acceptance_rate": c["earlier_acceptance_rate"],
          "difference": c["difference"], "ci_low": c["ci"][0], "ci_high": c["ci"][1],
          "earlier_runs": c["earlier_runs"], "basis": "earlier runs of the same engine, model, method and k",
          "definitions": {"difference": "this run's pooled acceptance rate minus the earlier runs' (drafted-weighted)",
                          "ci_low": "95 % cluster-bootstrap interval of the difference, windows resampled"}}
    if more:
        ev["more_locations"] = more
    return Finding("ACCEPTANCE_COLLAPSE", "warning",
                   f"Acceptance fell to {100 * c['acceptance_rate']:.1f} % from {100 * c['earlier_acceptance_rate']:.1f} "
                   f"% in {len(c['earlier_runs'])} earlier run(s) of the same configuration",
                   ev, "Compare what changed since the earlier runs (engine version, drafter weights, workload, "
                       "sampling settings); re-run the earlier configuration to confirm.", locs,
                   score=-c["difference"])


# ---------------------------------------------------------------------------------------------
# benchmark outputs: runs with and without speculation, and k sweeps, printed by one benchmark
# ---------------------------------------------------------------------------------------------

#: the run status ingest writes at the head of a benchmark row's engine_id (ingest/bench.py)
_BENCH_STATUS = re.compile(r"^bench\[(speculative|baseline|unknown)\]: ?")
#: how each speed of a benchmark run is defined (the key compared runs must share)
SPEED_DEFINITIONS = {
    "tok/s": "output tokens per second as the benchmark printed it (gen_tps)",
    "unitless": "speed printed without a unit (compared only with other unit-less speeds)",
    "1/tpot": "1000 / mean time per output token in ms (tokens per second of one request)",
}


def benchmark_runs(windows: pl.DataFrame) -> pl.DataFrame:
    """Run rows a benchmark printed, one per run: ``status`` (speculative / baseline / unknown),
    ``speed`` and its definition ``metric``, ``load`` (running requests), ``label``. Benchmark rows
    carry their status in ``engine_id``; other run summaries (a vLLM bench block) are speculative when
    they carry drafts or an acceptance length, a baseline when k is 0."""
    if windows.height == 0 or "window" not in windows.columns:
        return pl.DataFrame()
    w = windows.filter((pl.col("window") == "run") & (pl.col("gen_tps").is_not_null() | pl.col("tpot_ms").is_not_null()))
    if w.height == 0:
        return pl.DataFrame()
    eid = pl.col("engine_id").fill_null("")
    tagged = eid.str.extract(_BENCH_STATUS.pattern, 1)
    spec_cols = pl.any_horizontal(pl.col("draft_tokens").fill_null(0) > 0, pl.col("mean_acceptance_length").is_not_null())
    status = (pl.when(tagged.is_not_null()).then(tagged)
              .when(pl.col("k") == 0).then(pl.lit("baseline"))
              .when(spec_cols | (pl.col("k") > 0)).then(pl.lit("speculative")).otherwise(pl.lit("unknown")))
    unitless = pl.col("definition_note").fill_null("").str.contains("unit not printed")
    metric = (pl.when(pl.col("gen_tps").is_not_null() & unitless).then(pl.lit("unitless"))
              .when(pl.col("gen_tps").is_not_null()).then(pl.lit("tok/s")).otherwise(pl.lit("1/tpot")))
    speed = pl.when(pl.col("gen_tps").is_not_null()).then(pl.col("gen_tps")).otherwise(1000.0 / pl.col("tpot_ms"))
    # a summary that does not print its concurrency (vLLM's speculative summary row) ran at the one
    # load every other run of its file names, when they name exactly one
    only = pl.when(pl.col("running_reqs").drop_nulls().n_unique().over("source") == 1).then(
        pl.col("running_reqs").drop_nulls().first().over("source"))
    w = w.with_columns(pl.coalesce("running_reqs", only).alias("running_reqs"))
    return w.select("source", "line", "format", "k", status.alias("status"), metric.alias("metric"),
                    speed.alias("speed"), pl.col("running_reqs").alias("load"),
                    eid.str.replace(_BENCH_STATUS.pattern, "").alias("label")).filter(
        pl.col("speed").is_finite() & (pl.col("speed") > 0))


def _where(load: Any) -> str:
    return f" at {load} running requests (concurrency / batch)" if load is not None else ""


def benchmark_speedups(windows: pl.DataFrame) -> list[dict[str, Any]]:
    """Measured speed-ups from one benchmark's runs: per file, speed definition and load, each
    speculative run against the baseline run printed nearest to it. ``speedup`` is the best
    speculative run's speed over the baseline's (a speculative configuration that pays exists iff it
    is above 1)."""
    runs = benchmark_runs(windows)
    if runs.height == 0:
        return []
    out = []
    for (src, metric, load), g in runs.group_by(["source", "metric", "load"], maintain_order=True):
        base = g.filter(pl.col("status") == "baseline")
        spec = g.filter(pl.col("status") == "speculative")
        if base.height == 0 or spec.height == 0:
            continue
        blines = base["line"].to_list()
        for b in base.iter_rows(named=True):
            mine = [s for s in spec.iter_rows(named=True)
                    if min(blines, key=lambda ln, s=s: (abs(ln - s["line"]), ln)) == b["line"]]
            if not mine:
                continue
            best = max(mine, key=lambda s: s["speed"])
            out.append({
                "kind": "benchmark", "source": src, "metric": metric, "load": load,
                "definition": SPEED_DEFINITIONS[metric] + _where(load),
                "baseline": {"line": b["line"], "label": b["label"], "speed": b["speed"]},
                "speculative": [{"line": s["line"], "label": s["label"], "k": s["k"], "speed": s["speed"],
                                 "speedup": s["speed"] / b["speed"]} for s in mine],
                "speedup": best["speed"] / b["speed"], "best": best["label"],
                "speculative_tps": best["speed"], "baseline_tps": b["speed"]})
    return out


def benchmark_k_sweeps(windows: pl.DataFrame, min_gain: float) -> list[dict[str, Any]]:
    """Speed measured at two or more k in one benchmark (per file, speed definition, load and - for
    table rows - the other configuration columns): the fastest k, and whether the largest k tried is
    at least ``min_gain`` slower than it. Several runs at one k: the fastest counts."""
    runs = benchmark_runs(windows)
    if runs.height == 0:
        return []
    spec = runs.filter((pl.col("status") == "speculative") & (pl.col("k") > 0))
    # a table row's other label cells are its configuration; a row with none is named by its line only
    spec = spec.with_columns(pl.when(pl.col("format") == "bench-table")
                             .then(pl.col("label").str.replace(r"^line \d+$", ""))
                             .otherwise(pl.lit("")).alias("config"))
    out = []
    for (src, metric, load, config), g in spec.group_by(["source", "metric", "load", "config"], maintain_order=True):
        by_k = g.group_by("k").agg(pl.col("speed").max(), pl.col("line").first()).sort("k")
        if by_k.height < 2:
            continue
        ks, speeds = by_k["k"].to_list(), by_k["speed"].to_list()
        best = max(range(len(ks)), key=lambda i: (speeds[i], -ks[i]))
        gain = speeds[best] / speeds[-1] - 1.0
        out.append({"kind": "k_sweep", "source": src, "metric": metric, "load": load, "config": config or None,
                    "definition": SPEED_DEFINITIONS[metric] + _where(load),
                    "points": [{"k": k, "speed": v} for k, v in zip(ks, speeds, strict=True)],
                    "best_k": ks[best], "largest_k": ks[-1], "gain_over_largest": gain,
                    "too_large": ks[best] < ks[-1] and gain >= min_gain,
                    "lines": sorted(g["line"].to_list())})
    return out


__all__ = ["MIN_BUCKET", "REGRESSION_DROP", "SPEED_DEFINITIONS", "load_matched", "trace_pair", "speculation_pairs",
           "config_pairs", "regressions", "benchmark_runs", "benchmark_speedups", "benchmark_k_sweeps"]
