"""The dashboard's directory-level scan cache: the combined ingest tables of one listing, in one place.

Re-opening a fleet of 2,000 small files through the per-file ingest cache still opens, decodes and
concatenates 2,000 entries (1.5 s of a warm Overview on the development machine, several seconds under
load). The key here covers every listed file's path, size, mtime, ctime and inode (the per-file
fingerprint's stat part: any change to a file, even one restored with ``touch -r``, changes its ctime)
and the ingest code (the parsers' hash and the size/mtime of every ingest module), so a hit is exactly
what a fresh scan would return. Entries are Arrow IPC files plus a small JSON; what is read back is
checked against the table schemas and the listing before use (docs/security.md: nothing on disk is
trusted), anything else is a miss.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.ingest.base import STEPS_SCHEMA, IngestResult
from specdec_diag.schema import CONFIG_SCHEMA, INPUT_SCHEMA, MALFORMED_SCHEMA, WINDOW_SCHEMA, json_default

TABLES = {"windows": WINDOW_SCHEMA, "steps": STEPS_SCHEMA, "inputs": INPUT_SCHEMA, "malformed": MALFORMED_SCHEMA,
          "configs": CONFIG_SCHEMA}
DIRNAME = "dashboard"


@functools.lru_cache(maxsize=1)
def _ingest_version() -> str:
    from specdec_diag.ingest import cache as ingest_cache
    from specdec_diag.ingest.registry import SOURCES
    from specdec_diag.ingest.scan import code_key

    h = hashlib.blake2b(digest_size=8)
    h.update(f"{ingest_cache.CACHE_VERSION}|{code_key(list(SOURCES))}|{pl.__version__}".encode())
    base = Path(ingest_cache.__file__).parent
    for f in sorted(base.rglob("*.py")):
        st = f.stat()
        h.update(f"{f.relative_to(base)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def key(files: list[Path]) -> str | None:
    """The entry key of a listing's files, or None when a file cannot be stat'ed (no caching)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(_ingest_version().encode())
    try:
        for f in files:
            st = f.stat()
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode())
    except OSError:
        return None
    return h.hexdigest()


def _entry(cache_dir: Path, k: str) -> Path:
    return cache_dir / DIRNAME / f"scan-{k}"


def load(cache_dir: Path | None, k: str | None, files: list[Path]) -> IngestResult | None:
    """The cached combined result, if present, of the expected schemas, and of exactly ``files``."""
    if cache_dir is None or k is None:
        return None
    d = _entry(cache_dir, k)
    try:
        meta = json.loads((d / "meta.json").read_text())
        frames = {t: pl.read_ipc(d / f"{t}.arrow") for t in TABLES}
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return None
    for t, schema in TABLES.items():  # exactly the table's columns, in order, of the table's types
        if list(frames[t].columns) != list(schema) or any(frames[t].schema[c] != dt for c, dt in schema.items()):
            return None
    if frames["inputs"]["path"].to_list() != [str(f) for f in files] or not _meta_ok(meta):
        return None
    return IngestResult(frames["windows"], frames["steps"], frames["inputs"], frames["malformed"], frames["configs"],
                        meta["headers"], fingerprint=meta["fingerprint"], warnings=meta["warnings"])


def _meta_ok(meta: Any) -> bool:
    return (isinstance(meta, dict) and isinstance(meta.get("fingerprint"), str)
            and isinstance(meta.get("headers"), list) and all(isinstance(h, dict) for h in meta["headers"])
            and isinstance(meta.get("warnings"), list) and all(isinstance(w, str) for w in meta["warnings"]))


def store(cache_dir: Path | None, k: str | None, result: IngestResult) -> None:
    """Write the entry (a temporary folder renamed into place); a read-only cache only costs speed."""
    if cache_dir is None or k is None:
        return
    target = _entry(cache_dir, k)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        for t in TABLES:
            getattr(result, t).write_ipc(tmp / f"{t}.arrow")
        (tmp / "meta.json").write_text(json.dumps({"fingerprint": result.fingerprint, "headers": result.headers,
                                                   "warnings": result.warnings}, default=json_default))
        tmp.rename(target)
    except OSError:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["key", "load", "store"]
