"""Write small, realistic vLLM sample logs (healthy and unhealthy V0/V1 runs) into
sample_logs/engines/vllm/ for the dashboard, the report and the rule tests.

    .venv/bin/python scripts/make_engine_samples.py

Deterministic (seeded); every count printed is consistent with vLLM's own definitions
(log_formats.md §1-2): V1 windows are prefix counts with 1 + sum(per-position) = MAL, V0 counters are
cumulative with non-prefix accepted counts. Each file's scenario is stated in its first lines' config
and in README.md beside them.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "sample_logs" / "engines" / "vllm"
T0 = dt.datetime(2026, 3, 14, 9, 0, 0, tzinfo=dt.UTC)

# scenario -> (description, finding codes a correct diagnosis should raise)
SCENARIOS: dict[str, tuple[str, str]] = {
    "v1_healthy_eagle.log": ("EAGLE-3 k=3 on Llama-3.1-8B, moderate load: acceptance ~68 %, MAL ~3.0", "-"),
    "v1_drafter_broken_mtp.log": ("MTP k=3 with a broken draft head: acceptance ~1 %, MAL ~1.03", "DRAFTER_BROKEN"),
    "v1_position_cliff.log": ("EAGLE k=4, positions 1.. never accept (multi-step drafting bug)", "POSITION_CLIFF"),
    "v1_acceptance_collapse.log": ("ngram k=4: acceptance 60 % then collapses to ~1 % mid-run",
                                   "ACCEPTANCE_COLLAPSE"),
    "v1_capacity_queueing.log": ("EAGLE k=3, KV cache 99 % full, 96 running and 40+ waiting; drafter fine (~65 %)",
                                 "CAPACITY_QUEUEING, COMPUTE_BOUND_BATCH"),
    "v1_k_too_large.log": ("draft model k=8: positions 5-7 almost never accept", "K_TOO_LARGE"),
    "v1_suspicious_pinned.log": ("MTP k=2 reporting 100 % acceptance, MAL pinned at k+1 = 3.00",
                                 "SUSPICIOUS_ACCEPTANCE, PINNED_ACCEPTANCE_LENGTH"),
    "v1_dp2_docker.log": ("two API servers (DP=2) under docker --timestamps, both healthy", "-"),
    "v0_medusa_typical.log": ("V0 Medusa k=5 with TypicalAcceptanceSampler (lossy), cumulative counters",
                              "LOSSY_ACCEPTANCE, METRIC_DEFINITION"),
    "v0_spec_inactive.log": ("V0 speculative config present but no drafts ever proposed", "SPEC_INACTIVE"),
    "bench_serve_eagle_k8.txt": ("vllm bench serve with EAGLE k=8: acceptance 44 %, MAL 4.50", "K_TOO_LARGE"),
}


def v1_prefix(t: dt.datetime, pid: int | None, src: str, docker: bool) -> str:
    core = f"INFO {t:%m-%d %H:%M:%S} [{src}] "
    if pid is not None:
        core = f"(APIServer pid={pid}) " + core
    return (f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}000Z " if docker else "") + core


def v1_run(rng: random.Random, *, k: int, windows: int, pos: Callable[[int], list[float]], load: Callable[[int], dict],
           method: str, draft: str, pid: int | None = 1, engine: int = 0, docker: bool = True,
           t0: dt.datetime = T0, access: bool = True) -> list[str]:
    """V1 log: startup config, then per 10 s window a throughput line and a SpecDecoding line (E)."""
    out = [v1_prefix(t0, pid, "utils.py:326", docker)
           + "non-default args: {'model': 'meta-llama/Llama-3.1-8B-Instruct', 'speculative_config': "
           + f"{{'method': '{method}', 'model': {draft!r}, 'num_speculative_tokens': {k}}}}}"]
    for w in range(windows):
        t = t0 + dt.timedelta(seconds=10 * (w + 1), microseconds=rng.randint(0, 999) * 1000)
        ld = load(w)
        out.append(v1_prefix(t, pid, "loggers.py:123", docker)
                   + f"Engine {engine:03d}: Avg prompt throughput: {ld['prompt']:.1f} tokens/s, Avg generation "
                   f"throughput: {ld['gen']:.1f} tokens/s, Running: {ld['run']} reqs, Waiting: {ld['wait']} reqs, "
                   f"GPU KV cache usage: {ld['kv']:.1f}%, Prefix cache hit rate: {ld.get('hit', 20.0):.1f}%")
        if ld["run"] == 0:
            continue  # idle window: vLLM prints no SpecDecoding line
        nd = int(ld["gen"] * 10 / 3) + rng.randint(1, 40)
        rates = pos(w)
        acc_pos = [nd if r >= 1.0 else min(nd, max(0, round(nd * r + rng.gauss(0, nd * 0.01)))) for r in rates]
        for i in range(1, k):  # prefix counts: position i accepted at most as often as i-1
            acc_pos[i] = min(acc_pos[i], acc_pos[i - 1])
        acc = sum(acc_pos)
        pp = ", ".join(f"{a / nd:.3f}" for a in acc_pos)
        out.append(v1_prefix(t, pid, "metrics.py:101", docker)
                   + f"SpecDecoding metrics: Mean acceptance length: {1 + acc / nd:.2f}, Accepted throughput: "
                   f"{acc / 10:.2f} tokens/s, Drafted throughput: {nd * k / 10:.2f} tokens/s, Accepted: {acc} tokens, "
                   f"Drafted: {nd * k} tokens, Per-position acceptance rate: {pp}, Avg Draft acceptance rate: "
                   f"{100 * acc / (nd * k):.1f}%")
        if access:
            for _ in range(rng.randint(1, 4)):
                out.append((f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}000Z " if docker else "")
                           + (f"(APIServer pid={pid}) " if pid else "")
                           + f"INFO:     10.0.0.{rng.randint(2, 250)}:{rng.randint(30000, 60000)} - "
                           + '"POST /v1/chat/completions HTTP/1.1" 200 OK')
    return out


def geometric(alpha: float, k: int) -> Callable[[int], list[float]]:
    return lambda w: [alpha ** (i + 1) for i in range(k)]


def load(run=12, wait=0, kv=30.0, gen=900.0) -> Callable[[int], dict]:
    return lambda w: {"prompt": 400.0 if w % 5 == 0 else 0.0, "gen": gen, "run": run, "wait": wait, "kv": kv}


def v0_run(rng: random.Random, *, k: int, windows: int, accept_p: float, sampler: str, proposer: str,
           active: bool = True) -> list[str]:
    t = T0
    out = [f"INFO {t:%m-%d %H:%M:%S} llm_engine.py:176] Initializing an LLM engine (v0.6.3) with config: "
           f"model='lmsys/vicuna-7b-v1.3', speculative_config=SpeculativeConfig(draft_model='abhigoyal/"
           f"vllm-medusa-vicuna-7b-v1.3', num_spec_tokens={k}), seed=0",
           f"INFO {t:%m-%d %H:%M:%S} spec_decode_worker.py:141] Configuring SpecDecodeWorker with "
           f"proposer=<class 'vllm.spec_decode.{proposer}'>",
           f"INFO {t:%m-%d %H:%M:%S} spec_decode_worker.py:155] Configuring SpecDecodeWorker with "
           f"sampler=<class 'vllm.model_executor.layers.{sampler}'>"]
    acc = draft = emit = 0
    for w in range(windows):
        t = T0 + dt.timedelta(seconds=5 * (w + 1))
        out.append(f"INFO {t:%m-%d %H:%M:%S} metrics.py:351] Avg prompt throughput: {0.0 if w else 350.0:.1f} "
                   f"tokens/s, Avg generation throughput: {rng.uniform(60, 90):.1f} tokens/s, Running: 4 reqs, "
                   f"Swapped: 0 reqs, Pending: 0 reqs, GPU KV cache usage: {5 + w * 0.5:.1f}%, CPU KV cache "
                   f"usage: 0.0%.")
        if active:
            steps = rng.randint(40, 60)
            for _ in range(steps):
                flags = [rng.random() < accept_p for _ in range(k)]
                prefix = next((i for i, f in enumerate(flags) if not f), k)
                acc += sum(flags)            # V0 counts accepts at any position
                draft += k
                emit += prefix + 1           # emitted: accepted prefix + the verifier's token
        ar = f"{acc / draft:.3f}" if draft else "nan"
        eff = f"{emit / ((draft // k) * (k + 1)):.3f}" if draft else "nan"
        out.append(f"INFO {t:%m-%d %H:%M:%S} metrics.py:367] Speculative metrics: Draft acceptance rate: {ar}, "
                   f"System efficiency: {eff}, Number of speculative tokens: {k}, Number of accepted tokens: {acc}, "
                   f"Number of draft tokens: {draft}, Number of emitted tokens: {emit}.")
    return out


# (key, value) lines are padded the way vLLM pads them ('{:<40} {:<10}'); None: a line as is
BENCH_ROWS = [
    ('============ Serving Benchmark Result ============', None),
    ('Successful requests:', '200'),
    ('Benchmark duration (s):', '61.42'),
    ('Total input tokens:', '44531'),
    ('Total generated tokens:', '49876'),
    ('Request throughput (req/s):', '3.26'),
    ('Output token throughput (tok/s):', '812.06'),
    ('Total Token throughput (tok/s):', '1537.10'),
    ('---------------Time to First Token----------------', None),
    ('Mean TTFT (ms):', '88.31'),
    ('Median TTFT (ms):', '80.12'),
    ('P99 TTFT (ms):', '240.55'),
    ('-----Time per Output Token (excl. 1st token)------', None),
    ('Mean TPOT (ms):', '9.87'),
    ('Median TPOT (ms):', '9.40'),
    ('P99 TPOT (ms):', '18.02'),
    ('---------------Speculative Decoding---------------', None),
    ('Acceptance rate (%):', '43.71'),
    ('Acceptance length:', '4.50'),
    ('Drafts:', '11043'),
    ('Draft tokens:', '88344'),
    ('Accepted tokens:', '38611'),
    ('Per-position acceptance (%):', None),
    ('  Position 0:', '76.17'),
    ('  Position 1:', '61.20'),
    ('  Position 2:', '50.10'),
    ('  Position 3:', '42.00'),
    ('  Position 4:', '35.50'),
    ('  Position 5:', '30.10'),
    ('  Position 6:', '28.00'),
    ('  Position 7:', '26.57'),
    ('==================================================', None),
]


def bench_lines() -> list[str]:
    return [k if v is None else f'{k:<40} {v:<10}' for k, v in BENCH_ROWS]


def build() -> dict[str, list[str]]:
    r = random.Random(20260314)
    files: dict[str, list[str]] = {}
    files["v1_healthy_eagle.log"] = v1_run(r, k=3, windows=30, pos=geometric(0.82, 3), load=load(),
                                           method="eagle3", draft="yuhuili/EAGLE3-LLaMA3.1-Instruct-8B")
    files["v1_drafter_broken_mtp.log"] = v1_run(r, k=3, windows=25, pos=lambda w: [0.025, 0.004, 0.0],
                                                load=load(gen=420.0), method="mtp", draft=None)
    files["v1_position_cliff.log"] = v1_run(r, k=4, windows=25, pos=lambda w: [0.74, 0.01, 0.0, 0.0],
                                            load=load(), method="eagle", draft="yuhuili/EAGLE-LLaMA3.1-Instruct-8B")
    files["v1_acceptance_collapse.log"] = v1_run(
        r, k=4, windows=36, pos=lambda w: [0.8, 0.65, 0.5, 0.4] if w < 18 else [0.03, 0.005, 0.0, 0.0],
        load=load(gen=700.0), method="ngram", draft=None)
    files["v1_capacity_queueing.log"] = v1_run(
        r, k=3, windows=30, pos=geometric(0.8, 3),
        load=lambda w: {"prompt": 3000.0, "gen": 1800.0, "run": 96, "wait": 40 + (w % 7) * 3, "kv": 99.2},
        method="eagle3", draft="yuhuili/EAGLE3-LLaMA3.1-Instruct-8B")
    files["v1_k_too_large.log"] = v1_run(r, k=8, windows=25,
                                         pos=lambda w: [0.7, 0.45, 0.25, 0.12, 0.05, 0.01, 0.004, 0.001],
                                         load=load(), method="draft_model", draft="meta-llama/Llama-3.2-1B-Instruct")
    files["v1_suspicious_pinned.log"] = v1_run(r, k=2, windows=20, pos=lambda w: [1.0, 1.0],
                                               load=load(gen=1500.0), method="mtp", draft=None)
    a = v1_run(r, k=3, windows=20, pos=geometric(0.8, 3), load=load(run=10), method="eagle3",
               draft="yuhuili/EAGLE3-LLaMA3.1-Instruct-8B", pid=1, engine=0)
    b = v1_run(r, k=3, windows=20, pos=geometric(0.78, 3), load=load(run=11), method="eagle3",
               draft="yuhuili/EAGLE3-LLaMA3.1-Instruct-8B", pid=2, engine=1,
               t0=T0 + dt.timedelta(seconds=3))
    files["v1_dp2_docker.log"] = [f"vllm-1  | {line}" for line in sorted(a + b)]
    files["v0_medusa_typical.log"] = v0_run(r, k=5, windows=20, accept_p=0.55,
                                            sampler="typical_acceptance_sampler.TypicalAcceptanceSampler",
                                            proposer="medusa_worker.MedusaWorker")
    files["v0_spec_inactive.log"] = v0_run(r, k=4, windows=12, accept_p=0.0,
                                           sampler="rejection_sampler.RejectionSampler",
                                           proposer="multi_step_worker.MultiStepWorker", active=False)
    files["bench_serve_eagle_k8.txt"] = bench_lines()
    return files


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, lines in build().items():
        (OUT / name).write_text("\n".join(lines) + "\n")
    readme = ["# vLLM sample logs", "", "Written by `scripts/make_engine_samples.py` (deterministic). Formats: "
              "docs/ingest.md.", "", "| file | scenario | a correct diagnosis raises |", "|---|---|---|"]
    readme += [f"| `{n}` | {d} | {c} |" for n, (d, c) in SCENARIOS.items()]
    (OUT / "README.md").write_text("\n".join(readme) + "\n")
    print(f"wrote {len(SCENARIOS)} files to {OUT}")


if __name__ == "__main__":
    main()
