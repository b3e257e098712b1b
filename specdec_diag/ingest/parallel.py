"""A scan spread over processes or a Ray cluster: the inputs become tasks, an
:class:`~specdec_diag.ingest.executors.Executor` runs them, and the per-file results are combined
in file order exactly as :func:`specdec_diag.ingest.scan.scan` combines them.

Tasks (the plan depends on the inputs only, never on the number of workers, so ``--workers 1``
and ``--workers 8`` give identical tables, row order and line numbers included):

* a **group** of whole files (consecutive in scan order, up to :data:`GROUP_BYTES`): parsed by
  :func:`~specdec_diag.ingest.scan.parse_files` (cache and small-file batches as in a plain scan);
* a **piece** of a large plain file (over :data:`SPLIT_BYTES`): the file is cut on line boundaries
  into :data:`PIECE_BYTES` ranges, each parsed on its own through a range-limited
  :class:`~specdec_diag.inputs.InputFile`; the pieces' line numbers are shifted by the lines before
  them and the pieces become one file result (cached like any other). Cross-line work that spans a
  cut is the sources' ``finalize`` (as for the scan's own batches). gzip, non-UTF-8, bare-CR, BOM
  files and files a whole-file source takes are never cut;
* a **URL** (``s3://``, ``gs://``, ``file://``, ``memory://``...; fsspec): fetched by the worker to a
  local temp file named like the object and parsed there (no cache). ``memory://`` lives in one
  process only, so its bytes travel with the task.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.ingest.base import IngestResult, Source
from specdec_diag.ingest.cache import Cache, FileResult, code_key, default_cache_dir, file_fingerprint
from specdec_diag.ingest.executors import Executor, SerialExecutor
from specdec_diag.ingest.reading import CHUNK_BYTES, iter_files, wanted
from specdec_diag.ingest.registry import SOURCES
from specdec_diag.ingest.scan import Progress, combine, parse_file, parse_files
from specdec_diag.inputs import SAMPLE_BYTES, InputError, InputFile

#: a plain file larger than this is cut into pieces
SPLIT_BYTES = 96 * 1024 * 1024
#: target size of one piece (cut at the next line boundary)
PIECE_BYTES = 64 * 1024 * 1024
#: whole files handed to one task at most (many small files share a task)
GROUP_BYTES = 32 * 1024 * 1024
GROUP_FILES = 2048
#: what marks an fsspec URL
URL_SCHEMES = ("s3://", "s3a://", "gs://", "gcs://", "az://", "abfs://", "abfss://", "file://", "memory://",
               "http://", "https://", "hdfs://")


def is_url(p: str | Path) -> bool:
    return isinstance(p, str) and p.lower().startswith(URL_SCHEMES)


@dataclass(frozen=True)
class Settings:
    """What every task needs to know (picklable: it travels to the workers)."""

    cache_dir: str | None
    use_cache: bool
    refresh: bool
    chunk_bytes: int
    sources: tuple[Source, ...]
    key: str


@dataclass(frozen=True)
class Task:
    kind: str                      # "group" | "piece" | "url"
    files: tuple[tuple[str, str | None], ...] = ()   # group: (path, listing error)
    path: str = ""                 # piece: the file; url: the URL
    start: int = 0
    end: int = 0
    data: bytes | None = None      # url: the object's bytes when the worker cannot fetch them itself
    mtime: float | None = None     # url: the object's modification time (year of MM-DD timestamps)


# ---------------------------------------------------------------------------------------------
# running one task (in a worker)
# ---------------------------------------------------------------------------------------------


class _Range:
    """A raw file handle that shows only the bytes ``[start, end)`` (positions relative to start)."""

    def __init__(self, fh: Any, start: int, end: int):
        self.fh, self.start, self.end = fh, start, end
        self.pos = start
        fh.seek(start)

    def seek(self, pos: int) -> int:
        self.pos = min(self.start + pos, self.end)
        self.fh.seek(self.pos)
        return self.pos - self.start

    def read(self, n: int = -1) -> bytes:
        left = self.end - self.pos
        data = self.fh.read(left if n is None or n < 0 else min(n, left)) if left > 0 else b""
        self.pos += len(data)
        return data

    def close(self) -> None:
        self.fh.close()


class RangeFile(InputFile):
    """An :class:`InputFile` whose pieces are one byte range of a plain UTF-8 file; ``sniff`` still
    reads the file's head (source detection and the year anchor must see what a whole read sees)."""

    def __init__(self, path: str | Path, start: int, end: int):
        super().__init__(path)
        self.start, self.end = start, end
        self._sniffing = False

    def sniff(self, n: int = SAMPLE_BYTES, head: bytes | None = None) -> str:
        self._sniffing = True
        try:
            return super().sniff(n, head)
        finally:
            self._sniffing = False

    def _open_raw(self):
        raw = super()._open_raw()
        return raw if self._sniffing else _Range(raw, self.start, self.end)


def run_task(job: tuple[Task, Settings]) -> list[FileResult | None]:
    """One task's file results (a piece: one partial result, merged by the caller)."""
    task, s = job
    if task.kind == "group":
        return parse_files([(Path(p), err) for p, err in task.files], cache_dir=s.cache_dir, use_cache=s.use_cache,
                           refresh=s.refresh, chunk_bytes=s.chunk_bytes, sources=s.sources, key=s.key)
    if task.kind == "piece":
        return [_run_piece(task, s)]
    return [_run_url(task, s)]


def _run_piece(task: Task, s: Settings) -> FileResult | None:
    """A piece's partial result; None when it cannot stand for its range (the range reader was
    bypassed, or the read failed): the caller then parses the whole file."""
    seen = [0]

    def on_bytes(n: int) -> None:
        seen[0] += n

    try:
        res = parse_file(Path(task.path), task.path, sources=s.sources, chunk_bytes=s.chunk_bytes,
                         on_bytes=on_bytes, input_file=RangeFile(task.path, task.start, task.end))
    except Exception:  # noqa: BLE001 - parse_file never raises for input: the range hook failed, parse whole
        return None
    if res.input.get("error") is not None or res.warning is not None or seen[0] != task.end - task.start:
        return None
    return res


def _run_url(task: Task, s: Settings) -> FileResult:
    """Fetch the object to a temp file named like it (``.gz`` is read by name) and parse it there."""
    name = task.path.rstrip("/").rsplit("/", 1)[-1] or "object"
    tmpdir = tempfile.mkdtemp(prefix="specdec-url-")
    local = Path(tmpdir) / name
    try:
        if task.data is not None:
            local.write_bytes(task.data)
        else:
            import fsspec

            try:
                with fsspec.open(task.path, "rb") as src, open(local, "wb") as dst:
                    shutil.copyfileobj(src, dst, 8 * 1024 * 1024)
            except Exception as exc:  # noqa: BLE001 - any store error is this input's error, not the scan's
                return _failed(task.path, f"cannot fetch: {type(exc).__name__}: {exc}"[:300])
        if task.mtime is not None:
            os.utime(local, (task.mtime, task.mtime))
        res = parse_file(local, task.path, sources=s.sources, chunk_bytes=s.chunk_bytes)
        if res.input.get("fingerprint"):  # the temp file's inode and ctime mean nothing: the object's own
            res.input["fingerprint"] = _object_fingerprint(local, task.mtime)
        return res
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _object_fingerprint(local: Path, mtime: float | None) -> str:
    """Like :func:`file_fingerprint` without what a fresh local copy changes (inode, ctime)."""
    import hashlib

    size = local.stat().st_size
    h = hashlib.blake2b(f"{size}:{mtime}".encode(), digest_size=16)
    with open(local, "rb") as fh:
        h.update(fh.read(SAMPLE_BYTES))
        if size > 2 * SAMPLE_BYTES:
            fh.seek(size - SAMPLE_BYTES)
            h.update(fh.read(SAMPLE_BYTES))
    return h.hexdigest()


def _failed(display: str, error: str) -> FileResult:
    info = {"path": display, "format": None, "engine": None, "lines": 0, "records": 0, "malformed": 0,
            "fingerprint": None, "error": error}
    from specdec_diag.ingest.cache import empty_table

    return FileResult(info, empty_table("windows"), empty_table("malformed"), empty_table("configs"),
                      empty_table("steps"))


# ---------------------------------------------------------------------------------------------
# planning (in the caller)
# ---------------------------------------------------------------------------------------------


@dataclass
class Unit:
    """One input file as the plan sees it: which tasks produce it (pieces: several) or its cached
    result. A group task produces several units' results, one each."""

    display: str
    size: int
    tasks: list[int]
    cached: FileResult | None = None
    fingerprint: str | None = None


def _cuts(path: Path, size: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of about :data:`PIECE_BYTES`, each ending just after a newline."""
    n = max(2, round(size / PIECE_BYTES))
    bounds = [0]
    with open(path, "rb") as fh:
        for i in range(1, n):
            at = max(i * size // n, bounds[-1])
            fh.seek(at)
            found = -1
            for _ in range(16):  # look up to 16 MiB ahead for the end of the line
                block = fh.read(1 << 20)
                if not block:
                    break
                nl = block.find(b"\n")
                if nl >= 0:
                    found = fh.tell() - len(block) + nl + 1
                    break
            if bounds[-1] < found < size:
                bounds.append(found)
    bounds.append(size)
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def splittable(path: Path, size: int, sources: Sequence[Source]) -> bool:
    """A plain UTF-8 file (no BOM, ``\\n`` or ``\\r\\n`` endings) big enough to cut, that no
    whole-file source takes."""
    if size <= SPLIT_BYTES or path.name.lower().endswith(".gz"):
        return False
    f = InputFile(path)
    try:
        sample = f.sniff()
    except (InputError, OSError):
        return False
    if f.encoding or f.skip or f.cr:
        return False
    for src in sources:
        if src.parse_file is not None:
            try:
                if src.detect(sample):
                    return False
            except Exception:  # noqa: BLE001 - a broken detector: the scan treats it as no match
                pass
    return True


class Plan:
    """The tasks of one scan, in file order, and the units they make up."""

    def __init__(self, settings: Settings, cache: Cache | None):
        self.settings, self.cache = settings, cache
        self.tasks: list[Task] = []
        self.units: list[Unit] = []
        self._group: list[tuple[str, str | None]] = []
        self._group_units: list[Unit] = []
        self._group_bytes = 0

    def add_file(self, f: Path, err: str | None) -> None:
        try:
            st = f.stat() if err is None else None
        except OSError:
            st = None
        size = st.st_size if st is not None and stat.S_ISREG(st.st_mode) else 0
        if st is not None and stat.S_ISREG(st.st_mode) and splittable(f, size, self.settings.sources):
            self._close_group()
            self._add_pieces(f, st, size)
            return
        self._group.append((str(f), err))
        self._group_units.append(Unit(str(f), size, []))
        self._group_bytes += size
        if self._group_bytes >= GROUP_BYTES or len(self._group) >= GROUP_FILES:
            self._close_group()

    def _add_pieces(self, f: Path, st: os.stat_result, size: int) -> None:
        unit = Unit(str(f), size, [])
        try:
            unit.fingerprint = file_fingerprint(f, st)
            unit.cached = self.cache.load(str(f), unit.fingerprint, self.settings.key) \
                if self.cache is not None and not self.settings.refresh else None
        except OSError:
            pass
        if unit.cached is None:
            for start, end in _cuts(f, size):
                unit.tasks.append(len(self.tasks))
                self.tasks.append(Task("piece", path=str(f), start=start, end=end))
        self.units.append(unit)

    def _close_group(self) -> None:
        if self._group:
            for u in self._group_units:
                u.tasks = [len(self.tasks)]
            self.tasks.append(Task("group", files=tuple(self._group)))
            self.units.extend(self._group_units)
        self._group, self._group_units, self._group_bytes = [], [], 0

    def add_url(self, url: str) -> None:
        """A URL: one object, or every object below it that a directory scan would read."""
        import fsspec

        self._close_group()
        fs, root = fsspec.core.url_to_fs(url)
        try:
            found = [root] if not fs.isdir(root) else sorted(p for p in fs.find(root) if walked(p[len(root):]))
        except Exception as exc:  # noqa: BLE001 - an unreachable store is this input's error
            self.units.append(Unit(url, 0, [], cached=_failed(url, f"cannot list: {type(exc).__name__}: {exc}"[:300])))
            return
        local_only = "memory" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
        for p in found:
            full = url if p == root else fs.unstrip_protocol(p)
            info = _info(fs, p)
            try:
                data = fs.cat_file(p) if local_only else None
            except Exception as exc:  # noqa: BLE001 - a missing object is this input's error
                self.units.append(Unit(full, 0, [], cached=_failed(full, f"cannot read: {type(exc).__name__}: "
                                                                         f"{exc}"[:300])))
                continue
            self.units.append(Unit(full, int(info.get("size") or 0), [len(self.tasks)]))
            self.tasks.append(Task("url", path=full, data=data, mtime=_mtime(info)))

    def finish(self) -> None:
        self._close_group()


def walked(below: str) -> bool:
    """What the directory walk reads below a URL: a wanted name under no hidden directory (the cache)."""
    *dirs, name = below.strip("/").split("/")
    return wanted(name) and not any(d.startswith(".") for d in dirs)


def _info(fs: Any, p: str) -> dict[str, Any]:
    try:
        return dict(fs.info(p))
    except Exception:  # noqa: BLE001 - size and time are only for progress and the year anchor
        return {}


def _mtime(info: dict[str, Any]) -> float | None:
    for k in ("mtime", "LastModified", "last_modified", "updated", "created"):
        v = info.get(k)
        if isinstance(v, (int, float)):
            return float(v)
        if hasattr(v, "timestamp"):
            return float(v.timestamp())
        if isinstance(v, str):
            try:
                from datetime import datetime

                return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


# ---------------------------------------------------------------------------------------------
# running the plan and putting the pieces together
# ---------------------------------------------------------------------------------------------

_LINE_TABLES = ("windows", "malformed", "configs", "steps")


def merge_pieces(parts: list[FileResult]) -> FileResult:
    """The pieces of one file as one result: line numbers continue from the piece before, counts
    add up, format and engine are recomputed from the rows (as the scan's assembly does)."""
    offset = 0
    frames: dict[str, list[pl.DataFrame]] = {t: [] for t in _LINE_TABLES}
    families: list[str] = []
    for r in parts:
        for t in _LINE_TABLES:
            df = getattr(r, t)
            if df.height:
                frames[t].append(df.with_columns(pl.col("line") + offset) if offset else df)
        for fam in (r.input.get("format") or "").split(","):
            if fam and fam not in families:
                families.append(fam)
        offset += int(r.input.get("lines") or 0)
    tables = {t: pl.concat(frames[t]) if frames[t] else getattr(parts[0], t).clear() for t in _LINE_TABLES}
    w = tables["windows"]
    formats = sorted(set(w["format"].drop_nulls().to_list()))
    engines = sorted(set(w["engine"].drop_nulls().to_list()))
    info = {**parts[0].input, "lines": offset, "records": w.height, "malformed": tables["malformed"].height,
            "format": ",".join(formats) if formats else (",".join(families) or None),
            "engine": ",".join(engines) if engines else None}
    return FileResult(info, w, tables["malformed"], tables["configs"], tables["steps"],
                      [h for r in parts for h in r.headers])


def plan_inputs(paths: Iterable[str | Path], settings: Settings, cache: Cache | None) -> Plan:
    """The tasks for ``paths`` (files, directories, URLs) in scan order; a file is read once even
    if several arguments reach it."""
    plan = Plan(settings, cache)
    seen: set[Path] = set()
    for p in paths:
        if is_url(p):
            plan.add_url(str(p))
            continue
        for f, err in iter_files([p]):
            if f not in seen:
                seen.add(f)
                plan.add_file(f, err)
    plan.finish()
    return plan


def iter_results(plan: Plan, executor: Executor, progress: Progress | None = None) -> Iterator[FileResult]:
    """Every input's result, in scan order, as the executor delivers them."""
    s = plan.settings
    outputs = executor.map(run_task, [(t, s) for t in plan.tasks])
    total = sum(u.size for u in plan.units)
    done, at, buffer = 0, -1, []  # the last task taken from ``outputs`` and what is left of its results

    def take(task: int) -> list[FileResult | None]:
        nonlocal at
        got: list[FileResult | None] = []
        while at < task:
            got = next(outputs)
            at += 1
        return got

    for unit in plan.units:
        if unit.cached is not None:
            res = unit.cached
        elif plan.tasks[unit.tasks[0]].kind == "piece":
            parts = [take(t)[0] for t in unit.tasks]
            res = _whole(unit, s, plan.cache, parts)
        else:
            if unit.tasks[0] > at:
                buffer = take(unit.tasks[0])
            res = buffer.pop(0)  # type: ignore[assignment]
        done += unit.size
        if progress:
            progress(unit.display, done, total)
        yield res  # type: ignore[misc]


def _whole(unit: Unit, s: Settings, cache: Cache | None, parts: list[FileResult | None]) -> FileResult:
    """A cut file's result (cached): its pieces merged, or the file parsed whole if a piece failed."""
    res = parse_file(Path(unit.display), unit.display, sources=s.sources, chunk_bytes=s.chunk_bytes) \
        if any(p is None for p in parts) else merge_pieces(parts)  # type: ignore[arg-type]
    fp = res.input.get("fingerprint")
    if cache is not None and fp and res.input.get("error") is None and res.warning is None:
        cache.store(unit.display, fp, s.key, res)
    return res


def scan_parallel(paths: str | Path | Iterable[str | Path], *, executor: Executor | None = None,
                  cache_dir: Path | str | None = None, use_cache: bool = True, refresh: bool = False,
                  progress: Progress | None = None, chunk_bytes: int = CHUNK_BYTES,
                  sources: Sequence[Source] = SOURCES) -> IngestResult:
    """:func:`specdec_diag.ingest.scan.scan` with the work spread by ``executor`` (default: serial,
    the same plan in this process); URLs are read through fsspec. Same tables whatever the executor."""
    results, _ = results_of(paths, executor=executor, cache_dir=cache_dir, use_cache=use_cache, refresh=refresh,
                            progress=progress, chunk_bytes=chunk_bytes, sources=sources)
    return combine(results, sources, code_key(list(sources)))  # type: ignore[arg-type]


def results_of(paths: str | Path | Iterable[str | Path], *, executor: Executor | None = None,
               cache_dir: Path | str | None = None, use_cache: bool = True, refresh: bool = False,
               progress: Progress | None = None, chunk_bytes: int = CHUNK_BYTES,
               sources: Sequence[Source] = SOURCES) -> tuple[Iterator[FileResult], Plan]:
    """Per-file results (before cross-file finalisation) of a parallel scan, lazily, and its plan."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    items = [p if is_url(p) else Path(p) for p in paths]
    key = code_key(list(sources))
    cache = None
    if use_cache or refresh:
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir([p for p in items if isinstance(p, Path)])
        cache = Cache(root) if root is not None else None
    settings = Settings(str(cache.root) if cache else None, use_cache, refresh, chunk_bytes, tuple(sources), key)
    plan = plan_inputs(items, settings, cache)
    return iter_results(plan, executor or SerialExecutor(), progress), plan
