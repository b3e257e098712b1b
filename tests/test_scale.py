"""Every core and a Ray cluster (issue 13): a scan spread over processes, cut into pieces, or run as
Ray tasks gives the same tables as one worker, row order and line numbers included.

The inputs are the real-format sample logs (their sources are cited in sample_logs/*/README.md),
repeated into files large enough to be cut when the split sizes are turned down."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from _helpers import same_tables
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from specdec_diag.api import load
from specdec_diag.cli import app
from specdec_diag.ingest import parallel, scan
from specdec_diag.ingest.executors import ProcessExecutor, SerialExecutor, make_executor, parse_executor

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_logs"
VLLM = SAMPLES / "engines" / "vllm" / "v1_healthy_eagle.log"
SGLANG = SAMPLES / "engines" / "sglang" / "healthy_eagle3.log"


def same(a, b) -> None:
    same_tables(a, b)
    assert a.headers == b.headers and a.warnings == b.warnings and a.fingerprint == b.fingerprint


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """A directory with two ~1.5 MB vLLM logs, a container log interleaving vLLM and SGLang lines, a
    gzip copy (never cut) and the small sample files."""
    d = tmp_path_factory.mktemp("big")
    (d / "a").mkdir()
    (d / "a" / "vllm.log").write_bytes(VLLM.read_bytes() * 60)
    (d / "b").mkdir()
    (d / "b" / "vllm.log").write_bytes(VLLM.read_bytes() * 45)
    mixed = b"".join(VLLM.read_bytes() + SGLANG.read_bytes() for _ in range(30))
    (d / "c").mkdir()
    (d / "c" / "container.log").write_bytes(mixed)
    shutil.copytree(SAMPLES / "fleet", d / "fleet")
    return d


@pytest.fixture
def small_pieces(monkeypatch):
    """Files over 256 KiB are cut into ~200 KiB pieces (the plan is made in this process)."""
    monkeypatch.setattr(parallel, "SPLIT_BYTES", 256 * 1024)
    monkeypatch.setattr(parallel, "PIECE_BYTES", 200 * 1024)


def test_the_plan_cuts_large_plain_files_on_line_boundaries(big, small_pieces):
    s = parallel.Settings(None, False, False, 8 << 20, tuple(parallel.SOURCES), "k")
    plan = parallel.plan_inputs([big], s, None)
    pieces = [t for t in plan.tasks if t.kind == "piece"]
    assert {t.path for t in pieces} == {str(big / x) for x in ("a/vllm.log", "b/vllm.log", "c/container.log")}
    for path in {t.path for t in pieces}:
        mine = sorted((t.start, t.end) for t in pieces if t.path == path)
        data = Path(path).read_bytes()
        assert mine[0][0] == 0 and mine[-1][1] == len(data) and len(mine) >= 3
        assert all(a[1] == b[0] for a, b in zip(mine, mine[1:], strict=False))  # contiguous
        assert all(data[end - 1 : end] == b"\n" for _, end in mine)             # each ends a line
    assert not any(t.path.endswith(".gz") for t in pieces)


def test_two_workers_give_the_tables_of_one(big, small_pieces):
    one = parallel.scan_parallel([big], use_cache=False, executor=SerialExecutor())
    ex = ProcessExecutor(2)
    try:
        two = parallel.scan_parallel([big], use_cache=False, executor=ex)
    finally:
        ex.close()
    same(one, two)
    assert one.windows.height > 1000


def test_cut_files_keep_exact_line_numbers(big, small_pieces):
    """Every window row of a cut file names the line it came from (the pieces' numbers shifted)."""
    res = parallel.scan_parallel([big / "c"], use_cache=False)
    lines = (big / "c" / "container.log").read_text().splitlines()
    w = res.windows
    assert w.height > 100 and w["line"].max() > len(lines) * 0.9
    for line, fmt in w.select("line", "format").iter_rows():
        text = lines[line - 1]
        assert ("SpecDecoding" in text or "throughput" in text) if fmt.startswith("vllm") else " batch. " in text, \
            (line, fmt, text)
    assert res.inputs["lines"].to_list() == [len(lines)]


def test_cut_single_engine_logs_equal_the_plain_scan(big, small_pieces):
    """One engine per file (the common case): cutting changes nothing, not even row order."""
    paths = [big / "a", big / "b", big / "fleet"]
    same(scan(paths, use_cache=False), parallel.scan_parallel(paths, use_cache=False))


def test_each_piece_reads_only_its_own_range(big, small_pieces):
    """A piece that read more than its range is thrown away and the file parsed whole: the tables
    stay right but the file is read once per piece and once more, so the pieces are checked here."""
    s = parallel.Settings(None, False, False, 8 << 20, tuple(parallel.SOURCES), "k")
    for sub in ("a", "c"):
        plan = parallel.plan_inputs([big / sub], s, None)
        parts = [parallel.run_task((t, s))[0] for t in plan.tasks]
        assert len(parts) >= 3 and all(p is not None for p in parts)
        cut = next((big / sub).glob("*.log"))
        merged, whole = parallel.merge_pieces(parts), parallel.parse_file(cut, str(cut))
        assert merged.input["lines"] == whole.input["lines"] == len(cut.read_bytes().splitlines())
        assert sorted(merged.windows["line"]) == sorted(whole.windows["line"])  # mixed files: row order by source


def test_cache_is_used_for_cut_files(big, small_pieces, tmp_path):
    first = parallel.scan_parallel([big / "a"], cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.sdc"))) == 1
    plan = parallel.plan_inputs([big / "a"], parallel.Settings(str(tmp_path), True, False, 8 << 20,
                                tuple(parallel.SOURCES), parallel.code_key(list(parallel.SOURCES))),
                                parallel.Cache(tmp_path))
    assert plan.tasks == [] and plan.units[0].cached is not None
    same(first, parallel.scan_parallel([big / "a"], cache_dir=tmp_path))


def test_cli_workers_option_same_report(big, tmp_path):
    runner = CliRunner()
    outs = []
    for w in ("1", "2"):
        rep = tmp_path / f"r{w}.json"
        r = runner.invoke(app, ["report", str(big / "fleet"), "-f", "json", "--workers", w, "--out", str(rep)])
        assert r.exit_code == 0, r.output
        outs.append(rep.read_text())
    assert outs[0] == outs[1]
    r = runner.invoke(app, ["report", str(big / "fleet"), "--executor", "spark"])
    assert r.exit_code == 2 and "--executor 'spark'" in r.output


def test_executor_spec():
    assert parse_executor(None) == ("local", None)
    assert parse_executor("ray:10.0.0.5:6379") == ("ray", "10.0.0.5:6379")
    with pytest.raises(ValueError, match="use local, ray"):
        parse_executor("dask")
    assert isinstance(make_executor("local", 1), SerialExecutor)
    with pytest.raises(ValueError, match="at least 1"):
        make_executor("local", 0)


def test_memory_and_file_urls_equal_the_local_scan(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    mem = fsspec.filesystem("memory")
    for f in sorted((SAMPLES / "fleet").rglob("*.log*")):
        mem.pipe(f"/fleet-t/{f.relative_to(SAMPLES / 'fleet').as_posix()}", f.read_bytes())
    got = load(["memory://fleet-t"], use_cache=False)
    ref = scan([SAMPLES / "fleet"], use_cache=False)
    assert got.inputs.height == ref.inputs.height
    strip = pl.col("source").str.replace(r"^.*?fleet(-t)?/", "")
    assert_frame_equal(got.windows.with_columns(strip), ref.windows.with_columns(strip))
    local = load([f"file://{SAMPLES / 'fleet'}"], use_cache=False)
    assert_frame_equal(local.windows.with_columns(strip), ref.windows.with_columns(strip))
    bad = load(["memory://no-such-dir/x.log"], use_cache=False)
    assert bad.errors and "memory://no-such-dir/x.log" in bad.errors[0]


def test_url_directories_skip_hidden_directories_as_the_walk_does(tmp_path):
    """The scan's cache lives in ``.specdec-cache`` beside the logs (its ``runs/*.json`` are
    wanted names); a ``file://`` scan of such a directory reads what the local walk reads."""
    pytest.importorskip("fsspec")
    d = tmp_path / "fleet"
    shutil.copytree(SAMPLES / "fleet", d, ignore=shutil.ignore_patterns(".specdec-cache"))
    (d / ".specdec-cache" / "runs").mkdir(parents=True)
    shutil.copy(VLLM, d / ".specdec-cache" / "runs" / "copy.log")
    ref = scan([d], use_cache=False)
    got = load([f"file://{d}"], use_cache=False)
    assert got.inputs.height == ref.inputs.height
    strip = pl.col("source").str.replace(r"^.*?fleet/", "")
    assert_frame_equal(got.windows.with_columns(strip), ref.windows.with_columns(strip))
    assert parallel.walked("/host-a/vllm.log.1") and parallel.walked(".hidden.log")
    assert not parallel.walked("/.specdec-cache/runs/x.json") and not parallel.walked("/a/README.md")


# --- Ray ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed (pip install 'specdec-diag[scale]'): the Ray executor is untested here")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_executor_equals_the_local_executor(ray_local, big, small_pieces):
    from specdec_diag.ingest.executors import RayExecutor

    ex = RayExecutor()
    assert ex.workers == 2
    paths = [big / "c", big / "fleet"]
    same(parallel.scan_parallel(paths, use_cache=False, executor=SerialExecutor()),
         parallel.scan_parallel(paths, use_cache=False, executor=ex))


def test_ray_reads_memory_urls(ray_local):
    """``memory://`` lives in the driver only: its bytes travel with the tasks."""
    import fsspec

    mem = fsspec.filesystem("memory")
    for f in sorted((SAMPLES / "fleet").rglob("*.log*")):
        mem.pipe(f"/fleet-r/{f.relative_to(SAMPLES / 'fleet').as_posix()}", f.read_bytes())
    same(load(["memory://fleet-r"], use_cache=False, executor="ray"),
         load(["memory://fleet-r"], use_cache=False, workers=1))
