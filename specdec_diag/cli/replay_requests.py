"""`specdec-diag replay DIR/requests.jsonl`: production replay of a capture (called by cli/replay.py
when its input is a ``specdec-requests@1`` file). Rendering only; the work is
:func:`specdec_diag.decoder.production_replay.replay_requests`.
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

from specdec_diag.cli._app import console, fail
from specdec_diag.exit_codes import ExitCode


def replay_if_capture(path: Path, *, target: Path | None, device: str, dtype: str | None, z_crit: float,
                      show: int, as_json: bool) -> None:
    """Production-replay ``path`` (a capture's requests.jsonl, or the directory holding it) and exit;
    return without doing anything when it is not a capture (a trace, for cli/replay.py)."""
    from specdec_diag.capture.format import is_requests_file

    cap = path / "requests.jsonl" if path.is_dir() else path
    if is_requests_file(cap):
        replay_capture(cap, target=target, device=device, dtype=dtype or "float32", z_crit=z_crit, show=show,
                       as_json=as_json)


def replay_capture(path: Path, *, target: Path | None, device: str, dtype: str, z_crit: float, show: int,
                   as_json: bool) -> None:
    """Exit 0: every greedy request matches and sampled ones are consistent; 1: divergence or a
    suspect sample; 2: unreadable capture or target; 3: no request with token ids."""
    from specdec_diag.capture.format import RequestsFileError, read_requests

    try:
        rf = read_requests(path)
    except RequestsFileError as exc:
        raise fail(str(exc), ExitCode.USAGE) from None
    try:
        import torch  # noqa: F401  (the decoder extra)
    except ImportError:
        raise fail("replay needs the decoder extra: pip install 'specdec-diag[decoder]'", ExitCode.USAGE) from None
    from transformers.utils import logging as hf_logging

    from specdec_diag.decoder.models import ModelLoadError
    from specdec_diag.decoder.production_replay import replay_requests

    hf_logging.disable_progress_bar()
    try:
        result = replay_requests(rf, target, device=device, dtype=dtype, z_crit=z_crit)
    except (ModelLoadError, ValueError, OSError, RuntimeError) as exc:
        raise fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, ExitCode.USAGE) from None
    t = result["totals"]
    if as_json:
        sys.stdout.write(json.dumps(result, allow_nan=False) + "\n")
    else:
        render(result, show)
    if t["requests"] == t["skipped"]:
        raise typer.Exit(ExitCode.NO_DATA)
    raise typer.Exit(ExitCode.OK if t["verdict"] == "ok" else ExitCode.FAILED)


def _p(x: float) -> str:
    return f"{x:.4f}" if x >= 1e-3 else f"{x:.1e}"


def render(result: dict[str, Any], show: int) -> None:
    t = result["totals"]
    console.print(f"[bold]production replay[/] {result['source']}  [dim]{result['engine']} vs "
                  f"{result['target']} ({result['dtype']})[/]", highlight=False)
    summary = Table(show_header=False, box=None, pad_edge=False)
    summary.add_row("greedy requests", f"{t['greedy']} ({t['greedy_positions']} positions checked)")
    summary.add_row("greedy requests diverging", f"[{'red' if t['greedy_divergent'] else 'green'}]"
                    f"{t['greedy_divergent']}[/] ({t['divergent_positions']} positions)")
    summary.add_row("near-ties (numerics, not counted)", str(t["near_ties"]))
    summary.add_row("sampled requests", f"{t['sampled']} ({t['sampled_suspect']} suspect)")
    if t["pooled_z"] is not None:
        summary.add_row("pooled log-likelihood z", f"{t['pooled_z']:.2f} (|z| > {t['z_crit']} is suspect)")
    if t["skipped"]:
        summary.add_row("skipped", str(t["skipped"]))
    console.print(summary)
    color = {"ok": "green", "divergent": "red", "suspect": "yellow"}[t["verdict"]]
    console.print(f"verdict: [bold {color}]{t['verdict']}[/]")
    div = [r for r in result["requests"] if r.get("verdict") == "divergent"]
    for r in div[:1]:
        d = r["first_divergence"]
        body = Text()
        body.append(f"request {r['index']}, output position {d['position']}\n", style="bold")
        body.append("context: ", style="dim")
        body.append(repr(d["context_text"][-160:]) + "\n")
        body.append("engine:    ", style="dim")
        body.append(f"{d['engine']['id']} {d['engine']['text']!r}  p_target = {_p(d['engine']['p'])}\n", style="red")
        body.append("reference: ", style="dim")
        body.append(f"{d['reference']['id']} {d['reference']['text']!r}  p_target = {_p(d['reference']['p'])}",
                    style="green")
        console.print(Panel(body, title="first divergence", expand=False))
    if not result["requests"]:
        return
    rows = Table(title=f"requests (first {min(show, len(result['requests']))})", title_justify="left")
    for col in ("request", "mode", "positions", "verdict", "first divergence / z"):
        rows.add_column(col)
    for r in result["requests"][:show]:
        if r.get("mode") == "greedy":
            fd = r["first_divergence"]
            detail = "-" if fd is None else (f"pos {fd['position']}: {fd['engine']['id']} vs "
                                             f"{fd['reference']['id']} ({len(r['divergent_positions'])} positions)")
        elif r.get("mode") == "sampled":
            detail = f"z = {r['z']:.2f}" + (f", {len(r['out_of_support'])} out of support" if r["out_of_support"] else "")
        else:
            detail = r.get("reason", "")
        rows.add_row(str(r["index"]), r.get("mode", "-"), str(r.get("positions", "-")), r["verdict"], detail)
    console.print(rows)
