"""The scan: file discovery, gz, chunking on line boundaries, robustness to bad files, the per-file
Parquet cache (reuse, rebuild on change, corrupt entries, atomic writes) and the `ingest` command."""

from __future__ import annotations

import dataclasses
import gzip
import importlib
import os
import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from specdec_diag.cli import app
from specdec_diag.ingest import SOURCES, scan, vllm
from specdec_diag.schema import INPUT_SCHEMA

S = importlib.import_module("specdec_diag.ingest.scan")  # the module (the package exports the function)
R = importlib.import_module("specdec_diag.ingest.reading")
FIX = Path(__file__).parent / "fixtures" / "vllm"


def _strip(df: pl.DataFrame) -> pl.DataFrame:
    return df.drop("source").sort("line", "window", "format")


@pytest.fixture
def logs(tmp_path) -> Path:
    d = tmp_path / "logs"
    (d / "sub").mkdir(parents=True)
    shutil.copy(FIX / "v1_e_docker_dp.log", d / "a.log")
    shutil.copy(FIX / "v0_2024_typo.log", d / "sub" / "b.txt")
    (d / "ignored.bin").write_bytes(b"SpecDecoding metrics: not a log extension")
    (d / ".hidden").mkdir()
    shutil.copy(FIX / "v1_d_apiserver.log", d / ".hidden" / "c.log")
    return d


def test_directory_walk_extensions_and_hidden(logs):
    res = scan([logs], use_cache=False)
    names = sorted(Path(p).name for p in res.inputs["path"].to_list())
    assert names == ["a.log", "b.txt"]
    assert res.inputs.schema == pl.Schema(INPUT_SCHEMA)
    assert res.inputs["error"].null_count() == 2


def test_gzip_is_transparent(tmp_path):
    plain = tmp_path / "x.log"
    shutil.copy(FIX / "v1_e_docker_dp.log", plain)
    gz = tmp_path / "y.log.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    a = scan([plain], use_cache=False)
    b = scan([gz], use_cache=False)
    assert b.windows.height == a.windows.height == 6
    assert _strip(a.windows).equals(_strip(b.windows))


@pytest.mark.parametrize("chunk", [64, 333, 4096])
def test_chunk_boundaries_do_not_change_results(tmp_path, chunk):
    p = tmp_path / "x.log"
    p.write_bytes(b"".join((FIX / n).read_bytes() for n in ("v1_e_docker_dp.log", "v0_2024_typo.log",
                                                           "bench_serve.txt", "malformed.log")))
    ref = scan([p], use_cache=False)
    got = scan([p], use_cache=False, chunk_bytes=chunk)
    assert ref.windows.height > 10
    assert got.windows.equals(ref.windows) and got.malformed.equals(ref.malformed)
    assert got.inputs["lines"].to_list() == ref.inputs["lines"].to_list() == [p.read_bytes().count(b"\n")]


def test_marker_batches_do_not_change_results(tmp_path, monkeypatch):
    """Huge logs are parsed in batches of marker lines; per-file work in finalize keeps results equal."""
    p = tmp_path / "x.log"
    p.write_bytes(b"".join((FIX / n).read_bytes() for n in ("v1_e_docker_dp.log", "v0_2024_typo.log",
                                                           "v1_d_apiserver.log")))
    ref = scan([p], use_cache=False)
    monkeypatch.setattr(S, "FLUSH_BYTES", 1)
    got = scan([p], use_cache=False, chunk_bytes=200)
    assert_frame_equal(got.windows, ref.windows, check_exact=False)  # x/100 may round differently per batch
    assert got.configs.equals(ref.configs)
    assert got.windows.filter(pl.col("window") == "interval")["engine_id"].null_count() == \
        ref.windows.filter(pl.col("window") == "interval")["engine_id"].null_count()


def test_lines_frame_numbers_match_python_splitlines():
    blob = b"a\n\nb\x1fc\r\n\xff\xfe junk\nlast no newline"
    df = R.lines_frame(blob, 1)
    assert df["line"].to_list() == [1, 2, 3, 4, 5]
    assert df["text"][3].endswith(" junk") and df["text"][4] == "last no newline"


def test_bad_files_never_abort(tmp_path, monkeypatch):
    d = tmp_path / "bad"
    d.mkdir()
    shutil.copy(FIX / "v1_b.log", d / "good.log")
    (d / "empty.log").write_bytes(b"")
    (d / "binary.log").write_bytes(os.urandom(20000) + b"\nSpecDecoding metrics: \x00\xff\n")
    (d / "latin1.log").write_bytes("INFO caf\xe9 r\xe9sum\xe9\n".encode("latin-1")
                                   + (FIX / "v1_b.log").read_bytes())
    (d / "huge_line.log").write_bytes(b"x" * (1 << 20) + b"\n" + (FIX / "v1_b.log").read_bytes())
    (d / "broken.gz.log").write_bytes(b"not gzip")
    (d / "corrupt.log.gz").write_bytes(gzip.compress(b"abc\n" * 1000)[:-20])
    (d / "link.log").symlink_to(d / "missing-target.log")
    (d / "denied.log").write_text("whatever\n")
    real = S.InputFile.sniff

    def deny(self, n=R.SAMPLE_BYTES, head=None):
        if self.path.name == "denied.log":
            raise PermissionError(13, "Permission denied")
        return real(self, n, head)

    monkeypatch.setattr(S.InputFile, "sniff", deny)
    res = scan([d], use_cache=False)
    by = {Path(r["path"]).name: r for r in res.inputs.to_dicts()}
    assert set(by) == {"good.log", "empty.log", "binary.log", "latin1.log", "huge_line.log", "broken.gz.log",
                       "corrupt.log.gz", "link.log", "denied.log"}
    assert by["good.log"]["records"] == 2 and by["latin1.log"]["records"] == 2
    assert by["huge_line.log"]["records"] == 2 and by["huge_line.log"]["lines"] == 3
    assert by["empty.log"]["lines"] == 0 and by["empty.log"]["error"] is None
    assert by["binary.log"]["malformed"] >= 1 and by["binary.log"]["error"] is None
    assert "gzip" in by["corrupt.log.gz"]["error"]
    assert by["link.log"]["error"] and by["denied.log"]["error"] == "permission denied"
    # windows from the good files are all there, line numbers intact after the 1 MB line
    assert res.windows.filter(pl.col("source").str.ends_with("huge_line.log"))["line"].to_list() == [2, 3]


def test_parser_crash_becomes_malformed_row(tmp_path, monkeypatch):
    p = tmp_path / "x.log"
    shutil.copy(FIX / "v1_b.log", p)

    def boom(lines, source, **kw):
        raise RuntimeError("kaboom")

    res = scan([p], use_cache=False, sources=[dataclasses.replace(vllm.SOURCE, parse=boom)])
    assert res.windows.height == 0
    assert "internal error in the vllm parser" in res.malformed["reason"][0]


def _count_parses(monkeypatch) -> list[str]:
    """Files parsed (not served from the cache), whether one by one or in a batch of small files."""
    calls: list[str] = []
    real, real_batch = S.parse_file, S.parse_batch

    def counting(path, display, **kw):
        calls.append(display)
        return real(path, display, **kw)

    def counting_batch(files, *a, **kw):
        calls.extend(f.display for f in files)
        return real_batch(files, *a, **kw)

    monkeypatch.setattr(S, "parse_file", counting)
    monkeypatch.setattr(S, "parse_batch", counting_batch)
    return calls


def test_cache_reuse_rebuild_and_corruption(logs, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    calls = _count_parses(monkeypatch)
    first = scan([logs], cache_dir=cache)
    assert len(calls) == 2
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 2 and all(e.endswith(".sdc") for e in entries)  # one file per input, no temp files

    second = scan([logs], cache_dir=cache)
    assert len(calls) == 2                                          # unchanged: nothing re-parsed
    assert second.windows.equals(first.windows) and second.fingerprint == first.fingerprint
    assert second.configs.equals(first.configs) and second.inputs.equals(first.inputs)

    a = logs / "a.log"
    a.write_bytes(a.read_bytes() + (FIX / "v1_b.log").read_bytes())  # changed -> rebuilt
    third = scan([logs], cache_dir=cache)
    assert calls[2:] == [str(a)]
    assert third.windows.height == first.windows.height + 2
    assert third.fingerprint != first.fingerprint
    assert len(list(cache.iterdir())) == 2                          # the stale entry was replaced

    for f in cache.glob("*.sdc"):                                   # corrupt -> ignored and rebuilt
        blob = bytearray(f.read_bytes())
        blob[-10] ^= 0xFF
        f.write_bytes(bytes(blob))
    fourth = scan([logs], cache_dir=cache)
    assert len(calls) == 5
    assert fourth.windows.equals(third.windows)
    fifth = scan([logs], cache_dir=cache)
    assert len(calls) == 5 and fifth.windows.equals(third.windows)


def test_truncated_or_foreign_entry_is_a_miss(logs, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    scan([logs], cache_dir=cache)
    a, b = sorted(cache.glob("*.sdc"))
    a.write_bytes(a.read_bytes()[:-5])               # cut short
    b.write_bytes(b"PAR1 not an entry")              # foreign bytes
    calls = _count_parses(monkeypatch)
    scan([logs], cache_dir=cache)
    assert len(calls) == 2


def test_no_cache_and_unwritable_cache(logs, tmp_path, monkeypatch):
    calls = _count_parses(monkeypatch)
    scan([logs], use_cache=False)
    scan([logs], use_cache=False)
    assert len(calls) == 4
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = scan([logs], cache_dir=blocker / "sub")    # cannot be created: scan works, just uncached
    assert res.windows.height > 0


def test_default_cache_dir(logs, tmp_path, monkeypatch):
    monkeypatch.delenv("SPECDEC_CACHE_DIR", raising=False)
    assert S.default_cache_dir([logs]) == logs / ".specdec-cache"
    monkeypatch.setenv("SPECDEC_CACHE_DIR", str(tmp_path / "env-cache"))
    assert S.default_cache_dir([logs]) == tmp_path / "env-cache"
    scan([logs])
    assert list((tmp_path / "env-cache").glob("*.sdc"))


def test_fingerprint_is_stable_and_content_keyed(logs):
    a = scan([logs], use_cache=False).fingerprint
    assert a == scan([logs], use_cache=False).fingerprint
    (logs / "new.log").write_text("hello\n")
    assert scan([logs], use_cache=False).fingerprint != a


def test_mixed_engines_in_one_file(tmp_path):
    p = tmp_path / "compose.log"
    p.write_text(
        (FIX / "v1_b.log").read_text()
        + "[2025-01-07 20:16:05 TP0] Decode batch. #running-req: 3, #token: 1200, token usage: 0.05, "
        "accept len: 2.40, gen throughput (token/s): 95.20, #queue-req: 0\n"
    )
    res = scan([p], use_cache=False)
    assert {"vllm", "sglang"} <= set(res.windows["engine"].to_list())


def test_progress_reports_bytes(logs):
    seen: list[tuple[str, int, int]] = []
    scan([logs], use_cache=False, progress=lambda path, done, total: seen.append((path, done, total)))
    total = sum(p.stat().st_size for p in (logs / "a.log", logs / "sub" / "b.txt"))
    assert seen[-1][1] == seen[-1][2] == total
    assert [d for _, d, _ in seen] == sorted(d for _, d, _ in seen)


# --- the command ------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_ingest_writes_tables(logs, tmp_path):
    out = tmp_path / "out"
    r = runner.invoke(app, ["ingest", str(logs), "--out", str(out), "--no-cache"])
    assert r.exit_code == 0, r.output
    n = scan([logs], use_cache=False).windows.height
    assert "ingested" in r.output and f"{n} windows" in r.output
    assert (out / "_manifest.parquet").exists() and (out / "runs.parquet").exists()  # a dataset (docs/ingest.md)
    from specdec_diag.api import load

    assert load([out]).windows.height == n
    assert len(list((logs / ".specdec-cache").glob("*.sdc"))) == 2  # --no-cache rewrites the entries


def test_cli_exit_codes(tmp_path):
    r = runner.invoke(app, ["ingest", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "nope" in r.output
    (tmp_path / "plain.log").write_text("nothing to see\n")
    r = runner.invoke(app, ["ingest", str(tmp_path), "--no-cache"])
    assert r.exit_code == 3


def test_cache_is_keyed_by_parser_code(logs, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = scan([logs], cache_dir=cache)
    calls = _count_parses(monkeypatch)
    real = S.code_key
    monkeypatch.setattr(S, "code_key", lambda sources: real(sources) + "-edited")
    again = scan([logs], cache_dir=cache)
    assert len(calls) == 2 and again.fingerprint != first.fingerprint


def test_code_key_covers_every_ingest_module():
    """The cache key hashes every module of the package (a new or split parser module included)
    and the schema module, so an edit anywhere in the parsing code misses old cache entries."""
    from specdec_diag.ingest import cache

    pkg = Path(cache.__file__).parent
    hashed = {f.resolve() for f in cache.code_files()}
    assert {f.resolve() for f in pkg.glob("*.py")} <= hashed
    assert Path(importlib.import_module("specdec_diag.schema").__file__).resolve() in hashed


def test_registry_lists_every_source_module():
    """Every module that exports a SOURCE is in the explicit registry, once, under its family."""
    pkg = Path(S.__file__).parent
    exported = []
    for f in sorted(pkg.glob("*.py")):
        mod = importlib.import_module(f"specdec_diag.ingest.{f.stem}")
        if hasattr(mod, "SOURCE"):
            exported.append(mod.SOURCE)
    assert sorted(s.family for s in exported) == sorted(s.family for s in SOURCES)
    assert len({s.family for s in SOURCES}) == len(SOURCES)
    for src in SOURCES:
        assert src.parse is not None or src.parse_file is not None, src.family
        assert bool(src.markers) == (src.parse is not None), src.family
