"""`specdec-diag decode`: run the traced reference decoder (speculative or baseline) and write a trace."""

from __future__ import annotations

from pathlib import Path

import typer

from specdec_diag.cli._app import app, console, fail
from specdec_diag.exit_codes import ExitCode
from specdec_diag.render.replay_terminal import decode_summary


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
        raise fail(str(exc), ExitCode.USAGE) from None

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
            raise fail(str(exc), ExitCode.USAGE) from None
    if parquet is not None:
        export_parquet(res.records, parquet)
    decode_summary(console, res, trace, parquet)
