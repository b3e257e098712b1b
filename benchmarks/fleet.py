"""The fleet Overview on a large directory: 500 runs in 2,000 files (issue 10), measured with streamlit's
AppTest (the real app script, headless; no browser painting) and the report builder.

    .venv/bin/python benchmarks/fleet.py                 # 250 hosts: 500 runs, 2,000 files
    .venv/bin/python benchmarks/fleet.py --hosts 25      # 50 runs, 200 files: a quick run

Each host logs one vLLM EAGLE-3 process that restarts once into another k (two runs), its log rotated
by date into 8 files (``vllm-2026-03-0N.log``); one host in 25 has a broken drafter. Phases, each in
a fresh process:

1. cold: the Overview with empty caches: ingest of every file and run segmentation, then the runs
   table renders (``overview_s``); the diagnosis of every run follows in a background thread and the
   statuses appear when it finishes (``statuses_s``): what a first visit costs;
2. warm: the Overview again in a new process (ingest Parquet cache and dashboard report cache warm);
3. selector: choosing a run in the sidebar and switching to Acceptance, in the session of 2;
4. changed: one file grew by a line (a live directory): the whole-report cache misses, the per-run
   cache (``analysis/run_cache.py``) serves every run whose rows did not change;
5. report: ``build_report`` alone on the scanned directory (segmentation + per-run rules, no cache),
   then the judging alone (segmentation given) with the grouped unit pass and run by run.
Targets (issue 10): Overview warm <= 5 s, cold <= 30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "_data"


def make_fleet(hosts: int) -> Path:
    """``hosts`` hosts x 2 runs x 8 rotated files, generated once (git-ignored under _data/)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_fleet as mf

    d = DATA / f"fleet_{hosts}"
    done = d / ".complete"
    if done.exists():
        return d
    for h in range(hosts):
        alpha = 0.03 if h % 25 == 7 else 0.78
        start = mf.T0 + timedelta(seconds=h)
        lines = mf.vllm_run(h, start, 3, alpha, 24) + mf.vllm_run(10_000 + h, start + timedelta(minutes=5), 5, alpha, 24)
        per = len(lines) // 8 + 1
        for i in range(8):
            mf.write(d / f"host-{h:03d}" / f"vllm-2026-03-{i + 1:02d}.log", lines[i * per:(i + 1) * per])
    done.write_text("ok\n")
    return d


def child(mode: str, logdir: Path) -> dict:
    os.environ["SPECDEC_DASHBOARD_ROOT"] = str(logdir)
    if mode == "report":
        from specdec_diag.analysis.report import build_report
        from specdec_diag.analysis.runs import segment
        from specdec_diag.ingest import scan

        res = scan([logdir])
        t0 = time.perf_counter()
        rep = build_report(res)
        out = {"report_s": time.perf_counter() - t0, "runs": len(rep["runs"]), "files": res.inputs.height,
               "by_status": rep["fleet"]["by_status"]}
        runs = segment(res)  # the judging alone, grouped pass vs run by run (identical reports)
        for name, grouped in (("judge_grouped_s", True), ("judge_per_run_s", False)):
            t0 = time.perf_counter()
            build_report(res, runs=runs, grouped=grouped)
            out[name] = time.perf_counter() - t0
        return out
    from streamlit.testing.v1 import AppTest

    from specdec_diag.dashboard_app import APP_PATH

    t0 = time.perf_counter()
    at = AppTest.from_file(str(APP_PATH), default_timeout=600).run()
    out = {"overview_s": time.perf_counter() - t0, "exceptions": [e.value for e in at.exception][:2],
           "runs_table_rows": len(at.dataframe[0].value) if at.dataframe else 0}
    loaded = at.session_state["loaded"]
    for _ in range(36000):  # many runs: the rules finish in a thread, then the page has the statuses
        if loaded.report.get("findings") is not None:
            break
        time.sleep(0.1)
    out["statuses_s"] = time.perf_counter() - t0
    at.run()
    out["metrics"] = {m.label: m.value for m in at.metric}
    if mode in ("warm", "changed"):
        out["rules_s"] = loaded.rules_s
    if mode == "warm":
        sel = next(s for s in at.selectbox if s.label == "Run")
        t1 = time.perf_counter()
        sel.set_value(sel.options[-1]).run()
        out["select_run_s"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        at.switch_page("views/acceptance.py").run()
        out["acceptance_page_s"] = time.perf_counter() - t1
        out["exceptions"] += [e.value for e in at.exception][:2]
    return out


def run_child(mode: str, logdir: Path, env: dict[str, str]) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--dir", str(logdir)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=250, help="hosts (2 runs and 8 files each)")
    ap.add_argument("--child")
    ap.add_argument("--dir")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, Path(a.dir))))
        return
    d = make_fleet(a.hosts)
    cache = DATA / f"fleet_{a.hosts}_cache"
    if cache.exists():
        import shutil

        shutil.rmtree(cache)
    env = dict(os.environ, SPECDEC_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    res = {"hosts": a.hosts, "files": a.hosts * 8, "machine": f"{platform.node()} {os.cpu_count()} cpu",
           "load": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    res["cold"] = run_child("cold", d, env)
    res["warm"] = run_child("warm", d, env)
    grown = d / "host-000" / "vllm-2026-03-08.log"
    original = grown.read_bytes()
    try:
        grown.write_bytes(original + b"INFO 03-14 12:00:00 [api_server.py:1] a line no parser reads\n")
        res["changed"] = run_child("changed", d, env)
    finally:
        grown.write_bytes(original)
    res["report"] = run_child("report", d, env)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
