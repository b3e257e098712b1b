"""Entry point of the dashboard: the frame (sidebar: log directory, what was loaded) and the router.

Run ``specdec-diag dashboard LOGDIR``; or ``streamlit run specdec_diag/dashboard_app/app.py -- LOGDIR``.
Each page answers one question; all of them read the directory loaded here.
"""

from __future__ import annotations

import streamlit as st

from specdec_diag.dashboard_app import PAGES_DIR
from specdec_diag.dashboard_app import data as D
from specdec_diag.dashboard_app import fleet as F

st.set_page_config(page_title="specdec-diag", page_icon=":material/speed:", layout="wide", initial_sidebar_state="expanded")

root = D.start_root()
st.session_state["root"] = root

with st.sidebar:
    st.markdown("### specdec-diag")
    text = st.text_input("Log directory", value=".", key="logdir",
                         help=f"Relative to {root} (the directory given at start), or an absolute path "
                              "below it. Subdirectories are read recursively; .gz is read transparently.")
    st.caption(f"root: `{root}`")

st.session_state["loaded"] = None
st.session_state["load_error"] = None
try:
    path = D.resolve(root, text)
    st.session_state["loaded"] = D.load(path, root)
except D.PathError as exc:
    st.session_state["load_error"] = str(exc)
except Exception as exc:  # noqa: BLE001 - whatever was typed: one line in the page, never a traceback
    st.session_state["load_error"] = f"{text[:60]!r}: cannot be opened: {type(exc).__name__}"

loaded = st.session_state["loaded"]
with st.sidebar:
    if loaded is not None:
        s = loaded.summary
        st.caption(f"{loaded.files} file(s), {loaded.bytes / 1e6:,.1f} MB · {s.get('windows_used') or 0:,} windows "
                   f"· {s.get('steps') or 0:,} trace steps · loaded in {loaded.load_s:.1f} s")
        if loaded.errors:
            st.warning(f"{len(loaded.errors)} path(s) could not be read: {loaded.errors[0]}")
        if loaded.refused:  # links whose real path leaves the root: listed, never read
            st.warning(f"{len(loaded.refused)} file(s) refused, outside the root: {loaded.refused[0]}")
            with st.expander("refused files"):
                st.code("\n".join(loaded.refused), language=None)
        for note in loaded.notes:
            st.warning(note)
    elif st.session_state["load_error"]:
        st.error(st.session_state["load_error"])

# the run selector: every page shows the chosen run (or configuration); the Overview also the fleet
st.session_state["directory"] = loaded
if loaded is not None:
    with st.sidebar:
        opts = F.options(loaded)
        if st.session_state.get("run") not in opts:
            st.session_state["run"] = F.ALL
        choice = st.selectbox("Run", opts, key="run",
                              help="One engine process with one configuration (docs/runs.md), worst first; or "
                                   "the runs of one configuration. Scopes every page; the Overview lists them all.")
        st.session_state["loaded"] = F.scoped(loaded, choice)

pages = [
    st.Page(PAGES_DIR / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page(PAGES_DIR / "acceptance.py", title="Acceptance", icon=":material/done_all:"),
    st.Page(PAGES_DIR / "bottlenecks.py", title="Bottlenecks", icon=":material/timer:"),
    st.Page(PAGES_DIR / "findings.py", title="Findings", icon=":material/troubleshoot:"),
    st.Page(PAGES_DIR / "trace.py", title="Trace explorer", icon=":material/list_alt:"),
    st.Page(PAGES_DIR / "compare.py", title="Compare", icon=":material/compare_arrows:"),
]
st.navigation(pages).run()
