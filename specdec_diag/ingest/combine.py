"""Per-file results into one :class:`~specdec_diag.ingest.base.IngestResult`, incrementally: the scan
hands each file's result over as soon as every file before it is done, and small tables are packed
into one buffer per few thousand files, so 20,000 small files do not hold 20,000 sets of frames
(each polars frame costs some KB of buffers per column, ~1 GB at that count).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from specdec_diag.ingest.base import STEPS_SCHEMA, IngestResult, Source, empty
from specdec_diag.ingest.cache import CACHE_VERSION, FileResult, empty_table
from specdec_diag.schema import CONFIG_SCHEMA, INPUT_SCHEMA, MALFORMED_SCHEMA, conform_windows, empty_windows

#: a window table below this many rows is packed with its neighbours; a bigger one is grouped alone
SMALL_TABLE = 10_000
#: small tables packed into one buffer at a time
PACK = 2048
_OTHER = {"malformed": MALFORMED_SCHEMA, "configs": CONFIG_SCHEMA, "steps": STEPS_SCHEMA}


class Combiner:
    """Collects file results in file order; :meth:`finish` runs each family's ``finalize``."""

    def __init__(self, sources: Sequence[Source], code: str = ""):
        self.sources, self.code = sources, code
        self.by_family: dict[str, list[pl.DataFrame]] = {}
        self.run: list[pl.DataFrame] = []
        self.other: dict[str, list[pl.DataFrame]] = {t: [] for t in _OTHER}
        self.loose: dict[str, list[pl.DataFrame]] = {t: [] for t in _OTHER}
        self.inputs: list[dict[str, Any]] = []
        self.headers: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.keys: list[tuple[str, str]] = []

    def add(self, r: FileResult) -> None:
        """Take one file's result (in file order); the result keeps only its input row."""
        self.inputs.append(r.input)
        self.headers.extend(r.headers)
        if r.warning:
            self.warnings.append(f"{r.input['path']}: {r.warning}")
        self.keys.append((r.input["path"], f"{r.input['path']}\0{r.input.get('fingerprint')}\0{r.input.get('error')}"
                          f"{'' if r.warning is None else chr(0) + r.warning}\n"))
        w = r.windows
        if w.height and w.height < SMALL_TABLE:
            self.run.append(w)
            if len(self.run) >= PACK:
                self._pack()
        elif w.height:
            self._pack()
            self._group(w)
        for t in _OTHER:
            df = getattr(r, t)
            if df.height:
                self.loose[t].append(df)
                if len(self.loose[t]) >= PACK:
                    self.other[t].append(pl.concat(self.loose[t], rechunk=True))
                    self.loose[t] = []
        r.windows = empty_table("windows")  # the result no longer holds the rows

    def _pack(self) -> None:
        if self.run:
            self._group(pl.concat(self.run, rechunk=True) if len(self.run) > 1 else self.run[0])
            self.run = []

    def _group(self, w: pl.DataFrame) -> None:
        """File order is kept within each family (the families in order of first appearance)."""
        fam_col = w["_family"]
        if fam_col.n_unique() == 1:
            self.by_family.setdefault(str(fam_col[0]), []).append(w.drop("_family"))
        else:
            for (fam,), part in w.partition_by("_family", as_dict=True, include_key=False).items():
                self.by_family.setdefault(str(fam), []).append(part)

    def finish(self, crash: Callable[[str, int, Source, BaseException], pl.DataFrame]) -> IngestResult:
        """Run each family's ``finalize`` over its own windows (cross-file work) and build the result."""
        if not self.inputs:
            return IngestResult.empty()
        self._pack()
        finals: list[pl.DataFrame] = []
        fams = {s.family: s for s in self.sources}
        extra_mal: list[pl.DataFrame] = []
        for fam, frames in self.by_family.items():
            part = pl.concat(frames, rechunk=False)
            del frames[:]
            src = fams.get(fam)
            if src is not None and src.finalize is not None:
                try:
                    part = src.finalize(part)
                except Exception as exc:  # noqa: BLE001 - a parser bug becomes a malformed row, not a failed scan
                    extra_mal.append(crash(str(part["source"][0]), int(part["line"][0]), src, exc))
            finals.append(conform_windows(part))

        def cat(t: str, extra: list[pl.DataFrame] | None = None) -> pl.DataFrame:
            frames = self.other[t] + self.loose[t] + (extra or [])
            return pl.concat(frames) if frames else empty(_OTHER[t])

        h = hashlib.blake2b(digest_size=16)
        h.update(f"{CACHE_VERSION}|{self.code}".encode())
        for _, key in sorted(self.keys, key=lambda k: k[0]):
            h.update(key.encode())
        return IngestResult(
            windows=pl.concat(finals, rechunk=False) if finals else empty_windows(),
            steps=cat("steps"),
            inputs=pl.DataFrame(self.inputs, schema=INPUT_SCHEMA, orient="row"),
            malformed=cat("malformed", extra_mal),
            configs=cat("configs"),
            headers=self.headers,
            fingerprint=h.hexdigest(),
            warnings=self.warnings,
        )
