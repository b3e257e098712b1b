"""Thin shim so `streamlit run dashboard/app.py -- LOGDIR` works from a checkout.

The app itself lives in the package (``specdec_diag/dashboard_app/``) so that an installed wheel,
which ships only ``specdec_diag``, can still serve it; ``specdec-diag dashboard`` runs that file directly.
"""

import runpy

from specdec_diag.dashboard_app import APP_PATH

runpy.run_path(str(APP_PATH), run_name="__main__")
