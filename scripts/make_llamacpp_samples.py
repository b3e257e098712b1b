"""Regenerate sample_logs/engines/llamacpp/real/ from real llama-server runs (needs `make llamacpp`).

    .venv/bin/python scripts/make_llamacpp_samples.py [OUT_DIR]   # default: sample_logs/engines/llamacpp/real

Each scenario serves the bundled pair (GGUF, converted by scripts/build_llamacpp.sh), drives it with
`specdec-diag capture` on held-out prompts sent as token ids, and keeps the server log, the capture
(requests.jsonl) and the two /metrics scrapes (metrics.prom). Machine paths are replaced by
``<cache>`` so the files do not depend on where the cache lives. Timings differ run to run; token ids
and counters are deterministic for a given build (greedy, one thread pool per server).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from specdec_diag.capture import llamacpp as lc
from specdec_diag.capture.client import capture
from specdec_diag.capture.engines import Sampling
from specdec_diag.capture.prompts import Prompt

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "sample_logs" / "engines" / "llamacpp" / "real"

#: name -> (server arguments, prompts, n_predict, concurrency, temperature, what a correct diagnosis raises)
SCENARIOS = {
    "healthy_draft_k4": (lc.pair_args(k=4, extra=["-c", "1024", "-np", "1"]), 3, 64, 1, 0.0, "-"),
    "synth_rates_k4": (lc.pair_args(k=4, extra=["-c", "1024", "-np", "1", "--spec-draft-p-min", "0",
                                                "--spec-synth-rates", "0.8,0.6,0.4,0.2"]), 3, 160, 1, 0.0,
                       "- (per-position acceptance ~ 0.8, 0.6, 0.4, 0.2 as configured)"),
    "k_too_large_k16": (lc.pair_args(k=16, extra=["-c", "1024", "-np", "1", "--spec-draft-p-min", "0"]),
                        3, 64, 1, 0.0, "K_TOO_LARGE"),
    "ngram_low_acceptance": (lc.pair_args(draft=None, k=4, spec_type="ngram-simple",
                                          extra=["-c", "1024", "-np", "1", "--spec-ngram-simple-size-n", "1",
                                                 "--spec-ngram-simple-size-m", "4"]), 3, 200, 1, 0.4,
                             "LOW_ACCEPTANCE"),
    "parallel_slots_np4": (lc.pair_args(k=4, extra=["-c", "4096", "-np", "4"]), 8, 64, 4, 0.0, "-"),
    "quantized_target_q4_0": (lc.pair_args(target="target-q4_0.gguf", k=4, extra=["-c", "1024", "-np", "1"]),
                              3, 64, 1, 0.0, "- (report); `replay` finds where outputs diverge"),
}


def prompts(n: int) -> list[Prompt]:
    from transformers import AutoTokenizer

    from specdec_diag.assets import PAIR_DIR, heldout_prompts

    tok = AutoTokenizer.from_pretrained(PAIR_DIR / "target", local_files_only=True)
    base = heldout_prompts(tok, n=3, length=32)  # the prompts tests/test_llamacpp_live.py sends
    return [Prompt(tuple(p)) for p in (base * 3)[:n]]


def _scrub(path: Path) -> None:
    text = path.read_text(errors="replace").replace(str(lc.cache_dir()), "<cache>")
    path.write_text(text.replace(str(Path.home()), "~"))


README = """# Real llama-server captures

Every file under this directory comes from a **real run** of llama-server (llama.cpp as vendored in
llama-cpp-python 0.3.36, built by `make llamacpp`) serving the bundled pair converted to GGUF,
driven by `specdec-diag capture` with held-out prompts sent as token ids. Regenerate with
`.venv/bin/python scripts/make_llamacpp_samples.py` (machine paths become `<cache>`; timings change
run to run, tokens and counters do not). The files one level up (`../*.log`, `../*.txt`) are
**hand-written** by `scripts/make_engine_samples_other.py` for cases no run here shows (a drafter that
stops drafting, a vocabulary mismatch, other llama.cpp log variants).

Each scenario directory holds `server.log` (llama-server's own log), `requests.jsonl`
(`specdec-requests@1`, docs/capture.md) and `metrics.prom` (`/metrics` before and after). All three
describe the same traffic; `report` keeps each file a run of its own (docs/runs.md), and the metrics
run carries the server's exact counts and per-position rates. The numbers below are the capture's.

| scenario | server flags (beyond `-m target.gguf`) | requests | drafted | accepted | acceptance | a correct diagnosis raises |
|---|---|---|---|---|---|---|
"""


def run(name: str, out: Path) -> str:
    args, n, n_predict, conc, temp, _ = SCENARIOS[name]
    d = out / name
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        with lc.LlamaServer(args, log) as srv:
            summary = capture(srv.url, prompts(n), Path(tmp) / "cap", concurrency=conc,
                              sampling=Sampling(n_predict=n_predict, temperature=temp, ignore_eos=True))
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        for f in [log, *(Path(tmp) / "cap").iterdir()]:
            shutil.copy(f, d / f.name)
    for f in d.iterdir():
        _scrub(f)
    drafted, acc = summary["draft_tokens"], summary["accepted_tokens"]
    print(f"{name}: {summary['ok']} requests, drafted {drafted}, accepted {acc}")
    flags = " ".join(a.replace(str(lc.cache_dir()), "<cache>") for a in args[2:])
    rate = f"{acc / drafted:.3f}" if drafted else "-"
    return f"| `{name}/` | `{flags}` | {summary['ok']} | {drafted} | {acc} | {rate} | {SCENARIOS[name][5]} |\n"


def run_speculative_example(out: Path) -> None:
    """The `llama-speculative` example on one held-out prompt (its summary block is what ingest reads)."""
    import subprocess

    from transformers import AutoTokenizer

    from specdec_diag.assets import PAIR_DIR, heldout_prompts

    tok = AutoTokenizer.from_pretrained(PAIR_DIR / "target", local_files_only=True)
    text = tok.decode(heldout_prompts(tok, n=1, length=48)[0])
    pair = lc.cache_dir() / "pair"
    cmd = [str(lc.cache_dir() / "bin" / "llama-speculative"), "-m", str(pair / "target.gguf"), "-md",
           str(pair / "draft.gguf"), "--spec-draft-n-max", "4", "-n", "128", "--temp", "0", "-t", "1",
           "-c", "1024", "--seed", "0", "-p", text]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    d = out / "speculative_example_k4"
    d.mkdir(parents=True, exist_ok=True)
    (d / "llama-speculative.txt").write_text(res.stdout + res.stderr)
    _scrub(d / "llama-speculative.txt")
    print(f"speculative_example_k4: exit {res.returncode}")


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    if not lc.built():
        print(f"llama.cpp not built ({lc.cache_dir()}): run `make llamacpp`", file=sys.stderr)
        return 2
    rows = [run(name, out) for name in SCENARIOS]
    run_speculative_example(out)
    rows.append("| `speculative_example_k4/` | `llama-speculative -md draft.gguf --spec-draft-n-max 4 -n 128` "
                "| 1 | see file | see file | see file | - |\n")
    (out / "README.md").write_text(README + "".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
