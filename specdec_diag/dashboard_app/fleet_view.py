"""The Overview of a whole directory: the fleet. Counts of runs by status, the runs table (sortable,
filterable by engine / model / status, an acceptance sparkline per run), the fleet's principal findings
(each naming its run) and the comparisons between runs. No number here is pooled across runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import streamlit as st

from specdec_diag.dashboard_app import data as D
from specdec_diag.dashboard_app import fleet as F

STATUS_ICON = {"error": ":red[●]", "warning": ":orange[●]", "ok": ":green[●]", "no data": ":gray[○]"}


def render_fleet(loaded: D.Loaded) -> None:
    rep = loaded.report
    st.title("Overview")
    entries = F.run_entries(loaded)
    pending = rep.get("findings") is None
    st.caption(f"`{D.display(D.root(), loaded.path)}` · {len(entries)} run(s) in {loaded.files} file(s) · "
               "a run is one engine process with one configuration; choose one in the sidebar to see its "
               "numbers on every page.")
    if not entries:
        st.info("No runs: these files hold no records an engine or trace writes.")
        return
    _status_counts(rep, len(entries), pending)
    if pending:
        D.findings(loaded)  # says the rules are running and polls
    frame = F.runs_frame(loaded)
    st.subheader("Runs")
    st.dataframe(_filtered(frame), hide_index=True, width="stretch", column_config=_columns())
    if not pending:
        _principal_findings(rep)
        _comparisons(rep)
    render_inputs(rep)


def render_inputs(rep: dict[str, Any]) -> None:
    """The report's inputs table, paths shown relative to the dashboard root."""
    st.subheader("Inputs")
    inputs = pl.DataFrame(rep.get("inputs") or [])
    if inputs.height:
        inputs = inputs.with_columns(pl.col("path").map_elements(lambda p: D.display(D.root(), Path(p)),
                                                                 return_dtype=pl.Utf8))
        st.dataframe(inputs, hide_index=True, width="stretch")
    else:
        st.caption("No input files.")


def _status_counts(rep: dict[str, Any], n: int, pending: bool) -> None:
    by = (rep.get("fleet") or {}).get("by_status") or {}
    c = st.columns(5)
    c[0].metric("Runs", f"{n:,}")
    for i, s in enumerate(("error", "warning", "ok", "no data"), 1):
        c[i].metric(f"{STATUS_ICON[s]} {s}", D.DASH if pending else f"{by.get(s, 0):,}")
    worst = [r for r in rep.get("runs") or [] if r.get("status") == "error"]
    if pending:
        return
    if worst:
        st.error(f"{len(worst)} run(s) with errors; the worst: `{(rep.get('fleet') or {}).get('worst_first', ['?'])[0]}`.")
    elif by.get("warning"):
        st.warning(f"No errors; {by['warning']} run(s) leave speed on the table.")
    else:
        st.success("Healthy: no run has errors or warnings.")


def _filtered(frame: pl.DataFrame) -> pl.DataFrame:
    """The runs table narrowed by the engine / model / status filters above it."""
    cols = st.columns(3)
    picks = {}
    for col, name in zip(cols, ("engine", "model", "status"), strict=True):
        values = sorted({str(v) for v in frame[name].to_list()})
        picks[name] = col.multiselect(name.capitalize(), values, default=[], key=f"fleet_{name}",
                                      placeholder="all")
    for name, chosen in picks.items():
        if chosen:
            frame = frame.filter(pl.col(name).cast(pl.Utf8).fill_null("None").is_in(chosen))
    return frame


def _columns() -> dict[str, Any]:
    cc = st.column_config
    return {
        "acceptance": cc.NumberColumn("acceptance", format="percent",
                                      help="accepted / drafted draft tokens of this run, bonus excluded"),
        "MAL": cc.NumberColumn("MAL", format="%.2f", help="mean acceptance length, bonus included"),
        "tok/s": cc.NumberColumn("tok/s", format="%.0f", help="generation throughput (engine), trace goodput"),
        "acceptance over time": cc.LineChartColumn("acceptance over time", y_min=0.0, y_max=1.0,
                                                   help="the run's window acceptance rates, in log order"),
    }


def _principal_findings(rep: dict[str, Any]) -> None:
    st.subheader("Principal findings")
    top = [f for f in rep.get("findings") or [] if f["severity"] in ("error", "warning")][:8]
    if not top:
        st.markdown("No errors or warnings in any run.")
        return
    for f in top:
        st.markdown(f"**{f['severity'].upper()} · `{f['code']}`** in `{f.get('run')}` — {f['title']}")


def _comparisons(rep: dict[str, Any]) -> None:
    from specdec_diag.render.fleet import comparison_rows

    rows = comparison_rows(rep)
    if rows:
        st.subheader("Comparisons between runs")
        st.caption("With/without speculation at matched load (running requests, log2 buckets), other k or "
                   "method of the same model, and each run against earlier runs of its configuration.")
        st.dataframe(pl.DataFrame(rows, schema=["kind", "runs", "result", "load"], orient="row"),
                     hide_index=True, width="stretch")


__all__ = ["render_fleet"]
