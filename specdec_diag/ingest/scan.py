"""Walk paths, read each file (gz transparently, in bounded chunks on line boundaries), run every
source that recognises it, and cache each file's tables as Parquet keyed by a content fingerprint.

Per file: a whole-file source (one with ``parse_file``, e.g. our traces) whose ``detect`` matches
the head takes the file. Otherwise the file is read as lines; the lines containing any source's
MARKERS are kept and every source whose markers occur (or whose ``detect`` matched) parses its own
lines. Container logs interleave engines, so several sources may contribute to one file.

Nothing here aborts a scan: unreadable files, broken links, corrupt gzip and parser crashes become
an ``error`` in the inputs table or a malformed row.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import io
import json
import os
import re
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import polars as pl

from specdec_diag.ingest.base import STEPS_SCHEMA, IngestResult, Parsed, empty
from specdec_diag.ingest.timestamps import anchor_from
from specdec_diag.schema import (
    CONFIG_SCHEMA,
    INPUT_SCHEMA,
    MALFORMED_SCHEMA,
    WINDOW_SCHEMA,
    conform_windows,
    empty_windows,
    write_parquet_atomic,
)

#: file kinds a directory walk picks up (a trailing .gz is looked through); files named explicitly
#: are always read.
EXTENSIONS = (".log", ".txt", ".jsonl", ".json", ".prom")
SAMPLE_BYTES = 64 * 1024
CHUNK_BYTES = 8 * 1024 * 1024  # measured best: smaller pieces pay per-query overhead, larger ones page faults
#: marker lines gathered before the sources parse them (bounds memory on huge logs)
FLUSH_BYTES = 64 * 1024 * 1024
#: bump when a parser's output changes, so old cache entries are not reused.
CACHE_VERSION = "ingest-1"
CACHE_DIRNAME = ".specdec-cache"
_SEP = "\x1f"  # the CSV separator for "one column of lines": unit separator, absent from logs

Progress = Callable[[str, int, int], None]  # (path, bytes done over all files, bytes total)


# ---------------------------------------------------------------------------------------------
# discovering files
# ---------------------------------------------------------------------------------------------


def wanted(name: str) -> bool:
    n = name.lower()
    if n.endswith(".gz"):
        n = n[:-3]
    return n.endswith(EXTENSIONS)


def iter_files(paths: Iterable[str | Path]) -> Iterator[tuple[Path, str | None]]:
    """Yield ``(file, error)`` for every file under ``paths`` (sorted, recursive, hidden directories
    such as the cache skipped). ``error`` is set for entries that cannot be read as files."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            errors: list[OSError] = []
            for root, dirs, files in os.walk(p, onerror=errors.append, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if wanted(name):
                        yield Path(root) / name, None
            for e in errors:
                yield Path(e.filename or p), f"cannot list directory: {e.strerror or e}"
        elif p.is_symlink() and not p.exists():
            yield p, "broken symbolic link"
        elif p.exists():
            yield p, None
        else:
            yield p, "no such file or directory"


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


def open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def read_sample(path: Path, n: int = SAMPLE_BYTES) -> str:
    with open_binary(path) as fh:
        return fh.read(n).decode("utf-8", errors="replace")


def iter_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Bytes of the (decompressed) file in pieces that end on a line boundary (the last piece may
    lack its newline). A line longer than ``chunk_bytes`` extends its piece."""
    if not path.name.lower().endswith(".gz"):
        yield from _plain_chunks(path, chunk_bytes)
        return
    with open_binary(path) as fh:
        carry = b""
        while True:
            block = fh.read(chunk_bytes)
            if not block:
                if carry:
                    yield carry
                return
            buf = carry + block if carry else block
            cut = buf.rfind(b"\n")
            if cut < 0:
                carry = buf
                continue
            yield buf[: cut + 1]
            carry = buf[cut + 1 :]


def _plain_chunks(path: Path, chunk_bytes: int) -> Iterator[bytes]:
    """:func:`iter_chunks` for an uncompressed file: the part after the last newline is read again
    with the next piece (a seek) instead of being glued to it, which saves a copy of every piece."""
    with open(path, "rb", buffering=0) as fh:
        pos = 0
        while True:
            fh.seek(pos)
            block = fh.read(chunk_bytes)
            if not block:
                return
            cut = block.rfind(b"\n")
            while cut < 0:  # a line longer than a piece, or the unterminated last line
                more = fh.read(chunk_bytes)
                if not more:
                    break
                cut = more.rfind(b"\n")
                cut = cut + len(block) if cut >= 0 else -1
                block += more
            piece = block if cut < 0 or cut == len(block) - 1 else block[: cut + 1]
            del block
            pos += len(piece)
            yield piece


def lines_frame(chunk: bytes, first_line: int) -> pl.DataFrame:
    """A chunk as columns ``line`` (1-based, continuing from ``first_line``) and ``text`` (utf-8,
    undecodable bytes replaced). Uses polars' CSV reader with a separator that does not occur in
    logs (a byte that does truncates its line there); falls back to a plain split if the row count
    disagrees with the newline count, so line numbers are always exact."""
    n_lines = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
    if not chunk:
        return pl.DataFrame({"line": [], "text": []}, schema={"line": pl.Int64, "text": pl.Utf8})
    df = None
    try:
        df = pl.read_csv(io.BytesIO(chunk), has_header=False, separator=_SEP, quote_char=None,
                         new_columns=["text"], infer_schema=False, encoding="utf8-lossy",
                         truncate_ragged_lines=True, raise_if_empty=False)
        if df.width != 1 or df.height != n_lines:
            df = None
        else:
            df = df.select(pl.col(df.columns[0]).fill_null("").alias("text"))
    except Exception:  # noqa: BLE001 - any reader hiccup: the slow path is always right
        df = None
    if df is None:
        text = chunk.decode("utf-8", errors="replace")
        parts = text.split("\n")
        if text.endswith("\n"):
            parts.pop()
        df = pl.DataFrame({"text": parts}, schema={"text": pl.Utf8})
    return df.with_row_index("line", offset=first_line).with_columns(pl.col("line").cast(pl.Int64))


# ---------------------------------------------------------------------------------------------
# fingerprints and the cache
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


# ---------------------------------------------------------------------------------------------
# parsing one file
# ---------------------------------------------------------------------------------------------


def _sources() -> list[ModuleType]:
    from specdec_diag.ingest import SOURCES

    return list(SOURCES)


def _family(mod: ModuleType) -> str:
    return str(getattr(mod, "FAMILY", mod.__name__.rsplit(".", 1)[-1]))


def _safe_detect(mod: ModuleType, sample: str) -> bool:
    try:
        return bool(mod.detect(sample))
    except Exception:  # noqa: BLE001 - a broken detector must not stop the scan
        return False


def _crash(source: str, line: int, mod: ModuleType, exc: BaseException) -> pl.DataFrame:
    msg = f"internal error in the {_family(mod)} parser: {type(exc).__name__}: {exc}"
    return pl.DataFrame([{"source": source, "line": line, "reason": msg[:500], "text": ""}], schema=MALFORMED_SCHEMA)


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _tagged(p: Parsed, family: str) -> Parsed:
    p.windows = p.windows.with_columns(pl.lit(family).alias("_family"))
    return p


def parse_file(path: Path, display: str, *, sources: list[ModuleType] | None = None,
               chunk_bytes: int = CHUNK_BYTES, on_bytes: Callable[[int], None] | None = None) -> FileResult:
    """Parse one file with every source that recognises it. Never raises for bad input."""
    sources = _sources() if sources is None else sources
    info: dict[str, Any] = {"path": display, "format": None, "engine": None, "lines": 0, "records": 0,
                            "malformed": 0, "fingerprint": None, "error": None}
    parts: list[Parsed] = []
    try:
        st = path.stat()
        if not path.is_file():
            raise IsADirectoryError(f"not a regular file: {path}")
        info["fingerprint"] = file_fingerprint(path, st)
        sample = read_sample(path)
    except (OSError, EOFError, zlib.error) as exc:
        info["error"] = _os_reason(exc)
        return _assemble(info, parts, [])
    detected = [m for m in sources if _safe_detect(m, sample)]
    whole = [m for m in detected if hasattr(m, "parse_file")]
    for mod in whole:
        try:
            parts.append(_tagged(mod.parse_file(path, display), _family(mod)))
        except Exception as exc:  # noqa: BLE001
            parts.append(Parsed(malformed=_crash(display, 1, mod, exc)))
    if whole:
        try:
            with open_binary(path) as fh:
                info["lines"] = sum(b.count(b"\n") for b in iter(lambda: fh.read(1 << 20), b""))
        except (OSError, EOFError, zlib.error) as exc:
            info["error"] = _os_reason(exc)
        if on_bytes:
            on_bytes(st.st_size)
        return _assemble(info, parts, [_family(m) for m in detected])

    line_sources = [m for m in sources if hasattr(m, "parse") and getattr(m, "MARKERS", ())]
    all_markers = _marker_regex({mk for m in line_sources for mk in m.MARKERS})
    anchor = anchor_from(sample, st.st_mtime)
    used = list(detected)
    pending: list[pl.DataFrame] = []
    pending_bytes = 0

    def flush() -> None:
        """Parse the marker lines gathered so far. Batches bound memory on huge logs; cross-line work
        that must see a whole file belongs in ``finalize`` (a batch boundary inside a multi-line
        summary block, possible only past FLUSH_BYTES of marker lines, would split that block)."""
        nonlocal pending, pending_bytes
        if not pending:
            return
        # one contiguous buffer: polars string kernels pay per chunk (the regexes are set up per chunk),
        # and a batch gathered from many pieces has ~100 chunks; rechunking halves the parse time
        marked = pl.concat(pending, rechunk=True)
        pending, pending_bytes = [], 0
        for mod in line_sources:
            mine = marked.filter(pl.col("text").str.contains(_marker_regex(mod.MARKERS)))
            if not mine.height:
                continue
            if mod not in used:
                used.append(mod)
            try:
                kwargs = {"year_anchor": anchor} if _accepts(mod.parse, "year_anchor") else {}
                parts.append(_tagged(mod.parse(mine, display, **kwargs), _family(mod)))
            except Exception as exc:  # noqa: BLE001
                parts.append(Parsed(malformed=_crash(display, int(mine["line"][0]), mod, exc)))

    def add(sel: pl.DataFrame) -> None:
        nonlocal pending_bytes
        if sel.height:
            pending.append(sel)
            pending_bytes += int(sel["text"].str.len_bytes().sum() or 0)
        if pending_bytes >= FLUSH_BYTES:
            flush()

    n = 0
    try:
        for chunk in iter_chunks(path, chunk_bytes):
            chunk_len = len(chunk)
            sel, lines = _chunk_marked(chunk, n + 1, all_markers)
            n += lines
            del chunk
            add(sel)
            if on_bytes:
                on_bytes(chunk_len)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        info["error"] = _os_reason(exc)  # keep what was read before the damage
    info["lines"] = n
    flush()
    return _assemble(info, parts, [_family(m) for m in used])


def _chunk_marked(chunk: bytes, first_line: int, markers: str) -> tuple[pl.DataFrame, int]:
    """The marker lines of one piece (numbered from ``first_line``) and its line count. The CSV
    reader splits and filters in one fused query; if its row count disagrees with the newline count
    the exact split is used instead."""
    n_lines = _count_newlines(chunk) + (0 if chunk.endswith(b"\n") or not chunk else 1)
    if not markers or not chunk:
        return pl.DataFrame(schema={"line": pl.Int64, "text": pl.Utf8}), n_lines
    last = first_line + n_lines - 1
    try:
        # one pass: the marker lines plus the chunk's last row, whose number proves the count right
        df = (pl.scan_csv(chunk, **_CSV_LINES).with_row_index("line", offset=first_line)
              .with_columns(pl.col("text").str.contains(markers).fill_null(False).alias("_m"))
              .filter(pl.col("_m") | (pl.col("line") >= last)).collect())
        if df.height and int(df["line"].max()) == last:
            return _compact(df.filter(pl.col("_m"))), n_lines
    except Exception:  # noqa: BLE001 - fall through to the exact reader
        pass
    df = lines_frame(chunk, first_line)
    return _compact(df.filter(pl.col("text").str.contains(markers))), df.height


_NL_BLOCK = 1 << 18


def _count_newlines(chunk: bytes) -> int:
    """``chunk.count(b"\\n")``, ~3x faster: CPython counts byte by byte, numpy compares cache-sized
    blocks with SIMD (bytes.count was ~10 % of a whole scan of a production log)."""
    if len(chunk) < _NL_BLOCK:
        return chunk.count(b"\n")
    a = np.frombuffer(chunk, np.uint8)
    return sum(int(np.count_nonzero(a[i : i + _NL_BLOCK] == 10)) for i in range(0, len(a), _NL_BLOCK))


def _compact(sel: pl.DataFrame) -> pl.DataFrame:
    """Copy the kept lines out of the piece: polars strings are views into the piece's buffers, so
    a few kept lines would otherwise pin the whole of every piece read (1 GB log -> 1 GB RSS)."""
    return sel.select(pl.col("line").cast(pl.Int64), pl.concat_str([pl.col("text").fill_null(""), pl.lit("")]))


_CSV_LINES = dict(has_header=False, separator=_SEP, quote_char=None, new_columns=["text"], infer_schema=False,
                  encoding="utf8-lossy", truncate_ragged_lines=True)


def _marker_regex(markers: Iterable[str]) -> str:
    """One alternation of literals: the regex engine's SIMD literal search makes this ~4x faster than
    ``str.contains_any`` on long files."""
    return "|".join(re.escape(m) for m in sorted(set(markers)))


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "no such file (or a broken symbolic link)"
    if isinstance(exc, (gzip.BadGzipFile, zlib.error, EOFError)):
        return f"corrupt or truncated gzip data: {exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


def _assemble(info: dict[str, Any], parts: list[Parsed], families: list[str]) -> FileResult:
    def cat(frames: list[pl.DataFrame], schema: dict[str, Any]) -> pl.DataFrame:
        frames = [f for f in frames if f.height]
        if not frames:
            return empty(schema)
        return pl.concat([f.select([pl.col(c).cast(t, strict=False) for c, t in schema.items()]) for f in frames])

    wschema = {**WINDOW_SCHEMA, "_family": pl.Utf8}
    windows = cat([p.windows for p in parts if "_family" in p.windows.columns], wschema)
    res = FileResult(
        info, windows, cat([p.malformed for p in parts], MALFORMED_SCHEMA),
        cat([p.configs for p in parts], CONFIG_SCHEMA), cat([p.steps for p in parts], STEPS_SCHEMA),
        [h for p in parts for h in p.headers],
    )
    formats = sorted(set(windows["format"].drop_nulls().to_list()))
    engines = sorted(set(windows["engine"].drop_nulls().to_list()))
    info["format"] = ",".join(formats) if formats else (",".join(families) or None)
    info["engine"] = ",".join(engines) if engines else None
    info["records"] = windows.height
    info["malformed"] = res.malformed.height
    return res


# ---------------------------------------------------------------------------------------------
# the scan
# ---------------------------------------------------------------------------------------------


def code_key(sources: list[ModuleType]) -> str:
    """Hash of the parsing code in use (every source module plus the shared readers): a cache entry
    written by other parser code is never reused, without anyone remembering to bump a version."""
    h = hashlib.blake2b(CACHE_VERSION.encode(), digest_size=10)
    mods = [*sources, *(sys.modules.get(n) for n in _SHARED_MODULES)]
    for m in mods:
        f = getattr(m, "__file__", None)
        h.update(_family(m).encode() if m is not None else b"-")
        try:
            h.update(Path(f).read_bytes() if f else b"")
        except OSError:
            pass
    return h.hexdigest()


_SHARED_MODULES = ("specdec_diag.ingest.scan", "specdec_diag.ingest.base", "specdec_diag.ingest.timestamps",
                   "specdec_diag.ingest._textparse", "specdec_diag.schema")


def scan(paths: str | Path | Iterable[str | Path], *, cache_dir: Path | str | None = None, use_cache: bool = True,
         progress: Progress | None = None, chunk_bytes: int = CHUNK_BYTES,
         sources: list[ModuleType] | None = None) -> IngestResult:
    """Ingest files and directories into the normalised tables (see :class:`IngestResult`)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    sources = _sources() if sources is None else sources
    source_key = code_key(sources)
    cache = None
    if use_cache:
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir(paths)
        cache = Cache(root) if root is not None else None

    files = list(dict.fromkeys(iter_files(paths)))
    sizes = []
    for f, err in files:
        try:
            sizes.append(f.stat().st_size if err is None else 0)
        except OSError:
            sizes.append(0)
    total, done = sum(sizes), 0
    results: list[FileResult] = []
    for i, ((f, err), size) in enumerate(zip(files, sizes, strict=True)):
        display = str(f)
        if err is not None:
            info = {k: None for k in INPUT_SCHEMA} | {"path": display, "error": err, "lines": 0, "records": 0,
                                                     "malformed": 0}
            results.append(_assemble(info, [], []))
            continue
        res = None
        fp = None
        if cache is not None:
            try:
                fp = file_fingerprint(f)
                res = cache.load(display, fp, source_key)
            except OSError:
                res = None
        if res is None:
            base = done

            def tick(n: int, _base: int = base, _size: int = size, _display: str = display) -> None:
                nonlocal done
                done = min(done + n, _base + _size)
                if progress:
                    progress(_display, done, total)

            res = parse_file(f, display, sources=sources, chunk_bytes=chunk_bytes, on_bytes=tick)
            if cache is not None and res.input.get("error") is None and res.input.get("fingerprint"):
                cache.store(display, res.input["fingerprint"], source_key, res)
        done = sum(sizes[: i + 1])
        if progress:
            progress(display, done, total)
        results.append(res)
    return combine(results, sources, source_key)


def combine(results: list[FileResult], sources: list[ModuleType], code: str = "") -> IngestResult:
    """Concatenate per-file results and run each family's ``finalize`` over its own windows."""
    if not results:
        return IngestResult.empty()
    # group each file's windows by family without concatenating everything first: on a 1 GB log the
    # window table is a few hundred MB and every full copy shows in the peak RSS
    by_family: dict[str, list[pl.DataFrame]] = {}
    for r in results:
        w = r.windows
        if not w.height:
            continue
        fam_col = w["_family"]
        if fam_col.n_unique() == 1:
            by_family.setdefault(str(fam_col[0]), []).append(w.drop("_family"))
        else:
            for (fam,), part in w.partition_by("_family", as_dict=True, include_key=False).items():
                by_family.setdefault(str(fam), []).append(part)
        r.windows = w.clear()  # the result no longer holds the rows
    finals: list[pl.DataFrame] = []
    fams = {_family(m): m for m in sources}
    extra_mal: list[pl.DataFrame] = []
    for fam, frames in by_family.items():
        part = pl.concat(frames, rechunk=False)
        del frames[:]
        mod = fams.get(fam)
        if mod is not None and hasattr(mod, "finalize"):
            try:
                part = mod.finalize(part)
            except Exception as exc:  # noqa: BLE001
                extra_mal.append(_crash(str(part["source"][0]), int(part["line"][0]), mod, exc))
        finals.append(conform_windows(part))
    out_w = pl.concat(finals, rechunk=False) if finals else empty_windows()

    def cat(name: str, schema: dict[str, Any], extra: list[pl.DataFrame] | None = None) -> pl.DataFrame:
        frames = [getattr(r, name) for r in results if getattr(r, name).height] + (extra or [])
        return pl.concat(frames) if frames else empty(schema)

    inputs = pl.DataFrame([r.input for r in results], schema=INPUT_SCHEMA, orient="row")
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{CACHE_VERSION}|{code}".encode())
    for r in sorted(results, key=lambda r: r.input["path"]):
        h.update(f"{r.input['path']}\0{r.input.get('fingerprint')}\0{r.input.get('error')}\n".encode())
    return IngestResult(
        windows=out_w,
        steps=cat("steps", STEPS_SCHEMA),
        inputs=inputs,
        malformed=cat("malformed", MALFORMED_SCHEMA, extra_mal),
        configs=cat("configs", CONFIG_SCHEMA),
        headers=[hd for r in results for hd in r.headers],
        fingerprint=h.hexdigest(),
    )


def scan_one(path: str | Path, **kwargs: Any) -> IngestResult:
    """Scan a single file or directory; same options as :func:`scan`."""
    return scan([path], **kwargs)
