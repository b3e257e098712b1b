"""Compare: did acceptance or speed change between two runs, by more than the noise?"""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from specdec_diag.dashboard_app import data as D
from specdec_diag.dashboard_app import fleet as F

root = D.root()
st.title("Compare")
st.caption("Two runs of the directory loaded in the sidebar, or two directories or files under the dashboard's "
           "root, side by side. Noise bands: 95 % bootstrap intervals over windows (or 32-step blocks of traces), "
           "as the CI gate computes them.")

directory = st.session_state.get("directory")
RUN = "run: "
run_opts = [RUN + o for o in F.options(directory)[1:]] if directory is not None else []
opts = run_opts + D.choices(root)
top = [i for i, o in enumerate(opts) if not o.startswith(RUN) and o != "." and "/" not in o and (root / o).is_dir()]
default_a, default_b = (top[0], top[1]) if len(top) >= 2 else (0, 1 if len(opts) > 1 else 0)
if len(run_opts) >= 2:  # a directory of several runs: compare runs (a measured pair first), never piles
    pair = next((c for c in (directory.report.get("comparisons") or []) if c.get("kind") == "speculation"
                 and RUN + str(c.get("baseline_run")) in run_opts and RUN + str(c.get("run")) in run_opts), None)
    default_a, default_b = ((opts.index(RUN + pair["baseline_run"]), opts.index(RUN + pair["run"])) if pair
                            else (opts.index(run_opts[-1]), opts.index(run_opts[-2])))
c1, c2 = st.columns(2)
a_text = c1.selectbox("Run A (baseline)", opts, index=default_a, key="cmp_a")
b_text = c2.selectbox("Run B (candidate)", opts, index=default_b, key="cmp_b")

runs = {}
for label, text in (("A", a_text), ("B", b_text)):
    try:
        if text.startswith(RUN) and directory is not None:
            runs[label] = F.scoped(directory, text[len(RUN):])
        else:
            side, why = F.unpooled(D.load(D.resolve(root, text)))
            if side is None:
                st.warning(f"Run {label}: `{text}` {why}")
                continue
            runs[label] = side
    except D.PathError as exc:
        st.error(f"Run {label}: {exc}")
if len(runs) < 2:
    st.stop()
A, B = runs["A"], runs["B"]


nz = D.compare_noise(A.key, B.key, A, B)
sa, sb = A.summary, B.summary


def delta(key: str, sub: str | None = None) -> tuple[object, object, object]:
    va = (sa.get(key) or {}).get(sub) if sub else sa.get(key)
    vb = (sb.get(key) or {}).get(sub) if sub else sb.get(key)
    d = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
    return va, vb, d


m = st.columns(4)
va, vb, d = delta("acceptance_rate")
ci = nz["ci_diff"]
m[0].metric("Acceptance rate B − A", D.DASH if d is None else f"{d * 100:+.1f} pt",
            delta=None if ci is None else f"95 % CI {ci[0] * 100:+.1f} … {ci[1] * 100:+.1f} pt", delta_color="off", delta_arrow="off",
            help="pooled accepted / drafted, bonus excluded; difference B − A. " + D.definition(sa, "acceptance_rate"))
va, vb, d = delta("mean_acceptance_length")
m[1].metric("Mean acceptance length B − A", D.DASH if d is None else f"{d:+.2f}",
            help="tokens per verify step, bonus included. " + D.definition(sa, "mean_acceptance_length"))
va, vb, d = delta("tokens_per_s")
if d is None:
    va, vb, d = delta("goodput")
m[2].metric("Throughput B − A", D.DASH if d is None else f"{d:+,.1f} tok/s",
            help="engine generation throughput (non-idle windows), else trace goodput. " + D.definition(sa, "tokens_per_s"))
va, vb, d = delta("speedup", "predicted")
m[3].metric("Predicted speed-up B − A", D.DASH if d is None else f"{d:+.2f}×", help=D.definition(sa, "speedup.predicted"))

if ci is not None:
    if ci[0] > 0 or ci[1] < 0:
        word = "higher" if ci[0] > 0 else "lower"
        st.warning(f"Acceptance is {word} in B than in A beyond the noise (95 % interval excludes 0).")
    else:
        st.success("The acceptance difference is within the noise (95 % interval includes 0).")
else:
    st.caption("Too few windows on one side for a noise band.")

rows = []
for label, key, sub, fmt in (
    ("acceptance rate", "acceptance_rate", None, D.pct),
    ("mean acceptance length", "mean_acceptance_length", None, D.num),
    ("tokens per step", "tokens_per_step", None, D.num),
    ("k", "k", None, D.num),
    ("drafted tokens", "draft_tokens", None, D.num),
    ("engine throughput tok/s", "tokens_per_s", None, D.num),
    ("trace goodput tok/s", "goodput", None, D.num),
    ("alpha", "speedup", "alpha", lambda v: D.num(v, 3)),
    ("c", "c", None, lambda v: D.num(v, 3)),
    ("predicted speed-up", "speedup", "predicted", D.num),
    ("achieved speed-up", "speedup", "achieved", D.num),
):
    a, b, _ = delta(key, sub)
    rows.append({"metric": label, "A": fmt(a), "B": fmt(b)})


def severities(run: D.Loaded) -> str:
    fs = run.report.get("findings")
    if fs is None:
        return "(rules running)"
    return f"{sum(f['severity'] == 'error' for f in fs)}/{sum(f['severity'] == 'warning' for f in fs)}"


rows.append({"metric": "findings (error/warning)", "A": severities(A), "B": severities(B)})
st.dataframe(pl.DataFrame(rows), hide_index=True, width="stretch")

left, right = st.columns(2)
LAYOUT = {"height": 340, "margin": {"l": 50, "r": 20, "t": 30, "b": 40}, "template": "plotly_white"}
with left:
    fig = go.Figure()
    for label, s_, ci_ in (("A", sa, nz["ci_a"]), ("B", sb, nz["ci_b"])):
        v = s_.get("acceptance_rate")
        if v is None:
            continue
        err = None if ci_ is None else {"type": "data", "symmetric": False, "array": [ci_[1] - v],
                                        "arrayminus": [v - ci_[0]]}
        fig.add_trace(go.Bar(x=[label], y=[v], error_y=err, name=label))
    fig.update_layout(**LAYOUT, yaxis={"title": "acceptance rate (95 % CI)", "range": [0, 1.02],
                                       "tickformat": ".0%"}, showlegend=False)
    st.plotly_chart(fig, key="cmp_rate")
with right:
    fig = go.Figure()
    for label, s_ in (("A", sa), ("B", sb)):
        pp = s_.get("per_position_acceptance")
        if pp:
            fig.add_trace(go.Scatter(x=list(range(1, len(pp) + 1)), y=pp, mode="lines+markers", name=label))
    fig.update_layout(**LAYOUT, yaxis={"title": "per-position acceptance a_j", "range": [0, 1.02]},
                      xaxis={"title": "draft position j", "dtick": 1})
    st.plotly_chart(fig, key="cmp_pos")
