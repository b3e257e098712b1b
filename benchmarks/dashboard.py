"""Dashboard responsiveness on a large log directory, measured with streamlit's AppTest (the real app
script, run headless in this process; no browser rendering time).

    .venv/bin/python benchmarks/dashboard.py                 # 1 GB vLLM V1 log (generated once, git-ignored)
    .venv/bin/python benchmarks/dashboard.py --size-mb 50    # quick run while developing

Phases, each in a fresh process so nothing is shared in memory:
1. ingest: ``scan`` with a cold cache (parses every line, writes the Parquet cache), for context;
2. first render after ingest: the Overview with the ingest cache warm and no report cache (reads
   the Parquet, computes the summary, renders; on large inputs the diagnosis rules then run in a
   background thread and the page shows the findings when they finish: timed too);
3. re-open: the Overview again in a new process, ingest and report caches warm;
4. page switches: every other page in turn, in the same session as 3, once the background warm-up
   (large inputs: each page's default frames computed while the Overview is read) has finished;
   then back to the Overview.
Targets (issue 6): first render after ingest <= 10 s, page switch <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "_data"
PAGES = ("acceptance", "bottlenecks", "findings", "trace", "compare")


def ensure_dir(size_mb: int) -> Path:
    """A directory holding one vLLM V1 log of ``size_mb`` MB from benchmarks/ingest.py's generator
    (hard-linked when that benchmark already made it)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ingest import generate  # benchmarks/ingest.py (H4's generator: same log mix)

    src = DATA / f"vllm_v1_{size_mb}mb.log"
    if not src.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        print(f"generating {src} ...", flush=True)
        generate(src, size_mb)
    d = DATA / f"dashboard_{size_mb}mb"
    d.mkdir(parents=True, exist_ok=True)
    dst = d / src.name
    if not dst.exists():
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy(src, dst)
    return d


def child(mode: str, logdir: Path) -> dict:
    os.environ["SPECDEC_DASHBOARD_ROOT"] = str(logdir)
    if mode == "ingest":
        from specdec_diag.ingest import scan

        t = time.perf_counter()
        r = scan([logdir])
        return {"ingest_s": time.perf_counter() - t, "windows": r.windows.height}
    from streamlit.testing.v1 import AppTest

    from specdec_diag.dashboard_app import APP_PATH

    out: dict = {}
    at = AppTest.from_file(str(APP_PATH), default_timeout=1800)
    t = time.perf_counter()
    at.run()
    out["overview_s"] = time.perf_counter() - t
    out["exceptions"] = [e.value for e in at.exception]
    out["metrics"] = {m.label: m.value for m in at.metric}
    if mode == "first":  # large inputs: the rules run in the background; wait for the findings too
        while any("still running" in i.value for i in at.info):
            time.sleep(1.0)
            at.run()
        out["findings_s"] = time.perf_counter() - t
        out["findings"] = sum(1 for m in at.markdown if "Recommendation" in m.value) + len(at.error)
    if mode == "reopen":
        # large inputs: a background thread precomputes each page's frames; a user reads the Overview
        # meanwhile. Measured: how long that takes, then the switches (first visits, cache hits).
        loaded = at.session_state["loaded"]
        loaded.warmed.wait(600)
        out["warm_s"] = time.perf_counter() - t
        at.session_state["cmp_a"] = at.session_state["cmp_b"] = "."  # Compare the directory with itself: nothing else to load
        for page in (*PAGES, "overview"):
            at.switch_page(f"views/{page}.py")
            t = time.perf_counter()
            at.run()
            out[f"{page}_s"] = time.perf_counter() - t
            out["exceptions"] += [e.value for e in at.exception]
    return out


def spawn(mode: str, logdir: Path) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", mode, "--dir", str(logdir)], capture_output=True,
                       text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--child", choices=("ingest", "first", "reopen"))
    ap.add_argument("--dir", type=Path)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.dir)))
        return
    d = ensure_dir(a.size_mb)
    shutil.rmtree(d / ".specdec-cache", ignore_errors=True)  # cold: no ingest cache, no report cache
    os.environ.pop("SPECDEC_CACHE_DIR", None)
    size = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
    print(f"{d}: {size / 1e6:,.0f} MB; {os.cpu_count()} CPUs; {platform.python_version()}", flush=True)
    ing = spawn("ingest", d)
    print(f"ingest (cold, parses everything): {ing['ingest_s']:.1f} s, {ing['windows']:,} windows", flush=True)
    first = spawn("first", d)
    print(f"first render after ingest (summary computed, rules start in the background): "
          f"{first['overview_s']:.2f} s; findings shown after {first['findings_s']:.1f} s", flush=True)
    re = spawn("reopen", d)
    print(f"re-open (ingest + report caches warm): {re['overview_s']:.2f} s; pages' frames precomputed "
          f"after {re['warm_s']:.1f} s", flush=True)
    print("| page switch | seconds |\n|---|---|")
    for page in (*PAGES, "overview"):
        print(f"| {page} | {re[f'{page}_s']:.2f} |")
    worst = max(re[f"{p}_s"] for p in (*PAGES, "overview"))
    print(f"worst page switch: {worst:.2f} s (target <= 1 s); first render: {first['overview_s']:.1f} s "
          f"(target <= 10 s)")
    exc = first["exceptions"] + re["exceptions"]
    if exc:
        raise SystemExit(f"exceptions while rendering: {exc[:3]}")
    print("overview metrics:", json.dumps(re["metrics"], ensure_ascii=False))


if __name__ == "__main__":
    main()
