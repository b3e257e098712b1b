"""The Python API for notebooks and scripts (docs/python-api.md)::

    import specdec_diag as sd
    t = sd.scan(["logs/", "s3://bucket/fleet/2026-03-14/"], workers=8)
    t.windows            # polars DataFrame, one row per metrics window (docs/architecture.md §3)
    t.to_pandas()        # the same as pandas (pandas is optional)
    runs = sd.runs(t)    # one row per run (docs/runs.md)
    rep = sd.report(t)   # the report@2 document as a dict (docs/report.md)

The same loader serves the CLI: inputs may be files, directories, fsspec URLs or datasets written by
``ingest --out``; the work runs in this process, a local process pool, or on a Ray cluster. Nothing
here is imported by ``import specdec_diag`` until it is used (polars loads on first call).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas
    import polars as pl

    from specdec_diag.ingest.base import IngestResult
    from specdec_diag.ingest.cache import FileResult

#: below this many bytes to parse, or with a single task, a scan stays in this process (starting
#: worker processes costs about a second; small inputs are done before that)
PARALLEL_MIN_BYTES = 64 * 1024 * 1024
#: a local worker process is started per this many bytes to parse at most: a child's start-up
#: (~1 s of CPU importing polars) is worth ~280 MB of scanning, so 64 cores do not start 64
#: interpreters for 200 MB
BYTES_PER_WORKER = 128 * 1024 * 1024
_URLISH = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/+(.*)$")


def as_input(p: str | Path) -> str | Path:
    """A URL stays a URL, anything else is a Path; a command-line Path that was a URL comes back
    (``Path('s3://b/k')`` reads ``s3:/b/k``; ``file:/x`` is ``file:///x``)."""
    from specdec_diag.ingest.parallel import is_url

    if isinstance(p, str) and is_url(p):
        return p
    text = str(p)
    m = _URLISH.match(text)
    if m and not Path(text).exists():
        scheme, rest = m.group(1), m.group(2)
        url = f"file:///{rest}" if scheme.lower() == "file" else f"{scheme}://{rest}"
        if is_url(url):
            return url
    return p if isinstance(p, Path) else Path(p)


def load(paths: str | Path | Iterable[str | Path], *, workers: int | None = None, executor: str | None = None,
         use_cache: bool = True, refresh: bool = False, cache_dir: str | Path | None = None,
         progress: Any = None) -> IngestResult:
    """Scan ``paths`` (and read datasets among them) into one ingest result, finalised over all
    inputs at once. ``workers``: local processes (default: every core); ``executor``: ``local``,
    ``ray`` or ``ray:ADDRESS``. The tables do not depend on either."""
    from specdec_diag.ingest.cache import code_key
    from specdec_diag.ingest.registry import SOURCES
    from specdec_diag.ingest.scan import combine

    items = [as_input(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    holder: list[Any] = []
    try:
        results = _results(items, holder, workers=workers, executor=executor, use_cache=use_cache, refresh=refresh,
                           cache_dir=cache_dir, progress=progress)
        return combine(results, SOURCES, code_key(list(SOURCES)))  # type: ignore[arg-type]
    finally:
        for ex in holder:
            ex.close()


def iter_file_results(paths: Iterable[str | Path], *, workers: int | None = None, executor: str | None = None,
                      use_cache: bool = True, refresh: bool = False, cache_dir: str | Path | None = None,
                      progress: Any = None) -> Iterator[FileResult]:
    """Each input's result before cross-file finalisation (what ``ingest --out`` stores), in order."""
    holder: list[Any] = []
    try:
        yield from _results([as_input(p) for p in paths], holder, workers=workers, executor=executor,
                            use_cache=use_cache, refresh=refresh, cache_dir=cache_dir, progress=progress)
    finally:
        for ex in holder:
            ex.close()


def _results(items: list[str | Path], holder: list[Any], *, workers: int | None, executor: str | None,
             use_cache: bool, refresh: bool, cache_dir: str | Path | None, progress: Any) -> Iterator[FileResult]:
    from specdec_diag.ingest.dataset import is_dataset, read_dataset
    from specdec_diag.ingest.executors import SerialExecutor, make_executor, parse_executor
    from specdec_diag.ingest.parallel import results_of

    kind, _ = parse_executor(executor)  # a bad spec fails before any work
    datasets = [p for p in items if isinstance(p, Path) and is_dataset(p)]
    logs = [p for p in items if p not in datasets]
    for d in datasets:
        yield from read_dataset(d)
    if not logs:
        return
    lazy = _LazyExecutor(executor, workers, holder, make_executor, SerialExecutor)
    results, plan = results_of(logs, executor=lazy, cache_dir=cache_dir, use_cache=use_cache, refresh=refresh,
                               progress=progress)
    todo = sum(u.size for u in plan.units if u.cached is None)
    lazy.parallel = kind == "ray" or (len(plan.tasks) > 1 and todo >= PARALLEL_MIN_BYTES)
    if kind == "local" and lazy.parallel:
        from specdec_diag.ingest.executors import available_cores

        lazy.n = min(workers or available_cores(), len(plan.tasks), max(2, todo // BYTES_PER_WORKER))
        lazy.parallel = lazy.n > 1
    yield from results


class _LazyExecutor:
    """Starts the real executor on first use, once the plan says whether parallel work pays."""

    name = "lazy"
    workers = 1

    def __init__(self, spec: str | None, workers: int | None, holder: list[Any], make: Any, serial: Any):
        self.spec, self.n, self.holder, self.make, self.serial = spec, workers, holder, make, serial
        self.parallel = False

    def map(self, fn: Any, tasks: Any) -> Iterator[Any]:
        ex = self.make(self.spec, self.n) if self.parallel else self.serial()
        self.holder.append(ex)
        yield from ex.map(fn, tasks)

    def close(self) -> None:
        pass


@dataclass
class Tables:
    """What :func:`scan` returns: the normalised tables of the inputs (polars DataFrames)."""

    result: IngestResult

    @property
    def windows(self) -> pl.DataFrame:
        return self.result.windows

    @property
    def steps(self) -> pl.DataFrame:
        return self.result.steps

    @property
    def inputs(self) -> pl.DataFrame:
        return self.result.inputs

    @property
    def malformed(self) -> pl.DataFrame:
        return self.result.malformed

    @property
    def configs(self) -> pl.DataFrame:
        return self.result.configs

    @property
    def errors(self) -> list[str]:
        return self.result.errors

    @property
    def warnings(self) -> list[str]:
        return self.result.warnings

    def to_pandas(self, table: str = "windows") -> pandas.DataFrame:
        """One table as a pandas DataFrame (needs pandas and pyarrow: ``pip install pandas``)."""
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise ImportError("Tables.to_pandas() needs pandas: pip install pandas "
                              "(or use the polars frames: t.windows)") from None
        return getattr(self.result, table).to_pandas()

    def __repr__(self) -> str:
        r = self.result
        return (f"Tables({r.inputs.height} inputs, {r.windows.height} windows, {r.steps.height} steps, "
                f"{r.malformed.height} malformed, {len(r.errors)} errors)")


def scan(paths: str | Path | Iterable[str | Path], *, workers: int | None = None, executor: str | None = None,
         cache: bool = True) -> Tables:
    """Read logs, traces, directories, fsspec URLs or an ``ingest --out`` dataset into :class:`Tables`."""
    return Tables(load(paths, workers=workers, executor=executor, use_cache=cache))


def _result(t: Tables | IngestResult) -> IngestResult:
    return t.result if isinstance(t, Tables) else t


def runs(t: Tables | IngestResult) -> pl.DataFrame:
    """The runs table (one engine process with one configuration each, docs/runs.md)."""
    from specdec_diag.analysis.runs import segment

    return segment(_result(t)).table


def report(t: Tables | IngestResult, *, windows: bool = False) -> dict[str, Any]:
    """The report@2 document (run by run: metrics, findings, comparisons) as a dict."""
    from specdec_diag.analysis.report import build_report

    return build_report(_result(t), windows=windows)
