"""llama.cpp parse time: ``llamacpp.parse`` on the marker lines of 200 000 lines repeated from
``sample_logs/engines/llamacpp/healthy_server.log`` (per-step, per-request and statistics lines), best of 3.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/llamacpp_parse.py [--lines N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

from specdec_diag.ingest import llamacpp
from specdec_diag.ingest._textparse import lines_from_texts

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000)
    n = ap.parse_args().lines
    src = (ROOT / "sample_logs/engines/llamacpp/healthy_server.log").read_text().splitlines()
    lines = lines_from_texts((src * (n // len(src) + 1))[:n])
    marked = lines.filter(pl.any_horizontal([pl.col("text").str.contains(m, literal=True) for m in llamacpp.MARKERS]))
    best, windows = float("inf"), 0
    for _ in range(3):
        t0 = time.perf_counter()
        windows = llamacpp.parse(marked, "bench").windows.height
        best = min(best, time.perf_counter() - t0)
    print(f"{n} lines, {marked.height} marker lines, {windows} windows: best of 3 {best:.2f} s")


if __name__ == "__main__":
    main()
