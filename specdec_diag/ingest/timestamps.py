"""Timestamps in engine logs: vLLM prints ``MM-DD HH:MM:SS`` without a year, container runtimes
prefix full ISO timestamps. Turning both into UTC datetimes is shared by several sources, so it
lives here.

The missing year comes from an *anchor*: a full date known to lie at one end of the file, either
the first ISO timestamp in the file's head (the log starts there) or the file's mtime (the log ended
there). A record's year is the anchor's year, moved by one when its month-day lies on the wrong side
of the anchor (a log written across New Year). Logs spanning more than a year are not resolvable
this way; without any anchor the time stays null and records still order by line.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import polars as pl

#: a full ISO-8601 timestamp as container runtimes write it (docker ``--timestamps``, kubectl, CRI).
ISO_PATTERN = (
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?"
)
_ISO_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})")


@dataclass(frozen=True)
class YearAnchor:
    """A full date at one end of a log. ``at_start`` is True when the log starts at ``date``
    (taken from its head), False when it ends there (the file's mtime)."""

    date: dt.date
    at_start: bool
    origin: str  # "iso-in-file" | "mtime": why we believe the year, for docs and debugging

    @property
    def md(self) -> str:
        return f"{self.date.month:02d}-{self.date.day:02d}"


def anchor_from(sample: str, mtime: float | None) -> YearAnchor | None:
    """Pick the year anchor for a file: an ISO date in its head beats the mtime (a copied file's
    mtime says when it was copied, not when it was written)."""
    m = _ISO_RE.search(sample)
    if m:
        try:
            return YearAnchor(dt.date(int(m[1]), int(m[2]), int(m[3])), True, "iso-in-file")
        except ValueError:
            pass
    if mtime is not None:
        try:
            return YearAnchor(dt.datetime.fromtimestamp(mtime, dt.UTC).date(), False, "mtime")
        except (OverflowError, OSError, ValueError):
            return None
    return None


def month_day_time(md: pl.Expr, hms: pl.Expr, anchor: YearAnchor | None) -> pl.Expr:
    """UTC datetime from ``MM-DD`` and ``HH:MM:SS`` string columns, the year taken from ``anchor``.

    vLLM prints server-local time; without a zone in the log we take it as UTC (documented)."""
    if anchor is None:
        return pl.lit(None, dtype=pl.Datetime("us", "UTC"))
    y = anchor.date.year
    if anchor.at_start:
        year = pl.when(md < anchor.md).then(pl.lit(str(y + 1))).otherwise(pl.lit(str(y)))
    else:
        year = pl.when(md > anchor.md).then(pl.lit(str(y - 1))).otherwise(pl.lit(str(y)))
    return (
        pl.concat_str([year, pl.lit("-"), md, pl.lit(" "), hms])
        .str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_unit="us")
        .dt.replace_time_zone("UTC")
    )


def iso_time(col: pl.Expr) -> pl.Expr:
    """UTC datetime from an ISO timestamp string column (any zone offset, up to ns precision)."""
    norm = (
        col.str.replace(" ", "T", literal=True)
        .str.replace(",", ".", literal=True)
        # "+0000" -> "+00:00"; "Z" -> "+00:00"; no zone -> UTC
        .str.replace(r"([+-]\d{2})(\d{2})$", "$1:$2")
        .str.replace(r"Z$", "+00:00")
    )
    with_zone = norm.str.contains(r"[+-]\d{2}:\d{2}$")
    frac = norm.str.extract(r"\.(\d+)", 1)
    # polars' %.f needs 1..9 digits; normalise to microseconds to keep one format string.
    base = norm.str.extract(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})", 1)
    zone = pl.when(with_zone).then(norm.str.extract(r"([+-]\d{2}:\d{2})$", 1)).otherwise(pl.lit("+00:00"))
    micro = pl.when(frac.is_null()).then(pl.lit("000000")).otherwise(frac.str.slice(0, 6).str.pad_end(6, "0"))
    text = pl.concat_str([base, pl.lit("."), micro, zone])
    return text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", strict=False, time_unit="us").dt.convert_time_zone(
        "UTC"
    )
