"""Analysis computes and decides: metric definitions (metrics), Leviathan theory (theory), diagnosis
rules (rules), the report dict (report) and the CI gate's checks (gate). It never presents (that is
:mod:`specdec_diag.render`) and never imports torch, rich, plotly, streamlit or xml
(tests/test_layers.py)."""
