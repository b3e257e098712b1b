"""Every core (issue 13): wall-clock and CPU time of a scan of a directory of N large vLLM logs with
1 worker and with W workers (``--workers``), and a check that the tables are identical.

    .venv/bin/python benchmarks/ingest_workers.py                        # 8 x 256 MB, 1 vs 2 workers
    .venv/bin/python benchmarks/ingest_workers.py --files 4 --size-mb 64 # quick run

The files (the "production" mix of benchmarks/ingest.py, each with its own seed) are generated into
a temp directory and deleted afterwards. Each configuration runs in its own subprocess, no cache;
CPU time is the subprocess's own plus its children's (the workers), so a shared machine shows up as
wall time above CPU time / workers. The load average before each run is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

_RUN = r"""
import hashlib, json, resource, sys, time
from specdec_diag.api import load
def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime
if __name__ == "__main__":
    import specdec_diag.ingest.parallel  # noqa: F401  (the scan is timed, not the imports)
    kind, n = sys.argv[2].split(":")
    init = 0.0
    if kind == "ray":
        import ray
        t = time.perf_counter()
        ray.init(num_cpus=int(n), include_dashboard=False, log_to_driver=False)
        init = time.perf_counter() - t
    t, c0, k0 = time.perf_counter(), cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
    res = load([sys.argv[1]], workers=int(n), executor=kind, use_cache=False)
    wall, own, kids = time.perf_counter() - t, cpu(resource.RUSAGE_SELF) - c0, cpu(resource.RUSAGE_CHILDREN) - k0
    h = hashlib.blake2b(digest_size=16)
    for name in ("windows", "malformed", "configs", "inputs"):
        h.update(getattr(res, name).hash_rows(seed=1).to_numpy().tobytes())
    print(json.dumps({"wall": wall, "cpu": own + kids, "own": own, "kids": kids, "init": init, "windows": res.windows.height,
                      "digest": h.hexdigest()}))
"""


def main() -> None:
    from ingest import generate

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--access", type=int, default=600, help="access lines per window (600: production mix)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--ray", action="store_true", help="also time --executor ray on a local Ray with W CPUs "
                    "(its CPU time is not counted: Ray workers are not this process's children)")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="specdec-workers-", dir=os.environ.get("BENCH_DIR")))
    try:
        for i in range(args.files):
            (d / f"host{i}").mkdir()
            generate(d / f"host{i}" / "vllm.log", args.size_mb, seed=i, access=args.access)
        script = d / "run.py"
        script.write_text(_RUN)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out = {}
        for _ in range(args.repeat):
            for w in (1, args.workers) + (("ray",) if args.ray else ()):
                load = os.getloadavg()[0]
                spec = f"ray:{args.workers}" if w == "ray" else f"local:{w}"
                got = json.loads(subprocess.run([sys.executable, str(script), str(d), spec], env=env, check=True,
                                                capture_output=True, text=True).stdout.strip().splitlines()[-1])
                got["load_before"] = load
                out.setdefault(w, []).append(got)
                print(f"{spec}: wall {got['wall']:.2f} s (ray.init {got['init']:.1f} s not included), cpu {got['cpu']:.2f} s (caller {got['own']:.2f} s, "
                      f"worker processes {got['kids']:.2f} s), {got['windows']} windows, load avg before {load:.2f}",
                      flush=True)
        one, many = min(out[1], key=lambda r: r["wall"]), min(out[args.workers], key=lambda r: r["wall"])
        assert one["digest"] == many["digest"], "tables differ between 1 and N workers"
        if args.ray:
            ray_best = min(out["ray"], key=lambda r: r["wall"])
            assert ray_best["digest"] == one["digest"], "tables differ between Ray and the local executor"
            print(f"ray ({args.workers} CPUs): best wall {ray_best['wall']:.2f} s vs {one['wall']:.2f} s for 1 local "
                  "worker; identical tables: yes")
        total_mb = args.files * args.size_mb
        # on an idle machine the wall time is the busiest process's CPU time: the caller's, or the
        # children's spread over workers - 1 processes (startup included, it is CPU too)
        path = max(many["own"], many["kids"] / max(1, args.workers - 1))
        print(f"critical path with {args.workers} workers (busiest process CPU): {path:.2f} s -> "
              f"speed-up on an idle machine {one['cpu'] / path:.2f}x")
        print(f"{args.files} x {args.size_mb} MB: speed-up {one['wall'] / many['wall']:.2f}x with {args.workers} "
              f"workers (best wall of {args.repeat}); {total_mb / one['cpu']:.0f} MB/s per core (1 worker CPU time); "
              f"identical tables: yes")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
