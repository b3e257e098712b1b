"""The shapes every ingest source produces and the scan returns, and the :class:`Source` record each
source module exports. Ingest never judges: it only turns lines into rows of the tables defined in
:mod:`specdec_diag.schema`.

One module per source family under ``specdec_diag/ingest/``; each ends with ``SOURCE = Source(...)``
and the registry (``specdec_diag/ingest/__init__.py``) lists them explicitly. The scan calls only
what a :class:`Source` declares: no attribute probing, no signature inspection.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.ingest.timestamps import YearAnchor
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


#: an input error that starts with the line it concerns
_LINE_ERROR = re.compile(r"\d+: ")


@dataclass
class Parsed:
    """What one source parser returns for one file (or one chunk of it)."""

    windows: pl.DataFrame = field(default_factory=empty_windows)
    malformed: pl.DataFrame = field(default_factory=lambda: empty(MALFORMED_SCHEMA))
    configs: pl.DataFrame = field(default_factory=lambda: empty(CONFIG_SCHEMA))
    steps: pl.DataFrame = field(default_factory=lambda: empty(STEPS_SCHEMA))
    headers: list[dict[str, Any]] = field(default_factory=list)  # trace headers, each with "source"
    error: str | None = None  # the file as a whole cannot be read by this source (e.g. another schema)

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
    #: ``path: message`` per input read only in part (gzip damage): its lines before the damage are
    #: in the tables. Every command prints these as warnings, in this wording.
    warnings: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        """``path: message`` per input that could not be read at all (the inputs' ``error``); an error
        that names its line (``"12: …"``) reads ``path:12: message``."""
        bad = self.inputs.filter(pl.col("error").is_not_null()) if self.inputs.height else self.inputs
        return [f"{p}:{e}" if _LINE_ERROR.match(e) else f"{p}: {e}"
                for p, e in zip(bad["path"].to_list(), bad["error"].to_list(), strict=True)]

    @classmethod
    def empty(cls) -> IngestResult:
        return cls(empty_windows(), empty(STEPS_SCHEMA), empty(INPUT_SCHEMA), empty(MALFORMED_SCHEMA),
                   empty(CONFIG_SCHEMA))


@dataclass(frozen=True)
class ParseOptions:
    """Per-file facts a line parser may use. ``year_anchor``: where the missing year of ``MM-DD``
    timestamps comes from (see :mod:`specdec_diag.ingest.timestamps`)."""

    year_anchor: YearAnchor | None = None


#: the options of a file with nothing to offer (tests, direct calls)
NO_OPTIONS = ParseOptions()

#: Batched parsing of small files (``Source.batchable``): file ``i`` of a batch has its lines numbered
#: ``i * LINE_STRIDE + line``, and ``source`` is a placeholder; the scan maps rows back to each file.
#: A single file's lines are below the stride, so ``line // LINE_STRIDE`` is 0 outside batches.
LINE_STRIDE = 1 << 32


#: ``parse(lines, source, options)``: lines has columns ``line`` (Int64, 1-based) and ``text`` (Utf8),
#: already filtered to the source's markers.
LineParser = Callable[[pl.DataFrame, str, ParseOptions], Parsed]
#: ``parse_file(path, source)``: whole-file formats (JSON documents, our traces).
FileParser = Callable[[Path, str], Parsed]
#: ``finalize(windows)``: cross-file post-processing of this family's windows (e.g. snapshot differences).
Finalizer = Callable[[pl.DataFrame], pl.DataFrame]


@dataclass(frozen=True)
class Source:
    """One source family as the scan sees it.

    ``detect(sample)`` looks at the first 64 KiB of a file's text. A source with ``parse_file`` takes
    a file whose sample it detects whole; otherwise the lines containing any of its ``markers`` go to
    ``parse``. ``finalize`` runs once over this family's windows of all files (idempotent)."""

    family: str
    markers: tuple[str, ...]
    detect: Callable[[str], bool]
    parse: LineParser | None = None
    parse_file: FileParser | None = None
    finalize: Finalizer | None = None
    #: ``parse`` may be handed the marker lines of many small files at once (see :data:`LINE_STRIDE`).
    #: Set it only when every piece of cross-line state in ``parse`` is keyed by the file as well,
    #: ``line // LINE_STRIDE``; otherwise small files are parsed one by one (correct, slower).
    batchable: bool = False

    @property
    def reads_lines(self) -> bool:
        return self.parse is not None and bool(self.markers)
