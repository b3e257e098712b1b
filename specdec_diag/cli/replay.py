"""`specdec-diag replay`: re-verify a trace with the reference models and predict other gammas.

Thin: argument parsing and rendering only. The checks are
:func:`specdec_diag.decoder.replay.replay_trace`; the what-if over gamma is
:func:`specdec_diag.analysis.whatif.what_if`, computed once here. torch is imported inside the command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from specdec_diag.cli._app import app, console, err_console, fail
from specdec_diag.exit_codes import ExitCode
from specdec_diag.render.replay_terminal import replay_result, what_if_table


@app.command()
def replay(
    trace: Path = typer.Argument(..., help="Trace file (specdec-trace@1 JSONL, .gz ok) written by `decode`, "
                                 "or a capture's requests.jsonl (production replay)."),
    target: Path | None = typer.Option(None, "--target", help="Target model dir (default: the header's path "
                                       "if present here, else the bundled pair)."),
    draft: Path | None = typer.Option(None, "--draft", help="Draft model dir (same default)."),
    baseline: Path | None = typer.Option(None, "--baseline", help="A baseline-mode trace of the same prompts: "
                                         "its ms/token is the what-if speed-up's denominator."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    dtype: str | None = typer.Option(None, help="float32|float16|bfloat16 (default: the trace's)."),
    no_draft: bool = typer.Option(False, "--no-draft", help="Trust the recorded q instead of re-running the "
                                  "draft (faster, weaker sampling checks)."),
    max_gamma: int | None = typer.Option(None, "--max-gamma", help="What-if up to this gamma (default 2x used)."),
    z_crit: float = typer.Option(4.0, "--z", help="|z| above which the acceptance-count test (sampling "
                                 "traces without uniforms) counts as a divergence."),
    show: int = typer.Option(10, "--show", help="Divergences to list in the terminal."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (specdec-diag/replay@1)."),
) -> None:
    """Re-run the reference verifier on every recorded step (one batched target forward per step) and
    report where decisions, tokens or step structure disagree; then a what-if table over gamma.

    Exit 0: no divergence; 1: divergence found; 2: unreadable trace or unusable models; 3: no steps."""
    from specdec_diag.cli.replay_requests import replay_if_capture  # requests.jsonl: production replay

    replay_if_capture(trace, target=target, device=device, dtype=dtype, z_crit=z_crit, show=show, as_json=as_json)
    from specdec_diag.schema import TraceError, read_trace

    try:
        tr = read_trace(trace)
        base = read_trace(baseline) if baseline is not None else None
    except TraceError as exc:
        raise fail(str(exc), ExitCode.USAGE) from None
    for t in (tr, base):  # a crashed run's cut line, gzip damage: the records before it are replayed
        for no, why in (t.dropped if t is not None else []):
            err_console.print(f"[yellow]warning:[/] {t.path}:{no}: {why}", highlight=False, soft_wrap=True)
    if not tr.steps:
        raise fail(f"{trace}: trace has no steps to replay", ExitCode.NO_DATA)
    try:
        import torch  # noqa: F401  (the decoder extra)
    except ImportError:
        raise fail("replay needs the decoder extra: pip install 'specdec-diag[decoder]'", ExitCode.USAGE) from None
    from transformers.utils import logging as hf_logging

    from specdec_diag.analysis.whatif import what_if
    from specdec_diag.decoder.models import ModelLoadError
    from specdec_diag.decoder.replay import replay_trace
    from specdec_diag.decoder.tracing import clean

    hf_logging.disable_progress_bar()  # keep the terminal (and --json stdout) clean
    try:
        if as_json or not sys.stderr.isatty():
            result = replay_trace(tr, target=target, draft=draft, device=device, dtype=dtype,
                                  use_draft=not no_draft, z_crit=z_crit)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          transient=True, console=console) as prog:
                task = prog.add_task("replay", total=len(tr.steps))
                result = replay_trace(tr, target=target, draft=draft, device=device, dtype=dtype,
                                      use_draft=not no_draft, z_crit=z_crit,
                                      progress=lambda i, n: prog.update(task, completed=i))
    except TraceError as exc:
        raise fail(str(exc), ExitCode.USAGE) from None
    except (ModelLoadError, ValueError, OSError, RuntimeError) as exc:
        raise fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, ExitCode.USAGE) from None
    wi = what_if(tr.steps, base.steps if base else None, max_gamma=max_gamma)
    if as_json:
        doc = {**result.to_dict(), "what_if": clean(wi.to_dict()) if wi else None}
        sys.stdout.write(json.dumps(doc, default=str, allow_nan=False) + "\n")
    else:
        from specdec_diag.decoder.replay import KINDS

        replay_result(console, result, show, KINDS)
        what_if_table(console, wi)
    raise typer.Exit(ExitCode.FAILED if result.diverged else ExitCode.OK)
