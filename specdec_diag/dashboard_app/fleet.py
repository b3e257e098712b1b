"""The dashboard's fleet: the runs of the loaded directory (docs/runs.md), the sidebar's run selector and
the scoped views it gives every page.

A directory is a fleet; the Overview opens on its runs table. Choosing a run (or a configuration: the
runs of one engine + model + method + k) in the sidebar scopes every page to it: :func:`scoped` returns
a :class:`~specdec_diag.dashboard_app.data.Loaded` whose result, summary and findings are that run's, so
the pages need no change to show one run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import polars as pl
import streamlit as st

from specdec_diag.dashboard_app import data as D

#: the selector's first option: the directory as a fleet (the Overview's runs table)
ALL = "whole directory (fleet)"
#: points of the acceptance sparkline of each run
SPARK_POINTS = 40


def run_entries(loaded: D.Loaded) -> list[dict[str, Any]]:
    """The report's runs (summary, status, findings) once the rules have run; before that, the runs
    table's rows with status None."""
    runs = loaded.report.get("runs")
    if runs is not None and loaded.report.get("findings") is not None:
        return runs
    table = loaded.runs.table if loaded.runs is not None else pl.DataFrame()
    return [{**r, "window_count": r["windows"], "status": None, "summary": {}, "findings": []}
            for r in table.drop("windows").with_columns(pl.lit(0).alias("windows")).to_dicts()] if table.height else []


def groups(loaded: D.Loaded) -> dict[str, list[str]]:
    """``config: engine/model/method/k (N runs)`` -> run ids, for configurations with several runs."""
    out: dict[str, list[str]] = {}
    for r in run_entries(loaded):
        if r.get("speculative"):
            label = f"config: {r.get('engine')}/{r.get('model') or '?'}/{r.get('method') or '?'}/k={r.get('k')}"
            out.setdefault(label, []).append(r["id"])
    return {f"{k} ({len(v)} runs)": v for k, v in out.items() if len(v) > 1}


def options(loaded: D.Loaded) -> list[str]:
    """The selector's options: the fleet, the configurations with several runs, then every run, worst
    first."""
    from specdec_diag.render.fleet import run_rank

    runs = sorted(run_entries(loaded), key=lambda r: run_rank({**r, "status": r.get("status") or "ok"}))
    return [ALL, *groups(loaded), *(r["id"] for r in runs)]


def scoped(loaded: D.Loaded, choice: str | None) -> D.Loaded:
    """``loaded`` restricted to one run or one configuration's runs (``loaded`` itself for the fleet):
    its ingest result, inputs, summary and findings; memoised on ``loaded`` until the rules finish."""
    if not choice or choice == ALL or loaded.runs is None:
        return loaded
    ready = loaded.report.get("findings") is not None
    hit = loaded.scopes.get(choice)
    if hit is not None and (hit.report.get("findings") is not None or not ready):
        return hit
    ids = groups(loaded).get(choice) or ([choice] if choice in loaded.runs.ids else [])
    if not ids:
        return loaded
    return _scope_ids(loaded, choice, ids, ready)


def _scope_ids(loaded: D.Loaded, choice: str, ids: list[str], ready: bool) -> D.Loaded:
    sub = _subresult(loaded, ids)
    out = dataclasses.replace(loaded, key=f"{loaded.key}#{choice}", result=sub, report=_report(loaded, ids, sub, ready),
                              scopes={}, scope=choice)
    loaded.scopes[choice] = out
    return out


def page_scope(loaded: D.Loaded) -> D.Loaded:
    """What a page other than the Overview shows: the run or configuration chosen in the sidebar; with
    the whole directory chosen, its worst run (said in the page), so no page pools runs. The Overview
    is the one place for the fleet."""
    if loaded.scope is not None or loaded.runs is None or loaded.runs.table.height <= 1:
        return loaded  # one run: the directory is that run (and keeps its warmed-up caches)
    if one_configuration(loaded.runs.table):  # comparable runs (DP ranks, replicas): taken together
        st.caption(f"The {loaded.runs.table.height} runs of this directory share one configuration (engine, model, "
                   "method, k): taken together here; choose one in the sidebar to see it alone.")
        return loaded
    ids = set(loaded.runs.ids)
    worst = [o for o in options(loaded) if o in ids]
    if len(worst) > 1:
        st.info(f"This page shows one run: the worst of the {len(worst)} runs in this directory, `{worst[0]}`. "
                "Choose another run, or a configuration's runs, in the sidebar; the Overview lists the fleet.")
    return scoped(loaded, worst[0])


def one_configuration(table: pl.DataFrame) -> bool:
    """Whether the runs of a runs table are comparable: one engine, model, method, k and speculation."""
    return table.height > 0 and table.select("engine", "model", "method", "k", "speculative").unique().height == 1


def unpooled(loaded: D.Loaded) -> tuple[D.Loaded | None, str | None]:
    """A directory for Compare, never pooled across configurations: itself when it holds one run, the
    runs taken together when they share one configuration (engine, model, method, k, speculation),
    else None and why."""
    if loaded.runs is None or loaded.runs.table.height <= 1 or one_configuration(loaded.runs.table):
        return loaded, None
    t = loaded.runs.table
    return None, (f"holds {t.height} runs of different configurations; its numbers would pool them. Choose one "
                  "of its runs (open it in the sidebar) or a subdirectory with one configuration.")


def _subresult(loaded: D.Loaded, ids: list[str]) -> Any:
    from specdec_diag.ingest.base import IngestResult

    memo = loaded.scopes.setdefault("\x00split", {})
    if not memo:
        memo.update(loaded.runs.split())
    parts = [memo[i] for i in ids]
    if len(parts) == 1:
        return parts[0]
    cat = lambda frames: pl.concat(frames, how="vertical_relaxed")  # noqa: E731
    return IngestResult(cat([p.windows for p in parts]), cat([p.steps for p in parts]),
                        cat([p.inputs for p in parts]).unique(subset="path", keep="first", maintain_order=True),
                        cat([p.malformed for p in parts]), cat([p.configs for p in parts]),
                        [h for p in parts for h in p.headers], fingerprint=f"{loaded.result.fingerprint}#{len(ids)}")


def _report(loaded: D.Loaded, ids: list[str], sub: Any, ready: bool) -> dict[str, Any]:
    """The scoped report: the run's own summary and findings (a configuration: its runs' windows
    taken together, their findings)."""
    from specdec_diag.analysis import metrics
    from specdec_diag.analysis.report import inputs_json
    from specdec_diag.schema import jsonable

    runs = {r["id"]: r for r in loaded.report.get("runs") or []} if ready else {}
    if len(ids) == 1 and ids[0] in runs:
        summary = runs[ids[0]]["summary"]
    else:
        summary = jsonable(metrics.summarize(sub))
    findings = [{**f, "run": i} for i in ids for f in runs[i]["findings"]] if ready and all(i in runs for i in ids) \
        else None
    return {"schema": loaded.report.get("schema"), "inputs": inputs_json(sub.inputs), "summary": summary,
            "windows": [], "findings": findings}


@st.cache_data(show_spinner=False, max_entries=16)
def sparklines(key: str, _loaded: Any, points: int = SPARK_POINTS) -> dict[str, list[float]]:
    """Per run, its windows' acceptance rates in log order, averaged down to at most ``points``."""
    loaded = _loaded
    w = loaded.result.windows
    if w.height == 0 or loaded.runs is None:
        return {}
    rates = (w.select(pl.col("acceptance_rate")).with_columns(loaded.runs.window_run.alias("run"))
             .filter(pl.col("acceptance_rate").is_not_null() & pl.col("acceptance_rate").is_not_nan()))
    if rates.height == 0:
        return {}
    rates = rates.with_columns(pl.int_range(pl.len()).over("run").alias("i"), pl.len().over("run").alias("n"))
    rates = rates.with_columns((pl.col("i") * points // pl.col("n")).alias("b"))
    agg = rates.group_by("run", "b").agg(pl.col("acceptance_rate").mean()).sort("run", "b")
    return {r: v for r, v in agg.group_by("run", maintain_order=True).agg(pl.col("acceptance_rate")).iter_rows()}


def runs_frame(loaded: D.Loaded) -> pl.DataFrame:
    """One row per run for the Overview table, worst first."""
    from specdec_diag.render.fleet import ordered_runs, throughput, worst_finding

    spark = sparklines(loaded.key, loaded)
    entries = run_entries(loaded)
    ordered = ordered_runs({"runs": [{**r, "status": r.get("status") or "ok"} for r in entries]})
    rows = []
    for r in ordered:
        s = r.get("summary") or {}
        w = worst_finding(r)
        rows.append({"run": r["id"], "status": next((e.get("status") for e in entries if e["id"] == r["id"]), None),
                     "acceptance": s.get("acceptance_rate"), "acceptance over time": spark.get(r["id"], []),
                     "MAL": s.get("mean_acceptance_length"), "tok/s": throughput(s),
                     "worst finding": f"{w['code']}: {w['title']}" if w else None, "engine": r.get("engine"),
                     "model": r.get("model"), "method": r.get("method"), "k": r.get("k") if r.get("speculative") else None,
                     "speculative": r.get("speculative"), "windows": r.get("window_count")})
    schema = {"run": pl.Utf8, "status": pl.Utf8, "acceptance": pl.Float64, "acceptance over time": pl.List(pl.Float64),
              "MAL": pl.Float64, "tok/s": pl.Float64, "worst finding": pl.Utf8, "engine": pl.Utf8, "model": pl.Utf8,
              "method": pl.Utf8, "k": pl.Int64, "speculative": pl.Boolean, "windows": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


__all__ = ["ALL", "run_entries", "groups", "options", "scoped", "page_scope", "unpooled", "one_configuration", "sparklines", "runs_frame"]
