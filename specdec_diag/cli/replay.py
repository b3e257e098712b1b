"""`specdec-diag replay`: re-verify a trace with the reference models and predict other gammas.

Thin: argument parsing and rendering only. The checks are
:func:`specdec_diag.decoder.replay.replay_trace`; the what-if over gamma is
:func:`specdec_diag.analysis.whatif.what_if`, computed once here. torch is imported inside the command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from specdec_diag.cli._app import EXIT_CHECK_FAILED, EXIT_NO_DATA, EXIT_OK, EXIT_USAGE, app, console, fail


@app.command()
def replay(
    trace: Path = typer.Argument(..., help="Trace file (specdec-trace@1 JSONL, .gz ok) written by `decode`."),
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
    from specdec_diag.schema import TraceError, read_trace

    try:
        tr = read_trace(trace)
        base = read_trace(baseline) if baseline is not None else None
    except TraceError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    if not tr.steps:
        raise fail(f"{trace}: trace has no steps to replay", EXIT_NO_DATA)
    try:
        import torch  # noqa: F401  (the decoder extra)
    except ImportError:
        raise fail("replay needs the decoder extra: pip install 'specdec-diag[decoder]'", EXIT_USAGE) from None
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
        raise fail(str(exc), EXIT_USAGE) from None
    except (ModelLoadError, ValueError, OSError, RuntimeError) as exc:
        raise fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, EXIT_USAGE) from None
    wi = what_if(tr.steps, base.steps if base else None, max_gamma=max_gamma)
    if as_json:
        doc = {**result.to_dict(), "what_if": clean(wi.to_dict()) if wi else None}
        sys.stdout.write(json.dumps(doc, default=str, allow_nan=False) + "\n")
    else:
        _render(result, show)
        _render_what_if(wi)
    raise typer.Exit(EXIT_CHECK_FAILED if result.diverged else EXIT_OK)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _render(r: Any, show: int) -> None:
    from specdec_diag.decoder.replay import KINDS

    console.print(f"[bold]replay[/] {r.path}  [dim]{r.mode}[/]", highlight=False)
    for w in r.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    counts = Table(show_header=False, box=None, pad_edge=False)
    counts.add_row("steps checked", f"{r.steps_checked} / {r.steps_total}")
    counts.add_row("agreeing", str(r.steps_agreeing))
    counts.add_row("diverging", f"[{'red' if r.steps_diverging else 'green'}]{r.steps_diverging}[/]")
    counts.add_row("near-ties (numerics, not counted)", str(r.near_ties))
    st = r.statistics
    counts.add_row("max |p recorded - p reference|", f"{st['max_abs_p_error']:.2e}")
    if st.get("max_abs_q_error") is not None:
        counts.add_row("max |q recorded - q reference|", f"{st['max_abs_q_error']:.2e}")
    at = st.get("acceptance_test")
    if at:
        counts.add_row("acceptance test (no uniforms)", f"{int(at['accepted'])} accepted of {at['trials']} tested, "
                       f"expected {at['expected']:.1f}, z = {at['z']:.2f}, p = {at['p_value']:.2g}")
    console.print(counts)
    if not r.diverged:
        console.print("[bold green]no divergence[/]: every step agrees with the reference verifier")
    else:
        console.print(f"[bold red]divergence[/]: {', '.join(r.codes)}", highlight=False)
        if r.first is not None:
            d = r.first
            where = f"step {d.step}" if d.step is not None else "whole run"
            if d.request is not None:
                where += f" (request {d.request}"
                where += f", trace line {d.line})" if d.line else ")"
            body = Text()
            body.append(f"{where}, position {_fmt(d.position)}: {d.kind} [{d.code}]\n", style="bold")
            body.append(d.message)
            c = r.first_context
            if c and (c.get("recorded_token") is not None or c.get("reference_token") is not None):
                body.append("\ncontext: ", style="dim")
                body.append(repr(c["before_text"][-160:]) + "\n")
                body.append("recorded:  ", style="dim")
                body.append(f"{c['recorded_token']} {c['recorded_text']!r}\n", style="red")
                body.append("reference: ", style="dim")
                body.append(f"{c['reference_token']} {c['reference_text']!r}", style="green")
            console.print(Panel(body, title="first divergence", expand=False))
        kinds = Table(title="divergences by kind", title_justify="left")
        for col in ("kind", "code", "steps", "meaning"):
            kinds.add_column(col)
        for k, cnt in sorted(r.by_kind.items(), key=lambda kv: -kv[1]):
            kinds.add_row(k, KINDS[k][1], str(cnt), KINDS[k][2])
        console.print(kinds)
        lst = Table(title=f"first {min(show, len(r.divergences))} of {len(r.divergences)} divergences",
                    title_justify="left")
        for col in ("step", "pos", "kind", "recorded", "reference", "message"):
            lst.add_column(col)
        for d in r.divergences[:show]:
            lst.add_row(_fmt(d.step), _fmt(d.position), d.kind, _fmt(d.recorded), _fmt(d.reference), d.message)
        console.print(lst)


def _render_what_if(w: Any) -> None:
    if w is None:
        console.print("[dim]what-if: no speculative steps (baseline trace)[/]")
        return
    rates = ", ".join("-" if x is None else f"{x:.2f}" for x in w.conditional_rates)
    console.print(f"\n[bold]what-if over gamma[/]  alpha (MLE) = {_fmt(w.alpha_mle)}; conditional acceptance "
                  f"by position = [{rates}]; draft {w.draft_ms_per_token:.2f} ms/token, verify "
                  f"{w.verify_ms_intercept:.2f} + {w.verify_ms_per_token:.2f}*gamma ms, overhead "
                  f"{w.overhead_ms:.2f} ms, c = {_fmt(w.c)}; T_ar = {w.t_ar_ms:.2f} ms ({w.t_ar_source}); "
                  f"verify / T_ar = {_fmt(w.verify_over_ar, 2)}",
                  highlight=False)
    t = Table()
    for col in ("gamma", "tokens/step", "step ms", "ms/token", "speed-up", "Leviathan S(alpha,gamma,c)"):
        t.add_column(col, justify="right")
    for row in w.rows:
        style = "bold" if row.used else ("green" if row.gamma == w.best_gamma else None)
        mark = " (used)" if row.used else (" (best)" if row.gamma == w.best_gamma else "")
        t.add_row(f"{row.gamma}{mark}", _fmt(row.tokens_per_step, 2), _fmt(row.step_ms, 2),
                  _fmt(row.ms_per_token, 2), _fmt(row.speedup, 2), _fmt(row.leviathan_speedup, 2), style=style)
    console.print(t)
    if w.measured_speedup is not None:
        console.print(f"measured: {w.measured_tokens_per_step:.2f} tokens/step, speed-up vs baseline "
                      f"{w.measured_speedup:.2f}x", highlight=False)
