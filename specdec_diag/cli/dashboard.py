"""`specdec-diag dashboard LOGDIR`: serve the Streamlit dashboard over a log directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from specdec_diag.cli._app import app, console, fail
from specdec_diag.exit_codes import ExitCode


def streamlit_command(app_path: Path, host: str, port: int) -> list[str]:
    """The `streamlit run` command line: headless, no usage statistics, bound to ``host``."""
    return [sys.executable, "-m", "streamlit", "run", str(app_path),
            "--server.headless", "true",
            "--server.address", host,
            "--server.port", str(port),
            "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none",
            "--client.toolbarMode", "minimal",
            "--global.showWarningOnDirectExecution", "false"]


@app.command()
def dashboard(
    logdir: Path = typer.Argument(..., help="Directory of logs and traces to browse (the dashboard can open it "
                                  "and anything below it, nothing above)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; the default keeps it on this machine."),
    port: int = typer.Option(8501, help="Port to serve on."),
) -> None:
    """Browse a log directory in the dashboard (Overview, Acceptance, Bottlenecks, Findings, Trace explorer,
    Compare)."""
    if not logdir.exists():
        raise fail(f"{logdir}: no such directory", ExitCode.USAGE)
    if not logdir.is_dir():
        raise fail(f"{logdir}: not a directory (the dashboard opens a directory of logs)", ExitCode.USAGE)
    if not 0 < port < 65536:
        raise fail(f"--port {port}: not a valid port", ExitCode.USAGE)
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise fail("streamlit is not installed (pip install specdec-diag)", ExitCode.USAGE) from None
    from specdec_diag.dashboard_app import APP_PATH, ROOT_ENV

    env = dict(os.environ)
    env[ROOT_ENV] = str(logdir.resolve())
    env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    shown = "127.0.0.1" if host == "0.0.0.0" else host
    console.print(f"specdec-diag dashboard on [bold]http://{shown}:{port}[/] serving {logdir.resolve()} "
                  "(Ctrl+C to stop)", highlight=False)
    try:
        rc = subprocess.call(streamlit_command(APP_PATH, host, port), env=env)
    except KeyboardInterrupt:
        rc = ExitCode.OK
    raise typer.Exit(rc)
