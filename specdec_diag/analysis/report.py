"""The report (docs/architecture.md §4, ``specdec-diag/report@1``): one JSON-safe dict built from an
``IngestResult``: exactly the keys schema, inputs, summary, windows, findings.

Renderers (:mod:`specdec_diag.render`) read only this dict, never the tables, so a saved JSON report
renders again later and the CI gate reads a previous report as its baseline.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from specdec_diag.analysis import metrics
from specdec_diag.analysis.rules import Thresholds, run_rules
from specdec_diag.ingest.base import IngestResult
from specdec_diag.schema import CONTRACT_WINDOW_COLUMNS, REPORT_SCHEMA, jsonable

REPORT_KEYS = ("schema", "inputs", "summary", "windows", "findings")
INPUT_KEYS = ("path", "format", "engine", "lines", "records", "malformed")
FINDING_KEYS = ("code", "severity", "title", "evidence", "recommendation", "locations")


def windows_json(windows: pl.DataFrame) -> list[dict[str, Any]]:
    """The §3 contract columns of every window row, JSON-safe (NaN -> null, time -> ISO string);
    done column-wise in polars because logs can have hundreds of thousands of windows."""
    if windows.height == 0:
        return []
    cols = [c for c in CONTRACT_WINDOW_COLUMNS if c in windows.columns]
    exprs = []
    for c in cols:
        dt = windows.schema[c]
        if dt == pl.Float64 or dt == pl.Float32:
            exprs.append(pl.col(c).fill_nan(None))
        elif isinstance(dt, pl.List) and dt.inner in (pl.Float64, pl.Float32):
            exprs.append(pl.col(c).list.eval(pl.element().fill_nan(None)))
        elif isinstance(dt, pl.Datetime):
            exprs.append(pl.col(c).dt.to_string("%Y-%m-%dT%H:%M:%S%.6f+00:00"))
        else:
            exprs.append(pl.col(c))
    return windows.select(exprs).to_dicts()


def inputs_json(inputs: pl.DataFrame) -> list[dict[str, Any]]:
    """The report's ``inputs``: one JSON-safe row per input file, the :data:`INPUT_KEYS` only."""
    if inputs.height == 0:
        return []
    return [jsonable({k: r.get(k) for k in INPUT_KEYS}) for r in inputs.to_dicts()]


def run_findings(result: IngestResult, thresholds: Thresholds | None = None) -> list[dict[str, Any]]:
    """The diagnosis rules' findings, ranked, as report dicts (docs/architecture.md §4 keys)."""
    out = []
    for f in run_rules(result, thresholds):
        d = f.to_dict()
        out.append(jsonable({k: d.get(k) for k in FINDING_KEYS}))
    return out


def build_report(result: IngestResult, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """The report dict of docs/architecture.md §4 for one ``IngestResult``: exactly the keys schema,
    inputs, summary, windows, findings; JSON-serialisable as is."""
    return {
        "schema": REPORT_SCHEMA,
        "inputs": inputs_json(result.inputs),
        "summary": jsonable(metrics.summarize(result)),
        "windows": windows_json(result.windows),
        "findings": run_findings(result, thresholds),
    }


def has_data(report: dict[str, Any]) -> bool:
    """Whether the report saw any speculative-decoding numbers at all (else: exit 3)."""
    s = report.get("summary") or {}
    return bool(s.get("windows_used") or s.get("steps"))


__all__ = ["REPORT_KEYS", "INPUT_KEYS", "FINDING_KEYS", "windows_json", "inputs_json", "run_findings",
           "build_report", "has_data"]
