#!/usr/bin/env python
"""Generate the sample traces under sample_logs/traces/ with the bundled model pair.

One healthy greedy trace, one healthy sampling trace (temperature 0.8, uniforms recorded), a baseline
(autoregressive) trace of the same prompts for speed-up, and one trace per injectable fault. Every
trace is then replayed against the reference verifier and the outcome written to sample_logs/.meta/traces.json, so
the README's "expected findings" are checked facts, not hopes.

Deterministic in tokens (fixed seed, fixed prompts written for this script, hence held out from the
pair's training corpus); the timing fields are measured and differ run to run.

    .venv/bin/python scripts/make_sample_logs.py                  # bundled pair (what is committed)
    .venv/bin/python scripts/make_sample_logs.py --tiny --out /tmp/x   # tiny random pair (no assets)
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Python-like prompts (the bundled pair is trained on Python source); written for this file, so they
# are not in the training corpus. Prompts on which the pair degenerates into low acceptance (an os.walk
# loop, a word counter: AR < 0.25 over 72 tokens) were dropped: the healthy traces must read as healthy.
PROMPTS = [
    'def moving_average(values, window):\n    """Return the moving average of values over window."""\n'
    "    if window <= 0:\n        raise ValueError('window must be positive')\n    result = []\n",
    "class LRUCache:\n    def __init__(self, capacity):\n        self.capacity = capacity\n"
    "        self._data = {}\n\n    def get(self, key, default=None):\n",
    "def parse_header(line):\n    key, sep, value = line.partition(':')\n    if not sep:\n"
    "        return None\n    return key.strip().lower(), value.strip()\n\n\ndef parse_headers(lines):\n",
    "def chunked(items, size):\n    \"\"\"Yield successive lists of at most size items.\"\"\"\n"
    "    batch = []\n    for item in items:\n        batch.append(item)\n",
    "class Stack:\n    def __init__(self):\n        self._items = []\n\n    def push(self, item):\n"
    "        self._items.append(item)\n\n    def pop(self):\n",
    "import json\n\n\ndef load_config(path, defaults=None):\n    config = dict(defaults or {})\n"
    "    with open(path) as handle:\n        data = json.load(handle)\n",
]

#: file stem -> (decode settings, finding codes the analysis is expected to raise, one-line story)
CASES: dict[str, tuple[dict, list[str], str]] = {
    "healthy-greedy": ({}, [], "greedy speculative decoding, gamma 4, no fault"),
    "healthy-sampling": ({"rule": "sampling", "temperature": 0.8}, [],
                         "exact speculative sampling at temperature 0.8, uniforms recorded"),
    "baseline-greedy": ({"baseline": True}, [], "autoregressive baseline of the same prompts (speed-up reference)"),
    "fault-accept-all": ({"fault": "accept-all"}, ["SUSPICIOUS_ACCEPTANCE", "VERIFIER_MISMATCH"],
                         "verifier bypassed: every draft accepted"),
    "fault-no-rollback": ({"fault": "no-rollback"}, ["KV_ROLLBACK", "NO_SPEEDUP"],
                          "rejected drafts' KV left in the target cache"),
    "fault-sequential-verify": ({"fault": "sequential-verify"}, ["SEQUENTIAL_VERIFY", "NO_SPEEDUP"],
                                "one target forward per draft position instead of one batched verify"),
    "fault-drop-bonus": ({"fault": "drop-bonus"}, ["BONUS_DROPPED"], "bonus token dropped on full accepts"),
    "fault-raw-draft-probs": ({"fault": "raw-draft-probs", "rule": "sampling", "temperature": 0.8, "top_k": 20},
                              ["VERIFIER_MISMATCH"],
                              "q recorded/used from raw draft logits while sampling with T=0.8, top-k 20"),
    "fault-position-shift": ({"fault": "position-shift"}, ["KV_ROLLBACK"],
                             "verify window positions shifted by one"),
    "fault-nan-verifier": ({"fault": "nan-verifier"}, ["PINNED_ACCEPTANCE_LENGTH", "NO_SPEEDUP"],
                           "verifier logits NaN from step 5 on"),
    "fault-slow-draft": ({"fault": "slow-draft"}, ["DRAFT_TOO_EXPENSIVE", "NO_SPEEDUP"],
                         "draft cost inflated {factor:g}x (oversized drafter)"),
}


def _tiny_pair(work: Path):
    """Fallback when the bundled pair is absent: the test suite's tiny random pair builders."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_pair_dirs, random_prompts  # the project's tiny-model builders

    tdir, ddir = make_pair_dirs(work)
    return tdir, ddir, random_prompts(len(PROMPTS), seed=1, min_len=4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "sample_logs" / "traces")
    ap.add_argument("--target", type=Path, default=None)
    ap.add_argument("--draft", type=Path, default=None)
    ap.add_argument("--tiny", action="store_true", help="use tiny random models (no bundled pair needed)")
    ap.add_argument("--gamma", type=int, default=4)
    # 6 prompts x 112 tokens: enough draft tokens (>= 500) for `check`'s default min_drafts on the healthy
    # traces, while each of them stays a plain .jsonl under ~200 KB
    ap.add_argument("--max-new-tokens", type=int, default=112)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gzip-over", type=int, default=190_000, help="gzip traces larger than this many bytes")
    ap.add_argument("--only", nargs="*", default=None, help="generate only these case names")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1 keeps timings steadiest on a shared machine)")
    ap.add_argument("--slow-draft-factor", type=float, default=32.0,
                    help="draft cost factor for fault-slow-draft (the fault's default 8 is too mild for "
                         "the bundled pair: speculation stays faster than the baseline)")
    ap.add_argument("--readme-only", action="store_true",
                    help="only rewrite the table in sample_logs/README.md from the existing manifest")
    args = ap.parse_args(argv)
    man = args.out.parent / ".meta" / f"{args.out.name}.json"
    readme = args.out.parent / "README.md"
    if args.readme_only:
        return update_readme(readme, json.loads(man.read_text()))

    import torch
    from transformers.utils import logging as hf_logging

    from specdec_diag.analysis.whatif import what_if
    from specdec_diag.decoder.faults import Fault
    from specdec_diag.decoder.models import ModelLoadError, default_pair_dirs, load_pair
    from specdec_diag.decoder.replay import replay_trace
    from specdec_diag.decoder.speculative import DecodeConfig, generate
    from specdec_diag.decoder.verification import AcceptanceRule, SamplingConfig
    from specdec_diag.schema import read_trace

    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    prompts: list = PROMPTS
    pair_source = "bundled"
    if args.tiny:
        import tempfile

        tdir, ddir, prompts = _tiny_pair(Path(tempfile.mkdtemp(prefix="sample-pair-")))
        pair_source = "tiny random (tests/conftest.py)"
    else:
        tdir, ddir = args.target, args.draft
        if tdir is None and not default_pair_dirs()[0].is_dir():
            print("error: bundled pair not found (specdec_diag/assets/pair); pass --target/--draft or --tiny",
                  file=sys.stderr)
            return 2
        pair_source = "bundled" if tdir is None else f"{tdir} + {ddir}"
    try:
        pair = load_pair(tdir, ddir)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {"generated_by": "scripts/make_sample_logs.py", "pair": pair_source,
                "models": pair.info, "gamma": args.gamma, "max_new_tokens": args.max_new_tokens,
                "seed": args.seed, "threads": args.threads, "prompts": len(prompts), "files": {}}
    traces = {}
    for name, (kw, expected, story) in CASES.items():
        if args.only and name not in args.only:
            continue
        kw = dict(kw)
        cfg = DecodeConfig(gamma=args.gamma, rule=AcceptanceRule(kw.pop("rule", "greedy")),
                           sampling=SamplingConfig(temperature=kw.pop("temperature", 1.0), top_k=kw.pop("top_k", 0)),
                           max_new_tokens=args.max_new_tokens, seed=args.seed, baseline=kw.pop("baseline", False),
                           fault=Fault(kw.pop("fault", None),
                                       {"factor": args.slow_draft_factor} if name == "fault-slow-draft" else {}))
        path = args.out / f"{name}.jsonl"
        for old in (path, path.with_suffix(".jsonl.gz")):
            old.unlink(missing_ok=True)
        t0 = time.perf_counter()
        res = generate(pair, prompts, cfg, trace=str(path))
        wall = time.perf_counter() - t0
        if path.stat().st_size > args.gzip_over:
            gz = path.with_name(path.name + ".gz")
            with open(path, "rb") as src, gzip.GzipFile(gz, "wb", mtime=0) as dst:
                shutil.copyfileobj(src, dst)
            path.unlink()
            path = gz
        traces[name] = path
        s = res.summary
        manifest["files"][path.name] = {
            "case": name, "story": story.format(factor=args.slow_draft_factor), "mode": res.header["mode"],
            "rule": res.header["rule"]["name"],
            "sampling": res.header["sampling"], "fault": res.header.get("fault"),
            "expected_findings": expected, "steps": s["steps"], "acceptance_rate": s["acceptance_rate"],
            "mean_acceptance_length": s["mean_acceptance_length"], "tokens_per_s": s["tokens_per_s"],
            "drafted": s.get("draft_tokens"), "bytes": path.stat().st_size, "wall_s": round(wall, 2),
        }
        print(f"{path.name:36s} steps={s['steps']:4d} AR={s['acceptance_rate'] or 0:.3f} "
              f"MAL={s['mean_acceptance_length'] or 0:.2f} {s['tokens_per_s'] or 0:7.1f} tok/s "
              f"{path.stat().st_size / 1024:6.1f} KB", flush=True)

    base = read_trace(traces["baseline-greedy"]) if "baseline-greedy" in traces else None
    for name, path in traces.items():
        tr = read_trace(path)
        r = replay_trace(tr, pair)  # replay checks; the what-if (analysis) explains
        wi = what_if(tr.steps, base.steps if base is not None and name != "baseline-greedy" else None)
        entry = manifest["files"][path.name]
        first = r.first
        entry["replay"] = {
            "diverged": r.diverged, "codes": r.codes, "steps_diverging": r.steps_diverging,
            "by_kind": r.by_kind, "near_ties": r.near_ties,
            "first": None if first is None else {"step": first.step, "position": first.position,
                                                 "kind": first.kind, "code": first.code},
            "what_if_best_gamma": wi.best_gamma if wi else None,
            "what_if_speedup_used": next((row.speedup for row in wi.rows if row.used), None) if wi else None,
            "measured_speedup": wi.measured_speedup if wi else None,
        }
        print(f"replay {path.name:36s} diverged={r.diverged!s:5} codes={','.join(r.codes) or '-'} "
              f"first={(first.step, first.position, first.kind) if first else None}", flush=True)
    _record_report(args.out, manifest)
    # a hidden directory: `report sample_logs/` scans recursively but skips hidden directories
    man.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(man.read_text()) if man.exists() and args.only else {"files": {}}
    old_files = {k: v for k, v in old.get("files", {}).items() if k not in manifest["files"]}
    manifest["files"] = dict(sorted({**old_files, **manifest["files"]}.items()))
    man.write_text(json.dumps(manifest, indent=1, default=str) + "\n")
    total = sum((args.out / f).stat().st_size for f in manifest["files"] if (args.out / f).exists())
    print(f"wrote {len(traces)} traces, {total / 1024:.0f} KB in total, manifest {man}")
    if args.out.resolve() == (ROOT / "sample_logs" / "traces").resolve():
        return update_readme(readme, manifest)
    return 0


def _record_report(out: Path, manifest: dict) -> None:
    """What `specdec-diag report <out> --format json` raises per file (errors/warnings), so the README
    states the analysis's real output, and a drift from the expected codes is shouted here."""
    from specdec_diag.analysis.report import build_report
    from specdec_diag.ingest.scan import scan

    rep = build_report(scan([out], use_cache=False))
    found: dict[str, dict[str, str]] = {name: {} for name in manifest["files"]}
    for f in rep["findings"]:
        if f["severity"] not in ("error", "warning"):
            continue
        for loc in f.get("locations") or []:
            name = Path(loc.get("path") or "").name
            if name in found:
                found[name][f["code"]] = f["severity"]
    for name, codes in found.items():
        entry = manifest["files"][name]
        entry["report_findings"] = sorted(codes, key=lambda c: (codes[c] != "error", c))
        if set(entry["report_findings"]) != set(entry["expected_findings"]):
            print(f"WARNING {name}: report raises {entry['report_findings']}, expected "
                  f"{entry['expected_findings']}", file=sys.stderr)


BEGIN = "<!-- traces-table: generated by scripts/make_sample_logs.py from .meta/traces.json; do not edit -->"
END = "<!-- /traces-table -->"


def _x(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}×"


def render_table(manifest: dict) -> str:
    """The README's measured table, from the manifest alone (so it cannot drift from the files)."""
    rows = [f"{manifest['prompts']} prompts × {manifest['max_new_tokens']} new tokens, γ = {manifest['gamma']}, "
            f"seed {manifest['seed']}, {manifest['threads']} torch thread(s), pair: {manifest['pair']}.",
            "",
            "| file | what it is | steps | drafted | AR | MAL | speed-up | `report` finds (errors/warnings) "
            "| `replay` finds: first divergence |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, e in manifest["files"].items():
        r = e.get("replay") or {}
        ar, mal = e["acceptance_rate"], e["mean_acceptance_length"]
        speed = "1× (reference)" if e["mode"] == "baseline" else _x(r.get("measured_speedup"))
        if r.get("diverged"):
            f = r.get("first") or {}
            kinds = ", ".join(f"{k} {n}" for k, n in sorted((r.get("by_kind") or {}).items(), key=lambda kv: -kv[1]))
            rep = (f"step {f.get('step')}: `{f.get('kind')}` [{f.get('code')}]; {r.get('steps_diverging')} steps "
                   f"diverge ({kinds})")
        elif r.get("what_if_best_gamma") is not None:
            rep = f"none (what-if: best γ = {r['what_if_best_gamma']}, at γ used {_x(r.get('what_if_speedup_used'))})"
        else:
            rep = "none"
        codes = ", ".join(e.get("report_findings") or []) or "none"
        rows.append(f"| `{name}` | {e['story']} | {e['steps']} | {e.get('drafted', '–')} | "
                    f"{'–' if ar is None else f'{ar:.3f}'} | {'–' if mal is None else f'{mal:.2f}'} | {speed} | "
                    f"{codes} | {rep} |")
    return "\n".join(rows)


def update_readme(readme: Path, manifest: dict) -> int:
    """Rewrite the text between the table markers of ``readme``; 2 when the markers are missing."""
    text = readme.read_text(encoding="utf-8")
    i, j = text.find(BEGIN), text.find(END)
    if i < 0 or j < i:
        print(f"error: {readme}: table markers {BEGIN!r} ... {END!r} not found", file=sys.stderr)
        return 2
    new = text[:i + len(BEGIN)] + "\n" + render_table(manifest) + "\n" + text[j:]
    if new != text:
        readme.write_text(new, encoding="utf-8")
        print(f"rewrote the table in {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
