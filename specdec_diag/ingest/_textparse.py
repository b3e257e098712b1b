"""Small helpers shared by the SGLang, llama.cpp, Prometheus and TensorRT-LLM sources: typed regex
extraction, malformed/config frames, and turning cumulative counters into per-window differences.

Kept here so the four parsers compute differences and report bad lines the same way.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.schema import CONFIG_SCHEMA, MALFORMED_SCHEMA, WINDOW_SCHEMA, open_text

#: a number as engines print it; "nan"/"inf" are kept so the cast yields a float rather than a miss.
NUM = r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|nan|inf)"
INT = r"(\d+)"
MAX_TEXT = 300  # malformed rows keep this much of the line: a 1 MB junk line must not bloat reports


def extract(pattern: str, dtype: Any = pl.Float64, col: str = "text") -> pl.Expr:
    """First capture group of ``pattern`` cast to ``dtype`` (null when absent or not a number)."""
    return pl.col(col).str.extract(pattern, 1).cast(dtype, strict=False)


def norm_lines(lines: pl.DataFrame) -> pl.DataFrame:
    """The scan's lines frame as parsers expect it: Int64 ``line``, Utf8 ``text``, no nulls."""
    return lines.select(
        pl.col("line").cast(pl.Int64, strict=False), pl.col("text").cast(pl.Utf8, strict=False)
    ).drop_nulls()


def lines_frame(path: str | Path) -> pl.DataFrame:
    """Read a file as the ``line``/``text`` frame the scan hands to ``parse`` (tests, ``parse_file``)."""
    with open_text(path) as fh:
        texts = fh.read().splitlines()
    return lines_from_texts(texts)


def lines_from_texts(texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"line": pl.Series(range(1, len(texts) + 1), dtype=pl.Int64), "text": pl.Series(texts, dtype=pl.Utf8)}
    )


def split_bad(df: pl.DataFrame, bad_when: pl.Expr) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(good, bad)``: rows where ``bad_when`` holds go to ``bad`` (for :func:`malformed`), and every
    row sharing a line number with a bad one leaves ``good`` - a line is either parsed or reported."""
    bad = df.filter(bad_when)
    return df.join(bad.select("line"), on="line", how="anti"), bad


def malformed(df: pl.DataFrame, source: str, reason: str | pl.Expr) -> pl.DataFrame:
    """MALFORMED_SCHEMA rows for the lines of ``df`` (columns line, text), text cut to MAX_TEXT."""
    if df.height == 0:
        return pl.DataFrame(schema=MALFORMED_SCHEMA)
    reason_expr = pl.lit(reason) if isinstance(reason, str) else reason
    return df.select(
        pl.lit(source).alias("source"),
        pl.col("line").cast(pl.Int64),
        reason_expr.cast(pl.Utf8).alias("reason"),
        pl.col("text").str.slice(0, MAX_TEXT),
    )


def malformed_rows(rows: list[tuple[int, str, str]], source: str) -> pl.DataFrame:
    """MALFORMED_SCHEMA rows from ``(line, reason, text)`` tuples (JSON and block parsers)."""
    return pl.DataFrame(
        [{"source": source, "line": ln, "reason": why, "text": text[:MAX_TEXT]} for ln, why, text in rows],
        schema=MALFORMED_SCHEMA,
        orient="row",
    )


def configs(rows: list[tuple[int, str, str]], source: str, engine: str) -> pl.DataFrame:
    """CONFIG_SCHEMA rows from ``(line, key, value)`` tuples."""
    return pl.DataFrame(
        [{"source": source, "line": ln, "engine": engine, "key": k, "value": v} for ln, k, v in rows],
        schema=CONFIG_SCHEMA,
        orient="row",
    )


def concat(frames: list[pl.DataFrame], schema: dict[str, Any]) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema=schema)
    return pl.concat([f.select(list(schema)).cast(schema) for f in frames], how="vertical")


def rows_to_windows(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Window rows built in Python (JSON / block formats) as a typed frame."""
    if not rows:
        return pl.DataFrame(schema=WINDOW_SCHEMA)
    return pl.DataFrame(
        [{k: r.get(k) for k in WINDOW_SCHEMA} for r in rows], schema=WINDOW_SCHEMA, orient="row"
    )


def finite(x: Any) -> float | None:
    """A float that is finite, else None (engines print nan; JSON may carry strings)."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def as_int(x: Any) -> int | None:
    v = finite(x)
    if v is None or v != int(v) or abs(v) > 2**62:
        return None
    return int(v)


def ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


# ---------------------------------------------------------------------------------------------
# cumulative counters -> per-window differences
# ---------------------------------------------------------------------------------------------

COUNTERS = ("num_drafts", "draft_tokens", "accepted_tokens", "emitted_tokens")


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
    return all(a[c] is None or b[c] is None or b[c] >= a[c] for c in COUNTERS)


def differences(cum: pl.DataFrame, keys: tuple[str, ...] = ("format", "engine_id")) -> pl.DataFrame:
    """Interval rows from successive cumulative rows of each ``keys`` group.

    Within a file, every pair of successive rows; across files, the last row of one file and the
    first of the next when :func:`_continues` says they are the same server's snapshots.
    A counter that went down means the engine restarted: the later totals are then the whole window
    (as Prometheus' ``increase`` does). Per-position fractions are turned back into counts
    (fraction x num_drafts), differenced, and divided again. Gauges (running, waiting, KV usage) come
    from the later row.
    """
    if cum.height < 2:
        return pl.DataFrame(schema=WINDOW_SCHEMA)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in cum.to_dicts():
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out: list[dict[str, Any]] = []
    for group in groups.values():
        seqs = _sequences(group)
        for rows in seqs:
            for prev, cur in zip(rows, rows[1:], strict=False):
                out.append(_difference(prev, cur))
        for a, b in zip(seqs, seqs[1:], strict=False):
            if _continues(a[-1], b[0]):
                out.append(_difference(a[-1], b[0]))
    return rows_to_windows(out)


def _difference(prev: dict[str, Any], cur: dict[str, Any]) -> dict[str, Any]:
    reset = any(
        cur[c] is not None and prev[c] is not None and cur[c] < prev[c] for c in (*COUNTERS, "draft_ms")
    )
    row = dict(cur)
    row["window"] = "interval"
    for c in (*COUNTERS, "draft_ms"):
        if cur[c] is None:
            row[c] = None
        elif reset or prev[c] is None:
            row[c] = cur[c] if reset else None
        else:
            row[c] = cur[c] - prev[c]
    d_drafts, d_draft, d_acc = row["num_drafts"], row["draft_tokens"], row["accepted_tokens"]
    row["acceptance_rate"] = ratio(d_acc, d_draft)
    row["mean_acceptance_length"] = None if ratio(d_acc, d_drafts) is None else 1 + d_acc / d_drafts
    row["per_position_acceptance"] = _pp_difference(prev, cur, reset, d_drafts)
    row["accepted_tps"] = row["drafted_tps"] = None
    if cur["time"] is not None and prev["time"] is not None and not reset:
        dt = (cur["time"] - prev["time"]).total_seconds()
        if dt > 0:
            row["accepted_tps"] = None if d_acc is None else d_acc / dt
            row["drafted_tps"] = None if d_draft is None else d_draft / dt
    notes = [n for n in (cur.get("definition_note"),) if n]
    notes.append("difference of successive cumulative totals")
    if reset:
        notes.append("counter reset (restart): the later totals are the window")
    row["definition_note"] = "; ".join(notes)
    return row


def _pp_difference(prev: dict[str, Any], cur: dict[str, Any], reset: bool, d_drafts: Any) -> list | None:
    pc, pp = cur["per_position_acceptance"], prev["per_position_acceptance"]
    if pc is None or not d_drafts or d_drafts <= 0:
        return None
    if reset:
        return list(pc)
    if pp is None or cur["num_drafts"] is None or prev["num_drafts"] is None:
        return None
    if len(pc) != len(pp):  # a series missing from one scrape: no honest per-position difference
        return None
    out = []
    for a, b in zip(pc, pp, strict=True):
        if a is None or b is None:
            return None
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
    diffs = differences(cum, keys)
    if diffs.height == 0:
        return kept
    return pl.concat([kept, diffs.select(kept.columns).cast(dict(kept.schema))], how="vertical")
