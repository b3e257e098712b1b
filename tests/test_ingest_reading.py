"""The reading side of ingest on bad input (issues 15 and 16): huge lines, damaged gzip, other
encodings and line endings, separator bytes, the cache key, many small files. Each test failed on
the code before the one input layer (``specdec_diag/inputs.py``)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from specdec_diag.cli import app
from specdec_diag.ingest import scan, vllm
from specdec_diag.ingest.registry import SOURCES

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def open_text_lines(*a, **kw):
    """Imported late, so that each test failed on its own before the module existed."""
    from specdec_diag.inputs import open_text_lines as f

    return f(*a, **kw)


def input_error() -> type[Exception]:
    from specdec_diag.inputs import InputError

    return InputError


def vllm_log(n: int = 60, filler: int = 2, start: int = 0) -> list[str]:
    """A vLLM V1 log: per window a throughput line and a SpecDecoding line (k=3, consistent
    numbers), with ``filler`` access lines after each; lines without newlines."""
    out = []
    for i in range(start, start + n):
        ts = f"09-15 11:{(i // 6) % 60:02d}:{i % 6 * 10:02d}"
        nd = 100 + i
        pos = [nd * 8 // 10, nd // 2, nd // 5]
        acc = sum(pos)
        out.append(f"(APIServer pid=1) INFO {ts} [loggers.py:123] Engine 000: Avg prompt throughput: 10.0 tokens/s, "
                   f"Avg generation throughput: {20 + i}.0 tokens/s, Running: 3 reqs, Waiting: 0 reqs, GPU KV cache "
                   f"usage: 5.0%, Prefix cache hit rate: 0.0%")
        out.append(f"(APIServer pid=1) INFO {ts} [metrics.py:101] SpecDecoding metrics: Mean acceptance length: "
                   f"{1 + acc / nd:.2f}, Accepted throughput: {acc / 10:.2f} tokens/s, Drafted throughput: "
                   f"{nd * 3 / 10:.2f} tokens/s, Accepted: {acc} tokens, Drafted: {nd * 3} tokens, Per-position "
                   f"acceptance rate: {', '.join(f'{p / nd:.3f}' for p in pos)}, Avg Draft acceptance rate: "
                   f"{100 * acc / (nd * 3):.1f}%")
        out.extend('(APIServer pid=1) INFO:     10.0.0.1:5555 - "POST /v1/completions HTTP/1.1" 200 OK'
                   for _ in range(filler))
    return out


def write(path: Path, lines: list[str], nl: str = "\n") -> Path:
    path.write_bytes((nl.join(lines) + nl).encode())
    return path


def rows(res, cols=("line", "format", "num_drafts", "accepted_tokens", "draft_tokens", "engine_id")) -> list:
    return res.windows.select(cols).rows()


@pytest.fixture
def good(tmp_path) -> tuple[Path, list[str]]:
    lines = vllm_log()
    return write(tmp_path / "good.log", lines), lines


# ---------------------------------------------------------------------------------------------
# issue 16 row 7: lines over 1 MiB
# ---------------------------------------------------------------------------------------------


def test_line_over_a_piece_is_cut_and_reported(tmp_path, good):
    """A 20 MB line carrying a marker (longer than the 8 MB piece): malformed at its own line,
    every other record kept with its line number, never parsed."""
    ref = scan(good[0], use_cache=False)
    lines = list(good[1])
    lines.insert(50, "x" * (10 << 20) + " SpecDecoding metrics: Accepted: 1 tokens " + "y" * (10 << 20))
    p = write(tmp_path / "huge.log", lines)
    res = scan(p, use_cache=False)
    assert res.inputs["lines"][0] == len(lines) and res.inputs["error"][0] is None
    mal = res.malformed.rows(named=True)
    assert [(m["line"], m["reason"].split(" (")[0]) for m in mal] == [(51, "line longer than 1 MiB")]
    shifted = [(ln + (ln > 50), *rest) for ln, *rest in rows(ref)]
    assert rows(res) == shifted


def test_line_inside_a_piece_over_the_limit_is_cut(tmp_path, good):
    """A 2 MiB marker line that fits in one piece is cut the same way; a long line without any
    marker is just skipped (not an error)."""
    lines = list(good[1])
    lines.insert(10, "SpecDecoding metrics: Accepted: 5 tokens, " + "9" * (2 << 20))
    lines.insert(20, "z" * (3 << 20))
    res = scan(write(tmp_path / "long.log", lines), use_cache=False)
    assert res.malformed.select("line").to_series().to_list() == [11]
    assert res.malformed["reason"][0].startswith("line longer than 1 MiB (2097194 bytes)")
    assert res.windows.height == scan(good[0], use_cache=False).windows.height


def test_200mb_line_bounded_memory_and_fast(tmp_path):
    """Issue 16 row 7: a 200 MB line containing a marker; measured in a subprocess: peak RSS < 1 GB
    (was 3.6 GB), all 60 windows kept, the line malformed."""
    p = tmp_path / "giant.log"
    head, tail = vllm_log(30), vllm_log(30, start=30)
    with open(p, "wb") as fh:
        fh.write(("\n".join(head) + "\n").encode())
        block = b"q" * (8 << 20)
        for i in range(25):
            fh.write(block if i != 12 else block[:-40] + b"SpecDecoding metrics: Accepted: 7 tok ")
        fh.write(("\n" + "\n".join(tail) + "\n").encode())
    code = textwrap.dedent(f"""
        import json, re, time
        from specdec_diag.ingest import scan
        t = time.perf_counter()
        r = scan({str(p)!r}, use_cache=False)
        # this process's own peak (VmHWM): ru_maxrss also counts the parent's RSS at spawn (Linux keeps
        # the old memory map's high-water mark across execve), i.e. the whole pytest process
        hwm = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read())
        print(json.dumps({{"s": time.perf_counter() - t, "w": r.windows.height,
              "mal": r.malformed.select("line").to_series().to_list(), "rss": int(hwm[1]) / 1024}}))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["w"] == 120 and got["mal"] == [len(head) + 1]
    assert got["rss"] < 1024, got
    assert got["s"] < 60, got


# ---------------------------------------------------------------------------------------------
# issue 16 row 8 / issue 15: damaged gzip
# ---------------------------------------------------------------------------------------------


def _complete_lines(data: bytes, cut_at: int) -> int:
    """Complete lines in what a salvaging reader can decompress from ``data[:cut_at]``."""
    d = __import__("zlib").decompressobj(31)
    out = d.decompress(data[:cut_at])
    return out.count(b"\n")


@pytest.mark.parametrize("windows", [60, 20000])
def test_truncated_gzip_keeps_every_complete_line(tmp_path, windows):
    """Small (the damage inside the first 64 KiB: was 0 lines kept) and large (was: up to 8 MB
    dropped): every complete line before the break is parsed, and the warning says where."""
    text = ("\n".join(vllm_log(windows)) + "\n").encode()
    data = gzip.compress(text)
    cut = len(data) * 2 // 3
    p = tmp_path / "run.log.gz"
    p.write_bytes(data[:cut])
    n = _complete_lines(data, cut)
    res = scan(p, use_cache=False)
    assert res.warnings == [f"{p}: gzip data truncated after line {n}"]
    assert res.inputs["error"][0] is None and res.inputs["lines"][0] == n
    full = scan(write(tmp_path / "plain.log", vllm_log(windows)), use_cache=False)
    assert rows(res) == [r for r in rows(full) if r[0] <= n]


def test_corrupt_gzip_keeps_lines_before_the_damage(tmp_path):
    text = ("\n".join(vllm_log(3000)) + "\n").encode()
    data = bytearray(gzip.compress(text))
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)
    p = tmp_path / "run.log.gz"
    p.write_bytes(bytes(data))
    res = scan(p, use_cache=False)
    [warning] = res.warnings
    assert warning.startswith(f"{p}: corrupt gzip data after line ")
    n = int(warning.rsplit(" ", 1)[1])
    assert n > 1000 and res.inputs["lines"][0] == n
    assert res.windows.filter(pl.col("line") <= n // 2).height == n // 2 // 4 * 2  # the first half, intact


def test_gzip_that_is_not_gzip(tmp_path):
    """A .gz that is not gzip at all: one line `path: not gzip data`, exit 2 from ingest."""
    p = tmp_path / "run.jsonl.gz"
    p.write_bytes(b'{"kind": "header"}\n')
    res = scan(p, use_cache=False)
    assert res.errors == [f"{p}: not gzip data"]
    r = runner.invoke(app, ["ingest", str(p), "--no-cache"])
    assert r.exit_code == 2 and f"{p}: not gzip data" in " ".join(r.output.split())
    with pytest.raises(input_error(), match="not gzip data"):
        list(open_text_lines(p))


def test_damage_warning_reaches_the_cli_in_the_same_words(tmp_path):
    data = gzip.compress(("\n".join(vllm_log(60)) + "\n").encode())
    p = tmp_path / "run.log.gz"
    p.write_bytes(data[: len(data) // 2])
    want = scan(p, use_cache=False).warnings[0]
    r = runner.invoke(app, ["ingest", str(p), "--no-cache"])
    assert r.exit_code == 0 and f"warning: {want}" in " ".join(r.output.split())


def test_truncated_gzip_trace_is_a_warning(tmp_path):
    """Our traces are read whole by their own parser (which opens the path itself): it is handed the
    complete lines before the break, and the scan says where the gzip broke."""
    import gzip

    src = tmp_path / "full.jsonl.gz"  # a committed trace gzipped here (which ones the generator gzips varies)
    src.write_bytes(gzip.compress((ROOT / "sample_logs" / "traces" / "healthy-greedy.jsonl").read_bytes()))
    data = src.read_bytes()
    p = tmp_path / "t.jsonl.gz"
    p.write_bytes(data[: len(data) * 3 // 4])
    res = scan(p, use_cache=False)
    assert len(res.warnings) == 1 and "gzip data truncated after line" in res.warnings[0]
    assert res.inputs["error"][0] is None
    n = int(res.warnings[0].rsplit(" ", 1)[1])
    full = scan(src, use_cache=False)
    # the trace parser gets the complete lines before the break: every step on them is kept
    assert res.steps["line"].to_list() == [x for x in full.steps["line"].to_list() if x <= n] != []
    assert 0 < res.windows.height <= full.windows.height


# ---------------------------------------------------------------------------------------------
# issue 15: encodings; issue 16 row 12: line endings, separator bytes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("enc", ["utf-16", "utf-16-be-bom", "utf-8-sig", "utf-16-le-nobom"])
def test_other_encodings_are_decoded(tmp_path, good, enc):
    text = "\n".join(good[1]) + "\n"
    data = {"utf-16": lambda: text.encode("utf-16"),  # platform order, with BOM
            "utf-16-be-bom": lambda: b"\xfe\xff" + text.encode("utf-16-be"),
            "utf-8-sig": lambda: text.encode("utf-8-sig"),
            "utf-16-le-nobom": lambda: text.encode("utf-16-le")}[enc]()
    p = tmp_path / "enc.log"
    p.write_bytes(data)
    assert rows(scan(p, use_cache=False)) == rows(scan(good[0], use_cache=False))
    assert list(open_text_lines(p)) == good[1]


def test_unsupported_encoding_is_one_line(tmp_path):
    p = tmp_path / "u7.log"
    p.write_bytes(b"+/v8" + b"SpecDecoding metrics +AAA-\n")
    assert scan(p, use_cache=False).errors == [f"{p}: encoding not supported (UTF-7)"]


def test_invalid_utf8_keeps_the_real_lines(tmp_path, good):
    lines = list(good[1])
    for i in (5, 17, 90):
        lines.insert(i, "SpecDecoding metrics: \udcff\udcfe".encode("utf-8", "surrogateescape").decode("latin-1"))
    p = tmp_path / "mixed.log"
    p.write_bytes(b"".join((ln.encode("latin-1") if "\xff" in ln else ln.encode()) + b"\n" for ln in lines))
    res = scan(p, use_cache=False)
    assert res.windows.height == scan(good[0], use_cache=False).windows.height
    assert sorted(res.malformed["line"].to_list()) == [6, 18, 91]


@pytest.mark.parametrize("nl", ["\r", "\r\n"])
def test_cr_line_endings(tmp_path, good, nl):
    """Bare-CR files were one line (1 of 60 records); now the same rows and line numbers as LF."""
    p = write(tmp_path / "cr.log", good[1], nl)
    res = scan(p, use_cache=False)
    assert rows(res) == rows(scan(good[0], use_cache=False))
    assert res.inputs["lines"][0] == len(good[1])


@pytest.mark.parametrize("byte", ["\x1f", "\x1e", "\x01"])
def test_control_byte_before_the_marker_loses_nothing(tmp_path, good, byte):
    """A line with the reader's column separator before its marker was silently lost."""
    lines = [byte + ln if i % 3 == 1 else ln for i, ln in enumerate(good[1])]
    res = scan(write(tmp_path / "ctl.log", lines), use_cache=False)
    ref = scan(good[0], use_cache=False)
    assert res.windows.select("line", "accepted_tokens").rows() == ref.windows.select("line", "accepted_tokens").rows()


def test_every_separator_byte_present_still_exact(tmp_path, good):
    """Lines holding every candidate separator take the exact split: no line lost or cut."""
    junk = "".join(chr(c) for c in (0x1F, 0x1E, 0x1D, 0x1C, 1, 2, 3, 4))
    lines = [junk + ln for ln in good[1]]
    res = scan(write(tmp_path / "all.log", lines), use_cache=False)
    assert res.windows.select("line").rows() == scan(good[0], use_cache=False).windows.select("line").rows()


def test_open_text_lines_errors_are_one_line(tmp_path):
    with pytest.raises(input_error()) as e:
        list(open_text_lines(tmp_path))
    assert str(e.value) == f"{tmp_path}: is a directory"
    with pytest.raises(input_error()) as e:
        list(open_text_lines(tmp_path / "missing.log"))
    assert str(e.value) == f"{tmp_path / 'missing.log'}: no such file or directory"
    loop = tmp_path / "loop.log"
    loop.symlink_to(loop)
    with pytest.raises(input_error(), match="symbolic link loop"):
        list(open_text_lines(loop))
    assert scan(loop, use_cache=False).errors == [f"{loop}: symbolic link loop"]
    big = tmp_path / "big.log"
    big.write_bytes(b"a\n" + b"b" * (2 << 20) + b"\nc\n")
    with pytest.raises(input_error()) as e:
        list(open_text_lines(big))
    assert str(e.value).startswith(f"{big}:2: line longer than 1 MiB")
    assert list(open_text_lines(big, long_lines="skip")) == ["a", "", "c"]


# ---------------------------------------------------------------------------------------------
# issue 16 row 9: ingest on unreadable input
# ---------------------------------------------------------------------------------------------


def test_ingest_exit_2_when_nothing_readable_warning_otherwise(tmp_path, good):
    loop = tmp_path / "d" / "loop.log"
    loop.parent.mkdir()
    loop.symlink_to(loop)
    r = runner.invoke(app, ["ingest", str(loop.parent), "--no-cache"])
    assert r.exit_code == 2 and f"error: {loop}: symbolic link loop" in " ".join(r.output.split())
    os.symlink(good[0], loop.parent / "good.log")
    r = runner.invoke(app, ["ingest", str(loop.parent), "--no-cache"])
    assert r.exit_code == 0 and f"error: {loop}: symbolic link loop" in " ".join(r.output.split())


# ---------------------------------------------------------------------------------------------
# issue 16 row 13: the cache key and --no-cache
# ---------------------------------------------------------------------------------------------


def test_same_size_edit_restored_with_touch_r_is_caught(tmp_path):
    """A same-size edit in the middle (beyond the hashed first and last 64 KiB), mtime restored:
    was served from the cache; ctime and inode are in the key now."""
    p = write(tmp_path / "big.log", vllm_log(1500))
    assert p.stat().st_size > 4 * 65536
    cache = tmp_path / "cache"
    before = scan(p, cache_dir=cache)
    st = p.stat()
    data = p.read_bytes()
    at = data.index(b"generation throughput: 770.0")
    assert 65536 < at < len(data) - 65536
    p.write_bytes(data[:at] + data[at:].replace(b"throughput: 770.0", b"throughput: 771.0", 1))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))       # touch -r: same size, same mtime
    assert p.stat().st_size == st.st_size and p.stat().st_mtime_ns == st.st_mtime_ns
    after = scan(p, cache_dir=cache)
    assert after.windows["gen_tps"].sum() - before.windows["gen_tps"].sum() == pytest.approx(1.0, abs=1e-6)


def test_no_cache_rewrites_the_entry(tmp_path, good, monkeypatch):
    """An entry the key cannot tell from the file (here: the fingerprint pinned) is served until
    `ingest --no-cache` re-parses and rewrites it; the next cached scan serves the new rows."""
    import importlib

    S = importlib.import_module("specdec_diag.ingest.scan")
    monkeypatch.setattr(S, "file_fingerprint", lambda path, st=None, head=None: "pinned")
    monkeypatch.setattr("specdec_diag.ingest.batch.file_fingerprint", lambda path, st=None, head=None: "pinned")
    p, lines = good
    cache = tmp_path / "cache"
    n = scan(p, cache_dir=cache).windows.height
    write(p, lines[: len(lines) // 2])
    assert scan(p, cache_dir=cache).windows.height == n            # stale, by construction
    r = runner.invoke(app, ["ingest", str(p), "--no-cache", "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    assert scan(p, cache_dir=cache).windows.height == n // 2       # the entry was rewritten


# ---------------------------------------------------------------------------------------------
# issue 16 row 6: many small files
# ---------------------------------------------------------------------------------------------


def _many(tmp_path: Path, n: int) -> Path:
    d = tmp_path / "many"
    for i in range(n):
        sub = d / f"host{i % 7}"
        sub.mkdir(parents=True, exist_ok=True)
        write(sub / f"server-{i:05d}.log", vllm_log(1 + i % 4, filler=i % 3, start=i % 50))
    return d


def test_small_files_batched_same_rows_one_cache_file_each(tmp_path, monkeypatch):
    """Small files go through one marker query per batch and a batchable source parses a batch in
    one call; the tables equal the file-by-file parse (whatever the source), one cache file per input."""
    from specdec_diag.ingest import batch as B

    d = _many(tmp_path, 300)
    batchable = tuple(dataclasses.replace(s, batchable=True) if s.family == "vllm" else s for s in SOURCES)
    calls: list[int] = []
    real = vllm.SOURCE.parse

    def counting(lines, source, options):
        calls.append(lines.height)
        return real(lines, source, options)

    fast = tuple(dataclasses.replace(s, parse=counting) if s.family == "vllm" else s for s in batchable)
    got = scan(d, cache_dir=tmp_path / "cache", sources=fast)
    assert len(calls) == 1                                       # 300 files: one batch, one parse call
    monkeypatch.setattr(B, "SMALL_BYTES", 0)                      # the per-file path
    one_by_one = scan(d, use_cache=False)
    for t in ("windows", "malformed", "configs", "inputs"):
        a, b = getattr(got, t), getattr(one_by_one, t)
        assert a.drop("fingerprint", strict=False).equals(b.drop("fingerprint", strict=False)), t
    assert len(list((tmp_path / "cache").iterdir())) == 300
    cached = scan(d, cache_dir=tmp_path / "cache", sources=fast)
    assert len(calls) == 1 and cached.windows.equals(got.windows)


def test_many_small_files_throughput(tmp_path):
    """Issue 16 row 6 (scaled down to 2,000 files for the test suite): today's registry parses vLLM
    file by file; with the source batchable (see docs/ingest.md) the scan stays above 300 files/s
    on a loaded 2-core machine (benchmarks/ingest_many.py measures 20,000)."""
    import time

    d = _many(tmp_path, 2000)
    batchable = tuple(dataclasses.replace(s, batchable=True) if s.family == "vllm" else s for s in SOURCES)
    t = time.process_time()
    res = scan(d, cache_dir=tmp_path / "cache", sources=batchable)
    cold = time.process_time() - t
    assert res.inputs.height == 2000 and res.inputs["error"].null_count() == 2000
    t = time.process_time()
    again = scan(d, cache_dir=tmp_path / "cache", sources=batchable)
    warm = time.process_time() - t
    assert again.windows.equals(res.windows)
    assert 2000 / cold > 300 and 2000 / warm > 300, (cold, warm)


# ---------------------------------------------------------------------------------------------
# issue 16 row 1, the scan's share: a parser that raises loses only the line it raises on
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("small", [True, False])
def test_parser_crash_loses_only_its_line(tmp_path, good, monkeypatch, small):
    """A parser raising on one line (as vLLM did on a `nan` line) used to erase every record of the
    batch and report line 1; the scan now bisects to the line, in the batch path and the per-file one."""
    from specdec_diag.ingest import batch as B

    if not small:
        monkeypatch.setattr(B, "SMALL_BYTES", 0)
    lines = list(good[1])
    lines.insert(40, lines[41].replace("Accepted: ", "Accepted: BOOM "))
    p = write(tmp_path / "x.log", lines)

    def fragile(df, source, options):
        if df["text"].str.contains("BOOM", literal=True).any():
            raise ValueError("cannot cast")
        return vllm.SOURCE.parse(df, source, options)

    res = scan(p, use_cache=False, sources=[dataclasses.replace(vllm.SOURCE, parse=fragile)])
    assert res.malformed.select("line").to_series().to_list() == [41]
    assert "internal error in the vllm parser: ValueError: cannot cast" in res.malformed["reason"][0]
    ref = scan(good[0], use_cache=False)
    assert res.windows.height == ref.windows.height


def test_progress_callback_per_batch_and_cli_flag(tmp_path):
    """The library reports progress after every file or batch (bytes done of the total); the CLI
    draws it on stderr when asked (or on a terminal for big inputs)."""
    d = _many(tmp_path, 40)
    seen: list[tuple[int, int]] = []
    scan(d, use_cache=False, progress=lambda path, done, total: seen.append((done, total)))
    total = sum(f.stat().st_size for f in d.rglob("*.log"))
    assert seen and seen[-1] == (total, total) and [a for a, _ in seen] == sorted(a for a, _ in seen)
    r = runner.invoke(app, ["ingest", str(d), "--no-cache", "--progress"])
    assert r.exit_code == 0, r.output


def _batched_equals_per_file(srcs: list[Path], tmp_path: Path, monkeypatch, min_windows: int) -> None:
    """The small files ``srcs`` scanned in batches give the same rows as file by file."""
    from specdec_diag.ingest import batch as B

    d = tmp_path / "logs"
    d.mkdir()
    for i, p in enumerate(s for s in srcs if s.is_file() and s.stat().st_size <= B.SMALL_BYTES):
        (d / f"{i:03d}-{p.stem}.log").write_bytes(p.read_bytes())
    batched = scan(d, use_cache=False)
    assert batched.windows.height > min_windows
    monkeypatch.setattr(B, "SMALL_BYTES", 0)
    one_by_one = scan(d, use_cache=False)
    for t in ("windows", "malformed", "configs"):
        a, b = getattr(batched, t), getattr(one_by_one, t)
        assert a.drop("fingerprint", strict=False).equals(b.drop("fingerprint", strict=False)), t


def test_vllm_batched_equals_per_file_on_every_real_format_log(tmp_path, monkeypatch):
    """vLLM is parsed in batches of small files: every vLLM log we hold (fixtures, samples, the
    real-excerpt corpus: V0 cumulative counters, V1 variants, DP engines, bench blocks) gives the same
    rows batched as file by file, so no window, engine tag or counter difference leaks across files."""
    root = Path(__file__).resolve().parent.parent
    srcs = [*sorted((root / "tests/fixtures/vllm").glob("*")), *sorted((root / "sample_logs/engines/vllm").glob("*")),
            *sorted((root / "tests/fixtures/real/vllm").glob("*.log"))]
    _batched_equals_per_file([p for p in srcs if p.suffix != ".md"], tmp_path, monkeypatch, 100)


def test_every_fixture_batched_equals_per_file(tmp_path, monkeypatch):
    """Every small fixture of every engine (bench outputs, pastes, formats, the real corpus) gives the
    same rows when small files are parsed in batches as file by file: a batchable source's state (a
    startup line's engine version, a benchmark's nearest baseline) never leaks across files."""
    root = Path(__file__).resolve().parent / "fixtures"
    srcs = [p for p in sorted(root.rglob("*")) if p.suffix in (".log", ".txt", ".md") and p.name != "README.md"]
    _batched_equals_per_file(srcs, tmp_path, monkeypatch, 500)
