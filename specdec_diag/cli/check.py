"""`specdec-diag check PATH...`: the CI gate.

Floors on acceptance rate and MAL, a noise-aware comparison with a baseline report, and failure on
error findings. Exit 0 pass, 1 gate failed, 2 usage / unreadable input, 3 not enough data to judge
(the message says how much was needed). Settings come from the [check] table of specdec-check.toml;
flags override it. Under GitHub Actions it also prints annotations and writes the step summary.
"""

from __future__ import annotations

from pathlib import Path

import typer

from specdec_diag.cli._app import EXIT_USAGE, app, console, err_console, fail
from specdec_diag.cli.report import find_config, input_errors, load_inputs, write_output


@app.command()
def check(
    paths: list[Path] = typer.Argument(..., help="Log files, traces or directories of the run to judge."),
    min_acceptance: float | None = typer.Option(None, "--min-acceptance",
                                                help="Fail below this acceptance rate (fraction, bonus excluded)."),
    min_mal: float | None = typer.Option(None, "--min-mal", help="Fail below this mean acceptance length."),
    baseline: Path | None = typer.Option(None, "--baseline", help="Previous report JSON to compare against."),
    max_drop: float | None = typer.Option(None, "--max-drop",
                                          help="Tolerated acceptance-rate drop vs the baseline (fraction; "
                                          "default 0.03)."),
    config: Path | None = typer.Option(None, "--config", "-c",
                                         help="TOML with [check] and [thresholds] (default: ./specdec-check.toml)."),
    junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML here."),
    fail_on: str | None = typer.Option(None, "--fail-on", help="error | warning | never (default error)."),
    write_report: Path | None = typer.Option(None, "--write-report",
                                             help="Also save the report JSON (the next run's baseline)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Re-parse everything; ignore the Parquet cache."),
) -> None:
    """Gate CI on speculative-decoding acceptance: thresholds, a baseline, and error findings."""
    from specdec_diag.analysis import gate
    from specdec_diag.analysis.report import render_json, render_junit

    cfg_path = find_config(config)
    values: dict = {}
    thresholds = None
    try:
        if cfg_path is not None:
            values, th_table = gate.load_config(cfg_path)
            if th_table:
                from specdec_diag.analysis.rules import Thresholds

                thresholds = Thresholds().with_overrides(th_table, where=str(cfg_path))
        flags = {"min_acceptance": min_acceptance, "min_mal": min_mal, "max_drop": max_drop, "fail_on": fail_on,
                 "baseline": str(baseline) if baseline else None, "junit": str(junit) if junit else None}
        values.update({k: v for k, v in flags.items() if v is not None})
        cfg = gate.GateConfig(**values).validate("check" if cfg_path is None else str(cfg_path))
        base = gate.load_baseline(cfg.baseline) if cfg.baseline else None
    except (gate.GateError, ValueError) as exc:
        raise fail(str(exc)) from None

    result = load_inputs(paths, no_cache)
    errors = input_errors(result)
    for line in errors:
        err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
    outcome = gate.run_gate(result, cfg, thresholds, base)

    _print(outcome, cfg)
    if cfg.junit:
        cases = [c.junit_case() for c in outcome.checks if c.name != "findings"]
        failing = {"error": ("error",), "warning": ("error", "warning"), "never": ()}[cfg.fail_on]
        write_output(render_junit(outcome.report, cases, suite="specdec-diag check", fail_severities=failing),
                     Path(cfg.junit))
    if write_report:
        write_output(render_json(outcome.report), write_report)
    gate.emit_github(outcome, echo=typer.echo)
    if errors:
        raise typer.Exit(EXIT_USAGE)
    code = outcome.exit_code
    if code == gate.EXIT_NO_DATA:
        err_console.print(f"not enough data: {gate.insufficient_note(outcome.checks)}", highlight=False,
                          soft_wrap=True)
    raise typer.Exit(code)


def _print(outcome, cfg) -> None:
    from rich.table import Table
    from rich.text import Text

    style = {"pass": "green", "fail": "bold red", "insufficient": "yellow"}
    t = Table(title="specdec-diag check", title_justify="left", show_edge=False)
    t.add_column("check", style="bold")
    t.add_column("status")
    t.add_column("detail", overflow="fold")
    for c in outcome.checks:
        t.add_row(c.name, Text(c.status, style=style[c.status]), c.message)
    console.print(t)
    shown = [f for f in outcome.report["findings"] if f["severity"] in ("error", "warning")]
    for f in shown[:20]:
        loc = (f.get("locations") or [{}])[0]
        where = f" ({loc.get('path')}:{loc.get('line')})" if loc.get("path") else ""
        console.print(Text(f"  {f['severity'].upper():<7} {f['code']}: {f['title']}{where}",
                           style="red" if f["severity"] == "error" else "yellow"), overflow="fold")
    verdict = {0: ("PASSED", "bold green"), 1: ("FAILED", "bold red"), 3: ("NOT ENOUGH DATA", "bold yellow")}
    text, st = verdict[outcome.exit_code]
    console.print(Text(text, style=st))


__all__ = ["check"]
