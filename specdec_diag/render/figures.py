"""The report's plotly charts (for the HTML report): one function per chart, each returning
``(title, figure, note)`` or None when the report lacks the data."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from specdec_diag.analysis import theory
from specdec_diag.render.charts import accepted_length_distribution, downsample, window_series
from specdec_diag.render.text import pct

Figure = tuple[str, Any, str]
LAYOUT = {"height": 360, "margin": {"l": 50, "r": 20, "t": 30, "b": 40}, "template": "plotly_white"}


def figures(report: dict[str, Any]) -> list[Figure]:
    """(title, plotly figure, note) for each chart the data supports, in page order."""
    s = report["summary"]
    made = [acceptance_over_time(report["windows"]), per_position(s), accepted_length(s), time_split(s),
            speedup_curve(s)]
    return [f for f in made if f is not None]


def acceptance_over_time(windows: list[dict[str, Any]]) -> Figure | None:
    series = window_series(windows)
    if not series:
        return None
    fig = go.Figure()
    notes = []
    xlabel = next(iter(series.values()))[3]
    for key, (xs, ys, ws, _) in series.items():
        dx, dy = downsample(xs, ys, ws)
        if len(dx) < len(xs):
            notes.append(f"{key}: {len(xs)} windows shown as {len(dx)} draft-weighted buckets")
        fig.add_trace(go.Scatter(x=dx, y=dy, mode="lines+markers" if len(dx) < 200 else "lines", name=key))
    fig.update_layout(**LAYOUT, yaxis={"title": "acceptance rate", "range": [0, 1.02], "tickformat": ".0%"},
                      xaxis={"title": xlabel})
    return ("Acceptance rate over time", fig, "; ".join(notes)
            or "accepted / drafted per window, bonus excluded; one line per engine and file")


def per_position(s: dict[str, Any]) -> Figure | None:
    pp = s.get("per_position_acceptance")
    if not pp:
        return None
    cond = s.get("conditional_per_position") or []
    fig = go.Figure()
    pos = list(range(len(pp)))
    fig.add_trace(go.Bar(x=pos, y=pp, name="P(position accepted)"))
    fig.add_trace(go.Scatter(x=pos, y=[c for c in cond], mode="lines+markers", name="conditional a_j / a_(j-1)"))
    a = s.get("alpha_mle") or s.get("alpha_from_mal")
    if a is not None:
        fig.add_trace(go.Scatter(x=pos, y=theory.expected_per_position(a, len(pp)), mode="lines",
                                 line={"dash": "dot"}, name=f"i.i.d. model alpha^j (alpha={a:.2f})"))
    fig.update_layout(**LAYOUT, yaxis={"title": "share of drafts", "range": [0, 1.02]},
                      xaxis={"title": "draft position", "dtick": 1})
    return ("Per-position acceptance", fig,
            "a flat conditional curve is healthy; a cliff or steady decay points at the drafter")


def accepted_length(s: dict[str, Any]) -> Figure | None:
    dist = accepted_length_distribution(s)
    if not dist:
        return None
    d, basis = dist
    fig = go.Figure(go.Bar(x=list(d), y=list(d.values()), name="steps"))
    fig.update_layout(**LAYOUT, yaxis={"title": "share of steps", "tickformat": ".0%"},
                      xaxis={"title": "accepted drafts per step (bonus excluded)", "dtick": 1})
    return ("Accepted length per step", fig, basis)


def time_split(s: dict[str, Any]) -> Figure | None:
    tb = s.get("time_breakdown")
    if not tb:
        return None
    parts = ["draft_ms", "verify_ms", "overhead_ms"]
    fig = go.Figure(go.Bar(x=[p.replace("_ms", "") for p in parts], y=[tb.get(p, 0) for p in parts],
                           text=[pct(tb.get(p.replace("_ms", "_share"))) for p in parts], textposition="auto"))
    fig.update_layout(**LAYOUT, yaxis={"title": "total ms"})
    return ("Step time: draft / verify / overhead", fig, "summed over all trace steps")


def speedup_curve(s: dict[str, Any]) -> Figure | None:
    sp = s.get("speedup") or {}
    if sp.get("alpha") is None or not sp.get("gamma"):
        return None
    alpha, k = sp["alpha"], sp["gamma"]
    c = sp.get("c") or 0.0
    gs = list(range(1, max(2 * k, (sp.get("optimal_gamma") or 0) + 2, 8) + 1))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=gs, y=[theory.speedup(alpha, g, c) for g in gs], mode="lines+markers",
                             name=f"predicted S(gamma), alpha={alpha:.2f}, c={c:.3f}"))
    fig.add_trace(go.Scatter(x=[k], y=[sp.get("predicted")], mode="markers", marker={"size": 14, "symbol": "diamond"},
                             name=f"predicted at k={k}"))
    if sp.get("achieved") is not None:
        fig.add_trace(go.Scatter(x=[k], y=[sp["achieved"]], mode="markers", marker={"size": 14, "symbol": "x"},
                                 name="achieved"))
    fig.update_layout(**LAYOUT, yaxis={"title": "speed-up vs plain decoding (x)"},
                      xaxis={"title": "draft length gamma", "dtick": 1})
    note = "Leviathan Thm 3.8; " + ("c unknown, taken as 0: an upper bound" if sp.get("c_assumed_zero")
                                     else "c measured from trace timings")
    return ("Predicted vs achieved speed-up", fig, note)


__all__ = ["figures", "acceptance_over_time", "per_position", "accepted_length", "time_split", "speedup_curve"]
