"""`specdec-diag check PATH...`: the CI gate.

Each run (docs/runs.md) is judged on its own: floors on acceptance rate and MAL, a noise-aware
comparison with the baseline report's runs of the same engine, method and k, and failure on error
findings; every failure names its run, and ``--select`` limits the gate to runs matching a glob. Exit 0 pass, 1 gate failed, 2 usage / unreadable input, 3 not enough data to judge
(the message says how much was needed). Settings come from the [check] table of specdec-check.toml;
flags override it. Under GitHub Actions it also prints annotations and writes the step summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from specdec_diag.cli._app import app, console, err_console, fail
from specdec_diag.cli.report import (
    executor_option,
    find_config,
    load_inputs,
    run_cache_dir,
    workers_option,
    write_output,
)
from specdec_diag.exit_codes import ExitCode

if TYPE_CHECKING:  # the library is imported inside the command: `specdec-diag --help` stays instant
    from specdec_diag.analysis.gate import GateConfig
    from specdec_diag.analysis.rules import Thresholds


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
    no_cache: bool = typer.Option(False, "--no-cache", help="Re-parse every file and judge every run again, "
                                  "rewriting their cache entries."),
    select: str | None = typer.Option(None, "--select", help="Judge only the runs whose id matches this glob "
                                      "(e.g. 'host-b/*' or '*#vllm*'); ids are listed by `report`."),
    workers: int | None = workers_option(),
    executor: str = executor_option(),
) -> None:
    """Gate CI on speculative-decoding acceptance, run by run: thresholds, a baseline matched by
    engine + method + k, and error findings; a failure names its run."""
    from specdec_diag.analysis import gate
    from specdec_diag.render.github import emit_github
    from specdec_diag.render.json_report import render_json
    from specdec_diag.render.junit import render_gate_junit
    from specdec_diag.render.terminal import print_check

    flags = {"min_acceptance": min_acceptance, "min_mal": min_mal, "max_drop": max_drop, "fail_on": fail_on,
             "baseline": str(baseline) if baseline else None, "junit": str(junit) if junit else None}
    cfg, thresholds, base = _settings(find_config(config), flags)
    result = load_inputs(paths, no_cache, workers, executor)
    errors = result.errors
    from specdec_diag.analysis.report import build_report

    # each run judged once and kept in the run cache beside the ingest cache (as `report`)
    rep = build_report(result, thresholds, windows=write_report is not None,
                       cache_dir=run_cache_dir(paths, no_cache), refresh=no_cache)
    try:
        outcome = gate.run_gate(result, cfg, thresholds, base, report=rep, select=select,
                                windows=write_report is not None)
    except gate.GateError as exc:
        raise fail(str(exc)) from None

    print_check(outcome, console)
    if cfg.junit:
        write_output(render_gate_junit(outcome, cfg.fail_on), Path(cfg.junit))
    if write_report:
        write_output(render_json(outcome.report), write_report)
    emit_github(outcome, echo=typer.echo)
    if errors:
        raise typer.Exit(ExitCode.USAGE)
    code = outcome.exit_code
    if code == ExitCode.NO_DATA:
        err_console.print(f"not enough data in {', '.join(map(str, paths))}: {gate.insufficient_note(outcome.checks)}",
                          highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _settings(cfg_path: Path | None, flags: dict[str, Any]
              ) -> tuple[GateConfig, Thresholds | None, dict[str, Any] | None]:
    """The gate config ([check] of the config file, overridden by the flags that were given), the
    rules' thresholds and the loaded baseline report; a bad value is a usage error (exit 2)."""
    from specdec_diag.analysis import gate
    from specdec_diag.analysis.rules import Thresholds

    values: dict[str, Any] = {}
    thresholds = None
    try:
        if cfg_path is not None:
            values, th_table = gate.load_config(cfg_path)
            if th_table:
                thresholds = Thresholds().with_overrides(th_table, where=str(cfg_path))
        values.update({k: v for k, v in flags.items() if v is not None})
        cfg = gate.GateConfig(**values).validate("check" if cfg_path is None else str(cfg_path))
        base = gate.load_baseline(cfg.baseline) if cfg.baseline else None
    except (gate.GateError, ValueError) as exc:
        raise fail(str(exc)) from None
    return cfg, thresholds, base


__all__ = ["check"]
