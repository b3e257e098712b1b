"""SGLang: each decode window takes k (and the accept-rate definition) from the ``server_args=ServerArgs(...)``
banner that precedes it, not from the last banner of the file.

A log file that holds a restart into another configuration has two banners; before this, every window of
the file was converted with the last banner's ``speculative_num_steps``, so the windows before the restart
carried the later k (docs/runs.md). Which number is k: for a chain (``speculative_eagle_topk`` 1 or
unset) k = ``speculative_num_steps``, the draft tokens verified per step;
``speculative_num_draft_tokens`` = k + 1 there (it counts the verified root/bonus position). For a tree
(topk > 1) k = ``speculative_num_draft_tokens`` - 1 verified nodes. That choice is made in
``sglang._convert``; this module only hands it the right banner.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

import polars as pl


def convert_per_banner(dec: pl.DataFrame, cfg: pl.DataFrame,
                       convert: Callable[[pl.DataFrame, pl.DataFrame], pl.DataFrame]) -> pl.DataFrame:
    """``convert(windows, config rows)`` applied to each stretch of decode lines with the config rows
    logged up to that stretch (the latest value of a key wins, so the preceding banner decides); lines
    before any configuration line keep the whole file's configuration, as before. Row order is kept."""
    starts = sorted(set(cfg["line"].to_list())) if cfg.height else []
    if len(starts) <= 1 or dec.height == 0:
        return convert(dec, cfg)
    idx = [bisect.bisect_right(starts, ln) - 1 for ln in dec["line"].to_list()]
    tagged = dec.with_row_index("_row").with_columns(pl.Series("_banner", idx, pl.Int64))
    parts = []
    for (b,), part in tagged.group_by(["_banner"], maintain_order=True):
        rows = cfg if b < 0 else cfg.filter(pl.col("line") <= starts[b])
        parts.append(convert(part.drop("_banner"), rows))
    return pl.concat(parts, how="diagonal_relaxed").sort("_row").drop("_row")


__all__ = ["convert_per_banner"]
