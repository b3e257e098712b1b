"""Command-line interface: thin wrappers that parse arguments, call the library, render with rich.

Each command lives in its own module and registers itself on :data:`app`; heavy imports (torch,
transformers, streamlit) happen inside the command so ``specdec-diag report`` never loads torch.
"""

from __future__ import annotations

from specdec_diag.cli import capture, check, dashboard, decode, ingest, replay, report  # noqa: F401  (registration)
from specdec_diag.cli._app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
