"""A fleet ingested once, analysed many times: ``ingest --out DIR`` writes each input's parsed tables
as a Hive-partitioned Parquet dataset, and ``report``, ``check``, the dashboard and
``specdec_diag.scan`` read it back as if they had scanned the logs.

Layout (``DIR/.specdec-dataset`` marks it)::

    DIR/windows/date=2026-03-14/host=host-a/engines=vllm/<input id>.parquet
    DIR/malformed/... DIR/configs/... DIR/steps/...        (same partitions, non-empty tables only)
    DIR/_manifest.parquet     one row per input: the inputs table + where its rows lie
    DIR/runs.parquet          the runs of the whole dataset (written by the ingest command)

Partition of an input: ``date`` = UTC day of its first record (else a ``YYYY-MM-DD`` in its file
name, else ``unknown``), ``host`` = its directory's name (the run id's host, docs/runs.md),
``engines`` = the engines found in it (``+``-joined; ``engines``, not ``engine``: the windows
table has an ``engine`` column, which a Hive key of that name would overwrite in polars).

The rows are each file's parse *before* cross-file finalisation (the windows keep a ``_family``
column): the derived interval rows of cumulative counters (vLLM V0, Prometheus, llama.cpp
``/metrics``) are computed when the dataset is read, over every file at once, exactly as a scan
computes them; a reader of the raw Parquet sees the cumulative rows.

Appending: an input already in the dataset with the same content fingerprint is skipped (its files
are not touched); a changed input (a log that grew) replaces only its own part files; new inputs
add new part files. Only the small manifest is rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import polars as pl

from specdec_diag.ingest.cache import FileResult, empty_table
from specdec_diag.schema import INPUT_SCHEMA

MARKER = ".specdec-dataset"
FORMAT = "specdec-dataset@1"
MANIFEST = "_manifest.parquet"
TABLES = ("windows", "malformed", "configs", "steps")
PARTITION_KEYS = ("date", "host", "engines")
MANIFEST_SCHEMA = {**INPUT_SCHEMA, "_partition": pl.Utf8, "_id": pl.Utf8, "_headers": pl.Utf8, "_warning": pl.Utf8}
_NAME_DATE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")


def is_dataset(path: str | Path) -> bool:
    """A directory written by ``ingest --out`` (it holds the marker file)."""
    p = Path(path)
    return p.is_dir() and (p / MARKER).is_file()


def dataset_files(root: Path) -> list[Path]:
    """The files a read of the dataset at ``root`` opens: the manifest and every part it lists."""
    if not (root / MANIFEST).is_file():
        return []
    rows = read_manifest(root).select("_partition", "_id").iter_rows()
    parts = [root / t / part / f"{fid}.parquet" for part, fid in rows for t in TABLES]
    return [root / MANIFEST, *[f for f in parts if f.is_file()]]


def input_id(path: str) -> str:
    return hashlib.blake2b(path.encode(), digest_size=10).hexdigest()


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


def _atomic_parquet(df: pl.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    df.write_parquet(tmp)
    tmp.replace(out)


def read_manifest(root: Path) -> pl.DataFrame:
    f = root / MANIFEST
    return pl.read_parquet(f) if f.is_file() else pl.DataFrame(schema=MANIFEST_SCHEMA)


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
    stats = WriteStats()
    for res in results:
        if keep is not None:
            keep(res)
        path, fp = res.input["path"], res.input.get("fingerprint")
        prev = old.get(path)
        if prev is not None and fp and prev["fingerprint"] == fp and prev["_warning"] is None and res.warning is None:
            stats.unchanged.append(path)
            continue
        part, fid = partition_of(res), input_id(path)
        if prev is not None:
            for t in TABLES:  # the input's old rows, wherever they lay
                (root / t / prev["_partition"] / f"{prev['_id']}.parquet").unlink(missing_ok=True)
        for t in TABLES:
            df = getattr(res, t)
            if df.height:
                _atomic_parquet(df, root / t / part / f"{fid}.parquet")
        (stats.replaced if prev is not None else stats.written).append(path)
        old[path] = {**{k: res.input.get(k) for k in INPUT_SCHEMA}, "_partition": part, "_id": fid,
                     "_headers": json.dumps(res.headers, default=str) if res.headers else None,
                     "_warning": res.warning}
    _atomic_parquet(pl.DataFrame(list(old.values()), schema=MANIFEST_SCHEMA, orient="row"), root / MANIFEST)
    return stats


def walk_key(path: str) -> tuple:
    """Sort key giving a directory walk's order (a directory's files before its sub-directories, each
    sorted by name), so a dataset reads back in the order its directory was scanned."""
    parts = path.replace("\\", "/").split("/")
    return tuple((1, d) for d in parts[:-1]) + ((0, parts[-1]),)


def read_dataset(root: Path) -> Iterator[FileResult]:
    """Each input's result, in directory-walk order of the paths, as the scan produced it."""
    manifest = read_manifest(root)
    rows = sorted(manifest.iter_rows(named=True), key=lambda r: walk_key(r["path"]))
    by_source: dict[str, dict[str, pl.DataFrame]] = {t: {} for t in TABLES}
    for t in TABLES:
        files = [root / t / r["_partition"] / f"{r['_id']}.parquet" for r in rows]
        files = [f for f in files if f.is_file()]
        if files:
            df = pl.read_parquet(files, hive_partitioning=False)
            df = df.select(empty_table(t).columns)
            by_source[t] = {k[0]: g for k, g in df.group_by(["source"], maintain_order=True)}
    for r in rows:
        info = {k: r[k] for k in INPUT_SCHEMA}
        tables = {t: by_source[t].get(r["path"], empty_table(t)) for t in TABLES}
        yield FileResult(info, tables["windows"], tables["malformed"], tables["configs"], tables["steps"],
                         json.loads(r["_headers"]) if r["_headers"] else [], r["_warning"])
