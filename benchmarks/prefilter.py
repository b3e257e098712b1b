"""Finding the marker lines of a log, side by side: the engines considered for the scan's prefilter
(specdec_diag/ingest/prefilter.py). Each finds the lines holding any of all sources' ~175 literal
markers in 8 MB pieces of the same file and returns their line numbers; all must agree.

    .venv/bin/python benchmarks/prefilter.py                       # 256 MB production-like log
    .venv/bin/python benchmarks/prefilter.py --log benchmarks/_data/vllm_v1_256mb.log --mb 64

CPU time of this process (pinned to one core, polars on one thread when run with
``POLARS_MAX_THREADS=1 taskset -c 1``); ``grep -c -F -f`` as a child process for reference.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from specdec_diag.ingest import prefilter  # noqa: E402
from specdec_diag.ingest.reading import chunk_marked, marker_regex  # noqa: E402
from specdec_diag.ingest.registry import SOURCES  # noqa: E402

MARKERS = prefilter.marker_tuple(m for s in SOURCES if s.reads_lines for m in s.markers)
#: one marker set per source, as the scan searches them (each hit says which sources a line goes to)
GROUPS = tuple(prefilter.marker_tuple(s.markers) for s in SOURCES if s.reads_lines)
PIECE = 8 << 20


_CUT: dict[int, list[tuple[bytes, int]]] = {}


def cut(data: bytes) -> list[tuple[bytes, int]]:
    """(piece, first line) cut at newlines, as the scan reads them (before the clock starts)."""
    out, pos, line = [], 0, 1
    while pos < len(data):
        end = data.rfind(b"\n", pos, pos + PIECE) + 1 or len(data)
        out.append((data[pos:end], line))
        line += data.count(b"\n", pos, end)
        pos = end
    _CUT[id(data)] = out
    return out


def pieces(data: bytes) -> list[tuple[bytes, int]]:
    return _CUT[id(data)]


def hyperscan_lines(data: bytes) -> list[int]:
    out: list[int] = []
    for piece, first in pieces(data):
        out += prefilter.find_marked(piece, first, GROUPS)[0]["line"].to_list()
    return out


def hyperscan_tab_in_database(data: bytes) -> list[int]:
    """The scan's engine before one-byte markers (``\t``) moved to a memchr loop: every marker in
    the Hyperscan database."""
    keep = prefilter._one_byte
    prefilter._one_byte = lambda _groups: ()
    try:
        return hyperscan_lines(data)
    finally:
        prefilter._one_byte = keep


def polars_csv_regex(data: bytes) -> list[int]:
    rx = marker_regex(MARKERS)
    out: list[int] = []
    for piece, first in pieces(data):
        out += chunk_marked(piece, first, rx)[0]["line"].to_list()
    return out


def polars_contains_any(data: bytes) -> list[int]:
    out: list[int] = []
    for piece, first in pieces(data):
        df = (pl.scan_csv(piece, has_header=False, quote_char=None, new_columns=["text"], infer_schema=False,
                          encoding="utf8-lossy", separator="\x1f", truncate_ragged_lines=True)
              .with_row_index("line", offset=first).filter(pl.col("text").str.contains_any(list(MARKERS)))
              .collect())
        out += df["line"].to_list()
    return out


def _starts_to_lines(piece: bytes, first: int, hits: list[int]) -> list[int]:
    """Hit offsets -> sorted distinct line numbers (newlines counted between hits)."""
    lines, count, prev = [], first, 0
    for h in sorted(set(piece.rfind(b"\n", 0, h) + 1 for h in hits)):
        count += piece.count(b"\n", prev, h)
        lines.append(count)
        prev = h
    return lines


def bytes_find_per_literal(data: bytes) -> list[int]:
    out: list[int] = []
    for piece, first in pieces(data):
        hits = []
        for m in MARKERS:
            needle, at = m.encode(), piece.find(m.encode())
            while at >= 0:
                hits.append(at)
                at = piece.find(needle, piece.find(b"\n", at) + 1 or len(piece))
        out += _starts_to_lines(piece, first, hits)
    return out


def python_re_alternation(data: bytes) -> list[int]:
    rx = re.compile(marker_regex(MARKERS).encode())
    out: list[int] = []
    for piece, first in pieces(data):
        out += _starts_to_lines(piece, first, [m.start() for m in rx.finditer(piece)])
    return out


def numpy_newlines_only(data: bytes) -> list[int]:
    """Not a contender: the floor under every engine (line numbers need every newline counted)."""
    for piece, _ in pieces(data):
        np.count_nonzero(np.frombuffer(piece, np.uint8) == 10)
    return []


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def grep_fixed(path: Path, nbytes: int) -> tuple[float, int]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("\n".join(MARKERS) + "\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    head = subprocess.Popen(["head", "-c", str(nbytes), str(path)], stdout=subprocess.PIPE)
    out = subprocess.run(["grep", "-c", "-F", "-f", fh.name], stdin=head.stdout, capture_output=True, text=True)
    head.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.unlink(fh.name)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), int(out.stdout.strip() or 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, default=ROOT / "benchmarks" / "_data" / "vllm_v1_256mb_production.log")
    ap.add_argument("--mb", type=int, default=256, help="read this much of the log")
    ap.add_argument("--slow-mb", type=int, default=16, help="the Python re contender reads only this much")
    args = ap.parse_args()
    data = args.log.read_bytes()[: args.mb << 20]
    data = data[: data.rfind(b"\n") + 1]
    print(f"{args.log.name}: {len(data) / 1e6:.0f} MB, {len(MARKERS)} markers, engine here: {prefilter.engine()}")
    print("| engine | CPU s | MB/s per core (CPU) | lines found |\n|---|---|---|---|")
    want = None
    contenders = [hyperscan_lines, hyperscan_tab_in_database, polars_csv_regex, polars_contains_any, bytes_find_per_literal,
                  python_re_alternation, numpy_newlines_only]
    for fn in contenders:
        if fn in (hyperscan_lines, hyperscan_tab_in_database) and prefilter.engine() != "hyperscan":
            continue
        part = data if fn is not python_re_alternation else data[: data.rfind(b"\n", 0, args.slow_mb << 20) + 1]
        cut(part)
        c = cpu()
        t = time.perf_counter()
        got = fn(part)
        dc = cpu() - c or (time.perf_counter() - t)
        if part is data and fn is not numpy_newlines_only:
            want = got if want is None else want
            assert got == want, f"{fn.__name__} disagrees"
        print(f"| {fn.__name__}{'' if part is data else f' (first {len(part) >> 20} MB)'} | {dc:.2f} | "
              f"{len(part) / 1e6 / dc:.0f} | {len(got)} |")
    g, n = grep_fixed(args.log, len(data))
    print(f"| grep -c -F -f markers (child process) | {g:.2f} | {len(data) / 1e6 / g:.0f} | {n} |")


if __name__ == "__main__":
    main()
