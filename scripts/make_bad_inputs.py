"""Generate the bad-input corpus of issues 15 and 16 into ``tests/fixtures/bad/`` and describe it.

Every case is cut from a real bundled sample (a vLLM V1 log, a Prometheus scrape file, one of our
traces), so "records before the damage" is a number we can state. Small cases are committed (the
whole directory stays well under 1 MB); cases that are large, or that a git checkout cannot hold
(symlinks, unreadable files, 20,000 files, a 200 MB line), are built at test time into a temporary
directory by :func:`build_runtime`, which ``tests/test_bad_inputs.py`` imports.

Each :class:`Case` states the behaviour the issues ask for, per command: exit code (0 ok, 1 check
failed, 2 usage or unreadable input, 3 no data), whether stderr must name the path (and the line),
a message substring, how many records must be kept, which lines must be reported malformed, and a
peak-RSS bound. ``manifest.json`` is the same table for people; the test reads the Python list.

    python scripts/make_bad_inputs.py            # rewrite tests/fixtures/bad/ and its manifest
    python scripts/make_bad_inputs.py --check    # exit 1 if the committed files differ
    python scripts/make_bad_inputs.py --status DUMP   # markdown table from a BADINPUT_DUMP file
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import sys
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "bad"
VLLM = REPO / "sample_logs" / "engines" / "vllm" / "v1_healthy_eagle.log"
PROM = REPO / "sample_logs" / "engines" / "prometheus" / "healthy_vllm_v1_scrapes.prom"
TRACE = REPO / "sample_logs" / "traces" / "healthy-greedy.jsonl"

#: commands a case can apply to; "dashboard" is ``specdec_diag.dashboard_app.data.load`` in-process.
LOG_COMMANDS = ("ingest", "report", "check", "dashboard")
ALL_COMMANDS = (*LOG_COMMANDS, "replay")
MARKER = "SpecDecoding metrics:"
#: records the undamaged vLLM sample yields (30 SpecDecoding lines + 30 throughput lines).
VLLM_WINDOWS = 60
#: records the undamaged Prometheus sample yields (11 intervals); a damaged sample may cost the two
#: intervals it bounds.
PROM_WINDOWS = 11
#: steps kept from the healthy trace for the trace cases (small, so replay stays quick).
TRACE_STEPS = 6
#: lines longer than this are cut and reported malformed once issue 16 row 7 is fixed.
MAX_LINE_BYTES = 1024 * 1024


@dataclass
class Case:
    """One bad input and what every command must do with it (see the module docstring)."""

    id: str
    path: str                      # relative to tests/fixtures/bad/ (or to the runtime directory)
    what: str
    commands: tuple[str, ...] = LOG_COMMANDS
    exit: dict[str, int] = field(default_factory=dict)   # per command; missing -> default_exit
    default_exit: int = 0
    names_path: bool = True        # stderr must contain the path (dashboard: the file's name)
    line: int | None = None        # stderr must contain "path:line" (gzip damage: see line_max)
    line_max: int | None = None    # corrupt gzip: the warning "after line N" may name N + 1 in line..line_max
    message: str | None = None     # stderr must contain this
    windows: int | None = None     # at least this many window records kept
    steps: int | None = None       # at least this many trace steps kept (ingest, dashboard)
    malformed_lines: tuple[int, ...] = ()  # each must appear as a malformed row (ingest --out)
    invariants: tuple[str, ...] = ()       # named checks on the report JSON (see the test)
    max_rss_mb: int | None = None
    timeout_s: int = 120
    runtime: bool = False          # built by build_runtime(), not committed
    slow: bool = False             # needs > 20 s: marked ``slow`` in the test
    issue: str = ""

    def exit_for(self, command: str) -> int:
        return self.exit.get(command, self.default_exit)


# ---------------------------------------------------------------------------------------------
# sources cut from the bundled samples
# ---------------------------------------------------------------------------------------------


def vllm_lines() -> list[str]:
    return VLLM.read_text(encoding="utf-8").splitlines()


def vllm_text() -> str:
    return "\n".join(vllm_lines()) + "\n"


def marker_line_numbers(lines: list[str]) -> list[int]:
    """1-based numbers of the SpecDecoding lines."""
    return [i + 1 for i, t in enumerate(lines) if MARKER in t]


def trace_lines(steps: int = TRACE_STEPS) -> list[str]:
    """The healthy greedy trace's header and its first ``steps`` step records (no summary: allowed,
    as for a run that was stopped)."""
    lines = TRACE.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["type"] == "header"
    body = [t for t in lines[1:] if json.loads(t)["type"] == "step"][:steps]
    return [lines[0], *body]


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip (no name, mtime 0), so regenerating does not change committed files."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def gunzip_prefix(blob: bytes) -> bytes:
    """What a reader can decompress from a damaged gzip before the damage."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    for i in range(0, len(blob), 64):
        try:
            out += d.decompress(blob[i : i + 64])
        except zlib.error:
            break
    return bytes(out)


def complete_lines(data: bytes) -> list[str]:
    """The whole lines in ``data`` (a trailing partial line dropped)."""
    text = data.decode("utf-8", errors="replace")
    return text.split("\n")[:-1]


def vllm_windows_in(lines: list[str]) -> int:
    """Windows the vLLM parser makes from these sample lines: one per SpecDecoding line and one per
    throughput line (the sample logs each exactly once per 10 s interval)."""
    return sum(1 for t in lines if MARKER in t or "Avg generation throughput:" in t)


# ---------------------------------------------------------------------------------------------
# committed cases
# ---------------------------------------------------------------------------------------------


def _truncated_gz() -> tuple[bytes, int, int]:
    """The damaged file, the windows in its readable whole lines, and the first line not read whole
    (the line a warning must name: "where it broke")."""
    blob = gzip_bytes(vllm_text().encode())
    cut = blob[: int(len(blob) * 0.6)]
    lines = complete_lines(gunzip_prefix(cut))
    return cut, vllm_windows_in(lines), len(lines) + 1


def _corrupt_gz() -> tuple[bytes, int, int, int]:
    """The damaged file, the windows in its intact lines, the first line the damage changed, and one
    past the last complete line zlib yields before it raises. Deflate notices damage late: the lines
    between those two decompress to garbage (here 43..72 differ from the original), so a reader can
    only say "after line N" for some N + 1 in that range, never exactly where the bytes broke."""
    orig = vllm_text().encode()
    blob = bytearray(gzip_bytes(orig))
    mid = len(blob) // 2
    blob[mid : mid + 32] = b"\xff" * 32  # an invalid deflate block in the middle of the stream
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    for i in range(len(blob)):  # byte by byte: everything zlib yields before it raises
        try:
            out += d.decompress(bytes(blob[i : i + 1]))
        except zlib.error:
            break
    first_diff = next(k for k in range(len(out)) if out[k] != orig[k])
    intact = complete_lines(bytes(out[:first_diff]))
    return bytes(blob), vllm_windows_in(intact), len(intact) + 1, out.count(b"\n") + 1


def _nan_metrics() -> tuple[str, int]:
    lines = vllm_lines()
    no = marker_line_numbers(lines)[12]
    head, _, _ = lines[no - 1].partition(MARKER)
    # what vLLM prints for an interval without drafts: counts 0, every ratio nan
    lines[no - 1] = (head + MARKER + " Mean acceptance length: nan, Accepted throughput: 0.00 tokens/s, Drafted "
                     "throughput: 0.00 tokens/s, Accepted: 0 tokens, Drafted: 0 tokens, Per-position acceptance "
                     "rate: nan, nan, nan, Avg Draft acceptance rate: nan%")
    return "\n".join(lines) + "\n", no


def _unit_separator() -> str:
    """``\\x1f`` (polars' line-reader separator in scan.py) just before the marker on 10 of the 30
    SpecDecoding lines: the marker itself is intact, so every line must still be read."""
    lines = vllm_lines()
    for no in marker_line_numbers(lines)[::3]:
        lines[no - 1] = lines[no - 1].replace(MARKER, "\x1f" + MARKER)
    return "\n".join(lines) + "\n"


def _invalid_utf8() -> bytes:
    """Invalid UTF-8 (lone continuation bytes, a truncated sequence, 0xff) in request lines and in
    the prefix of every fifth SpecDecoding line; the metric text itself stays valid."""
    out = []
    marks = set(marker_line_numbers(vllm_lines())[::5])
    for i, t in enumerate(vllm_lines(), start=1):
        b = t.encode()
        if i in marks:
            b = b.replace(b"(APIServer pid=1)", b"(APIServer \xff\xfe pid=1)")
        elif '"POST' in t and i % 2:
            b = b.replace(b'"POST', b'\xc3\x28 \x80\x81 "POST')
        out.append(b)
    return b"\n".join(out) + b"\n"


def _nul_bytes() -> bytes:
    """A zero-filled block between two lines (what a crashed writer on a preallocated file leaves)
    and NULs inside two request lines."""
    lines = [t.encode() for t in vllm_lines()]
    lines[40] = lines[40].replace(b"POST", b"PO\x00\x00ST")
    lines[80] = lines[80].replace(b"POST", b"\x00POST")
    return b"\n".join(lines[:60]) + b"\n" + b"\x00" * 512 + b"\n" + b"\n".join(lines[60:]) + b"\n"


def _prom_lines() -> list[str]:
    return PROM.read_text(encoding="utf-8").splitlines()


def _prom_replace(match: str, occurrence: int, value: str) -> tuple[str, int]:
    """The Prometheus sample with the value of the ``occurrence``-th sample line containing
    ``match`` replaced; returns the text and that line's number."""
    lines = _prom_lines()
    hits = [i for i, t in enumerate(lines) if t.startswith(match)]
    i = hits[occurrence]
    lines[i] = lines[i].rsplit(" ", 1)[0] + " " + value
    return "\n".join(lines) + "\n", i + 1


def _prom_nan_inf() -> tuple[str, list[int]]:
    text, a = _prom_replace("vllm:spec_decode_num_accepted_tokens_total", 2, "NaN")
    lines = text.splitlines()
    hits = [i for i, t in enumerate(lines) if t.startswith("vllm:spec_decode_num_draft_tokens_total")]
    lines[hits[3]] = lines[hits[3]].rsplit(" ", 1)[0] + " +Inf"
    per = [i for i, t in enumerate(lines) if t.startswith("vllm:spec_decode_num_accepted_tokens_per_pos_total")]
    lines[per[7]] = lines[per[7]].rsplit(" ", 1)[0] + " -Inf"
    return "\n".join(lines) + "\n", sorted([a, hits[3] + 1, per[7] + 1])


def _prom_counter_reset() -> str:
    """A server restart between two scrapes: every counter of the later scrapes starts again near 0."""
    lines = _prom_lines()
    scrapes = [i for i, t in enumerate(lines) if t.startswith("# scrape")]
    start = scrapes[len(scrapes) // 2]
    out = lines[:start]
    for t in lines[start:]:
        if t.startswith("vllm:spec_decode") and "_total" in t.split("{", 1)[0]:
            name, v = t.rsplit(" ", 1)
            t = f"{name} {float(v) * 0.1:.1f}"
        out.append(t)
    return "\n".join(out) + "\n"


def _prom_accepted_gt_drafted() -> tuple[str, int]:
    """Issue 16 row 11: the last scrape reports more accepted tokens than draft tokens."""
    lines = _prom_lines()
    dr = [i for i, t in enumerate(lines) if t.startswith("vllm:spec_decode_num_draft_tokens_total")][-1]
    ac = [i for i, t in enumerate(lines) if t.startswith("vllm:spec_decode_num_accepted_tokens_total")][-1]
    drafted = float(lines[dr].rsplit(" ", 1)[1])
    lines[ac] = lines[ac].rsplit(" ", 1)[0] + f" {drafted * 1.048:.1f}"
    return "\n".join(lines) + "\n", ac + 1


def committed_cases() -> list[tuple[Case, bytes | str]]:
    """Every committed case with its file content."""
    v = vllm_text()
    tr = trace_lines()
    trunc_gz, trunc_kept, trunc_line = _truncated_gz()
    corrupt_gz, corrupt_kept, corrupt_line, corrupt_max = _corrupt_gz()
    nan_text, nan_line = _nan_metrics()
    prom_nan, prom_nan_lines = _prom_nan_inf()
    big_text, big_line = _prom_replace("vllm:spec_decode_num_draft_tokens_total", 2, "99999999999999999999999")
    agd_text, agd_line = _prom_accepted_gt_drafted()
    step_line = json.dumps(json.loads(tr[1]))
    trunc_trace = "\n".join(tr) + "\n" + step_line[: len(step_line) // 2]  # crashed writer: half a line
    trace_gz = gzip_bytes(("\n".join(tr) + "\n").encode())
    trace_gz_cut = trace_gz[: int(len(trace_gz) * 0.85)]
    trace_gz_lines = complete_lines(gunzip_prefix(trace_gz_cut))
    trace_gz_kept = sum(1 for t in trace_gz_lines[1:] if '"type": "step"' in t)
    header9 = json.loads(tr[0]) | {"schema": "specdec-trace@9"}
    schema9 = "\n".join([json.dumps(header9), *tr[1:]]) + "\n"
    rng = random.Random(15)
    binary = bytes(rng.randrange(256) for _ in range(4096))
    unsupported = "unsupported trace schema 'specdec-trace@9' (this version reads @1)"
    c = Case
    return [
        (c("empty", "empty.log", "a zero-byte log", ALL_COMMANDS, exit={"replay": 2}, default_exit=3,
           windows=0, issue="15"), b""),
        (c("binary", "binary.log", "4 KiB of random bytes", ALL_COMMANDS, exit={"replay": 2}, default_exit=3,
           windows=0, issue="15"), binary),
        (c("nul_bytes", "nul_bytes.log", "a 512-byte zero-filled block between lines, NULs inside lines",
           windows=VLLM_WINDOWS, names_path=False, issue="15"), _nul_bytes()),
        (c("truncated_gz", "truncated.log.gz", "the vLLM sample gzipped, cut at 60 % of its bytes",
           windows=trunc_kept, line=trunc_line, message="gzip", issue="15, 16 row 8"), trunc_gz),
        (c("corrupt_gz", "corrupt.log.gz", "the vLLM sample gzipped, 32 bytes in the middle overwritten",
           windows=corrupt_kept, line=corrupt_line, line_max=corrupt_max, message="gzip", issue="15, 16 row 8"),
         corrupt_gz),
        (c("not_gzip", "not_gzip.jsonl.gz", "a plain-text trace named .gz", ALL_COMMANDS, default_exit=2,
           message="not gzip data", issue="15"), "\n".join(tr) + "\n"),
        (c("utf16le_bom", "utf16le_bom.log", "the vLLM sample as UTF-16 LE with a BOM",
           windows=VLLM_WINDOWS, names_path=False, issue="15"), b"\xff\xfe" + v.encode("utf-16-le")),
        (c("utf16be_bom", "utf16be_bom.log", "the vLLM sample as UTF-16 BE with a BOM",
           windows=VLLM_WINDOWS, names_path=False, issue="15"), b"\xfe\xff" + v.encode("utf-16-be")),
        (c("utf8_bom", "utf8_bom.log", "the vLLM sample with a UTF-8 BOM", windows=VLLM_WINDOWS, names_path=False, issue="15"),
         b"\xef\xbb\xbf" + v.encode()),
        (c("cr_only", "cr_only.log", "the vLLM sample with bare-CR line endings", windows=VLLM_WINDOWS,
           names_path=False, issue="15, 16 row 12"), v.replace("\n", "\r")),
        (c("crlf", "crlf.log", "the vLLM sample with CRLF line endings", windows=VLLM_WINDOWS, names_path=False, issue="15"),
         v.replace("\n", "\r\n")),
        (c("invalid_utf8", "invalid_utf8.log", "invalid UTF-8 bytes inside request and metric lines",
           windows=VLLM_WINDOWS, names_path=False, issue="15"), _invalid_utf8()),
        (c("unit_separator", "unit_separator.log", "a \\x1f byte before the marker on 10 of 30 metric lines",
           windows=VLLM_WINDOWS, names_path=False, issue="16 row 12"), _unit_separator()),
        (c("nan_metrics", "nan_metrics.log", "one SpecDecoding line with nan values in a good log",
           windows=VLLM_WINDOWS - 1, malformed_lines=(nan_line,), names_path=False, issue="16 row 1"), nan_text),
        (c("prom_nan_inf", "nan_inf.prom", "Prometheus counters with NaN, +Inf and -Inf values",
           malformed_lines=tuple(prom_nan_lines), names_path=False, windows=PROM_WINDOWS - 6,
           invariants=("accepted_le_drafted", "no_negative_counts"), issue="15, 16 row 11"), prom_nan),
        (c("prom_bigint", "bigint.prom", "a Prometheus counter beyond int64", malformed_lines=(big_line,),
           names_path=False, windows=PROM_WINDOWS - 2, invariants=("accepted_le_drafted", "no_negative_counts"),
           issue="16 row 11"), big_text),
        (c("prom_counter_reset", "counter_reset.prom", "every counter restarts near 0 halfway (a restart)",
           names_path=False, windows=PROM_WINDOWS - 1, invariants=("accepted_le_drafted", "no_negative_counts"), issue="15"),
         _prom_counter_reset()),
        (c("prom_accepted_gt_drafted", "accepted_gt_drafted.prom", "the last scrape has accepted > drafted",
           malformed_lines=(agd_line,), names_path=False, windows=PROM_WINDOWS - 1,
           invariants=("accepted_le_drafted", "no_negative_counts"), issue="16 row 11"), agd_text),
        (c("trace_schema9", "schema9.jsonl", "a trace whose header says specdec-trace@9", ALL_COMMANDS,
           default_exit=2, line=1, message=unsupported, issue="15"), schema9),
        (c("trace_truncated", "truncated_trace.jsonl", "a trace whose last line is half a step (crashed run)",
           ALL_COMMANDS, steps=TRACE_STEPS, windows=1, names_path=False, malformed_lines=(TRACE_STEPS + 2,),
           timeout_s=180, issue="15"), trunc_trace),
        (c("trace_truncated_gz", "truncated_trace.jsonl.gz", "a gzipped trace cut at 85 % of its bytes",
           ALL_COMMANDS, steps=trace_gz_kept, windows=1 if trace_gz_kept else 0, line=len(trace_gz_lines) + 1,
           message="gzip",
           exit={"replay": 0 if trace_gz_kept else 2}, timeout_s=180, issue="15, 16 row 8"), trace_gz_cut),
    ]


# ---------------------------------------------------------------------------------------------
# runtime cases (never committed)
# ---------------------------------------------------------------------------------------------

RUNTIME_CASES = [
    Case("directory_replay", "tracedir", "a directory given to replay", ("replay",), default_exit=2,
         runtime=True, issue="15"),
    Case("symlink_loop", "loop.log", "a symbolic link loop (loop.log -> loop2.log -> loop.log)",
         default_exit=2, runtime=True, issue="15"),
    Case("unreadable", "unreadable.log", "a file that cannot be read (chmod 000; as root a link to "
         "/proc/self/mem, whose first page reads as EIO)", default_exit=2, runtime=True, issue="15, 16 row 9"),
    Case("many_files", "many", "20,000 small vLLM logs, one SpecDecoding line each", ("ingest",),
         windows=20_000, names_path=False, max_rss_mb=1024, timeout_s=40, runtime=True, slow=True,
         issue="16 row 6"),
    Case("huge_line", "huge_line.log", "a 200 MB single line containing the marker, inside the vLLM sample",
         ("ingest",), windows=VLLM_WINDOWS, names_path=False, malformed_lines=(67,), max_rss_mb=1024,
         timeout_s=30, runtime=True, issue="16 row 7"),
]


def unreadable_ok() -> bool:
    """Whether /proc/self/mem gives EIO at offset 0 (how a root test gets an unreadable file)."""
    try:
        with open("/proc/self/mem", "rb") as fh:
            fh.read(1)
    except OSError:
        return True
    return False


def build_runtime(case: Case, root: Path) -> Path | None:
    """Build a runtime case under ``root``; returns the path to give the command, or None when this
    machine cannot build it (the test skips with the reason)."""
    root.mkdir(parents=True, exist_ok=True)
    p = root / case.path
    if case.id == "directory_replay":
        p.mkdir()
        (p / "a.jsonl").write_text("\n".join(trace_lines()) + "\n")
    elif case.id == "symlink_loop":
        os.symlink("loop2.log", p)
        os.symlink("loop.log", root / "loop2.log")
    elif case.id == "unreadable":
        if os.geteuid() != 0:
            p.write_text(vllm_text())
            p.chmod(0)
        elif unreadable_ok():
            os.symlink("/proc/self/mem", p)
        else:
            return None
    elif case.id == "many_files":
        lines = vllm_lines()
        metric = lines[marker_line_numbers(lines)[0] - 1]
        p.mkdir()
        for i in range(20_000):
            sub = p / f"d{i // 1000:02d}"
            if i % 1000 == 0:
                sub.mkdir()
            (sub / f"w{i:05d}.log").write_text(lines[0] + "\n" + metric + "\n")
    elif case.id == "huge_line":
        lines = vllm_lines()
        with open(p, "wb") as fh:
            fh.write(("\n".join(lines[:66]) + "\n").encode())
            line = lines[marker_line_numbers(lines)[0] - 1].encode()
            fh.write(line[: line.index(b"Mean")])
            block = b"Mean acceptance length: 3.06, " * (1 << 15)
            todo = 200 * 1024 * 1024
            while todo > 0:
                fh.write(block[:todo])
                todo -= len(block)
            fh.write(b"\n" + ("\n".join(lines[66:]) + "\n").encode())
    else:
        raise KeyError(case.id)
    return p


def all_cases() -> list[Case]:
    return [c for c, _ in committed_cases()] + RUNTIME_CASES


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def manifest() -> list[dict]:
    rows = []
    for c in all_cases():
        d = asdict(c)
        d["exit"] = {cmd: c.exit_for(cmd) for cmd in c.commands}
        del d["default_exit"]
        rows.append(d)
    return rows


def generate(out: Path = OUT) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for case, data in committed_cases():
        files[case.path] = data.encode() if isinstance(data, str) else data
    files["manifest.json"] = (json.dumps(manifest(), indent=1) + "\n").encode()
    assert sum(len(b) for b in files.values()) < 1024 * 1024
    return files


def _expected(c: Case, cmd: str) -> str:
    exp = [f"exit {c.exit_for(cmd)}"]
    if c.windows and cmd != "replay":
        exp.append(f"≥ {c.windows} windows")
    if c.steps and cmd in ("ingest", "dashboard"):
        exp.append(f"≥ {c.steps} steps")
    if c.malformed_lines and cmd in ("ingest", "dashboard"):
        exp.append(f"malformed line(s) {', '.join(map(str, c.malformed_lines))}")
    if c.names_path and not (cmd == "dashboard" and c.exit_for(cmd) == 3):
        exp.append("names path" + (f":{c.line}" if c.line else "") + (f"..{c.line_max}" if c.line_max else ""))
    if c.message:
        exp.append(f"`{c.message}`")
    if c.invariants and cmd != "replay":
        exp.append(" & ".join(c.invariants))
    if c.max_rss_mb:
        exp.append(f"RSS < {c.max_rss_mb} MB, < {c.timeout_s} s")
    return "; ".join(exp)


def status_table(dump: Path) -> str:
    """Case x command: what happened (the test's $BADINPUT_DUMP lines) against what is expected; a
    pair is marked FAIL while it is listed in the test's TODAY table."""
    cases = {c.id: c for c in all_cases()}
    today = (REPO / "tests" / "test_bad_inputs.py").read_text(encoding="utf-8")
    out = ["| case | command | today: exit · records (windows/steps) · stderr | expected | status |", "|---|---|---|---|---|"]
    for r in (json.loads(ln) for ln in dump.read_text(encoding="utf-8").splitlines() if ln.strip()):
        c = cases[r["case"]]
        if r["timed_out"]:
            got = f"killed at {c.timeout_s} s"
        else:
            rec = "-" if r["windows"] is None else f"{r['windows']}" + (f"/{r['steps']}" if r["steps"] is not None else "")
            msg = r["stderr"].replace("|", "\\|").replace("/tmp/pytest-of-root/", "…/")[:160]
            got = f"{r['exit']} · {rec} · " + ("**traceback** " if r["traceback"] else "") + (f"`{msg}`" if msg else "(silent)")
            got += f" · malformed {r['malformed'][:4]}" if r["malformed"] else ""
            got += f" · {r['rss_mb']} MB" if r.get("rss_mb") else ""
        listed = f'("{r["case"]}", "{r["command"]}")' in today
        out.append(f"| {r['case']} | {r['command']} | {got} | {_expected(c, r['command'])} | "
                   f"{'**FAIL** (xfail)' if listed else 'ok'} |")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if "--status" in argv:
        sys.stdout.write(status_table(Path(argv[argv.index("--status") + 1])))
        return 0
    files = generate()
    if "--check" in argv:
        bad = [n for n, b in files.items() if not (OUT / n).is_file() or (OUT / n).read_bytes() != b]
        for n in bad:
            print(f"tests/fixtures/bad/{n}: differs from the generator; run scripts/make_bad_inputs.py")
        return 1 if bad else 0
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for n, b in files.items():
        (OUT / n).write_bytes(b)
    print(f"wrote {len(files)} files, {sum(map(len, files.values())) / 1024:.0f} KiB, to {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
