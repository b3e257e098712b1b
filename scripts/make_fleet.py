"""Generate ``sample_logs/fleet/``: a small fleet of engine logs whose correct report is known
(``sample_logs/fleet/README.md`` says what it is; ``tests/test_fleet.py`` asserts it).

* ``host-a``: a healthy vLLM EAGLE-3 replica (k=3), its log rotated into ``vllm-2026-03-13.log.gz`` +
  ``vllm-2026-03-14.log`` + ``vllm.log`` (one process: one run);
* ``host-b``: a second healthy replica;
* ``host-c``: the same configuration with a broken drafter (acceptance ~1 %): DRAFTER_BROKEN on that
  run only;
* ``host-d``: a container restarted into k=5 (same pid 1, a new ``non-default args`` banner): two runs;
* ``host-e`` / ``host-f``: SGLang serving Qwen3-8B with EAGLE-3 and without speculation at the same load;
  speculation is slower there: measured speed-up < 1 and NO_SPEEDUP on host-e.

Deterministic (seeded): ``python scripts/make_fleet.py [OUT_DIR]``.
"""

from __future__ import annotations

import gzip
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

T0 = datetime(2026, 3, 14, 9, 0, 0, tzinfo=UTC)
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def vllm_banner(t: datetime, k: int, pid: int = 1) -> str:
    return (f"{_iso(t)} (APIServer pid={pid}) INFO {t:%m-%d %H:%M:%S} [utils.py:326] non-default args: "
            f"{{'model': '{MODEL}', 'speculative_config': {{'method': 'eagle3', 'model': "
            f"'yuhuili/EAGLE3-LLaMA3.1-Instruct-8B', 'num_speculative_tokens': {k}}}}}")


def vllm_window(rnd: random.Random, t: datetime, k: int, alpha: float, pid: int = 1) -> list[str]:
    """One 10 s interval: the throughput line and the SpecDecoding line (format E)."""
    drafts = rnd.randint(2800, 3200)
    per_pos, surv = [], 1.0
    for _ in range(k):
        surv *= max(0.0, min(1.0, rnd.gauss(alpha, 0.02)))
        per_pos.append(surv)
    acc = int(sum(p * drafts for p in per_pos))
    drafted = drafts * k
    gen = (drafts + acc) / 10.0
    head = f"{_iso(t)} (APIServer pid={pid}) INFO {t:%m-%d %H:%M:%S}"
    return [
        f"{head} [loggers.py:123] Engine 000: Avg prompt throughput: 400.0 tokens/s, Avg generation throughput: "
        f"{gen:.1f} tokens/s, Running: {rnd.randint(10, 14)} reqs, Waiting: 0 reqs, GPU KV cache usage: 30.0%, "
        f"Prefix cache hit rate: 20.0%",
        f"{head} [metrics.py:101] SpecDecoding metrics: Mean acceptance length: {1 + acc / drafts:.2f}, Accepted "
        f"throughput: {acc / 10:.2f} tokens/s, Drafted throughput: {drafted / 10:.2f} tokens/s, Accepted: {acc} "
        f"tokens, Drafted: {drafted} tokens, Per-position acceptance rate: "
        f"{', '.join(f'{p:.3f}' for p in per_pos)}, Avg Draft acceptance rate: {100 * acc / drafted:.1f}%",
    ]


def vllm_version(t: datetime, pid: int = 1) -> str:
    """The first line a vLLM server prints (real form: ``[api_server.py:1805] vLLM API server version``)."""
    return (f"{_iso(t)} (APIServer pid={pid}) INFO {t:%m-%d %H:%M:%S} [api_server.py:1805] "
            "vLLM API server version 0.10.1")


def vllm_run(seed: int, start: datetime, k: int, alpha: float, windows: int) -> list[str]:
    rnd = random.Random(seed)
    lines = [vllm_version(start), vllm_banner(start, k)]
    for i in range(windows):
        lines += vllm_window(rnd, start + timedelta(seconds=10 * (i + 1)), k, alpha)
    return lines


def sglang_run(seed: int, start: datetime, spec: bool, tps: float, windows: int) -> list[str]:
    rnd = random.Random(seed)
    spec_args = ("speculative_algorithm='EAGLE3', speculative_draft_model_path='AngelSlim/Qwen3-8B_eagle3', "
                 "speculative_num_steps=3, speculative_eagle_topk=1, speculative_num_draft_tokens=4, "
                 if spec else "speculative_algorithm=None, ")
    lines = [f"[{start:%Y-%m-%d %H:%M:%S}] server_args=ServerArgs(model_path='Qwen/Qwen3-8B', "
             f"tokenizer_path='Qwen/Qwen3-8B', tp_size=1, dp_size=1, mem_fraction_static=0.8, "
             f"max_running_requests=128, cuda_graph_max_bs=32, disable_cuda_graph=False, {spec_args}"
             f"decode_log_interval=40)"]
    for i in range(windows):
        t = start + timedelta(seconds=2 * (i + 1))
        running = rnd.choice((6, 7, 8, 9))
        acc = f"accept len: {rnd.gauss(2.6, 0.05):.2f}, accept rate: 0.65, " if spec else ""
        lines.append(f"[{t:%Y-%m-%d %H:%M:%S} TP0] Decode batch. #running-req: {running}, #token: {running * 700}, "
                     f"token usage: 0.05, {acc}cuda graph: True, gen throughput (token/s): "
                     f"{rnd.gauss(tps, tps * 0.03):.2f}, #queue-req: 0, ")
    return lines


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(lines) + "\n").encode()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data, mtime=0))
    else:
        path.write_bytes(data)


def make(out: Path) -> None:
    a = vllm_run(1, T0, 3, 0.80, 36)
    # rotation by date (oldest compressed), the newest in vllm.log: one process, one banner at its start.
    # (``vllm.log.1`` / ``.2.gz`` names join the same way, but a directory walk reads only known extensions)
    write(out / "host-a" / "vllm-2026-03-13.log.gz", a[:26])
    write(out / "host-a" / "vllm-2026-03-14.log", a[26:50])
    write(out / "host-a" / "vllm.log", a[50:])
    write(out / "host-b" / "vllm.log", vllm_run(2, T0 + timedelta(seconds=3), 3, 0.78, 30))
    write(out / "host-c" / "vllm.log", vllm_run(3, T0 + timedelta(seconds=5), 3, 0.03, 30))
    first = vllm_run(4, T0, 3, 0.80, 20)
    second = vllm_run(5, T0 + timedelta(minutes=5), 5, 0.80, 20)
    write(out / "host-d" / "vllm.log", first + second)
    write(out / "host-e" / "sglang.log", sglang_run(6, T0, True, 300.0, 40))
    write(out / "host-f" / "sglang.log", sglang_run(7, T0, False, 400.0, 40))


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "sample_logs" / "fleet")
