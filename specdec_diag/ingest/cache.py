"""The per-file cache: content fingerprints, where the cache lives, Parquet entries keyed by the
fingerprint and by a hash of the parsing code, so an entry written by other parser code is never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

import specdec_diag.schema
from specdec_diag.ingest.base import STEPS_SCHEMA, Source
from specdec_diag.ingest.reading import SAMPLE_BYTES
from specdec_diag.schema import CONFIG_SCHEMA, MALFORMED_SCHEMA, write_parquet_atomic

#: bump when a parser's output changes in a way the code hash cannot see (e.g. a dependency's).
CACHE_VERSION = "ingest-1"
CACHE_DIRNAME = ".specdec-cache"


# ---------------------------------------------------------------------------------------------


def file_fingerprint(path: Path, st: os.stat_result | None = None) -> str:
    """blake2b of size, mtime (ns), and the first and last 64 KiB of the stored bytes.

    Hashing whole files would cost about a second per GB on every dashboard refresh; size + mtime +
    both ends catches appends, truncation, rotation and edits near either end, and any edit through
    normal tools moves the mtime. An edit in the middle that keeps size and mtime is missed (use
    ``--no-cache`` if you do that deliberately)."""
    st = st or path.stat()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(SAMPLE_BYTES))
        if st.st_size > 2 * SAMPLE_BYTES:
            fh.seek(st.st_size - SAMPLE_BYTES)
            h.update(fh.read(SAMPLE_BYTES))
    return h.hexdigest()


def _writable_dir(d: Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".probe-"):
            pass
        return True
    except OSError:
        return False


def default_cache_dir(paths: list[Path]) -> Path | None:
    """``$SPECDEC_CACHE_DIR``; else ``.specdec-cache/`` in the (first) scanned directory; else
    ``$XDG_CACHE_HOME/specdec-diag`` (``~/.cache``); None when nothing is writable (no caching)."""
    env = os.environ.get("SPECDEC_CACHE_DIR")
    candidates: list[Path] = [Path(env)] if env else []
    if paths:
        first = paths[0]
        base = first if first.is_dir() else first.parent
        candidates.append(base / CACHE_DIRNAME)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    candidates.append(Path(xdg) / "specdec-diag")
    for c in candidates:
        if _writable_dir(c):
            return c
    return None


_TABLES = {"windows": None, "malformed": MALFORMED_SCHEMA, "configs": CONFIG_SCHEMA, "steps": STEPS_SCHEMA}


@dataclass
class FileResult:
    """One file's parse, before cross-file finalisation. ``windows`` carries a ``_family`` column."""

    input: dict[str, Any]
    windows: pl.DataFrame
    malformed: pl.DataFrame
    configs: pl.DataFrame
    steps: pl.DataFrame
    headers: list[dict[str, Any]] = field(default_factory=list)


class Cache:
    """Per-file Parquet entries ``<pathkey>-<contentkey>.<table>.parquet`` plus a ``.json`` manifest
    written last (atomic renames throughout): an entry exists only once all its tables do, a changed
    file simply misses, a corrupt entry is ignored and rebuilt, stale entries of a path are pruned."""

    def __init__(self, root: Path):
        self.root = root

    def _keys(self, display: str, fp: str, sources: str) -> tuple[str, str]:
        pk = hashlib.blake2b(display.encode(), digest_size=10).hexdigest()
        ck = hashlib.blake2b(f"{fp}|{CACHE_VERSION}|{sources}".encode(), digest_size=10).hexdigest()
        return pk, ck

    def load(self, display: str, fp: str, sources: str) -> FileResult | None:
        pk, ck = self._keys(display, fp, sources)
        stem = self.root / f"{pk}-{ck}"
        try:
            meta = json.loads(stem.with_suffix(".json").read_text())
            if meta.get("fingerprint") != fp or meta.get("path") != display:
                return None
            tables = {t: pl.read_parquet(stem.with_name(f"{stem.name}.{t}.parquet")) for t in _TABLES}
        except Exception:  # noqa: BLE001 - missing, corrupt or foreign: rebuild
            return None
        w = tables["windows"]
        if "_family" not in w.columns:
            return None
        return FileResult(meta["input"], w, tables["malformed"], tables["configs"], tables["steps"],
                          meta.get("headers", []))

    def store(self, display: str, fp: str, sources: str, res: FileResult) -> None:
        pk, ck = self._keys(display, fp, sources)
        stem = self.root / f"{pk}-{ck}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for t in _TABLES:
                write_parquet_atomic(getattr(res, t), stem.with_name(f"{stem.name}.{t}.parquet"))
            meta = {"path": display, "fingerprint": fp, "version": CACHE_VERSION, "input": res.input,
                    "headers": res.headers}
            tmp = stem.with_name(f".{stem.name}.json.tmp")
            tmp.write_text(json.dumps(meta, default=str))
            tmp.replace(stem.with_suffix(".json"))
            for old in self.root.glob(f"{pk}-*"):
                if not old.name.startswith(f"{pk}-{ck}"):
                    old.unlink(missing_ok=True)
        except OSError:
            pass  # a cache we cannot write is no cache, not an error


def code_files() -> list[Path]:
    """Every file whose code decides what ingest produces: all modules of this package and the
    schema module (a new parser module is covered without being listed anywhere)."""
    here = Path(__file__).parent
    return [*sorted(here.glob("*.py")), Path(specdec_diag.schema.__file__)]


def code_key(sources: list[Source]) -> str:
    """Hash of the parsing code in use (the sources' families plus :func:`code_files`): a cache entry
    written by other parser code is never reused, without anyone remembering to bump a version."""
    h = hashlib.blake2b(CACHE_VERSION.encode(), digest_size=10)
    for src in sources:
        h.update(src.family.encode() + b"\0")
    for f in code_files():
        h.update(f.name.encode() + b"\0")
        try:
            h.update(f.read_bytes())
        except OSError:
            h.update(b"-")
    return h.hexdigest()
