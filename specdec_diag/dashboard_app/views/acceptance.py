"""Acceptance: where and when are drafts rejected (over time, by position, by category)?"""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from specdec_diag.analysis import theory
from specdec_diag.dashboard_app import data as D
from specdec_diag.dashboard_app import fleet as F
from specdec_diag.render.charts import accepted_length_distribution

loaded = F.page_scope(D.current())  # one run or one configuration's runs
s = loaded.summary
LAYOUT = {"height": 360, "margin": {"l": 50, "r": 20, "t": 30, "b": 40}, "template": "plotly_white"}

st.title("Acceptance")

st.subheader("Acceptance rate over time")
st.caption("Per window: accepted / drafted draft tokens, bonus excluded, as each engine logged it for that "
           "interval or request (windowed, not cumulative); traces: per step, in draft-weighted buckets.")
series, notes = D.acceptance_series(loaded.key, loaded.result)
if series.height:
    names = series["series"].unique(maintain_order=True).to_list()
    if len(names) > 8:
        names = st.multiselect(f"Series ({len(names)} engine × file)", names, default=names[:8], key="acc_series")
    for (axis,), part in series.filter(pl.col("series").is_in(names)).group_by(["axis"], maintain_order=True):
        fig = go.Figure()
        for (name,), g in part.group_by(["series"], maintain_order=True):
            fig.add_trace(go.Scattergl(x=g["x"].to_numpy(), y=g["y"].to_numpy(), name=name,
                                       mode="lines+markers" if g.height < 200 else "lines"))
        fig.update_layout(**LAYOUT, yaxis={"title": "acceptance rate", "range": [0, 1.02], "tickformat": ".0%"},
                          xaxis={"title": axis}, legend={"font": {"size": 10}})
        st.plotly_chart(fig, key=f"acc_time_{axis}")
    for n in notes:
        st.caption(n)
else:
    st.info("No windowed acceptance records (interval or per-request) in these files.")

left, right = st.columns(2)
with left:
    st.subheader("Per-position acceptance")
    pp = s.get("per_position_acceptance")
    if pp:
        cond = s.get("conditional_per_position") or [None] * len(pp)
        pos = list(range(1, len(pp) + 1))
        fig = go.Figure()
        fig.add_trace(go.Bar(x=pos, y=pp, name="a_j: share of drafts with position j accepted"))
        fig.add_trace(go.Scatter(x=pos, y=cond, mode="lines+markers", name="conditional a_j / a_(j-1)"))
        alpha = s.get("alpha_mle") or s.get("alpha_from_mal")
        if alpha is not None and 0 <= alpha <= 1:
            fig.add_trace(go.Scatter(x=pos, y=theory.expected_per_position(alpha, len(pp)), mode="lines",
                                     line={"dash": "dot"}, name=f"i.i.d. model alpha^j (alpha={alpha:.2f})"))
        fig.update_layout(**LAYOUT, yaxis={"title": "share of drafts", "range": [0, 1.02]},
                          xaxis={"title": "draft position j", "dtick": 1}, legend={"orientation": "h", "y": -0.3})
        st.plotly_chart(fig, key="acc_pos")
        st.caption("a_j: " + D.definition(s, "per_position_acceptance") + " · conditional: "
                   + D.definition(s, "conditional_per_position"))
    else:
        st.info("No per-position data (the engine does not log it, or there were no drafts).")
with right:
    st.subheader("Accepted length per step")
    dist = accepted_length_distribution(s)
    if dist:
        d, basis = dist
        fig = go.Figure(go.Bar(x=list(d), y=list(d.values())))
        fig.update_layout(**LAYOUT, yaxis={"title": "share of steps", "tickformat": ".0%"},
                          xaxis={"title": "accepted drafts per step (bonus excluded)", "dtick": 1})
        st.plotly_chart(fig, key="acc_hist")
        st.caption(f"Share of verify steps that accepted n drafts; {basis}.")
    else:
        st.info("No accepted-length distribution (needs trace steps or per-position rates).")

st.subheader("Acceptance by category")
by = st.radio("Split by", D.SPLITS, horizontal=True, key="split_by")
table = D.split_table(loaded.key, loaded.result, by)
if table.height:
    if by == "file":
        table = table.with_columns(pl.col("group").map_elements(lambda g: D.display(D.root(), Path(g)),
                                                                return_dtype=pl.Utf8))
    fig = go.Figure()
    for (kind,), g in table.group_by(["from"], maintain_order=True):
        fig.add_trace(go.Bar(y=g["group"].to_list(), x=g["acceptance rate"].to_list(), name=f"from {kind}",
                             orientation="h", customdata=g["drafted tokens"].to_list(), hovertemplate=
                             "%{y}<br>acceptance %{x:.1%}<br>%{customdata:,} drafted tokens<extra></extra>"))
    fig.update_layout(**{**LAYOUT, "height": max(220, 24 * table.height + 90), "margin": {"l": 10, "r": 20, "t": 30,
                                                                                           "b": 40}},
                      xaxis={"title": "acceptance rate", "range": [0, 1.02], "tickformat": ".0%"},
                      yaxis={"type": "category", "autorange": "reversed", "automargin": True}, barmode="group",
                      legend={"orientation": "h", "y": 1.08})
    st.plotly_chart(fig, key="acc_split")
    st.dataframe(table.with_columns(pl.col("acceptance rate").round(4), pl.col("mean acceptance length").round(3)),
                 hide_index=True, width="stretch")
    st.caption("Each group's numbers are computed by analysis.metrics on that group's rows: acceptance rate "
               "bonus excluded, mean acceptance length bonus included; groups with few drafted tokens are noisy.")
else:
    st.info(f"These files carry no {by} information alongside acceptance counts.")
