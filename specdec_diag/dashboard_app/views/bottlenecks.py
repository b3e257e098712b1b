"""Bottlenecks: where does step time go, and would a different γ or a cheaper drafter pay?"""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from specdec_diag.analysis import theory
from specdec_diag.dashboard_app import data as D
from specdec_diag.dashboard_app import fleet as F

loaded = F.page_scope(D.current())  # one run or one configuration's runs
s, res = loaded.summary, loaded.result
sp = s.get("speedup") or {}
LAYOUT = {"margin": {"l": 60, "r": 20, "t": 30, "b": 40}, "template": "plotly_white"}
PHASES = (("draft_ms", "draft", "#1f77b4"), ("verify_ms", "verify", "#ff7f0e"), ("overhead_ms", "overhead", "#7f7f7f"))

st.title("Bottlenecks")

st.subheader("Draft vs verify vs overhead")
tb = s.get("time_breakdown")
if tb:
    cols = st.columns(4)
    for col, (key, label, _) in zip(cols, PHASES, strict=False):
        col.metric(f"{label} time", D.num(tb.get(key), 0, " ms"), delta=D.pct(tb.get(key.replace("_ms", "_share"))),
                   delta_color="off", delta_arrow="off", help=f"the report's time breakdown: {key} summed over all timed steps; share of the total")
    cols[3].metric("Draft cost ratio c", D.num(s.get("c"), 3), help=D.definition(s, "c"))
else:
    st.info("No step timings: engine logs do not split draft and verify time; record a trace "
            "(`specdec-diag decode`) to see it.")

st.subheader("Step timeline")
steps = res.steps
if steps.height:
    sources = D.trace_sources(steps)
    c1, c2, c3 = st.columns([3, 1, 1])
    src = c1.selectbox("Trace", sources, format_func=lambda x: D.display(D.root(), Path(x)),
                       key="gantt_src")
    tr = steps.filter(pl.col("source") == src).sort(["request", "step"], nulls_last=True)
    n = tr.height
    span = c2.number_input("Steps shown", 5, 200, min(40, n), key="gantt_n")
    first = c3.number_input("First step (row)", 0, max(0, n - 1), 0, key="gantt_first")
    part = tr.slice(int(first), int(span))
    ms = part.select([pl.col(k).fill_null(0.0) for k, _, _ in PHASES])
    start = 0.0
    rows: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for _, label, _ in PHASES}
    labels = [f"req {r} · step {st_} · n={a}/{g}" for r, st_, a, g in zip(
        part["request"].to_list(), part["step"].to_list(), part["n_accepted"].to_list(),
        part["gamma_drafted"].to_list(), strict=True)]
    for i in range(part.height):
        for key, label, _ in PHASES:
            d = float(ms[key][i])
            rows[label][0].append(start)
            rows[label][1].append(d)
            start += d
    fig = go.Figure()
    for _, label, color in PHASES:
        b, x = rows[label]
        fig.add_trace(go.Bar(y=labels, x=x, base=b, orientation="h", name=label, marker_color=color,
                             hovertemplate="%{y}<br>" + label + " %{x:.2f} ms<extra></extra>"))
    fig.update_layout(**LAYOUT, height=max(260, 18 * part.height + 80), barmode="overlay",
                      xaxis={"title": "ms since the first step shown (phases back to back)"},
                      yaxis={"autorange": "reversed", "type": "category"}, legend={"orientation": "h", "y": 1.05})
    st.plotly_chart(fig, key="gantt")
    st.caption(f"{n:,} steps in this trace; timings as the trace recorded them (cuda-synchronised on GPU).")
else:
    st.info("No trace steps in these files: the timeline needs a specdec-diag trace.")

st.subheader("Speed-up model: what if γ changed?")
alpha, k = sp.get("alpha"), sp.get("gamma")
if alpha is not None and k:
    c = sp.get("c")
    cc = 0.0 if c is None else c
    g = st.slider("γ (draft length)", 1, 16, int(min(max(k, 1), 16)), key="whatif_gamma")
    opt = theory.optimal_gamma(alpha, cc, 16) if c is not None else None
    m = st.columns(4)
    m[0].metric(f"predicted at current k={k}", D.num(theory.speedup(alpha, k, cc), suffix="×"))
    m[1].metric(f"predicted at γ={g}", D.num(theory.speedup(alpha, g, cc), suffix="×"),
                delta=D.num(theory.speedup(alpha, g, cc) - theory.speedup(alpha, k, cc), suffix="×"))
    m[2].metric("expected tokens / step at γ", D.num(theory.expected_tokens_per_step(alpha, g)),
                help="(1 - alpha^(γ+1)) / (1 - alpha), bonus included")
    m[3].metric("optimal γ (≤ 16)", D.num(opt[0]) if opt else D.DASH,
                help="argmax of the predicted speed-up; undefined while c is unknown (longer always looks better)")
    gs = list(range(1, 17))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=gs, y=[theory.speedup(alpha, x, cc) for x in gs], mode="lines+markers",
                             name=f"S(γ), alpha={alpha:.2f}, c={cc:.3f}"))
    fig.add_trace(go.Scatter(x=[g], y=[theory.speedup(alpha, g, cc)], mode="markers", name=f"what-if γ={g}",
                             marker={"size": 14, "symbol": "diamond"}))
    if sp.get("achieved") is not None:
        fig.add_trace(go.Scatter(x=[k], y=[sp["achieved"]], mode="markers", name="achieved",
                                 marker={"size": 14, "symbol": "x"}))
    fig.update_layout(**LAYOUT, height=340, xaxis={"title": "γ", "dtick": 1},
                      yaxis={"title": "speed-up vs plain decoding (×)"})
    st.plotly_chart(fig, key="whatif")
    st.caption(D.definition(s, "speedup.predicted") + (" · c unknown here, taken as 0: every number is an upper "
                                                          "bound" if c is None else f" · c measured = {c:.3f}"))
else:
    st.info("Not enough data for the speed-up model (needs an acceptance estimate and k).")

st.subheader("Engine context: batch, queue, KV cache, CUDA graphs")
ctx, graphs = D.engine_context(loaded.key, res)
if ctx.height:
    names = {"running_reqs": "running requests (batch)", "waiting_reqs": "waiting requests (queue)",
             "kv_usage": "KV cache usage (fraction)", "gen_tps": "generation throughput (tok/s)"}
    metric_names = ctx["metric"].unique(maintain_order=True).to_list()
    tabs = st.tabs([names.get(m, m) for m in metric_names])
    for tab, mname in zip(tabs, metric_names, strict=True):
        with tab:
            part = ctx.filter(pl.col("metric") == mname)
            fig = go.Figure()
            for (name,), g2 in part.group_by(["series"], maintain_order=True):
                fig.add_trace(go.Scattergl(x=g2["x"].to_numpy(), y=g2["y"].to_numpy(), mode="lines", name=name))
            fig.update_layout(**LAYOUT, height=320, yaxis={"title": names.get(mname, mname)},
                              xaxis={"title": " / ".join(part["axis"].unique(maintain_order=True).to_list())},
                              legend={"font": {"size": 10}})
            st.plotly_chart(fig, key=f"ctx_{mname}")
    st.caption("As the engine logged them per window; long series bucketed to at most "
               f"{D.MAX_POINTS:,} points.")
else:
    st.info("No batch / queue / KV-cache numbers in these files.")
if graphs.height:
    graphs = graphs.with_columns(pl.col("file").map_elements(lambda f: D.display(D.root(), Path(f)),
                                                             return_dtype=pl.Utf8))
    st.dataframe(graphs, hide_index=True, width="stretch")
    st.caption("cuda graph share: fraction of decode windows that ran under CUDA graphs (SGLang `cuda graph: True`).")
