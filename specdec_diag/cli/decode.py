"""`specdec-diag decode` (being built)."""

from specdec_diag.cli._app import app  # noqa: F401
