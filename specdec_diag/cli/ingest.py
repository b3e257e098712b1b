"""`specdec-diag ingest PATH... [--out DIR] [--runs] [--no-cache]`: parse logs and traces into the
normalised tables, optionally write them (and the runs table, docs/runs.md) as Parquet, and show what
was found per file (and, with ``--runs``, per run)."""

from __future__ import annotations

from pathlib import Path

import typer

from specdec_diag.cli._app import app, console, err_console, fail
from specdec_diag.exit_codes import ExitCode

#: total input size / file count above which a progress bar is shown on a terminal (smaller scans
#: finish before it would draw).
PROGRESS_MIN_BYTES = 50 * 1024 * 1024
PROGRESS_MIN_FILES = 500


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Log files, traces or directories (recursive; .gz read transparently)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write windows/steps/malformed/configs/inputs "
                                    ".parquet into this directory."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Re-parse every file and rewrite its cache entry."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache directory (default: .specdec-cache/ "
                                          "in the scanned directory, else $XDG_CACHE_HOME/specdec-diag)."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr "
                                         "(default: on a terminal, for large or many inputs)."),
    runs: bool = typer.Option(False, "--runs", help="Also show the runs the inputs hold (one engine process with "
                              "one configuration each, docs/runs.md)."),
) -> None:
    """Parse engine logs, bench outputs, metrics dumps and specdec traces into normalised tables."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from specdec_diag.ingest import scan
    from specdec_diag.ingest.scan import iter_files
    from specdec_diag.render.terminal import print_ingest
    from specdec_diag.schema import write_parquet_atomic

    for p in paths:
        if not p.exists() and not p.is_symlink():
            raise fail(f"{p}: no such file or directory")
    total = n_files = 0
    for f, err in iter_files(paths):
        n_files += 1
        if err is None:
            try:
                total += f.stat().st_size
            except OSError:
                pass

    opts = dict(use_cache=not no_cache, refresh=no_cache, cache_dir=cache_dir)
    if progress or (progress is None and err_console.is_terminal
                    and (total >= PROGRESS_MIN_BYTES or n_files >= PROGRESS_MIN_FILES)):
        with Progress(TextColumn("[bold]ingest[/]"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                      TextColumn("{task.description}"), console=err_console, transient=True) as bar:
            task = bar.add_task("", total=total)

            def tick(path: str, done: int, tot: int) -> None:
                bar.update(task, completed=done, total=tot, description=Path(path).name)

            res = scan(paths, **opts, progress=tick)
    else:
        res = scan(paths, **opts)

    print_ingest(res, console)
    table = None
    if runs or out is not None:
        from specdec_diag.analysis.runs import segment

        table = segment(res).table
    if runs:
        from specdec_diag.render.terminal import print_runs

        print_runs(table, console)

    if out is not None:
        try:
            for name in ("windows", "steps", "malformed", "configs", "inputs"):
                write_parquet_atomic(getattr(res, name), out / f"{name}.parquet")
            write_parquet_atomic(table, out / "runs.parquet")
        except OSError as exc:
            raise fail(f"{out}: cannot write output: {exc.strerror or exc}") from None
        console.print(f"wrote {out}/{{windows,steps,malformed,configs,inputs,runs}}.parquet", highlight=False)

    for line in res.errors:
        err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
    for line in res.warnings:
        err_console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    if res.inputs.height and len(res.errors) == res.inputs.height:
        raise fail("nothing readable in " + ", ".join(str(p) for p in paths))
    if res.windows.height == 0 and res.steps.height == 0:
        raise fail("no speculative-decoding records found in " + ", ".join(str(p) for p in paths), ExitCode.NO_DATA)
