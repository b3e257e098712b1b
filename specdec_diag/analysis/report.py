"""The report (docs/report.md, ``specdec-diag/report@2``): one JSON-safe dict built from an
``IngestResult``, organised by run (docs/runs.md): the keys schema, inputs, runs, comparisons,
findings, fleet.

Every metric and finding is computed per run (one engine process with one configuration), never over
windows pooled across runs; each finding of the top-level list names its run. Renderers
(:mod:`specdec_diag.render`) read only this dict, never the tables, so a saved JSON report renders
again later and the CI gate reads a previous report as its baseline.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.analysis import metrics, run_cache, unit_pass
from specdec_diag.analysis.comparisons import config_pairs, regressions, speculation_pairs
from specdec_diag.analysis.rules import Thresholds, run_rules
from specdec_diag.analysis.rules.base import SEVERITY_RANK, Finding, ranked
from specdec_diag.analysis.runs import Runs, segment
from specdec_diag.ingest.base import IngestResult
from specdec_diag.schema import CONTRACT_WINDOW_COLUMNS, POOLED_REPORT_SCHEMA, REPORT_SCHEMA, jsonable

REPORT_KEYS = ("schema", "inputs", "runs", "comparisons", "findings", "fleet")
#: the run facts every run object carries, in order (docs/runs.md)
RUN_KEYS = ("id", "host", "engine", "version", "model", "method", "k", "speculative", "tag", "engine_id",
            "start", "end", "window_count", "steps", "sources", "first_line", "last_line", "split")
#: run statuses, worst first
STATUSES = ("error", "warning", "ok", "no data")
INPUT_KEYS = ("path", "format", "engine", "lines", "records", "malformed")
FINDING_KEYS = ("code", "severity", "title", "evidence", "recommendation", "locations")


def windows_json(windows: pl.DataFrame) -> list[dict[str, Any]]:
    """The §3 contract columns of every window row, JSON-safe (NaN -> null, time -> ISO string);
    done column-wise in polars because logs can have hundreds of thousands of windows."""
    if windows.height == 0:
        return []
    cols = [c for c in CONTRACT_WINDOW_COLUMNS if c in windows.columns]
    exprs = []
    for c in cols:
        dt = windows.schema[c]
        if dt == pl.Float64 or dt == pl.Float32:
            exprs.append(pl.col(c).fill_nan(None))
        elif isinstance(dt, pl.List) and dt.inner in (pl.Float64, pl.Float32):
            exprs.append(pl.col(c).list.eval(pl.element().fill_nan(None)))
        elif isinstance(dt, pl.Datetime):
            exprs.append(pl.col(c).dt.to_string("%Y-%m-%dT%H:%M:%S%.6f+00:00"))
        else:
            exprs.append(pl.col(c))
    return windows.select(exprs).to_dicts()


def inputs_json(inputs: pl.DataFrame) -> list[dict[str, Any]]:
    """The report's ``inputs``: one JSON-safe row per input file, the :data:`INPUT_KEYS` only."""
    if inputs.height == 0:
        return []
    return [jsonable({k: r.get(k) for k in INPUT_KEYS}) for r in inputs.to_dicts()]


def run_findings(result: IngestResult, thresholds: Thresholds | None = None,
                 facts: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The diagnosis rules' findings over one input (one run), ranked, as report dicts."""
    return [finding_json(f) for f in run_rules(result, thresholds, facts=facts)]


def finding_json(f: Finding) -> dict[str, Any]:
    d = f.to_dict()
    return jsonable({k: d.get(k) for k in FINDING_KEYS})


def run_status(summary: dict[str, Any], findings: list[dict[str, Any]], baseline: bool = False) -> str:
    """error / warning (the worst finding), else ok, or "no data" without speculative numbers (a run
    without speculation that logged throughput, a baseline, is ok)."""
    for sev in ("error", "warning"):
        if any(f["severity"] == sev for f in findings):
            return sev
    return "ok" if summary.get("windows_used") or summary.get("steps") or baseline else "no data"


def build_report(result: IngestResult, thresholds: Thresholds | None = None, windows: bool = False,
                 runs: Runs | None = None, cache_dir: Path | None = None, grouped: bool = True,
                 refresh: bool = False) -> dict[str, Any]:
    """The report@2 dict for one ``IngestResult`` (docs/report.md): runs segmented, each judged on its
    own, comparisons between runs, the fleet rollup. ``windows`` adds each run's §3 window rows.
    ``cache_dir``: keep each run's summary and findings there, keyed by the run's rows
    (:mod:`analysis.run_cache`), so a run whose rows did not change is not judged again; ``refresh``:
    judge every run and rewrite its entry (``--no-cache``). ``grouped``: the acceptance of every run's units in one grouped pass (:mod:`analysis.unit_pass`;
    identical numbers, False computes them run by run)."""
    th = thresholds or Thresholds()
    runs = runs or segment(result)
    parts = runs.split()
    table = runs.table
    pairs = speculation_pairs(table, parts, th)
    facts = {p["run"]: {"measured_speedup": p} for p in pairs if p["fair"]}
    history, regressed = regressions(table, parts, th)
    rows = list(table.iter_rows(named=True))
    cached = {} if refresh else _cached(parts, th, facts, cache_dir)
    todo = [r["id"] for r in rows if r["id"] not in cached]
    units = unit_pass.unit_acceptance(runs, todo) if grouped and todo else {}

    def one(row: dict[str, Any]) -> dict[str, Any]:
        rid = row["id"]
        judged = cached.get(rid) or judge_run(rid, parts[rid], th, facts.get(rid), cache_dir,
                                              unit_pass.seeds(units.get(rid)), read=False)
        return _run_entry(row, parts[rid], judged, regressed.get(rid, []), windows)

    # runs are independent and polars releases the GIL while it computes: a fleet is judged in parallel
    workers = min(8, os.cpu_count() or 1, len(rows))
    if workers > 1:
        with ThreadPoolExecutor(workers, thread_name_prefix="specdec-run") as pool:
            out_runs = list(pool.map(one, rows))
    else:
        out_runs = [one(r) for r in rows]
    return {
        "schema": REPORT_SCHEMA,
        "inputs": inputs_json(result.inputs),
        "runs": out_runs,
        "comparisons": jsonable(pairs + config_pairs(table, parts, th) + history),
        "findings": fleet_findings(out_runs),
        "fleet": fleet_rollup(out_runs),
    }


def _cached(parts: dict[str, IngestResult], th: Thresholds, facts: dict[str, Any], cache_dir: Path | None
            ) -> dict[str, tuple[dict[str, Any], list[Finding]]]:
    """The runs whose summary and findings the run cache holds (none without ``cache_dir``)."""
    if cache_dir is None:
        return {}
    out = {}
    for rid, sub in parts.items():
        hit = run_cache.load(cache_dir, run_cache.run_key(rid, sub, th, facts.get(rid)), run_cache.run_sources(sub))
        if hit is not None:
            out[rid] = hit
    return out


def _run_entry(row: dict[str, Any], sub: IngestResult, judged: tuple[dict[str, Any], list[Finding]],
               regressed: list[Finding], windows: bool) -> dict[str, Any]:
    """One run of the report: its facts, status, summary, ranked findings (and windows)."""
    summary, found = judged
    found = found + _explained(regressed, found)
    fjson = [finding_json(f) for f in ranked(found)]
    entry = {k: row["windows" if k == "window_count" else k] for k in RUN_KEYS}
    baseline = not row["speculative"] and bool(row["windows"] or row["steps"])
    entry.update({"status": run_status(summary, fjson, baseline), "summary": summary, "findings": fjson})
    if windows:
        entry["windows"] = windows_json(sub.windows)
    return jsonable(entry)


def judge_run(run_id: str, sub: IngestResult, th: Thresholds, facts: dict[str, Any] | None = None,
              cache_dir: Path | None = None, seeds: dict[Any, Any] | None = None, read: bool = True
              ) -> tuple[dict[str, Any], list[Finding]]:
    """One run's summary (JSON-safe) and ranked rule findings, from the run cache when its rows, facts
    and the analysis code are unchanged (``cache_dir`` None: always computed). ``seeds``: numbers
    derived from the run's own rows in a fleet-wide pass (:func:`unit_pass.seeds`), handed to the
    rules' context; not part of the cache key (the rows are). ``read`` False: the entry is written,
    never read (the caller looked it up already, or was asked to refresh it)."""
    key = run_cache.run_key(run_id, sub, th, facts) if cache_dir is not None else ""
    hit = run_cache.load(cache_dir, key, run_cache.run_sources(sub)) if cache_dir is not None and read else None
    if hit is not None:
        return hit
    found = run_rules(sub, th, facts={**(facts or {}), **(seeds or {})})
    summary = jsonable(metrics.summarize(sub))
    run_cache.store(cache_dir, key, summary, found)
    return summary, found


def _explained(extra: list[Finding], found: list[Finding]) -> list[Finding]:
    """Regression findings of a run that already has an error: demoted to info, naming the error
    (a broken verifier also lowers acceptance; the report leads with the cause)."""
    cause = next((f.code for f in found if f.severity == "error"), None)
    if cause is None:
        return extra
    for f in extra:
        f.evidence = {**f.evidence, "explained_by": cause, "original_severity": f.severity}
        f.severity, f.title = "info", f"{f.title} (consequence of {cause})"
    return extra


def pooled_report(result: IngestResult, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """The pooled ``report@1`` shape (schema, inputs, summary, windows, findings over all inputs as one):
    what the dashboard's per-directory cache still holds; new code should use :func:`build_report`."""

    return {"schema": POOLED_REPORT_SCHEMA, "inputs": inputs_json(result.inputs), "summary": jsonable(metrics.summarize(result)),
            "windows": windows_json(result.windows), "findings": run_findings(result, thresholds)}


def fleet_findings(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every run's findings, each with its ``run`` id, ranked across the fleet (errors first, then by
    estimated impact)."""
    flat = [{**f, "run": r["id"]} for r in runs for f in r["findings"]]
    return sorted(flat, key=lambda f: (SEVERITY_RANK.get(f["severity"], 9), -(f.get("score") or 0.0), f["code"],
                                       f["run"]))


def fleet_rollup(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Only what is meaningful across runs: counts by status and engine, and acceptance per
    configuration (engine + model + method + k), drafted-weighted over its runs, with the spread."""
    by_status = {s: sum(r["status"] == s for r in runs) for s in STATUSES}
    engines: dict[str, int] = {}
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in runs:
        engines[str(r["engine"])] = engines.get(str(r["engine"]), 0) + 1
        s = r["summary"]
        if r["speculative"] and s.get("acceptance_rate") is not None:
            groups.setdefault((r["engine"], r["model"], r["method"], r["k"]), []).append(r)
    out_groups = []
    for (engine, model, method, k), rs in groups.items():
        rates = [x["summary"]["acceptance_rate"] for x in rs]
        drafted = [x["summary"].get("draft_tokens") for x in rs]
        if all(d for d in drafted):
            pooled = sum(x["summary"]["accepted_tokens"] or 0 for x in rs) / sum(drafted)
        else:
            pooled = sum(rates) / len(rates)
        out_groups.append({"engine": engine, "model": model, "method": method, "k": k, "runs": len(rs),
                           "acceptance_rate": pooled, "min": min(rates), "max": max(rates),
                           "draft_tokens": sum(d or 0 for d in drafted),
                           "weighting": "drafted tokens" if all(drafted) else "runs (drafted unknown)"})
    worst = [r["id"] for r in sorted(runs, key=run_rank)]
    return jsonable({"runs": len(runs), "by_status": by_status, "by_engine": engines, "configurations": out_groups,
                     "worst_first": worst})


def run_rank(run: dict[str, Any]) -> tuple[Any, ...]:
    """Sort key, worst run first: status, then errors and warnings, then the top finding's impact."""
    fs = run.get("findings") or []
    return (STATUSES.index(run.get("status", "ok")) if run.get("status") in STATUSES else 9,
            -sum(f["severity"] == "error" for f in fs), -sum(f["severity"] == "warning" for f in fs),
            -max((f.get("score") or 0.0 for f in fs), default=0.0), str(run.get("id")))


def has_data(report: dict[str, Any]) -> bool:
    """Whether the report saw any speculative-decoding numbers at all (else: exit 3); reads @2 (any
    run) and the pooled @1 shape."""
    if "summary" not in report and isinstance(report.get("runs"), list):
        return any((r.get("summary") or {}).get("windows_used") or (r.get("summary") or {}).get("steps")
                   for r in report["runs"])
    s = report.get("summary") or {}
    return bool(s.get("windows_used") or s.get("steps"))


__all__ = ["REPORT_SCHEMA", "REPORT_KEYS", "INPUT_KEYS", "FINDING_KEYS", "RUN_KEYS", "STATUSES", "windows_json",
           "inputs_json", "run_findings", "judge_run", "pooled_report", "finding_json", "run_status", "build_report", "fleet_findings",
           "fleet_rollup", "run_rank", "has_data"]
