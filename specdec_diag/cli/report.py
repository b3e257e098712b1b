"""`specdec-diag report PATH...`: ingest logs and traces, cut them into runs, diagnose each run,
compare runs, render the report (report@2, docs/report.md).

Progress and errors go to stderr, the report to stdout (or --out), so json/junit/markdown can be
piped. Exit codes: 0 ok, 2 missing or unreadable input / bad config, 3 no speculative-decoding data.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from specdec_diag.cli._app import app, console, err_console, fail
from specdec_diag.exit_codes import ExitCode
from specdec_diag.render import FORMATS

if TYPE_CHECKING:  # the library is imported inside the commands: `specdec-diag --help` stays instant
    from specdec_diag.analysis.rules import Thresholds
    from specdec_diag.ingest.base import IngestResult

DEFAULT_CONFIG = "specdec-check.toml"


def find_config(config: Path | None) -> Path | None:
    """--config, else ./specdec-check.toml when present (like ruff's pyproject discovery)."""
    if config is not None:
        if not config.is_file():
            raise fail(f"{config}: config file not found")
        return config
    default = Path(DEFAULT_CONFIG)
    return default if default.is_file() else None


def load_thresholds(config: Path | None) -> Thresholds | None:
    """The rules' thresholds from the config's [thresholds] table (defaults without a config)."""
    if config is None:
        return None
    from specdec_diag.analysis.rules import Thresholds

    try:
        return Thresholds.from_toml(config)
    except ValueError as exc:
        raise fail(str(exc)) from None


def workers_option() -> Any:
    return typer.Option(None, "--workers", "-j", min=1, help="Processes scanning in parallel (default: every "
                        "core; inputs under 64 MB are scanned in this process). Same tables whatever the count.")


def executor_option() -> Any:
    return typer.Option("local", "--executor", help="local | ray | ray:ADDRESS (Ray tasks on a cluster, "
                        "pip install 'specdec-diag[scale]'; docs/scale.md).")


def check_paths(paths: list[Path]) -> None:
    """A missing local PATH is a usage error (exit 2) before any work is done; URLs are not checked here."""
    from specdec_diag.api import as_input

    for p in paths:
        if isinstance(as_input(p), str):
            continue
        if not p.exists() and not p.is_symlink():  # a link loop or dangling link: the scan names it
            raise fail(f"{p}: no such file or directory")


def load_inputs(paths: list[Path], no_cache: bool, workers: int | None = None,
                executor: str | None = None) -> IngestResult:
    """Scan PATHs (files, directories, fsspec URLs, ``ingest --out`` datasets; .gz transparently) with
    a progress bar on a terminal, on ``workers`` processes or a Ray cluster (``executor``).
    ``no_cache`` re-parses every file and rewrites its cache entry. Inputs that could not be read,
    and inputs read only up to damage, are printed as ``error:`` / ``warning:`` lines (see
    :func:`print_input_problems`)."""
    check_paths(paths)
    from specdec_diag.api import load

    opts: dict[str, Any] = {"use_cache": True, "refresh": no_cache, "workers": workers, "executor": executor}
    try:
        if not err_console.is_terminal:
            result = load(paths, **opts)
        else:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

            with Progress(TextColumn("ingest"), BarColumn(), DownloadColumn(), TextColumn("{task.description}"),
                          console=err_console, transient=True) as bar:
                task = bar.add_task("", total=None)

                def progress(path: str, done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total or None, description=Path(path).name)

                result = load(paths, **opts, progress=progress)
    except (ValueError, RuntimeError) as exc:  # a bad --executor / --workers, Ray missing or unreachable
        raise fail(str(exc)) from None
    print_input_problems(result)
    return result


def print_input_problems(result: IngestResult) -> None:
    """``error: path: message`` per unreadable input, ``warning: path: message`` per input read only
    up to damage (its records before the damage are kept): the same lines in every command."""
    for line in result.errors:
        err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
    for line in result.warnings:
        err_console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)


def run_cache_dir(paths: list[Path], no_cache: bool) -> Path | None:
    """Where each run's summary and findings are kept (analysis/run_cache.py): the ingest cache's
    directory (``$SPECDEC_CACHE_DIR``, else ``.specdec-cache/`` of the first local PATH, ...), so a
    fleet in which one file changed is judged again only where its rows changed; None when nothing is
    writable. ``no_cache`` keeps the directory: every run is judged and its entry rewritten."""
    from specdec_diag.api import as_input
    from specdec_diag.ingest.scan import default_cache_dir

    return default_cache_dir([p for p in paths if not isinstance(as_input(p), str)])


def write_output(text: str, out: Path | None) -> None:
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        raise fail(f"{out}: cannot write ({exc.strerror})") from None
    err_console.print(f"wrote {out} ({len(text.encode()) / 1024:.0f} KiB)", highlight=False)


@app.command()
def report(
    paths: list[Path] = typer.Argument(..., help="Log files, traces or directories (recursive; .gz read transparently)."),
    format: str = typer.Option("terminal", "--format", "-f", help=" | ".join(FORMATS)),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the report to this file instead of stdout."),
    config: Path | None = typer.Option(None, "--config", "-c",
                                         help="TOML with a [thresholds] table (default: ./specdec-check.toml)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Re-parse every file and judge every run again, "
                                  "rewriting their cache entries."),
    windows: bool = typer.Option(False, "--windows",
                                 help="Include every run's window rows in the report (json/html; large)."),
    workers: int | None = workers_option(),
    executor: str = executor_option(),
) -> None:
    """Diagnose speculative decoding in logs and traces, run by run: a fleet table (worst first), the
    comparisons between runs, each run's metrics and ranked findings, charts (html)."""
    from specdec_diag.analysis.report import build_report, has_data
    from specdec_diag.render import render

    if format not in FORMATS:
        raise fail(f"unknown --format {format!r}; choose one of {', '.join(FORMATS)}")
    thresholds = load_thresholds(find_config(config))
    result = load_inputs(paths, no_cache, workers, executor)
    errors = result.errors
    rep = build_report(result, thresholds, windows=windows, cache_dir=run_cache_dir(paths, no_cache),
                       refresh=no_cache)
    if format == "terminal" and out is None:
        render(rep, "terminal", console)
    elif format == "terminal":
        import io

        from rich.console import Console

        buf = Console(record=True, width=120, file=io.StringIO())
        render(rep, "terminal", buf)
        write_output(buf.export_text(), out)
    else:
        write_output(render(rep, format) or "", out)
    if errors:
        raise typer.Exit(ExitCode.USAGE)
    if not has_data(rep):
        err_console.print(f"no speculative-decoding records found in {', '.join(map(str, paths))}: "
                          "need metrics lines with drafts (vLLM SpecDecoding, SGLang accept len, ...) "
                          "or trace steps", highlight=False, soft_wrap=True)
        raise typer.Exit(ExitCode.NO_DATA)
