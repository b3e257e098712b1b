"""Findings: what is wrong, how sure are we, what to do, and which log lines say so?"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import streamlit as st

import specdec_diag
from specdec_diag.dashboard_app import data as D
from specdec_diag.dashboard_app import fleet as F
from specdec_diag.dashboard_app.guard import CODE, log_line
from specdec_diag.render.text import evidence_items, loc_str

loaded = F.page_scope(D.current())  # one run or one configuration's runs
DOCS = Path(specdec_diag.__file__).resolve().parent.parent / "docs" / "rules"
ICON = {"error": ":red[:material/error:]", "warning": ":orange[:material/warning:]", "info": ":blue[:material/info:]"}

st.title("Findings")
findings = D.findings(loaded)
if findings is None:
    st.stop()


@st.cache_resource(show_spinner=False)
def rule_docs() -> dict[str, str]:
    """Each rule's own documentation (its docstring), for when docs/rules/CODE.md is not on disk."""
    try:
        from specdec_diag.analysis.rules import load_all

        return {code: r.doc for code, r in load_all().items()}
    except Exception:  # noqa: BLE001 - docs are optional here
        return {}


def short(s: str) -> str:
    """A location relative to the dashboard's root, as the sidebar shows paths."""
    return s.replace(str(D.root()) + "/", "")


if not findings:
    st.success("No findings: nothing in these files matched a diagnosis rule.")
    st.stop()

counts = pl.DataFrame({"severity": [f["severity"] for f in findings]})["severity"].value_counts(sort=True)
st.caption(" · ".join(f"{ICON.get(s, '')} {n} {s}" for s, n in counts.iter_rows()) + " — ranked by severity, "
           "then estimated impact.")
sev_filter = st.multiselect("Severity", ["error", "warning", "info"], default=["error", "warning", "info"],
                            key="sev_filter")
docs = rule_docs()
for i, f in enumerate(findings):
    if f["severity"] not in sev_filter:
        continue
    with st.container(border=True):
        st.markdown(f"{ICON.get(f['severity'], '')} **{f['severity'].upper()}** · `{f['code']}` — {short(f['title'])}")
        if f.get("run"):
            st.caption(f"run `{f['run']}`")
        ev = f.get("evidence") or {}
        items = evidence_items(ev)
        if items:
            defs = ev.get("definitions") or {}
            st.table(pl.DataFrame({"evidence": [k for k, _ in items], "value": [D.DASH if v == "-" else v for _, v in items],
                                   "definition": [str(defs.get(k, "")) for k, _ in items]}))
        if f.get("recommendation"):
            st.markdown(f"**Recommendation:** {f['recommendation']}")
        locs = f.get("locations") or []
        if locs:
            st.markdown("**From:** " + ", ".join(f"`{short(loc_str(x))}`" for x in locs[:8])
                        + (f" and {len(locs) - 8} more" if len(locs) > 8 else ""))
            if st.checkbox("show these log lines", key=f"lines_{i}"):
                shown = []
                for x in locs[:10]:
                    if x.get("line") is not None and x.get("path"):
                        # every path against the root: a location (from an edited cache, say) may name any file
                        shown.append(f"{short(loc_str(x))}: {log_line(D.root(), str(x['path']), x['line'])}")
                st.code("\n".join(shown) or "(no line numbers)", language=None)
        doc_file = DOCS / f"{f['code'] if CODE.fullmatch(str(f['code'])) else '_'}.md"  # a code never walks out of DOCS
        with st.expander(f"docs/rules/{f['code']}.md"):
            if doc_file.is_file():
                st.markdown(doc_file.read_text(encoding="utf-8", errors="replace"))
            elif docs.get(f["code"]):
                st.markdown(docs[f["code"]])
            else:
                st.caption("No documentation page found for this code.")
