"""Helpers shared by the performance rules."""

from __future__ import annotations

import polars as pl


def timed_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows (trace steps or engine windows) that carry both a draft and a verify time: the only
    ones a cost ratio or a draft share can be computed from."""
    return frame.filter(pl.col("draft_ms").is_not_null() & pl.col("verify_ms").is_not_null())
