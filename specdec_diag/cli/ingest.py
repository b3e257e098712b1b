"""`specdec-diag ingest PATH... [--out DIR] [--runs] [--no-cache] [--workers N] [--executor ray]`: parse
logs and traces into the normalised tables, optionally add them to a Hive-partitioned Parquet dataset
(``--out``; ``report``, ``check`` and the dashboard read it directly, docs/ingest.md), and show what
was found per file (and, with ``--runs``, per run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from specdec_diag.cli._app import app, console, err_console, fail
from specdec_diag.cli.report import check_paths, executor_option, workers_option
from specdec_diag.exit_codes import ExitCode

#: total input size / file count above which a progress bar is shown on a terminal (smaller scans
#: finish before it would draw).
PROGRESS_MIN_BYTES = 50 * 1024 * 1024
PROGRESS_MIN_FILES = 500


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Log files, traces, directories (recursive; .gz read "
                                       "transparently), fsspec URLs (s3://, gs://, file://) or datasets."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Add the tables to the Parquet dataset in this "
                                    "directory (partitioned by date/host/engines; unchanged inputs are skipped)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Re-parse every file and rewrite its cache entry."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache directory (default: .specdec-cache/ "
                                          "in the scanned directory, else $XDG_CACHE_HOME/specdec-diag)."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr "
                                         "(default: on a terminal, for large or many inputs)."),
    runs: bool = typer.Option(False, "--runs", help="Also show the runs the inputs hold (one engine process with "
                              "one configuration each, docs/runs.md)."),
    workers: int | None = workers_option(),
    executor: str = executor_option(),
) -> None:
    """Parse engine logs, bench outputs, metrics dumps and specdec traces into normalised tables."""
    from specdec_diag.render.terminal import print_ingest

    check_paths(paths)
    opts: dict[str, Any] = dict(use_cache=not no_cache, refresh=no_cache, cache_dir=cache_dir, workers=workers,
                                executor=executor)
    try:
        res, stats = _scan(paths, out, opts, progress)
    except (ValueError, RuntimeError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{out}: cannot write output: {exc.strerror or exc}") from None

    print_ingest(res, console)
    table = None
    if runs or out is not None:
        from specdec_diag.analysis.runs import segment

        table = segment(res).table
    if runs:
        from specdec_diag.render.terminal import print_runs

        print_runs(table, console)
    if out is not None:
        _write_runs(out, stats, table if stats.only_these and len(paths) == 1 else None)

    for line in res.errors:
        err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
    for line in res.warnings:
        err_console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    if res.inputs.height and len(res.errors) == res.inputs.height:
        raise fail("nothing readable in " + ", ".join(str(p) for p in paths))
    if res.windows.height == 0 and res.steps.height == 0:
        raise fail("no speculative-decoding records found in " + ", ".join(str(p) for p in paths), ExitCode.NO_DATA)


def _scan(paths: list[Path], out: Path | None, opts: dict[str, Any], progress: bool | None) -> tuple[Any, Any]:
    """The scan's result (and, with ``out``, what was added to the dataset), with a progress bar
    when asked for or when the inputs are large or many."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from specdec_diag.api import as_input, iter_file_results
    from specdec_diag.ingest.cache import code_key
    from specdec_diag.ingest.dataset import write_dataset
    from specdec_diag.ingest.registry import SOURCES
    from specdec_diag.ingest.scan import combine, iter_files

    total = n_files = 0
    for f, err in iter_files([p for p in paths if not isinstance(as_input(p), str)]):
        n_files += 1
        if err is None:
            try:
                total += f.stat().st_size
            except OSError:
                pass

    def run(tick: Any = None) -> tuple[Any, Any]:
        results = iter_file_results(paths, **opts, progress=tick)
        if out is None:
            return combine(results, SOURCES, code_key(list(SOURCES))), None  # type: ignore[arg-type]
        kept: list[Any] = []
        stats = write_dataset(results, out, keep=kept.append)
        return combine(kept, SOURCES, code_key(list(SOURCES))), stats

    if progress or (progress is None and err_console.is_terminal
                    and (total >= PROGRESS_MIN_BYTES or n_files >= PROGRESS_MIN_FILES)):
        with Progress(TextColumn("[bold]ingest[/]"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                      TextColumn("{task.description}"), console=err_console, transient=True) as bar:
            task = bar.add_task("", total=total)

            def tick(path: str, done: int, tot: int) -> None:
                bar.update(task, completed=done, total=tot, description=Path(path).name)

            return run(tick)
    return run()


def _write_runs(out: Path, stats: Any, table: Any = None) -> None:
    """The runs of the whole dataset (old and new inputs together) as ``out/runs.parquet``; ``table``:
    the runs already segmented from this scan, when the dataset holds exactly its inputs (a dataset
    reads back as the scan of its one directory, tests/test_dataset.py: no second read + segment)."""
    from specdec_diag.analysis.runs import segment
    from specdec_diag.api import load
    from specdec_diag.schema import write_parquet_atomic

    if table is None:
        table = segment(load([out])).table
    try:
        write_parquet_atomic(table, out / "runs.parquet")
    except OSError as exc:
        raise fail(f"{out}: cannot write output: {exc.strerror or exc}") from None
    console.print(f"dataset {out}: {len(stats.written)} inputs added, {len(stats.replaced)} replaced, "
                  f"{len(stats.unchanged)} unchanged; {table.height} runs in runs.parquet", highlight=False)
