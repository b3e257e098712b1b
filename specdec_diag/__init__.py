"""specdec-diag: diagnose speculative decoding — why it is slow, why acceptance is low, and whether
the verifier is producing wrong output.

Notebook API (docs/python-api.md): ``sd.scan(paths)``, ``sd.runs(t)``, ``sd.report(t)``. They are
loaded on first use, so ``import specdec_diag`` stays light (no polars, no torch).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Tables", "__version__", "report", "runs", "scan"]

_API = ("Tables", "report", "runs", "scan")


def __getattr__(name: str) -> Any:
    if name in _API:
        from specdec_diag import api

        return getattr(api, name)
    raise AttributeError(f"module 'specdec_diag' has no attribute {name!r}")
