"""Terminal output of the decoder commands with rich: ``decode``'s summary table and ``replay``'s
result and what-if tables. The commands in cli/ only wire arguments to the library and call these."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from specdec_diag.analysis.whatif import WhatIf
    from specdec_diag.decoder.replay.result import ReplayResult
    from specdec_diag.decoder.speculative import GenerateResult


def decode_summary(console: Console, res: GenerateResult, trace: Path | None, parquet: Path | None) -> None:
    """The summary table of a ``decode`` run, then each request's text and the files written."""
    s, h = res.summary, res.header
    mode = h["mode"] + (f" (fault: {h['fault']})" if h.get("fault") else "")
    rule = h["rule"]["name"] + (" [bold yellow]LOSSY[/]" if h["rule"]["lossy"] else " (lossless)")
    t = Table(title=f"specdec-diag decode: {mode}, rule {rule}, gamma policy {h['gamma_policy']['name']}",
              show_lines=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("definition", style="dim")

    def fmt(v, pct=False):
        if v is None:
            return "n/a"
        return f"{100 * v:.1f} %" if pct else f"{v:.3f}" if isinstance(v, float) else str(v)

    t.add_row("tokens/s", fmt(s["tokens_per_s"]), "emitted tokens / wall time (prefill included)")
    t.add_row("acceptance rate", fmt(s["acceptance_rate"], True), "accepted drafts / drafted tokens (bonus excluded)")
    t.add_row("mean acceptance length", fmt(s["mean_acceptance_length"]),
              "1 + accepted / steps: tokens per verify step, bonus included")
    pp = " ".join(f"{x:.2f}" for x in s["per_position_acceptance"]) or "n/a"
    t.add_row("per-position acceptance", pp, "share of steps drafting position j with n >= j")
    t.add_row("steps / drafted / accepted / emitted",
              f"{s['steps']} / {s['draft_tokens']} / {s['accepted_tokens']} / {s['emitted_tokens']}", "counts")
    t.add_row("target forwards", str(s["target_forwards"]), "verifier passes (1 per step when healthy)")
    t.add_row("draft / verify / other ms",
              f"{s['draft_ms_total']:.1f} / {s['verify_ms_total']:.1f} / {s['overhead_ms_total']:.1f}",
              "step time split; prefill excluded")
    t.add_row("wall s", f"{s['wall_s']:.3f}", f"tracing {s['trace_ms_total']:.1f} ms")
    console.print(t)
    for o in s["outputs"]:
        console.print(f"[bold]request {o['request']}[/] ({len(o['token_ids'])} tokens, {o['finished_by']}): "
                      + escape(o["text"]), highlight=False, soft_wrap=True)
    if trace:
        console.print(f"trace: {trace}")
    if parquet:
        console.print(f"parquet: {parquet}")


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def replay_result(console: Console, r: ReplayResult, show: int, kinds_meaning: dict[str, tuple[str, ...]]) -> None:
    """A ``replay`` result: counts, the first divergence in context, divergences by kind and the first
    ``show`` of them; ``kinds_meaning`` is the decoder's ``KINDS`` (kind -> (.., code, meaning))."""
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
            kinds.add_row(k, kinds_meaning[k][1], str(cnt), kinds_meaning[k][2])
        console.print(kinds)
        lst = Table(title=f"first {min(show, len(r.divergences))} of {len(r.divergences)} divergences",
                    title_justify="left")
        for col in ("step", "pos", "kind", "recorded", "reference", "message"):
            lst.add_column(col)
        for d in r.divergences[:show]:
            lst.add_row(_fmt(d.step), _fmt(d.position), d.kind, _fmt(d.recorded), _fmt(d.reference), d.message)
        console.print(lst)


def what_if_table(console: Console, w: WhatIf | None) -> None:
    """The what-if over gamma (analysis.whatif.WhatIf), or a note for a baseline trace."""
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
