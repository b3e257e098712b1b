"""Walk paths, read each file (through the input layer, in bounded pieces on line boundaries; small
files in batches, :mod:`specdec_diag.ingest.batch`), run every source that recognises it, and cache
each file's tables in one validated entry keyed by a content fingerprint.

Per file: a whole-file source (one with ``parse_file``, e.g. our traces) whose ``detect`` matches
the head takes the file. Otherwise the file is read as lines; the lines containing any source's
markers are kept and every source whose markers occur (or whose ``detect`` matched) parses its own
lines. Container logs interleave engines, so several sources may contribute to one file.

Nothing here aborts a scan: unreadable files, broken links and parser crashes become an ``error``
in the inputs table or a malformed row; a file read up to gzip damage keeps what was read and
becomes a warning (``IngestResult.warnings``). Reading is :mod:`specdec_diag.ingest.reading`,
the cache :mod:`specdec_diag.ingest.cache`, the sources :mod:`specdec_diag.ingest.registry`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.ingest.base import STEPS_SCHEMA, IngestResult, Parsed, ParseOptions, Source, empty
from specdec_diag.ingest.batch import (
    BATCH_BYTES,
    BATCH_FILES,
    SmallFile,
    is_small,
    parse_batch,
    prepare,
    read_small,
)
from specdec_diag.ingest.cache import (
    Cache,
    FileResult,
    code_key,
    default_cache_dir,
    file_fingerprint,
)
from specdec_diag.ingest.combine import Combiner
from specdec_diag.ingest.prefilter import marker_tuple
from specdec_diag.ingest.reading import (
    CHUNK_BYTES,
    clean_copy,
    count_lines,
    iter_files,
    os_reason,
    read_marked,
    wanted,
)
from specdec_diag.ingest.registry import SOURCES
from specdec_diag.ingest.timestamps import anchor_from
from specdec_diag.inputs import InputError, InputFile
from specdec_diag.schema import (
    CONFIG_SCHEMA,
    INPUT_SCHEMA,
    MALFORMED_SCHEMA,
    WINDOW_SCHEMA,
)

__all__ = ["FLUSH_BYTES", "Progress", "code_key", "combine", "default_cache_dir", "iter_files", "parse_file",
           "scan", "scan_one", "wanted"]

#: marker lines gathered before the sources parse them (bounds memory on huge logs)
FLUSH_BYTES = 64 * 1024 * 1024

Progress = Callable[[str, int, int], None]  # (path, bytes done over all files, bytes total)


# ---------------------------------------------------------------------------------------------
# parsing one file
# ---------------------------------------------------------------------------------------------


def _safe_detect(src: Source, sample: str) -> bool:
    try:
        return bool(src.detect(sample))
    except Exception:  # noqa: BLE001 - a broken detector must not stop the scan
        return False


def _crash(source: str, line: int, src: Source, exc: BaseException) -> pl.DataFrame:
    msg = f"internal error in the {src.family} parser: {type(exc).__name__}: {exc}"
    return pl.DataFrame([{"source": source, "line": line, "reason": msg[:500], "text": ""}], schema=MALFORMED_SCHEMA)


def _tagged(p: Parsed, family: str) -> Parsed:
    p.windows = p.windows.with_columns(pl.lit(family).alias("_family"))
    return p


#: lines a crashing parser may be narrowed down to before the rest of its batch is given up
CRASH_LINES = 16


def parse_guarded(src: Source, lines: pl.DataFrame, display: str, options: ParseOptions,
                  budget: list[int] | None = None) -> list[Parsed]:
    """``src.parse`` on ``lines``; if it raises, the lines are bisected so that only the line(s) it
    raises on become malformed rows (at their own line numbers) and the rest is parsed: one bad
    line must not erase a batch. After :data:`CRASH_LINES` such lines the remaining segment becomes
    one row (a parser that fails on everything must not cost n parses)."""
    assert src.parse is not None
    budget = [CRASH_LINES] if budget is None else budget
    try:
        return [_tagged(src.parse(lines, display, options), src.family)]
    except Exception as exc:  # noqa: BLE001 - a parser bug becomes a malformed row, not a failed scan
        if lines.height <= 1 or budget[0] <= 0:
            budget[0] -= 1
            return [Parsed(malformed=_crash(display, int(lines["line"][0]), src, exc))]
    mid = lines.height // 2
    return (parse_guarded(src, lines.slice(0, mid), display, options, budget)
            + parse_guarded(src, lines.slice(mid), display, options, budget))


def parse_file(path: Path, display: str, *, sources: Sequence[Source] = SOURCES,
               chunk_bytes: int = CHUNK_BYTES, on_bytes: Callable[[int], None] | None = None,
               input_file: InputFile | None = None) -> FileResult:
    """Parse one file with every source that recognises it. Never raises for bad input: what could
    not be read is the input's ``error`` (what was read before damage is kept). ``input_file``: read
    through this :class:`InputFile` (e.g. one byte range of the file, :mod:`.parallel`)."""
    info: dict[str, Any] = {"path": display, "format": None, "engine": None, "lines": 0, "records": 0,
                            "malformed": 0, "fingerprint": None, "error": None}
    f = input_file if input_file is not None else InputFile(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise InputError(path, "is a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file")
        info["fingerprint"] = file_fingerprint(path, st)
        sample = f.sniff()
    except (InputError, OSError) as exc:
        info["error"] = os_reason(exc)
        return _assemble(info, [], [])
    detected = [s for s in sources if _safe_detect(s, sample)]
    whole = [s for s in detected if s.parse_file is not None]
    if whole:
        parts = _parse_whole(f, display, whole, info)
        if on_bytes:
            on_bytes(st.st_size)
        warning = info.pop("_warning")
        res = _assemble(info, parts, [s.family for s in detected])
        res.warning = warning
        return res
    batches = _LineBatches(display, [s for s in sources if s.reads_lines], detected,
                           ParseOptions(year_anchor=anchor_from(sample, st.st_mtime)))
    got = read_marked(f, batches.groups, batches.add, chunk_bytes=chunk_bytes, on_bytes=on_bytes,
                      display=display)
    info["lines"], info["error"] = got.lines, got.error
    batches.flush()
    if got.dropped:
        batches.parts.append(Parsed(malformed=pl.DataFrame(got.dropped, schema=MALFORMED_SCHEMA)))
    res = _assemble(info, batches.parts, [s.family for s in batches.used])
    res.warning = got.warning
    return res


def _parse_whole(f: InputFile, display: str, whole: list[Source], info: dict[str, Any]) -> list[Parsed]:
    """Whole-file sources read the file themselves; the scan counts its lines and says how the read
    ended. A file the input layer had to repair (gzip damage, another encoding, bare CRs) is handed
    to them as a clean UTF-8 copy of its complete lines, so they see what every other reader sees."""
    got = count_lines(f)
    info["lines"], info["error"], info["_warning"] = got.lines, got.error, got.warning
    copy = clean_copy(f) if (got.warning or f.encoding or f.cr) and got.error is None else None
    parts: list[Parsed] = []
    try:
        for src in whole:
            assert src.parse_file is not None
            try:
                parts.append(_tagged(src.parse_file(copy or f.path, display), src.family))
            except Exception as exc:  # noqa: BLE001 - a parser bug becomes a malformed row, not a failed scan
                parts.append(Parsed(malformed=_crash(display, 1, src, exc)))
    finally:
        if copy is not None:
            copy.unlink(missing_ok=True)
    info["error"] = info["error"] or next((p.error for p in parts if p.error), None)
    return parts


class _LineBatches:
    """Marker lines gathered from a file's pieces and handed to the line sources in batches.

    Batches bound memory on huge logs; cross-line work that must see a whole file belongs in
    ``finalize`` (a batch boundary inside a multi-line summary block, possible only past FLUSH_BYTES
    of marker lines, would split that block)."""

    def __init__(self, display: str, sources: list[Source], detected: list[Source], options: ParseOptions):
        self.display, self.sources, self.options = display, sources, options
        self.used = list(detected)
        self.parts: list[Parsed] = []
        #: one marker set per source: the prefilter marks each line with the sets it holds (``_src``)
        self.groups = tuple(marker_tuple(s.markers) for s in sources)
        self._pending: list[pl.DataFrame] = []
        self._bytes = 0

    def add(self, sel: pl.DataFrame) -> None:
        if sel.height:
            self._pending.append(sel)
            self._bytes += int(sel["text"].str.len_bytes().sum() or 0)
        if self._bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Parse the marker lines gathered so far, each source its own."""
        if not self._pending:
            return
        # one contiguous buffer: polars string kernels pay per chunk (the regexes are set up per chunk),
        # and a batch gathered from many pieces has ~100 chunks; rechunking halves the parse time
        marked = pl.concat(self._pending, rechunk=True)
        self._pending, self._bytes = [], 0
        for bit, src in enumerate(self.sources):
            mine = marked.filter((pl.col("_src") & (1 << bit)) != 0).drop("_src")
            if not mine.height:
                continue
            if src not in self.used:
                self.used.append(src)
            self.parts.extend(parse_guarded(src, mine, self.display, self.options))


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
    formats = sorted(windows["format"].drop_nulls().unique().to_list())  # distinct first: no 273 K str objects
    engines = sorted(windows["engine"].drop_nulls().unique().to_list())
    info["format"] = ",".join(formats) if formats else (",".join(families) or None)
    info["engine"] = ",".join(engines) if engines else None
    info["records"] = windows.height
    info["malformed"] = res.malformed.height
    return res


# ---------------------------------------------------------------------------------------------
# the scan
# ---------------------------------------------------------------------------------------------


def scan(paths: str | Path | Iterable[str | Path], *, cache_dir: Path | str | None = None, use_cache: bool = True,
         refresh: bool = False, progress: Progress | None = None, chunk_bytes: int = CHUNK_BYTES,
         sources: Sequence[Source] = SOURCES) -> IngestResult:
    """Ingest files and directories into the normalised tables (see :class:`IngestResult`).

    ``use_cache=False``: neither read nor write the cache; ``refresh=True``: re-parse everything and
    rewrite the cache entries (what ``--no-cache`` does on the command line). ``progress(path,
    bytes done, bytes total)`` is called after every file or batch of small files."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    source_key = code_key(list(sources))
    cache = None
    if use_cache or refresh:
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir(paths)
        cache = Cache(root) if root is not None else None
    run = _Run(cache, not refresh, source_key, sources, chunk_bytes, progress)
    files = list(dict.fromkeys(iter_files(paths)))
    stats: list[os.stat_result | None] = []
    for f, err in files:
        try:
            stats.append(f.stat() if err is None else None)
        except OSError:
            stats.append(None)
    run.total = sum(st.st_size for st in stats if st is not None)
    for i, ((f, err), st) in enumerate(zip(files, stats, strict=True)):
        run.file(i, f, err, st)
    run.flush()
    return run.combined.finish(_crash)


class _Run:
    """One scan's state: cache hits, small files waiting for their batch, results by position."""

    def __init__(self, cache: Cache | None, read: bool, key: str, sources: Sequence[Source], chunk_bytes: int,
                 progress: Progress | None):
        self.cache, self.read, self.key, self.sources = cache, read, key, sources
        self.chunk_bytes, self.progress = chunk_bytes, progress
        self.results: list[FileResult | None] = []  # by file position; None once handed to ``combined``
        self.combined = Combiner(sources, key)
        self.next = 0  # the first file not yet handed over (handed over in file order)
        self.pending: list[tuple[int, SmallFile, int]] = []
        self.pending_bytes = 0
        self.total = self.done = 0

    def tick(self, display: str, n: int) -> None:
        self.done = min(self.done + n, self.total)
        if self.progress:
            self.progress(display, self.done, self.total)

    def file(self, i: int, f: Path, err: str | None, st: os.stat_result | None) -> None:
        display = str(f)
        self.results.append(None)  # filled below or by flush()
        if err is not None:
            info = {k: None for k in INPUT_SCHEMA} | {"path": display, "error": err, "lines": 0, "records": 0,
                                                     "malformed": 0}
            self.done_with(i, _assemble(info, [], []))
            return
        size = st.st_size if st is not None else 0
        small = st is not None and stat.S_ISREG(st.st_mode) and is_small(f, size)
        raw = read_small(f) if small else None  # small files are read once: fingerprint, sample, text
        fp = None
        if self.cache is not None and self.read and st is not None:
            try:
                fp = file_fingerprint(f, st, raw)
                hit = self.cache.load(display, fp, self.key)
            except OSError:
                hit = None
            if hit is not None:
                self.done_with(i, hit)
                self.tick(display, size)
                return
        if raw is not None:
            sf = prepare(f, display, st, self.sources, _safe_detect, raw, fp)  # type: ignore[arg-type]
            if sf is not None:
                self.pending.append((i, sf, size))
                self.pending_bytes += len(sf.text)
                if self.pending_bytes >= BATCH_BYTES or len(self.pending) >= BATCH_FILES:
                    self.flush()
                return
        base = self.done

        def on_bytes(n: int, _base: int = base, _size: int = size) -> None:
            self.done = min(self.done + n, _base + _size)
            if self.progress:
                self.progress(display, self.done, self.total)

        res = parse_file(f, display, sources=self.sources, chunk_bytes=self.chunk_bytes, on_bytes=on_bytes)
        self.done = base
        self.keep(i, res)
        self.tick(display, size)

    def done_with(self, i: int, res: FileResult) -> None:
        """Record file ``i``'s result; hand over every result whose predecessors are all done."""
        self.results[i] = res
        while self.next < len(self.results) and self.results[self.next] is not None:
            self.combined.add(self.results[self.next])  # type: ignore[arg-type]
            self.results[self.next] = None
            self.next += 1

    def keep(self, i: int, res: FileResult) -> None:
        """A freshly parsed result: cached (before it is handed over and loses its rows), then recorded."""
        if (self.cache is not None and res.input.get("error") is None and res.warning is None
                and res.input.get("fingerprint")):
            self.cache.store(res.input["path"], res.input["fingerprint"], self.key, res)
        self.done_with(i, res)

    def flush(self) -> None:
        """Parse the waiting small files as one batch (file by file if the batch cannot be read)."""
        if not self.pending:
            return
        batch, self.pending, self.pending_bytes = self.pending, [], 0
        try:
            got = parse_batch([sf for _, sf, _ in batch], self.sources, parse_guarded)
        except Exception:  # noqa: BLE001 - never lose a file to the fast path: the per-file path is always right
            got = [parse_file(sf.path, sf.display, sources=self.sources, chunk_bytes=self.chunk_bytes)
                   for _, sf, _ in batch]
        for (i, _, _), res in zip(batch, got, strict=True):
            self.keep(i, res)
        self.tick(batch[-1][1].display, sum(size for _, _, size in batch))


def combine(results: list[FileResult], sources: Sequence[Source], code: str = "") -> IngestResult:
    """Concatenate per-file results and run each family's ``finalize`` over its own windows."""
    c = Combiner(sources, code)
    for r in results:
        c.add(r)
    return c.finish(_crash)


def scan_one(path: str | Path, **kwargs: Any) -> IngestResult:
    """Scan a single file or directory; same options as :func:`scan`."""
    return scan([path], **kwargs)


class _Collect(_Run):
    """A :class:`_Run` that keeps each file's result instead of combining it."""

    def done_with(self, i: int, res: FileResult) -> None:
        self.results[i] = res


def parse_files(files: Sequence[tuple[Path, str | None]], *, cache_dir: Path | str | None = None,
                use_cache: bool = True, refresh: bool = False, chunk_bytes: int = CHUNK_BYTES,
                sources: Sequence[Source] = SOURCES, key: str | None = None) -> list[FileResult]:
    """Each file's result (``(path, listing error)`` in, cache and small-file batches as in
    :func:`scan`), before cross-file finalisation: the unit of work a parallel scan gives a worker
    (:mod:`specdec_diag.ingest.parallel`); :func:`combine` finishes them."""
    cache = Cache(Path(cache_dir)) if cache_dir is not None and (use_cache or refresh) else None
    run = _Collect(cache, not refresh, key or code_key(list(sources)), sources, chunk_bytes, None)
    for i, (f, err) in enumerate(files):
        try:
            st = f.stat() if err is None else None
        except OSError:
            st = None
        run.file(i, f, err, st)
    run.flush()
    return [r for r in run.results if r is not None]
