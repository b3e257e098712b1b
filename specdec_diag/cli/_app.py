"""The typer application every command module registers on. Kept separate so command modules can
import it without importing each other."""

from __future__ import annotations

import typer
from rich.console import Console

from specdec_diag.exit_codes import ExitCode

# Names kept for cli/decode.py and cli/replay.py until they import ExitCode themselves; the codes
# are defined once, in specdec_diag.exit_codes.ExitCode (docs/architecture.md §4).
EXIT_OK = ExitCode.OK
EXIT_CHECK_FAILED = ExitCode.FAILED
EXIT_USAGE = ExitCode.USAGE
EXIT_NO_DATA = ExitCode.NO_DATA

app = typer.Typer(
    name="specdec-diag",
    help="Diagnose speculative decoding: decode with a traced reference decoder, ingest engine logs, "
    "report findings, gate CI on acceptance, and browse it all in a dashboard.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = ExitCode.USAGE) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)
