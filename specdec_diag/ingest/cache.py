"""The per-file cache: content fingerprints, where the cache lives, and one validated entry file per
input keyed by the fingerprint and a hash of the parsing code (an entry written by other parser code
is never reused).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

import specdec_diag.inputs
import specdec_diag.schema
from specdec_diag.ingest.base import STEPS_SCHEMA, Source
from specdec_diag.inputs import SAMPLE_BYTES
from specdec_diag.schema import CONFIG_SCHEMA, MALFORMED_SCHEMA, WINDOW_SCHEMA

#: bump when a parser's output changes in a way the code hash cannot see (e.g. a dependency's).
CACHE_VERSION = "ingest-2"
CACHE_DIRNAME = ".specdec-cache"


# ---------------------------------------------------------------------------------------------


def file_fingerprint(path: Path, st: os.stat_result | None = None, head: bytes | None = None) -> str:
    """blake2b of size, mtime (ns), ctime (ns), inode, and the first and last 64 KiB of the stored bytes.

    Hashing whole files would cost about a second per GB on every dashboard refresh; size + mtime +
    both ends catches appends, truncation, rotation and edits near either end. ctime and inode catch
    the rest: an edit in the middle restored with ``touch -r`` keeps size and mtime, but the kernel
    sets ctime on every change and no tool can set it back; a replaced file has a new inode.
    ``head``: the file's bytes when the caller has already read the whole file (small files)."""
    st = st or path.stat()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}".encode())
    if head is not None and len(head) == st.st_size:
        h.update(head[:SAMPLE_BYTES])
        if st.st_size > 2 * SAMPLE_BYTES:
            h.update(head[-SAMPLE_BYTES:])
        return h.hexdigest()
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


_TABLES = {"windows": {**WINDOW_SCHEMA, "_family": pl.Utf8}, "malformed": MALFORMED_SCHEMA,
           "configs": CONFIG_SCHEMA, "steps": STEPS_SCHEMA}
_MAGIC = b"specdec-cache-1\n"
_EMPTY: dict[str, pl.DataFrame] = {}


def empty_table(name: str) -> pl.DataFrame:
    """A shared empty frame of one of the per-file tables (building one costs ~0.3 ms; a scan of
    20,000 small files needs 60,000 of them). Frames are immutable, so sharing is safe."""
    if name not in _EMPTY:
        _EMPTY[name] = pl.DataFrame(schema=_TABLES[name])
    return _EMPTY[name]


@dataclass
class FileResult:
    """One file's parse, before cross-file finalisation. ``windows`` carries a ``_family`` column."""

    input: dict[str, Any]
    windows: pl.DataFrame
    malformed: pl.DataFrame
    configs: pl.DataFrame
    steps: pl.DataFrame
    headers: list[dict[str, Any]] = field(default_factory=list)
    warning: str | None = None  # the file was read up to damage (never cached)


class Cache:
    """One file per input, ``<pathkey>.sdc``: a magic line, an 8-byte header length, a JSON header
    (path, fingerprint, code key, the input row, trace headers, where each table lies, a blake2b of
    the body) and the non-empty tables as Arrow IPC. Written to a temp file and renamed, so a reader
    sees a whole entry or none; validated on read (magic, digest, path, key, schemas): a corrupt,
    foreign or stale entry is a miss, and the next store replaces it."""

    def __init__(self, root: Path):
        self.root = root
        self._made = False

    def _file(self, display: str) -> Path:
        return self.root / (hashlib.blake2b(display.encode(), digest_size=12).hexdigest() + ".sdc")

    def load(self, display: str, fp: str, sources: str) -> FileResult | None:
        try:
            blob = self._file(display).read_bytes()
            return _decode(blob, display, fp, sources)
        except Exception:  # noqa: BLE001 - missing, corrupt or foreign: a miss, rebuilt by the caller
            return None

    def store(self, display: str, fp: str, sources: str, res: FileResult) -> None:
        out = self._file(display)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            if not self._made:
                self.root.mkdir(parents=True, exist_ok=True)
                self._made = True
            tmp.write_bytes(_encode(display, fp, sources, res))
            tmp.replace(out)
        except OSError:  # a cache we cannot write is no cache, not an error
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def _encode(display: str, fp: str, sources: str, res: FileResult) -> bytes:
    body, where = bytearray(), {}
    for name in _TABLES:
        df = getattr(res, name)
        if df.height:  # IPC streams: ~5x cheaper than IPC files or Parquet for the many tiny tables
            buf = io.BytesIO()
            df.write_ipc_stream(buf, compression="lz4" if df.height > 10_000 else "uncompressed")
            where[name] = [len(body), buf.tell()]
            body += buf.getbuffer()
    meta = {"path": display, "fingerprint": fp, "code": f"{CACHE_VERSION}|{sources}", "input": res.input,
            "headers": res.headers, "tables": where, "digest": hashlib.blake2b(body, digest_size=16).hexdigest()}
    head = json.dumps(meta, default=str).encode()
    return _MAGIC + len(head).to_bytes(8, "little") + head + bytes(body)


def _decode(blob: bytes, display: str, fp: str, sources: str) -> FileResult | None:
    if not blob.startswith(_MAGIC):
        return None
    at = len(_MAGIC)
    n = int.from_bytes(blob[at : at + 8], "little")
    meta = json.loads(blob[at + 8 : at + 8 + n])
    body = memoryview(blob)[at + 8 + n :]
    if (meta.get("path") != display or meta.get("fingerprint") != fp
            or meta.get("code") != f"{CACHE_VERSION}|{sources}"
            or meta.get("digest") != hashlib.blake2b(body, digest_size=16).hexdigest()):
        return None
    tables = {}
    for name, schema in _TABLES.items():
        if name in meta["tables"]:
            off, size = meta["tables"][name]
            df = pl.read_ipc_stream(io.BytesIO(body[off : off + size]))
            if list(df.columns) != list(schema):
                return None
            tables[name] = df
        else:
            tables[name] = empty_table(name)
    return FileResult(meta["input"], tables["windows"], tables["malformed"], tables["configs"], tables["steps"],
                      meta.get("headers", []))


def code_files() -> list[Path]:
    """Every file whose code decides what ingest produces: all modules of this package, the schema
    module and the input layer (a new parser module is covered without being listed anywhere)."""
    here = Path(__file__).parent
    return [*sorted(here.glob("*.py")), Path(specdec_diag.schema.__file__), Path(specdec_diag.inputs.__file__)]


def code_key(sources: list[Source]) -> str:
    """Hash of the parsing code in use (the sources' families plus :func:`code_files`): a cache entry
    written by other parser code is never reused, without anyone remembering to bump a version."""
    h = hashlib.blake2b(f"{CACHE_VERSION}|polars {pl.__version__}".encode(), digest_size=10)
    for src in sources:
        h.update(src.family.encode() + b"\0")
    for f in code_files():
        h.update(f.name.encode() + b"\0")
        try:
            h.update(f.read_bytes())
        except OSError:
            h.update(b"-")
    return h.hexdigest()
