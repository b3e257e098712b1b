"""Cumulative counters -> per-window differences, the one implementation every source uses: vLLM V0
``Speculative metrics`` lines, Prometheus counter snapshots and llama.cpp ``statistics`` lines.

A counter that went down means the engine restarted: the later totals are then the whole window (as
Prometheus' ``increase`` does). Per-position fractions are turned back into counts (fraction x
num_drafts), differenced, and divided again. Gauges (running, waiting, KV usage) come from the
later row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import polars as pl

from specdec_diag.ingest._textparse import ratio, reject_windows, rows_to_windows
from specdec_diag.schema import COUNTER_COLUMNS, WINDOW_SCHEMA

#: counters differenced; ``draft_ms`` is a cumulative duration in llama.cpp statistics lines.
_DIFFERENCED = (*COUNTER_COLUMNS, "draft_ms")

#: ``note(row's own note, first snapshot counted since start, counter reset) -> definition_note``
NoteFn = Callable[[str | None, bool, bool], str]


def difference_note(note: str | None, first: bool, reset: bool) -> str:
    """The default ``definition_note`` of a derived interval row: the source's note plus how it was derived."""
    notes = [n for n in (note,) if n]
    notes.append("difference of successive cumulative totals")
    if first:
        notes.append("first snapshot: counts since server start")
    if reset:
        notes.append("counter reset (restart): the later totals are the window")
    return "; ".join(notes)


def _sequences(group: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """One engine's snapshots as per-file sequences (line order), files in chronological order: by
    first time when every row has one, else by first counter value, since counters only grow (file
    names such as before/after do not sort chronologically)."""
    by_src: dict[str, list[dict[str, Any]]] = {}
    for r in group:
        by_src.setdefault(r["source"] or "", []).append(r)
    seqs = [sorted(rows, key=lambda r: r["line"] or 0) for rows in by_src.values()]
    if all(r["time"] is not None for r in group):
        return sorted(seqs, key=lambda q: (q[0]["time"], q[0]["source"] or ""))
    return sorted(
        seqs,
        key=lambda q: (
            float(q[0]["draft_tokens"] or q[0]["num_drafts"] or 0),
            float(q[0]["accepted_tokens"] or 0),
            q[0]["source"] or "",
        ),
    )


def _continues(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether file B's first snapshot can follow file A's last one from the same server: B starts
    after A ends (times), or, without times, no counter went down. Files whose time ranges overlap
    are different servers or runs that happen to share labels, never differenced."""
    if a["time"] is not None and b["time"] is not None:
        return a["time"] < b["time"]
    return all(a[c] is None or b[c] is None or b[c] >= a[c] for c in COUNTER_COLUMNS)


def differences(cum: pl.DataFrame, keys: tuple[str, ...] = ("format", "engine_id"), *,
                since_start: bool = False, time_rates: bool = True,
                note: NoteFn = difference_note) -> pl.DataFrame:
    """Interval rows (WINDOW_SCHEMA) from successive cumulative rows of each ``keys`` group.

    Within a file, every pair of successive rows; across files, the last row of one file and the
    first of the next when :func:`_continues` says they are the same server's snapshots.
    ``since_start``: the first snapshot of a sequence is itself a window (its totals count since
    the server started, as vLLM V0 logs do from the first line). ``time_rates``: derive
    accepted/drafted tokens per second from the snapshot times.
    """
    if cum.height < (1 if since_start else 2):
        return pl.DataFrame(schema=WINDOW_SCHEMA)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in cum.to_dicts():
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out: list[dict[str, Any]] = []
    for group in groups.values():
        seqs = _sequences(group)
        joins = [_continues(a[-1], b[0]) for a, b in zip(seqs, seqs[1:], strict=False)]
        for i, rows in enumerate(seqs):
            if since_start and not (i and joins[i - 1]):
                out.append(_difference(None, rows[0], time_rates, note))
            for prev, cur in zip(rows, rows[1:], strict=False):
                out.append(_difference(prev, cur, time_rates, note))
        for (a, b), joined in zip(zip(seqs, seqs[1:], strict=False), joins, strict=True):
            if joined:
                out.append(_difference(a[-1], b[0], time_rates, note))
    return rows_to_windows(out)


def _difference(prev: dict[str, Any] | None, cur: dict[str, Any], time_rates: bool, note: NoteFn) -> dict[str, Any]:
    """One interval row: ``cur - prev`` per counter; ``prev`` None means the first snapshot since start."""
    first = prev is None
    reset = not first and any(
        cur[c] is not None and prev[c] is not None and cur[c] < prev[c] for c in _DIFFERENCED
    )
    row = dict(cur)
    row["window"] = "interval"
    for c in _DIFFERENCED:
        if cur[c] is None:
            row[c] = None
        elif first or reset:
            row[c] = cur[c]
        elif prev[c] is None:
            row[c] = None
        else:
            row[c] = cur[c] - prev[c]
    d_drafts, d_draft, d_acc = row["num_drafts"], row["draft_tokens"], row["accepted_tokens"]
    row["acceptance_rate"] = ratio(d_acc, d_draft)
    row["mean_acceptance_length"] = None if ratio(d_acc, d_drafts) is None else 1 + d_acc / d_drafts
    row["per_position_acceptance"] = _pp_difference(prev, cur, first or reset, d_drafts)
    row["accepted_tps"] = row["drafted_tps"] = None
    if time_rates and not (first or reset) and cur["time"] is not None and prev["time"] is not None:
        dt = (cur["time"] - prev["time"]).total_seconds()
        if dt > 0:
            row["accepted_tps"] = None if d_acc is None else d_acc / dt
            row["drafted_tps"] = None if d_draft is None else d_draft / dt
    row["definition_note"] = note(cur.get("definition_note"), first, reset)
    return row


def _pp_difference(prev: dict[str, Any] | None, cur: dict[str, Any], whole: bool, d_drafts: Any) -> list | None:
    pc = cur["per_position_acceptance"]
    if pc is None or not d_drafts or d_drafts <= 0:
        return None
    if whole:
        return None if any(v is None or not math.isfinite(v) for v in pc) else list(pc)
    if prev is not None and prev["num_drafts"] == 0:  # nothing drafted before: every count was 0
        # (llama-server exports the per-position series only after its first draft)
        return None if any(v is None or not math.isfinite(v) for v in pc) else list(pc)
    pp = prev["per_position_acceptance"] if prev is not None else None
    if pp is None or cur["num_drafts"] is None or prev["num_drafts"] is None:
        return None
    if len(pc) != len(pp):  # a series missing from one scrape: no honest per-position difference
        return None
    out = []
    for a, b in zip(pc, pp, strict=True):
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            return None  # a nan position is unknown, never 0
        v = (a * cur["num_drafts"] - b * prev["num_drafts"]) / d_drafts
        out.append(min(1.0, max(0.0, v)))
    return out


def recompute_differences(
    windows: pl.DataFrame, formats: tuple[str, ...], keys: tuple[str, ...] = ("format", "engine_id")
) -> pl.DataFrame:
    """``finalize`` body for cumulative sources: drop interval rows previously derived from the
    cumulative rows of ``formats`` and derive them again over every file at once (idempotent)."""
    if windows.height == 0:
        return windows
    derived = pl.col("format").is_in(list(formats)) & (pl.col("window") == "interval")
    kept = windows.filter(~derived.fill_null(False))
    cum = windows.filter(pl.col("format").is_in(list(formats)) & (pl.col("window") == "cumulative"))
    # a pair breaking accepted <= drafted was reported malformed by the file's parse; never shown
    diffs, _ = reject_windows(differences(cum, keys), "")
    if diffs.height == 0:
        return kept
    return pl.concat([kept, diffs.select(kept.columns).cast(dict(kept.schema))], how="vertical")
