"""A fleet ingested once, analysed many times: ``ingest --out DIR`` writes each input's parsed tables
as a Hive-partitioned Parquet dataset, and ``report``, ``check``, the dashboard and
``specdec_diag.scan`` read it back as if they had scanned the logs.

Layout (``DIR/.specdec-dataset`` marks it)::

    DIR/windows/date=2026-03-14/host=host-a/engines=vllm/part-<batch id>.parquet
    DIR/malformed/... DIR/configs/... DIR/steps/...        (same partitions, non-empty tables only)
    DIR/_manifest.parquet     one row per input: the inputs table + its partition and part file
    DIR/runs.parquet          the runs of the whole dataset (written by the ingest command)

Partition of an input: ``date`` = UTC day of its first record (else a ``YYYY-MM-DD`` in its file
name, else ``unknown``), ``host`` = its directory's name (the run id's host, docs/runs.md),
``engines`` = the engines found in it (``+``-joined; ``engines``, not ``engine``: the windows
table has an ``engine`` column, which a Hive key of that name would overwrite in polars).

The rows are each file's parse *before* cross-file finalisation (the windows keep a ``_family``
column): the derived interval rows of cumulative counters (vLLM V0, Prometheus, llama.cpp
``/metrics``) are computed when the dataset is read, over every file at once, exactly as a scan
computes them; a reader of the raw Parquet sees the cumulative rows.

One ingest call writes ONE part file per partition and table (``<batch id>`` = UTC time + random
suffix), holding all its inputs of that partition: the cost is per partition, not per input (20,000
one-window logs: one file per host directory instead of 20,000).

Appending: an input already in the dataset with the same content fingerprint is skipped; new and
changed inputs go to the call's new part files, so old partitions are never rewritten for new
inputs or days. A changed input (a log that grew) also has its old rows removed from the older part
files that held them: only those files are rewritten (deleted when emptied), so a raw Hive reader
never sees stale rows either, which a tombstone list in the manifest could not promise. Readers
additionally keep, from each part file, only the inputs the manifest places there, so a writer that
died between the manifest and that clean-up still reads back correctly. Datasets of the ``@1``
layout (one file per input) read and append the same way.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import polars as pl

from specdec_diag.ingest.cache import FileResult, empty_table
from specdec_diag.schema import INPUT_SCHEMA

MARKER = ".specdec-dataset"
FORMAT = "specdec-dataset@2"
MANIFEST = "_manifest.parquet"
TABLES = ("windows", "malformed", "configs", "steps")
PARTITION_KEYS = ("date", "host", "engines")
MANIFEST_SCHEMA = {**INPUT_SCHEMA, "_partition": pl.Utf8, "_part": pl.Utf8, "_headers": pl.Utf8, "_warning": pl.Utf8}
_NAME_DATE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")


def is_dataset(path: str | Path) -> bool:
    """A directory written by ``ingest --out`` (it holds the marker file)."""
    p = Path(path)
    return p.is_dir() and (p / MARKER).is_file()


def _part_files(manifest: pl.DataFrame) -> dict[tuple[str, str], list[str]]:
    """(partition, part file) -> the input paths the manifest says live in it (the rows a reader keeps)."""
    owners: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path, part, part_file in manifest.select("path", "_partition", "_part").iter_rows():
        owners[(part, part_file)].append(path)
    return owners


def dataset_files(root: Path) -> list[Path]:
    """The files a read of the dataset at ``root`` opens: the manifest and every part it lists."""
    if not (root / MANIFEST).is_file():
        return []
    parts = [root / t / part / f for part, f in _part_files(read_manifest(root)) for t in TABLES]
    return [root / MANIFEST, *[f for f in parts if f.is_file()]]


def _segment(v: str) -> str:
    return quote(v, safe="+-_.@") or "unknown"


def partition_of(res: FileResult) -> str:
    """``date=…/host=…/engines=…`` of one input (see the module docstring)."""
    path = str(res.input["path"])
    name = PurePosixPath(path.replace("\\", "/"))
    day = None
    w = res.windows
    if w.height and w["time"].null_count() < w.height:
        day = w["time"].min().strftime("%Y-%m-%d")  # type: ignore[union-attr]
    if day is None:
        m = _NAME_DATE.search(name.name)
        day = f"{m.group(1)}-{m.group(2)}-{m.group(3)}" if m and 1 <= int(m.group(2)) <= 12 else "unknown"
    host = name.parent.name or "unknown"
    engines = (res.input.get("engine") or "unknown").replace(",", "+")
    return "/".join(f"{k}={_segment(v)}" for k, v in zip(PARTITION_KEYS, (day, host, engines), strict=True))


@dataclass
class WriteStats:
    """What one ``ingest --out`` did: inputs written, unchanged (skipped), replaced."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    only_these: bool = False  # the dataset holds exactly this call's inputs (no older ones besides)


def _atomic_parquet(df: pl.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    df.write_parquet(tmp)
    tmp.replace(out)


def read_manifest(root: Path) -> pl.DataFrame:
    """The manifest, in the current schema (a ``@1`` manifest's per-input ``_id`` names its file)."""
    f = root / MANIFEST
    if not f.is_file():
        return pl.DataFrame(schema=MANIFEST_SCHEMA)
    df = pl.read_parquet(f)
    if "_part" not in df.columns and "_id" in df.columns:
        df = df.with_columns((pl.col("_id") + ".parquet").alias("_part"))
    return df.select(list(MANIFEST_SCHEMA))


def new_part_name() -> str:
    """``part-<batch id>.parquet``: one per ingest call, sortable by time, unique (random suffix)."""
    return f"part-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}.parquet"


def _manifest_row(res: FileResult, part: str, part_file: str) -> dict:
    return {**{k: res.input.get(k) for k in INPUT_SCHEMA}, "_partition": part, "_part": part_file,
            "_headers": json.dumps(res.headers, default=str) if res.headers else None,
            "_warning": res.warning}


def _write_parts(root: Path, pending: dict[str, tuple[str, FileResult]], part_file: str) -> None:
    """One part file per partition and table holding every pending input of that partition."""
    by_partition: dict[str, list[FileResult]] = defaultdict(list)
    for part, res in pending.values():
        by_partition[part].append(res)
    for part, results in by_partition.items():
        for t in TABLES:
            frames = [df for df in (getattr(r, t) for r in results) if df.height]
            if frames:
                _atomic_parquet(pl.concat(frames, how="diagonal_relaxed"), root / t / part / part_file)


def _drop_stale(root: Path, stale: dict[tuple[str, str], set[str]]) -> None:
    """Remove the replaced inputs' old rows from the (older) part files holding them: only those
    files are rewritten (deleted when nothing else is left in them)."""
    for (part, part_file), paths in stale.items():
        for t in TABLES:
            f = root / t / part / part_file
            if not f.is_file():
                continue
            df = pl.read_parquet(f, hive_partitioning=False)
            kept = df.filter(~pl.col("source").is_in(list(paths)))
            if kept.height == 0:
                f.unlink()
            elif kept.height < df.height:
                _atomic_parquet(kept, f)


def write_dataset(results: Iterable[FileResult], root: Path,
                  keep: Callable[[FileResult], None] | None = None) -> WriteStats:
    """Add ``results`` (per-file, before finalisation) to the dataset at ``root`` (created if needed);
    ``keep`` sees each result first. Raises OSError when it cannot be written; a ``root`` holding
    something else is refused."""
    root.mkdir(parents=True, exist_ok=True)
    if not is_dataset(root) and any(root.iterdir()):
        raise OSError("not empty and not a specdec-diag dataset (refusing to write into it)")
    (root / MARKER).write_text(json.dumps({"format": FORMAT, "partitioning": list(PARTITION_KEYS)}) + "\n")
    old = {r["path"]: r for r in read_manifest(root).iter_rows(named=True)}
    part_file = new_part_name()
    pending: dict[str, tuple[str, FileResult]] = {}
    stale: dict[tuple[str, str], set[str]] = defaultdict(set)
    stats = WriteStats()
    seen: set[str] = set()
    for res in results:
        if keep is not None:
            keep(res)
        path, fp = res.input["path"], res.input.get("fingerprint")
        seen.add(path)
        prev = old.get(path)
        if prev is not None and fp and prev["fingerprint"] == fp and prev["_warning"] is None and res.warning is None:
            stats.unchanged.append(path)
            continue
        if prev is not None and prev["_part"] != part_file:
            stale[(prev["_partition"], prev["_part"])].add(path)
        part = partition_of(res)
        pending[path] = (part, res)
        (stats.replaced if prev is not None else stats.written).append(path)
        old[path] = _manifest_row(res, part, part_file)
    _write_parts(root, pending, part_file)
    _atomic_parquet(pl.DataFrame(list(old.values()), schema=MANIFEST_SCHEMA, orient="row"), root / MANIFEST)
    _drop_stale(root, stale)
    stats.only_these = seen == set(old)
    return stats


def walk_key(path: str) -> tuple:
    """Sort key giving a directory walk's order (a directory's files before its sub-directories, each
    sorted by name), so a dataset reads back in the order its directory was scanned."""
    parts = path.replace("\\", "/").split("/")
    return tuple((1, d) for d in parts[:-1]) + ((0, parts[-1]),)


def _read_table(root: Path, table: str, owners: dict[tuple[str, str], list[str]]) -> pl.DataFrame | None:
    """Every part file of ``table``, each filtered to the inputs the manifest places in it (so rows of
    a replaced input can never show, even if a writer died before removing them)."""
    frames = [pl.scan_parquet(f, hive_partitioning=False).filter(pl.col("source").is_in(paths))
              for (part, name), paths in owners.items() if (f := root / table / part / name).is_file()]
    if not frames:
        return None
    return pl.concat(frames, how="diagonal_relaxed").collect().select(empty_table(table).columns)


def read_dataset(root: Path) -> Iterator[FileResult]:
    """Each input's result, in directory-walk order of the paths, as the scan produced it."""
    manifest = read_manifest(root)
    rows = sorted(manifest.iter_rows(named=True), key=lambda r: walk_key(r["path"]))
    owners = _part_files(manifest)
    by_source: dict[str, dict[str, pl.DataFrame]] = {t: {} for t in TABLES}
    for t in TABLES:
        df = _read_table(root, t, owners)
        if df is not None:
            by_source[t] = {k[0]: g for k, g in df.group_by(["source"], maintain_order=True)}
    for r in rows:
        info = {k: r[k] for k in INPUT_SCHEMA}
        tables = {t: by_source[t].get(r["path"], empty_table(t)) for t in TABLES}
        yield FileResult(info, tables["windows"], tables["malformed"], tables["configs"], tables["steps"],
                         json.loads(r["_headers"]) if r["_headers"] else [], r["_warning"])
