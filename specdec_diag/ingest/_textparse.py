"""Small helpers shared by every line source: typed regex extraction, the lines frame, malformed and
config frames, null-safe ratios. Kept here so the parsers report bad lines the same way.
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


def ratio_expr(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """``num / den`` as Float64, null unless ``den > 0`` (the vectorised :func:`ratio`)."""
    return pl.when(den > 0).then(num.cast(pl.Float64) / den.cast(pl.Float64)).otherwise(None)
