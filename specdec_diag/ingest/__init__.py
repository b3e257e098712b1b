"""Ingest: turn engine logs, bench outputs, metrics dumps and our own traces into the normalised
tables of :mod:`specdec_diag.schema`. Public API: :func:`scan`, :func:`scan_one`, :data:`SOURCES`.

Each source module exports a :class:`~specdec_diag.ingest.base.Source`; :mod:`.registry` lists them.
"""

from __future__ import annotations

from specdec_diag.ingest.base import IngestResult, Parsed, ParseOptions, Source
from specdec_diag.ingest.registry import SOURCES
from specdec_diag.ingest.scan import scan, scan_one

__all__ = ["SOURCES", "IngestResult", "ParseOptions", "Parsed", "Source", "scan", "scan_one"]
