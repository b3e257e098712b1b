"""Ingest: turn engine logs, bench outputs, metrics dumps and our own traces into the normalised
tables of :mod:`specdec_diag.schema`. Public API: :func:`scan`, :func:`scan_one`, :data:`SOURCES`.

Each source module follows the protocol in :mod:`specdec_diag.ingest.base`. The registry imports
each one guarded, so a module that is missing or broken (e.g. still being written) leaves the
others working; :data:`UNAVAILABLE` says why a module is absent.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from specdec_diag.ingest.base import IngestResult, Parsed

#: source modules in the order they are tried (order only affects row order, never results).
SOURCE_NAMES = ("trace", "vllm", "sglang", "llamacpp", "prometheus", "trtllm", "requests")

SOURCES: list[ModuleType] = []
UNAVAILABLE: dict[str, str] = {}
for _name in SOURCE_NAMES:
    try:
        SOURCES.append(importlib.import_module(f"specdec_diag.ingest.{_name}"))
    except Exception as _exc:  # noqa: BLE001 - guarded on purpose, see module docstring
        UNAVAILABLE[_name] = f"{type(_exc).__name__}: {_exc}"

from specdec_diag.ingest.scan import scan, scan_one  # noqa: E402  (needs SOURCES defined first)

__all__ = ["SOURCES", "SOURCE_NAMES", "UNAVAILABLE", "IngestResult", "Parsed", "scan", "scan_one"]
