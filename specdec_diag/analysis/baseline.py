"""Baseline reports for the CI gate: read one, check every field the comparison uses, and match the
baseline's runs to a current run by engine + method + k (+ model when both name one), so a build is
never judged against another engine, another k, or our own trace (docs/ci.md).

A report@2 baseline carries runs; its runs need their windows (``report --windows --format json`` or
``check --write-report``). A pooled report@1 baseline is read as one run with the engine and k of its
summary (its method is unknown, so it matches only current runs whose method is unknown too)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.schema import POOLED_REPORT_SCHEMA, REPORT_SCHEMA, conform_windows

REPORT_V1, REPORT_V2 = POOLED_REPORT_SCHEMA, REPORT_SCHEMA
#: window fields the comparison reads: (integer?, upper bound or None)
_COUNTS = ("num_drafts", "draft_tokens", "accepted_tokens", "emitted_tokens", "k")
_FRACTIONS = ("acceptance_rate",)
MATCH_KEYS = ("engine", "method", "k")


class BaselineError(ValueError):
    """The baseline cannot be used; ``str()`` is one line naming the file (and where in it)."""


def load_baseline(path: str | Path) -> dict[str, Any]:
    """A previous report JSON (@2 or @1), checked field by field; returns it with ``baseline_runs``:
    ``[{"id", "engine", "method", "k", "model", "windows": [...]}]``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read baseline ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}:{exc.lineno}: baseline is not valid JSON ({exc.msg})") from None
    schema = data.get("schema") if isinstance(data, dict) else type(data).__name__
    if schema == REPORT_V2:
        runs = data.get("runs")
        if not isinstance(runs, list):
            raise BaselineError(f"{path}:1: baseline report lacks its runs list")
        out = [_run(path, r, i) for i, r in enumerate(runs)]
        if out and not any(r["windows"] for r in out):
            raise BaselineError(f"{path}:1: baseline report has no windows; write it with `specdec-diag report PATH "
                                "--windows --format json --out FILE` or `check --write-report FILE`")
    elif schema == REPORT_V1:
        if not isinstance(data.get("windows"), list) or not isinstance(data.get("summary"), dict):
            raise BaselineError(f"{path}:1: baseline report lacks its windows list or summary object")
        s = data["summary"]
        out = [_run(path, {"id": "baseline", "engine": s.get("engine"), "method": None, "k": s.get("k"),
                           "model": None, "windows": data["windows"]}, 0)]
    else:
        raise BaselineError(f"{path}:1: baseline is not a {REPORT_V2} (or @1) report (schema {schema!r}); "
                            "write one with `specdec-diag report PATH --windows --format json --out FILE`")
    data["baseline_runs"] = out
    return data


def _run(path: Path, run: Any, i: int) -> dict[str, Any]:
    if not isinstance(run, dict):
        raise BaselineError(f"{path}: baseline run {i} is not an object")
    rid = run.get("id")
    where = f"{path}: baseline run {rid!r}"
    for key in ("engine", "method", "model"):
        if run.get(key) is not None and not isinstance(run[key], str):
            raise BaselineError(f"{where}: {key} must be a string or null, got {run[key]!r}")
    k = run.get("k")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 0):
        raise BaselineError(f"{where}: k must be a non-negative integer or null, got {k!r}")
    windows = run.get("windows") or []
    if not isinstance(windows, list):
        raise BaselineError(f"{where}: windows must be a list")
    for n, w in enumerate(windows):
        _check_window(f"{where} window {n}", w)
    return {"id": rid, "engine": run.get("engine"), "method": run.get("method"), "k": k, "model": run.get("model"),
            "windows": windows}


def _check_window(where: str, w: Any) -> None:
    """Counts are non-negative integers (or null), rates finite fractions, accepted <= drafted."""
    if not isinstance(w, dict):
        raise BaselineError(f"{where}: not an object")
    for key in _COUNTS:
        v = w.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise BaselineError(f"{where}: {key} must be a non-negative integer or null, got {v!r}")
    for key in _FRACTIONS:
        v = w.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v)
                              or not 0.0 <= v <= 1.0):
            raise BaselineError(f"{where}: {key} must be a fraction in [0, 1] or null, got {v!r}")
    d, a = w.get("draft_tokens"), w.get("accepted_tokens")
    if d is not None and a is not None and a > d:
        raise BaselineError(f"{where}: accepted_tokens {a} > draft_tokens {d}")


def match(run: dict[str, Any], baseline: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The baseline runs comparable with ``run`` (same engine, method and k; same model when both
    name one) — of those, the same deployment's runs (id up to ``@start``) when there are any — and,
    when there are none, why."""
    key = tuple(run.get(k) for k in MATCH_KEYS)
    found = [b for b in baseline["baseline_runs"] if b["windows"] and tuple(b.get(k) for k in MATCH_KEYS) == key
             and (run.get("model") is None or b.get("model") is None or run.get("model") == b.get("model"))]
    if found:
        # the same deployment (host/file#engine:tag, start time aside) when the baseline has it
        same = [b for b in found if str(b.get("id") or "").split("@")[0] == str(run.get("id") or "").split("@")[0]]
        return same or found, ""
    have = sorted({f"{b.get('engine')}/{b.get('method')}/k={b.get('k')}" for b in baseline["baseline_runs"]})
    return [], (f"no baseline run with engine {key[0]}, method {key[1]}, k={key[2]} (baseline has: "
                f"{', '.join(have) or 'no runs'})")


def windows_frame(runs: list[dict[str, Any]]) -> pl.DataFrame:
    """The matched baseline runs' windows as one window table (times dropped: not compared)."""
    rows = [{k: v for k, v in w.items() if k != "time"} for r in runs for w in r["windows"]]
    return conform_windows(pl.DataFrame(rows, infer_schema_length=None)) if rows else conform_windows(pl.DataFrame())


__all__ = ["BaselineError", "REPORT_V1", "REPORT_V2", "MATCH_KEYS", "load_baseline", "match", "windows_frame"]
