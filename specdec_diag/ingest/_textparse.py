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
        texts = split_lines(fh.read())
    return lines_from_texts(texts)


def split_lines(text: str) -> list[str]:
    """Lines as the scan numbers them: split at newlines only (text mode already turned CRLF and CR
    into one). ``str.splitlines`` would also split at \x1c-\x1e, \x85, U+2028 ..., and one such
    byte in a junk line would shift the line number of every record after it."""
    texts = text.split("\n")
    if texts and texts[-1] == "":
        texts.pop()
    return texts


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


# ---------------------------------------------------------------------------------------------
# validation: one bad value makes its own line malformed, never its batch or a silent null
# ---------------------------------------------------------------------------------------------

#: the largest count a window column (Int64) holds
INT64_MAX = 2**63 - 1
#: window columns holding counts (never negative) and floats (always finite when present)
_COUNT_COLS = ("k", "num_drafts", "draft_tokens", "accepted_tokens", "emitted_tokens", "running_reqs",
               "waiting_reqs", "context_len", "target_forwards")
_FLOAT_COLS = ("acceptance_rate", "mean_acceptance_length", "accepted_tps", "drafted_tps", "gen_tps",
               "prompt_tps", "kv_usage", "draft_ms", "verify_ms", "overhead_ms", "ttft_ms", "tpot_ms")
ORDER_REASON = "accepted tokens exceed drafted tokens"


def value_problem(raw: Any, label: str, *, count: bool = False) -> str | None:
    """Why ``raw`` (a printed number, or a JSON value) is not a usable value of ``label``: not a
    number, nan/inf, negative, beyond int64 (no count, rate or duration of ours gets there), or for a
    count not whole. None when fine or absent. Worded like :func:`value_problem_expr`."""
    if raw is None:
        return None
    shown = f"{label} is {str(raw).strip()[:40]}"
    if isinstance(raw, bool):
        return f"{shown} (not a number)"
    try:
        v = float(raw) if not isinstance(raw, int) else raw
    except (TypeError, ValueError, OverflowError):
        return f"{shown} (not a number)"
    if isinstance(v, float) and not math.isfinite(v):
        return f"{shown} (not a finite number)"
    if v < 0:
        return f"{shown} (negative)"
    if v > INT64_MAX:
        return f"{shown} (beyond the int64 range)"
    if count and v != int(v):
        return f"{shown} (not a whole count)"
    return None


def value_problem_expr(col: str, label: str, *, count: bool = False) -> pl.Expr:
    """The vectorised :func:`value_problem` for a captured string column ``col`` (null when fine or
    absent): the reason names the field and quotes the printed text."""
    raw = pl.col(col).cast(pl.Utf8).str.strip_chars()
    v = raw.cast(pl.Float64, strict=False)
    shown = pl.lit(f"{label} is ") + raw.str.slice(0, 40)
    why = (
        pl.when(raw.is_null()).then(pl.lit(None, dtype=pl.Utf8))
        .when(v.is_null()).then(shown + pl.lit(" (not a number)"))
        .when(~v.is_finite()).then(shown + pl.lit(" (not a finite number)"))
        .when(v < 0).then(shown + pl.lit(" (negative)"))
        .when(v > float(INT64_MAX)).then(shown + pl.lit(" (beyond the int64 range)"))
    )
    if count:
        why = why.when(v != v.floor()).then(shown + pl.lit(" (not a whole count)"))
    return why.otherwise(pl.lit(None, dtype=pl.Utf8))


def first_problem(*exprs: pl.Expr) -> pl.Expr:
    """The first non-null reason of several checks (null when all pass)."""
    return pl.coalesce([*exprs, pl.lit(None, dtype=pl.Utf8)])


def counts_problem(accepted: Any, drafted: Any) -> str | None:
    """The invariant every source keeps: a window never accepts more tokens than it drafted."""
    if accepted is not None and drafted is not None and accepted > drafted:
        return f"{ORDER_REASON} ({accepted} > {drafted})"
    return None


def window_problem() -> pl.Expr:
    """Why a window row breaks the invariants of the window table (null when it does not): accepted >
    drafted, an acceptance rate above 1, a negative count, a float that is nan/inf/negative/beyond
    int64, a per-position value that is not a fraction."""
    checks: list[pl.Expr] = [
        pl.when(pl.col("accepted_tokens") > pl.col("draft_tokens")).then(
            pl.format(ORDER_REASON + " ({} > {})", "accepted_tokens", "draft_tokens"))
    ]
    checks.append(pl.when(pl.col("acceptance_rate") > 1).then(pl.lit("acceptance_rate above 1")))
    checks += [pl.when(pl.col(c) < 0).then(pl.lit(f"negative {c}")) for c in _COUNT_COLS]
    checks += [pl.when(~pl.col(c).is_finite()).then(pl.lit(f"{c} is not a finite number"))
               .when(pl.col(c) < 0).then(pl.lit(f"negative {c}"))
               .when(pl.col(c) > float(INT64_MAX)).then(pl.lit(f"{c} beyond the int64 range")) for c in _FLOAT_COLS]
    pp = pl.col("per_position_acceptance")
    checks.append(pl.when(pp.list.eval(~pl.element().is_finite() | (pl.element() < 0) | (pl.element() > 1)).list.any())
                  .then(pl.lit("a per-position acceptance value is not a fraction (nan, infinite, < 0 or > 1)")))
    return first_problem(*checks)


def reject_windows(windows: pl.DataFrame, source: str,
                   lines: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(good, malformed)``: window rows that break the table's invariants leave the table and become
    malformed rows at their own line (text from ``lines`` when given), so no view shows them."""
    if windows.height == 0:
        return windows, pl.DataFrame(schema=MALFORMED_SCHEMA)
    flagged = windows.with_columns(window_problem().alias("_why"))
    bad = flagged.filter(pl.col("_why").is_not_null())
    if bad.height == 0:
        return windows, pl.DataFrame(schema=MALFORMED_SCHEMA)
    good = flagged.filter(pl.col("_why").is_null()).drop("_why")
    bad = bad.select("line", "_why").unique("line", keep="first", maintain_order=True)
    if lines is not None and lines.height:
        bad = bad.join(lines.select("line", "text").unique("line"), on="line", how="left")
    else:
        bad = bad.with_columns(pl.lit("", dtype=pl.Utf8).alias("text"))
    return good, malformed(bad.with_columns(pl.col("text").fill_null("")), source, pl.col("_why"))
