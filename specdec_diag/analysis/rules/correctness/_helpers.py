"""Helpers shared by the correctness rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import polars as pl


def by_request(steps: pl.DataFrame) -> Iterable[list[dict[str, Any]]]:
    for _, g in steps.group_by(["source", "request"], maintain_order=True):
        yield g.sort("step").to_dicts()
