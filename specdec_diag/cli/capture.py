"""`specdec-diag capture URL --prompts FILE --out DIR`: drive a live server, record every request.

Thin: argument parsing, a progress bar and a one-line summary; the work is
:func:`specdec_diag.capture.client.capture`. No torch.
"""

from __future__ import annotations

from pathlib import Path

import typer

from specdec_diag.cli._app import app, console, err_console, fail
from specdec_diag.exit_codes import ExitCode


@app.command()
def capture(
    url: str = typer.Argument(..., help="Server base URL, e.g. http://127.0.0.1:8080"),
    prompts: Path = typer.Option(..., "--prompts", help="Prompt file: JSONL (text, token-id lists, or "
                                 "{'prompt': ...}) or plain text, one prompt per line."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for requests.jsonl and the metrics scrapes."),
    n_predict: int = typer.Option(64, "--n-predict", min=1, help="Tokens to generate per request."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy."),
    concurrency: int = typer.Option(1, "--concurrency", min=1, help="Requests in flight at most."),
    seed: int = typer.Option(0, "--seed", help="Seed of request i is seed + i (sampled requests)."),
    ignore_eos: bool = typer.Option(False, "--ignore-eos", help="Always generate --n-predict tokens."),
    n_probs: int = typer.Option(0, "--n-probs", min=0, help="Ask for the top-n token probabilities too."),
    api: str | None = typer.Option(None, "--api", help="llamacpp | openai | sglang (default: detected)."),
    engine: str | None = typer.Option(None, "--engine", help="llama.cpp | vllm | sglang | trtllm | openai "
                                      "(default: detected; TRT-LLM must be named)."),
    model: str | None = typer.Option(None, "--model", help="Model name for /v1/completions (default: /v1/models)."),
    tokenizer: Path | None = typer.Option(None, "--tokenizer", help="HF model dir: send text prompts as token ids "
                                          "tokenized with its tokenizer.json."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds per request."),
    no_metrics: bool = typer.Option(False, "--no-metrics", help="Do not scrape /metrics."),
) -> None:
    """Send the prompts to a running llama.cpp / vLLM / SGLang / TRT-LLM server and write
    DIR/requests.jsonl (specdec-requests@1: token ids, outputs, the engine's per-request speculative
    stats) plus /metrics scraped before and after. `specdec-diag report DIR` reads it all.

    Exit 0: all requests answered; 1: some failed; 2: bad arguments or no usable server."""
    from specdec_diag.capture.client import CaptureError
    from specdec_diag.capture.client import capture as run_capture
    from specdec_diag.capture.engines import ENDPOINTS, Sampling
    from specdec_diag.capture.prompts import load_prompts, tokenize

    if api is not None and api not in ENDPOINTS:
        raise fail(f"--api must be one of {', '.join(ENDPOINTS)}")
    if api is not None and engine is None:
        engine = {"llamacpp": "llama.cpp", "sglang": "sglang"}.get(api, "openai")
    if engine == "trtllm" and api is None:
        api = "openai"
    try:
        plist = load_prompts(prompts)
        if tokenizer is not None:
            plist = tokenize(plist, tokenizer)
    except (OSError, ValueError) as exc:
        raise fail(str(exc)) from None
    sampling = Sampling(n_predict=n_predict, temperature=temperature, seed=seed, ignore_eos=ignore_eos,
                        n_probs=n_probs)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        with Progress(TextColumn("capture"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
            task = bar.add_task("", total=len(plist))
            summary = run_capture(url, plist, out, sampling=sampling, concurrency=concurrency, api=api,
                                  engine=engine, model=model, timeout=timeout, scrape=not no_metrics,
                                  progress=lambda done, n: bar.update(task, completed=done))
    except CaptureError as exc:
        raise fail(str(exc), ExitCode.USAGE) from None
    acc, drafted = summary.get("accepted_tokens"), summary.get("draft_tokens")
    rate = f", acceptance {acc / drafted:.3f} ({acc}/{drafted})" if acc is not None and drafted else ""
    console.print(f"{summary['ok']}/{summary['requests']} requests, {summary['output_tokens']} tokens in "
                  f"{summary['wall_s']:.1f} s{rate} -> {out / 'requests.jsonl'}", highlight=False)
    if summary["errors"]:
        raise typer.Exit(ExitCode.FAILED)
