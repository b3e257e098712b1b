"""The Streamlit dashboard, shipped inside the package so ``specdec-diag dashboard`` works from an
installed wheel as well as from an editable checkout (the top-level ``dashboard/app.py`` is a thin
shim that runs :data:`APP_PATH`, for ``streamlit run dashboard/app.py``).

Nothing here imports torch: the dashboard reads what ingest and analysis produce.
"""

from __future__ import annotations

from pathlib import Path

APP_PATH = Path(__file__).resolve().parent / "app.py"
PAGES_DIR = APP_PATH.parent / "views"  # not "pages/": that name switches Streamlit to legacy pages-directory mode
#: environment variable carrying the log directory given on the command line
ROOT_ENV = "SPECDEC_DASHBOARD_ROOT"

__all__ = ["APP_PATH", "PAGES_DIR", "ROOT_ENV"]
