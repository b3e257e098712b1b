"""The shapes every ingest source produces and the scan returns. Ingest never judges: it only turns
lines into rows of the tables defined in :mod:`specdec_diag.schema`.

Source module protocol (one module per source family under ``specdec_diag/ingest/``)::

    FAMILY: str                      # "vllm", "sglang", "llama.cpp", "prometheus", "trtllm", "trace"
    MARKERS: tuple[str, ...]         # literal substrings; lines with none of them are never parsed
    def detect(sample: str) -> bool  # sample: the first 64 KiB of the file's text
    def parse(lines: pl.DataFrame, source: str) -> Parsed
        # lines: columns line (Int64, 1-based) and text (Utf8), already filtered to MARKERS
    # optional, for whole-file formats (JSON documents, our traces):
    def parse_file(path: Path, source: str) -> Parsed
    # optional, cross-file post-processing of this family's windows (e.g. snapshot differences):
    def finalize(windows: pl.DataFrame) -> pl.DataFrame
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from specdec_diag.schema import (
    CONFIG_SCHEMA,
    INPUT_SCHEMA,
    MALFORMED_SCHEMA,
    STEP_FIELDS,
    conform_windows,
    empty_windows,
)

#: trace steps as ingested: every step field plus where it came from.
STEPS_SCHEMA: dict[str, Any] = {
    "source": pl.Utf8,
    "line": pl.Int64,
    **{name: dtype for name, (dtype, _, _) in STEP_FIELDS.items()},
}


def empty(schema: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


@dataclass
class Parsed:
    """What one source parser returns for one file (or one chunk of it)."""

    windows: pl.DataFrame = field(default_factory=empty_windows)
    malformed: pl.DataFrame = field(default_factory=lambda: empty(MALFORMED_SCHEMA))
    configs: pl.DataFrame = field(default_factory=lambda: empty(CONFIG_SCHEMA))
    steps: pl.DataFrame = field(default_factory=lambda: empty(STEPS_SCHEMA))
    headers: list[dict[str, Any]] = field(default_factory=list)  # trace headers, each with "source"

    def __post_init__(self) -> None:
        self.windows = conform_windows(self.windows)


@dataclass
class IngestResult:
    """Everything a scan of one or more paths found; the one input of analysis and the dashboard."""

    windows: pl.DataFrame      # WINDOW_SCHEMA rows, all sources
    steps: pl.DataFrame        # STEPS_SCHEMA rows from our traces
    inputs: pl.DataFrame       # INPUT_SCHEMA: one row per file
    malformed: pl.DataFrame    # MALFORMED_SCHEMA
    configs: pl.DataFrame      # CONFIG_SCHEMA: startup / header facts
    headers: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: str = ""      # content fingerprint of all inputs (cache key for the dashboard)

    @classmethod
    def empty(cls) -> IngestResult:
        return cls(empty_windows(), empty(STEPS_SCHEMA), empty(INPUT_SCHEMA), empty(MALFORMED_SCHEMA),
                   empty(CONFIG_SCHEMA))
