"""`specdec-diag decode`: run the traced reference decoder (speculative or baseline) and write a trace."""

from __future__ import annotations

from pathlib import Path

import typer

from specdec_diag.cli._app import EXIT_USAGE, app, console, fail


def _read_prompts(prompt: list[str], prompts_file: Path | None) -> list[str]:
    out = list(prompt or [])
    if prompts_file is not None:
        try:
            lines = prompts_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise fail(f"{prompts_file}: cannot read prompts file ({exc.strerror})") from None
        out += [ln for ln in lines if ln.strip()]
    return out


@app.command()
def decode(
    prompt: list[str] = typer.Option(None, "--prompt", "-p", help="Prompt text (repeatable)."),
    prompts_file: Path = typer.Option(None, "--prompts-file", help="One prompt per line."),
    target: Path = typer.Option(None, "--target", help="Target model dir (default: bundled pair)."),
    draft: Path = typer.Option(None, "--draft", help="Draft model dir (default: bundled pair)."),
    gamma: int = typer.Option(4, "--gamma", "-k", min=0, help="Draft length (max for heuristic/confidence)."),
    rule: str = typer.Option("greedy", "--rule", help="greedy | sampling | lenient (lossy) | typical (lossy)."),
    lenience: float = typer.Option(0.5, "--lenience", help="lenient rule: l in (0, 1]."),
    epsilon: float = typer.Option(0.09, "--epsilon", help="typical rule: posterior threshold."),
    delta: float = typer.Option(0.3, "--delta", help="typical rule: entropy factor."),
    policy: str = typer.Option("constant", "--policy", help="constant | heuristic | confidence."),
    threshold: float = typer.Option(0.4, "--threshold", help="confidence policy: draft stop threshold."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature (sampling rules)."),
    top_k: int = typer.Option(0, "--top-k", min=0, help="Top-k filter, 0 = off."),
    top_p: float = typer.Option(1.0, "--top-p", help="Top-p filter, 1 = off."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", "-n", min=1),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 | float16 | bfloat16."),
    baseline: bool = typer.Option(False, "--baseline", help="Plain autoregressive decoding, same tracing."),
    fault: str = typer.Option(None, "--fault", help="Inject a known engine bug (see docs/decoder.md)."),
    after_step: int = typer.Option(None, "--fault-after-step", help="nan-verifier: first NaN step."),
    trace: Path = typer.Option(None, "--trace", "-o", help="Write the trace (JSONL) here."),
    parquet: Path = typer.Option(None, "--parquet", help="Also export the steps as Parquet."),
    no_eos: bool = typer.Option(False, "--ignore-eos", help="Do not stop at EOS."),
) -> None:
    """Decode prompts with a traced speculative (or baseline) decoder and summarise acceptance."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from specdec_diag.decoder.faults import Fault
    from specdec_diag.decoder.models import ModelLoadError, load_pair
    from specdec_diag.decoder.speculative import DecodeConfig, generate
    from specdec_diag.decoder.tracing import export_parquet
    from specdec_diag.decoder.verification import AcceptanceRule, SamplingConfig

    prompts = _read_prompts(prompt, prompts_file)
    if not prompts:
        raise fail("no prompt given: use --prompt TEXT (repeatable) or --prompts-file FILE")
    params = {"lenient": {"lenience": lenience}, "typical": {"epsilon": epsilon, "delta": delta}}.get(rule, {})
    try:
        if after_step is not None and fault != "nan-verifier":
            raise ValueError("--fault-after-step applies to --fault nan-verifier only")
        fparams = {"after_step": after_step} if after_step is not None else {}
        cfg = DecodeConfig(
            gamma=gamma, rule=AcceptanceRule(rule, params), policy=policy, threshold=threshold,
            sampling=SamplingConfig(temperature, top_k, top_p), max_new_tokens=max_new_tokens, seed=seed,
            baseline=baseline, fault=Fault(fault, fparams), stop_at_eos=not no_eos,
        )
        from specdec_diag.decoder.policies import GammaPolicy

        GammaPolicy(policy, gamma, threshold)  # validate the name before loading models
        pair = load_pair(target, draft, device=device, dtype=dtype)
    except (ValueError, ModelLoadError) as exc:
        raise fail(str(exc), EXIT_USAGE) from None

    total = len(prompts) * max_new_tokens
    with Progress(TextColumn("[bold]decode"), BarColumn(), MofNCompleteColumn(), TextColumn("tokens"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("decode", total=total)

        def on_step(r: int, n: int, max_new: int) -> None:
            bar.update(task, completed=r * max_new + n)  # a request ending at EOS skips its remainder

        try:
            res = generate(pair, prompts, cfg, trace=str(trace) if trace else None, on_step=on_step,
                           warmup=True)
        except ValueError as exc:
            raise fail(str(exc), EXIT_USAGE) from None
    if parquet is not None:
        export_parquet(res.records, parquet)
    _render(res, trace, parquet)


def _render(res, trace: Path | None, parquet: Path | None) -> None:
    from rich.markup import escape
    from rich.table import Table

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
