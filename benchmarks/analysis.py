"""Analysis speed on a large log: ``metrics.summarize``, ``run_rules`` and ``report.build_report``, the
working tree against a reference git revision (default: the per-row version before the column-wise
rewrite), on the same window table, in the same run.

    .venv/bin/python benchmarks/analysis.py                   # 1 GB vLLM V1 log, ~1.09 M windows
    .venv/bin/python benchmarks/analysis.py --size-mb 200     # ~220 k windows
    .venv/bin/python benchmarks/analysis.py --ref none        # working tree only
    .venv/bin/python benchmarks/analysis.py --ref HEAD        # against the last commit

The log comes from benchmarks/ingest.py's generator (git-ignored under benchmarks/_data, made once) and
is ingested once; its tables are written to parquet so both contenders read the same frames. Each
contender runs in its own subprocess (the reference from ``git archive <ref>``), and their outputs are
compared: the summary, the findings and the report must be identical JSON, else the benchmark fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "_data"
TABLES = ("windows", "steps", "inputs", "malformed", "configs")
#: the last commit before metrics and rules went column-wise (the per-row Python version)
BEFORE = "36f3106"


def prepare(size_mb: int) -> Path:
    """Ingest (once) a generated vLLM V1 log of ``size_mb`` MB; its tables as parquet in a folder."""
    out = DATA / f"analysis_{size_mb}mb"
    if (out / "headers.json").exists():
        return out
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ingest import generate  # benchmarks/ingest.py: the same log mix as the ingest benchmark

    from specdec_diag.ingest import scan

    log = DATA / f"vllm_v1_{size_mb}mb.log"
    made = DATA / f"dashboard_{size_mb}mb" / log.name  # benchmarks/dashboard.py's copy, ingest cached
    log = made if made.exists() and not log.exists() else log
    if not log.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        print(f"generating {log} ...", flush=True)
        generate(log, size_mb)
    print(f"ingesting {log} ...", flush=True)
    r = scan([log])
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        getattr(r, name).write_parquet(out / f"{name}.parquet")
    (out / "headers.json").write_text(json.dumps(r.headers, default=str))
    return out


def child(data: Path, dump: Path) -> None:
    """Time the three calls with whichever ``specdec_diag`` is first on sys.path; write the outputs."""
    import polars as pl

    from specdec_diag.analysis import metrics, report
    from specdec_diag.analysis.rules import run_rules
    from specdec_diag.ingest.base import IngestResult

    tables = {n: pl.read_parquet(data / f"{n}.parquet") for n in TABLES}
    result = IngestResult(**tables, headers=json.loads((data / "headers.json").read_text()))
    times: dict[str, float] = {}
    t = time.perf_counter()
    summary = metrics.summarize(result)
    times["summarize"] = time.perf_counter() - t
    t = time.perf_counter()
    findings = [f.to_dict() for f in run_rules(result)]
    times["run_rules"] = time.perf_counter() - t
    t = time.perf_counter()
    rep = report.build_report(result)
    times["build_report"] = time.perf_counter() - t
    t = time.perf_counter()
    report.render_json(rep)
    times["render_json"] = time.perf_counter() - t
    dump.write_text(json.dumps({"summary": summary, "findings": findings, "report": rep}, default=str,
                               sort_keys=False))
    print(json.dumps({"times": times, "windows": result.windows.height, "module": metrics.__file__}))


def spawn(pkg_root: Path, data: Path, dump: Path) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", str(data), "--dump", str(dump)], capture_output=True,
                       text=True, cwd=pkg_root, env={"PYTHONPATH": str(pkg_root), "PATH": "/usr/bin:/bin"})
    if r.returncode != 0:
        raise SystemExit(f"contender in {pkg_root} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--ref", default=BEFORE, help="git revision to compare with, or 'none'")
    ap.add_argument("--child", type=Path)
    ap.add_argument("--dump", type=Path)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.dump)
        return
    data = prepare(args.size_mb)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"working tree": spawn(ROOT, data, Path(tmp) / "new.json")}
        if args.ref != "none":
            ref_root = Path(tmp) / "ref"
            ref_root.mkdir()
            archive = subprocess.run(["git", "archive", args.ref, "specdec_diag"], cwd=ROOT, capture_output=True,
                                     check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(ref_root)], input=archive, check=True)
            runs[f"ref {args.ref}"] = spawn(ref_root, data, Path(tmp) / "ref.json")
            new, ref = (json.loads((Path(tmp) / f).read_text()) for f in ("new.json", "ref.json"))
            same = {k: new[k] == ref[k] for k in new}
        n = runs["working tree"]["windows"]
    print(f"\n{n:,} windows ({args.size_mb} MB vLLM V1 log), seconds:\n")
    names = list(runs)
    print("| call | " + " | ".join(names) + (" | speed-up | identical output |" if len(names) > 1 else " |"))
    print("|---" * (len(names) + (3 if len(names) > 1 else 1)) + "|")
    for call in ("summarize", "run_rules", "build_report", "render_json"):
        cells = [f"{runs[c]['times'][call]:.2f}" for c in names]
        extra = ""
        if len(names) > 1:
            key = {"summarize": "summary", "run_rules": "findings", "build_report": "report"}.get(call)
            ratio = runs[names[1]]["times"][call] / max(runs[names[0]]["times"][call], 1e-9)
            extra = f" {ratio:.1f}x | {'yes' if key is None or same[key] else 'NO'} |"
        print(f"| `{call}` | " + " | ".join(cells) + (" |" + extra if extra else " |"))
    if len(names) > 1 and not all(same.values()):
        raise SystemExit("outputs differ from the reference: " + ", ".join(k for k, v in same.items() if not v))


if __name__ == "__main__":
    main()
