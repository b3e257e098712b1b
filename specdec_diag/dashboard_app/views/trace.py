"""Trace explorer: step by step, what did the drafter propose, what did the verifier keep, and why?

Shows only what the trace records (no model is loaded: the dashboard never imports torch)."""

from __future__ import annotations

import html
from pathlib import Path

import polars as pl
import streamlit as st

from specdec_diag.dashboard_app import data as D
from specdec_diag.dashboard_app.guard import tokenizer_file

loaded = D.current()
res = loaded.result
st.title("Trace explorer")

if res.steps.height == 0:
    st.info("No specdec-diag traces in these files. Record one with `specdec-diag decode … --trace out.jsonl`.")
    st.stop()

headers = {str(h.get("source")): h for h in res.headers or []}
sources = D.trace_sources(res.steps)
c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
src = c1.selectbox("Trace", sources, format_func=lambda x: D.display(D.root(), Path(x)), key="trace_src")
steps = res.steps.filter(pl.col("source") == src)
header = headers.get(src, {})
requests = sorted(steps["request"].fill_null(0).unique().to_list())
req = c2.selectbox("Request", requests, key="trace_req")
rs = steps.filter(pl.col("request").fill_null(0) == req).sort("step")
per_page = int(c3.selectbox("Steps per page", [10, 20, 50], index=1, key="trace_per_page"))
pages = max(1, -(-rs.height // per_page))
page = int(c4.number_input(f"Page (of {pages})", 1, pages, 1, key="trace_page"))

tok_file, tok_note = tokenizer_file(header, D.root())  # never a path outside the root (bar the bundled one)
tok = D.load_tokenizer(str(tok_file)) if tok_file else None
rule = header.get("rule") or {}
samp = header.get("sampling") or {}
st.caption(
    f"rule: **{rule.get('name', D.DASH)}**{' (lossy)' if rule.get('lossy') else ''} · γ policy: "
    f"{(header.get('gamma_policy') or {}).get('name', D.DASH)} · temperature {samp.get('temperature', D.DASH)}"
    f"{'' if samp.get('do_sample', True) else ' (greedy)'} · "
    + (tok_note if tok is not None or tok_file is None else f"{tok_note}, but it did not load: token ids shown")
)

# context = prompt + everything emitted by earlier steps of this request
prompts = header.get("prompt_token_ids") or []
context: list[int] = list(prompts[req]) if isinstance(req, int) and req < len(prompts) else []
lo, hi = (page - 1) * per_page, page * per_page
rows = rs.head(hi).to_dicts()
for r in rows[:lo]:
    context.extend(r["emitted_token_ids"] or [])

CSS = """<style>
.tx{border-collapse:collapse;font-size:13px;width:100%}.tx td,.tx th{border-bottom:1px solid #ddd;padding:4px 6px;
vertical-align:top;text-align:left}.tx th{background:#f5f5f5}.tk{font-family:monospace;white-space:pre;
padding:1px 3px;margin:1px;border-radius:3px;display:inline-block}.acc{background:#d7f5dd}.rej{background:#fde0e0;
text-decoration:line-through;color:#a33}.cor{background:#fff1c2;font-weight:bold}.bon{background:#cfe3ff;font-weight:bold}
.ctx{color:#666}.pq{font-size:10px;color:#555;display:block}
</style>"""


def tk(text: str, cls: str, title: str = "", pq: str = "") -> str:
    shown = html.escape(text.replace("\n", "⏎")) or "·"
    sub = f"<span class='pq'>{html.escape(pq)}</span>" if pq else ""
    return f"<span class='tk {cls}' title='{html.escape(title)}'>{shown}{sub}</span>"


def fmt_p(x: object) -> str:
    return "?" if x is None else f"{float(x):.2f}"


body = []
for r in rows[lo:hi]:
    ids, n = r["draft_token_ids"] or [], int(r["n_accepted"])
    emitted = r["emitted_token_ids"] or []
    texts = D.token_texts(tok, ids)
    q, p = r["q"] or [None] * len(ids), r["p"] or [None] * len(ids)
    drafts = []
    for j, (i, t) in enumerate(zip(ids, texts, strict=True)):
        cls = "acc" if j < n else "rej"
        drafts.append(tk(t, cls, f"id {i}; p={fmt_p(p[j])} q={fmt_p(q[j])}", f"p {fmt_p(p[j])} q {fmt_p(q[j])}"))
    verifier = emitted[n:] if len(emitted) > n else []
    vtexts = D.token_texts(tok, verifier)
    kind = r["last_token_kind"]
    vcell = " ".join(tk(t, "bon" if kind == "bonus" else "cor", f"id {i}; {kind}") for i, t in
                     zip(verifier, vtexts, strict=True)) + f" <small>{html.escape(kind)}</small>"
    if r.get("trimmed_by") not in (None, "none"):
        vcell += f" <small>(trimmed by {html.escape(str(r['trimmed_by']))})</small>"
    ctx_ids = context[-12:]
    ctx = "".join(tk(t, "ctx") for t in D.token_texts(tok, ctx_ids))
    body.append(f"<tr><td>{r['step']}</td><td>{r['context_len']}</td><td>…{ctx}</td><td>{''.join(drafts) or '—'}</td>"
                f"<td>{n}/{len(ids)}</td><td>{vcell}</td><td>{fmt_p(r['draft_ms'])}/{fmt_p(r['verify_ms'])}</td></tr>")
    context.extend(emitted)

st.html(CSS + "<table class='tx'><tr><th>step</th><th>L</th><th>context (last 12 tokens)</th>"
        "<th>drafts: <span class='tk acc'>accepted</span> <span class='tk rej'>rejected</span> (p target, q draft)</th>"
        "<th>n/γ</th><th>verifier token</th><th>draft/verify ms</th></tr>" + "".join(body) + "</table>")
st.caption(f"Steps {lo + 1}–{min(hi, rs.height)} of {rs.height} in request {req}. Rejected drafts are struck "
           "through; the verifier's token is a correction (yellow: sampled from the residual / target argmax after a "
           "rejection) or a bonus (blue: every draft accepted). p and q are the target and draft probabilities "
           "of each drafted token as the trace recorded them.")
with st.expander("header"):
    st.json(header, expanded=False)
