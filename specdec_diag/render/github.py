"""GitHub Actions output for ``check``: workflow-command annotations (shown on the files and lines
of the findings) and the Markdown step summary."""

from __future__ import annotations

import os
from typing import Any

from specdec_diag.analysis.gate import GateResult
from specdec_diag.exit_codes import ExitCode
from specdec_diag.render.fleet import ordered_runs
from specdec_diag.render.text import fmt_check

#: GitHub caps the step summary at 1 MiB
STEP_SUMMARY_LIMIT = 1_000_000


def _esc_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _esc_prop(s: str) -> str:
    return _esc_data(s).replace(":", "%3A").replace(",", "%2C")


def github_annotations(gate: GateResult, limit: int = 50) -> list[str]:
    """GitHub workflow commands: one per finding location (error/warning/notice by severity) and one
    ``::error`` per failed gate check. Capped: GitHub shows only a few per step anyway."""
    cmd = {"error": "error", "warning": "warning", "info": "notice"}
    out = []
    for c in gate.checks:
        if c.status == "fail":
            out.append(f"::error title={_esc_prop('specdec-diag check ' + c.name)}::{_esc_data(c.message)}")
    for f in gate.report["findings"]:
        for loc in f.get("locations") or []:
            props = [f"file={_esc_prop(str(loc.get('path')))}"]
            if loc.get("line") is not None:
                props.append(f"line={int(loc['line'])}")
            props.append(f"title={_esc_prop(f['code'])}")
            run = f"[{f['run']}] " if f.get("run") else ""
            out.append(f"::{cmd.get(f['severity'], 'notice')} {','.join(props)}::"
                       f"{_esc_data(run + f['title'] + ' — ' + (f.get('recommendation') or ''))}")
    return out[:limit]


def step_summary_markdown(gate: GateResult) -> str:
    """Markdown for $GITHUB_STEP_SUMMARY: the verdict, the checks, the key numbers and the findings."""
    icon = {"pass": "✅", "fail": "❌", "insufficient": "⚠️"}
    verdict = {ExitCode.OK: "passed", ExitCode.FAILED: "FAILED", ExitCode.NO_DATA: "not enough data"}[gate.exit_code]
    lines = [f"## specdec-diag check: {verdict}", "", "| check | status | detail |", "|---|---|---|"]
    for c in gate.checks:
        lines.append(f"| {c.name} | {icon[c.status]} {c.status} | {c.message.replace('|', '/')} |")
    lines += ["", "| run | status | engine | k | acceptance rate | MAL |", "|---|---|---|---|---|---|"]
    for r in ordered_runs(gate.report)[:50]:
        s = r.get("summary") or {}
        cells = [r["id"], r.get("status"), r.get("engine"), r.get("k"), s.get("acceptance_rate"),
                 s.get("mean_acceptance_length")]
        lines.append("| " + " | ".join(fmt_check(v).replace("|", "/") if v is not None else "-" for v in cells) + " |")
    fs = gate.report["findings"]
    if fs:
        lines += ["", "| severity | code | run | title |", "|---|---|---|---|"]
        for f in fs[:30]:
            lines.append(f"| {f['severity']} | `{f['code']}` | {f.get('run', '-')} | {f['title'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def emit_github(gate: GateResult, echo: Any = print, env: dict[str, str] | None = None) -> bool:
    """When running under GitHub Actions, print annotations and append the step summary."""
    env = dict(os.environ) if env is None else env
    if env.get("GITHUB_ACTIONS") != "true":
        return False
    for line in github_annotations(gate):
        echo(line)
    path = env.get("GITHUB_STEP_SUMMARY")
    if path:
        text = step_summary_markdown(gate)
        if len(text.encode()) < STEP_SUMMARY_LIMIT:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(text)
    return True


__all__ = ["github_annotations", "step_summary_markdown", "emit_github"]
