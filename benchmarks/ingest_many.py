"""Ingest of many small files (issue 16 row 6): files/s and peak RSS of a scan of N small vLLM logs,
cold (parse + write one cache file per input) and warm (every file served from the cache).

    .venv/bin/python benchmarks/ingest_many.py                  # 20,000 files (generated once, git-ignored)
    .venv/bin/python benchmarks/ingest_many.py --files 2000     # quick run while developing
    .venv/bin/python benchmarks/ingest_many.py --per-file-files 2000   # also the per-file vLLM parse

Each run is its own subprocess pinned to one core (``POLARS_MAX_THREADS=1``), with a fresh cache
directory; files/s uses the subprocess's own CPU time (robust to other work on a shared core), peak
RSS is its own. Two configurations: ``batchable`` marks the vLLM source batchable (what the
documented vllm.py change does: these files each start with a throughput line, so the rows are the
same either way, which the script checks); ``registry`` is the registry as it is, where vLLM parses
file by file (run on fewer files: ~25 ms a file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "_data"


def generate(d: Path, n: int, seed: int = 0) -> None:
    """``n`` small vLLM V1 logs (1-8 windows of a throughput + SpecDecoding line, 0-20 access lines
    after each; 1-5 KB) in 100 sub-directories."""
    if d.is_dir() and sum(1 for _ in d.rglob("*.log")) == n:
        return
    shutil.rmtree(d, ignore_errors=True)
    rng = random.Random(seed)
    for i in range(n):
        sub = d / f"host{i % 100:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        t = 1_750_000_000 + i * 3600
        buf = []
        for _ in range(rng.randint(1, 8)):
            t += 10
            ts = time.strftime("%m-%d %H:%M:%S", time.gmtime(t))
            buf.append(f"(APIServer pid=1) INFO {ts} [loggers.py:123] Engine 000: Avg prompt throughput: 10.0 "
                       f"tokens/s, Avg generation throughput: {rng.uniform(1, 99):.1f} tokens/s, Running: 3 reqs, "
                       "Waiting: 0 reqs, GPU KV cache usage: 5.0%, Prefix cache hit rate: 0.0%\n")
            nd, k = rng.randint(50, 500), 3
            pos = sorted((rng.randint(0, nd) for _ in range(k)), reverse=True)
            acc = sum(pos)
            buf.append(f"(APIServer pid=1) INFO {ts} [metrics.py:101] SpecDecoding metrics: Mean acceptance length: "
                       f"{1 + acc / nd:.2f}, Accepted throughput: {acc / 10:.2f} tokens/s, Drafted throughput: "
                       f"{nd * k / 10:.2f} tokens/s, Accepted: {acc} tokens, Drafted: {nd * k} tokens, Per-position "
                       f"acceptance rate: {', '.join(f'{p / nd:.3f}' for p in pos)}, Avg Draft acceptance rate: "
                       f"{100 * acc / (nd * k):.1f}%\n")
            buf.extend('(APIServer pid=1) INFO:     10.0.0.1:5555 - "POST /v1/chat/completions HTTP/1.1" 200 OK\n'
                       for _ in range(rng.randint(0, 20)))
        (sub / f"server-{i:05d}.log").write_text("".join(buf))


_RUN = r"""
import dataclasses, hashlib, json, resource, sys, time
from specdec_diag.ingest import scan
from specdec_diag.ingest.registry import SOURCES
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
srcs = SOURCES
if sys.argv[3] == "batchable":
    srcs = tuple(dataclasses.replace(s, batchable=True) if s.family == "vllm" else s for s in SOURCES)
out = {}
for phase in ("cold", "warm"):
    t, c = time.perf_counter(), cpu()
    res = scan([sys.argv[1]], cache_dir=sys.argv[2], sources=srcs)
    out[phase] = {"wall": time.perf_counter() - t, "cpu": cpu() - c}
out["files"] = res.inputs.height
out["records"] = res.windows.height
out["errors"] = res.inputs["error"].drop_nulls().len()
out["digest"] = hashlib.blake2b(res.windows.hash_rows(seed=1).to_numpy().tobytes()).hexdigest()
out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run(d: Path, mode: str) -> dict:
    cache = Path(tempfile.mkdtemp(prefix="specdec-many-cache-"))
    try:
        env = {**os.environ, "POLARS_MAX_THREADS": "1", "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-c", _RUN, str(d), str(cache), mode]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", "1" if (os.cpu_count() or 1) > 1 else "0", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        got["cache_files"] = sum(1 for _ in cache.iterdir())
        return got
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def row(name: str, r: dict) -> str:
    n = r["files"]
    return (f"| {name} | {n} | {r['records']} | {r['cold']['cpu']:.1f} | {n / r['cold']['cpu']:.0f} | "
            f"{r['cold']['wall']:.1f} | {r['warm']['cpu']:.1f} | {n / r['warm']['cpu']:.0f} | {r['warm']['wall']:.1f} | "
            f"{r['rss_mb']:.0f} | {r['cache_files']} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--per-file-files", type=int, default=0, help="also run the registry as it is on this many")
    args = ap.parse_args()
    d = DATA / f"many_{args.files}"
    generate(d, args.files)
    res = {"batchable": run(d, "batchable")}
    if args.per_file_files:
        small = DATA / f"many_{args.per_file_files}"
        generate(small, args.per_file_files)
        res["registry"] = run(small, "registry")
        if args.per_file_files == args.files:
            assert res["registry"]["digest"] == res["batchable"]["digest"], "batched rows differ from per-file rows"
    load = os.getloadavg()[0]
    print(f"{args.files} small vLLM logs ({sum(f.stat().st_size for f in d.rglob('*.log')) / 1e6:.0f} MB), "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f}, Python {platform.python_version()}\n")
    print("| vLLM source | files | records | cold CPU s | cold files/s (CPU) | cold wall s | warm CPU s "
          "| warm files/s (CPU) | warm wall s | peak RSS (MB) | cache files |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in res.items():
        assert r["errors"] == 0
        print(row(name, r))


if __name__ == "__main__":
    main()
