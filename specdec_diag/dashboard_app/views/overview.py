"""Overview: which runs are unhealthy (the fleet), and for the run chosen in the sidebar: is
speculative decoding paying off, and if not, what is the first thing to fix?"""

from __future__ import annotations

import polars as pl
import streamlit as st

from specdec_diag.dashboard_app import data as D
from specdec_diag.dashboard_app.fleet_view import render_fleet, render_inputs

loaded = D.current()
if loaded.scope is None:  # the whole directory: the fleet, never a number pooled over its runs
    render_fleet(loaded)
    st.stop()
s, rep = loaded.summary, loaded.report
sp = s.get("speedup") or {}
pending = rep.get("findings") is None  # large inputs: the rules still run in the background
findings = rep.get("findings") or []

st.title("Overview")
st.caption(f"run `{loaded.scope}` · `{D.display(D.root(), loaded.path)}` · engine(s): {s.get('engine') or D.DASH} · "
           f"k (draft length) = {D.num(s.get('k'))} · basis: {s.get('basis') or D.DASH}")


def verdict() -> str:
    """One plain sentence from the ranked findings and the headline numbers (no new judgement)."""
    if not loaded.has_data:
        return ("No speculative-decoding numbers were found in these files"
                + (f"; the first finding: {findings[0]['title']}." if findings else "."))
    mal, k = s.get("mean_acceptance_length"), s.get("k")
    head = (f"Each verify step emits {D.num(mal)} tokens on average"
            + (f" out of a possible {k + 1}" if k else "") + f" (acceptance {D.pct(s.get('acceptance_rate'))})")
    if pending:
        return f"{head}. The diagnosis rules are still running; the verdict follows."
    top = findings[0] if findings else None
    if top and top.get("severity") == "error":
        return f"Something is wrong: {top['title']}. {head}."
    if top and top.get("severity") == "warning":
        return f"Speculation works but leaves speed on the table: {top['title']}. {head}."
    notes = f" ({len(findings)} informational note(s) on the Findings page)" if findings else ""
    return f"Healthy: no errors or warnings{notes}. {head}."


sev = "pending" if pending else findings[0]["severity"] if findings else "info"
{"error": st.error, "warning": st.warning, "pending": st.info}.get(sev, st.success)(verdict())

c = st.columns(5)
c[0].metric("Acceptance rate", D.pct(s.get("acceptance_rate")),
            help="accepted / drafted draft tokens, bonus token excluded, over the whole run. "
            + D.definition(s, "acceptance_rate"))
c[1].metric("Mean acceptance length", D.num(s.get("mean_acceptance_length")),
            help="tokens per verify step, bonus included. " + D.definition(s, "mean_acceptance_length"))
k = s.get("k")
c[2].metric("Tokens / step", D.num(s.get("tokens_per_step")),
            delta=None if k is None else f"ideal γ+1 = {k + 1}", delta_color="off", delta_arrow="off",
            help="tokens emitted per speculative step after EOS / length trimming, bonus included; "
            "γ+1 is what a fully accepted step emits. " + D.definition(s, "tokens_per_step"))
pred = sp.get("predicted")
c[3].metric("Predicted speed-up", D.num(pred, suffix="×"),
            delta="upper bound: draft cost c unknown" if sp.get("c_assumed_zero") and pred is not None else None,
            delta_color="off", delta_arrow="off",
            help=f"alpha = {D.num(sp.get('alpha'), 3)} ({sp.get('alpha_basis') or D.DASH}), "
            f"c = {D.num(sp.get('c'), 3)}. " + D.definition(s, "speedup.predicted"))
c[4].metric("Achieved speed-up", D.num(sp.get("achieved"), suffix="×"),
            help="needs an autoregressive baseline (a baseline trace or baseline_ms_per_token). "
            + D.definition(s, "speedup.achieved"))

st.subheader("Principal finding")
if D.findings(loaded) is None:
    pass  # D.findings said the rules are running and polls for them
elif findings:
    f = findings[0]
    st.markdown(f"**{f['severity'].upper()} · `{f['code']}`** — {f['title']}")
    if f.get("recommendation"):
        st.markdown(f"*Recommendation:* {f['recommendation']}")
    more = len(findings) - 1
    if more:
        st.caption(f"{more} more finding(s) on the Findings page.")
else:
    st.markdown("No findings.")

st.subheader("All numbers")
from specdec_diag.render.text import summary_rows  # noqa: E402 - the report's own labels and definitions

st.dataframe(pl.DataFrame(summary_rows(s), schema=["metric", "value", "definition"], orient="row"),
             hide_index=True, width="stretch")

render_inputs(rep)
