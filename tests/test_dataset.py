"""``ingest --out DIR``: a Hive-partitioned Parquet dataset that report/check read directly, equal to
scanning the logs (runs and findings included), appended to without rewriting old partitions.
Inputs: the sample fleet (real-format vLLM and SGLang lines, sample_logs/fleet/README.md)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from _helpers import same_tables
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from specdec_diag.analysis.runs import segment
from specdec_diag.api import load
from specdec_diag.cli import app
from specdec_diag.ingest import scan
from specdec_diag.ingest.dataset import MANIFEST, TABLES, is_dataset, read_manifest, walk_key

ROOT = Path(__file__).resolve().parents[1]
FLEET = ROOT / "sample_logs" / "fleet"
TRACES = ROOT / "sample_logs" / "traces"
runner = CliRunner()


def ingest(paths: list[Path], out: Path, *extra: str) -> str:
    r = runner.invoke(app, ["ingest", *map(str, paths), "--out", str(out), "--no-cache", *extra])
    assert r.exit_code == 0, r.output
    return " ".join(r.output.split())  # rich wraps long lines


def same(a, b) -> None:
    same_tables(a, b)
    assert a.headers == b.headers and a.warnings == b.warnings


@pytest.fixture
def logs(tmp_path) -> Path:
    d = tmp_path / "logs"
    shutil.copytree(FLEET, d / "fleet")
    shutil.copytree(TRACES, d / "traces")
    return d


def test_dataset_reads_back_as_the_scan_of_the_logs(logs, tmp_path):
    out = tmp_path / "ds"
    ingest([logs], out)
    assert is_dataset(out) and (out / MANIFEST).is_file() and (out / "runs.parquet").is_file()
    raw, back = scan([logs], use_cache=False), load([out])
    same(raw, back)
    a, b = segment(raw), segment(back)
    assert a.ids == b.ids and len(a.ids) > 5
    assert_frame_equal(a.table, b.table)
    assert_frame_equal(pl.read_parquet(out / "runs.parquet"), b.table)


def test_partitions_are_hive_directories_readable_by_polars(logs, tmp_path):
    out = tmp_path / "ds"
    ingest([logs / "fleet"], out)
    parts = sorted(p.relative_to(out / "windows").parent.as_posix() for p in (out / "windows").rglob("*.parquet"))
    assert "date=2026-03-14/host=host-a/engines=vllm" in parts
    assert any(p.endswith("host=host-e/engines=sglang") for p in parts)
    hive = pl.scan_parquet(out / "windows" / "**" / "*.parquet", hive_partitioning=True).collect()
    assert {"date", "host", "engines", "engine"} <= set(hive.columns)
    assert hive.height == scan([logs / "fleet"], use_cache=False).windows.height
    assert set(hive.filter(pl.col("host") == "host-e")["engine"].unique()) == {"sglang"}


def test_report_and_check_read_the_dataset_directly(logs, tmp_path):
    out = tmp_path / "ds"
    ingest([logs / "fleet"], out)
    reports = []
    for src in (logs / "fleet", out):
        rep = tmp_path / f"{src.name}.json"
        r = runner.invoke(app, ["report", str(src), "-f", "json", "--out", str(rep)])
        assert r.exit_code == 0, r.output
        reports.append(json.loads(rep.read_text()))
    a, b = reports
    assert [r["id"] for r in a["runs"]] == [r["id"] for r in b["runs"]]
    assert a["findings"] == b["findings"] and a["runs"] == b["runs"]
    checks = [runner.invoke(app, ["check", str(src), "--min-acceptance", "0.3"]) for src in (logs / "fleet", out)]
    assert checks[0].exit_code == checks[1].exit_code
    ids = [sorted(set(re.findall(r"\[(host-[^\]]+)\]", c.output))) for c in checks]  # the runs each failure names
    assert ids[0] == ids[1] and ids[0]


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in root.rglob("*.parquet") if p.name not in (MANIFEST, "runs.parquet")}


def test_appending_a_new_day_keeps_old_partitions(logs, tmp_path):
    """Day 1 is ingested; then a rotated file of day 1 and a new host's log of day 2 arrive: old
    part files keep their bytes and mtimes, new ones appear (day 2 in its own partition), and the
    dataset equals a scan of everything."""
    rotated = logs / "fleet" / "host-a" / "vllm-2026-03-14.log"
    later = tmp_path / "later.log"
    shutil.move(rotated, later)
    out = tmp_path / "ds"
    ingest([logs / "fleet"], out)
    before = _snapshot(out)
    shutil.move(later, rotated)
    day2 = (FLEET / "host-c" / "vllm.log").read_text().replace("2026-03-14", "2026-03-15").replace("03-14 ", "03-15 ")
    (logs / "fleet" / "host-g").mkdir()
    (logs / "fleet" / "host-g" / "vllm.log").write_text(day2)
    text = ingest([logs / "fleet"], out)
    assert "2 inputs added, 0 replaced, 7 unchanged" in text
    after = _snapshot(out)
    assert all(after[k] == v for k, v in before.items()), "an old partition file was rewritten"
    new = set(after) - set(before)
    assert any("date=2026-03-14/host=host-a/" in k for k in new)
    assert any("windows/date=2026-03-15/host=host-g/engines=vllm/" in k for k in new)
    assert not any("date=2026-03-15" in k for k in before)
    raw = scan([logs / "fleet"], use_cache=False)
    same(raw, load([out]))
    assert segment(raw).ids == segment(load([out])).ids


def test_a_changed_input_replaces_only_its_own_parts(logs, tmp_path):
    out = tmp_path / "ds"
    ingest([logs / "fleet"], out)
    before = _snapshot(out)
    grown = logs / "fleet" / "host-b" / "vllm.log"
    lines = grown.read_text().splitlines(keepends=True)
    grown.write_text("".join(lines + lines[-4:]))
    assert "0 inputs added, 1 replaced, 7 unchanged" in ingest([logs / "fleet"], out)
    after = _snapshot(out)
    changed = {k for k in before if after.get(k) != before[k]}
    assert changed and all("host=host-b" in k for k in changed)
    same(scan([logs / "fleet"], use_cache=False), load([out]))


def _parts(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for t in TABLES for p in (root / t).rglob("*.parquet"))


def test_one_part_file_per_partition_per_ingest_call(logs, tmp_path):
    """Many inputs of one partition share one part file (cost per partition, not per input); the
    manifest maps each input to it; a second call with new inputs adds one new part per partition."""
    d = tmp_path / "many" / "host-m"
    d.mkdir(parents=True)
    text = (FLEET / "host-c" / "vllm.log").read_text()
    for i in range(6):
        (d / f"w{i}.log").write_text(text)
    out = tmp_path / "ds"
    ingest([tmp_path / "many"], out)
    parts = _parts(out)
    windows = [p for p in parts if p.startswith("windows/")]
    assert len(windows) == 1 and len(parts) <= len(TABLES)
    assert re.fullmatch(r"windows/date=2026-03-14/host=host-m/engines=vllm/part-\d{8}T\d{6}Z-[0-9a-f]{8}\.parquet",
                        windows[0])
    m = read_manifest(out)
    assert m.height == 6 and m["_part"].n_unique() == 1 and all(p.endswith("/" + m["_part"][0]) for p in parts)
    before = _snapshot(out)
    for i in range(6, 9):
        (d / f"w{i}.log").write_text(text)
    assert "3 inputs added, 0 replaced, 6 unchanged" in ingest([tmp_path / "many"], out)
    after = _snapshot(out)
    assert all(after[k] == v for k, v in before.items())
    assert len([p for p in _parts(out) if p.startswith("windows/")]) == 2
    same(scan([tmp_path / "many"], use_cache=False), load([out]))
    assert_frame_equal(pl.read_parquet(out / "runs.parquet"), segment(load([out])).table)


def test_a_changed_input_leaves_no_stale_rows_for_raw_readers(logs, tmp_path):
    """An input sharing its part file with others changes: the old part keeps the others' rows only
    (a raw Hive scan counts the rows of a fresh scan), and the dataset reads as the scan."""
    out = tmp_path / "ds"
    ingest([logs / "fleet"], out)
    host_a = read_manifest(out).filter(pl.col("path").str.contains("/host-a/"))
    assert host_a.height >= 2 and host_a["_part"].n_unique() == 1
    grown = logs / "fleet" / "host-a" / "vllm.log"
    assert str(grown) in host_a["path"].to_list()
    lines = grown.read_text().splitlines(keepends=True)
    grown.write_text("".join(lines + lines[-4:]))
    ingest([logs / "fleet"], out)
    raw = scan([logs / "fleet"], use_cache=False)
    hive = pl.scan_parquet(out / "windows" / "**" / "*.parquet", hive_partitioning=True).collect()
    assert hive.height == raw.windows.height
    assert sorted(hive["source"].unique()) == sorted(raw.windows["source"].unique())
    same(raw, load([out]))


def test_readers_ignore_rows_the_manifest_does_not_place_in_a_part(logs, tmp_path):
    """A writer that died after the manifest but before removing a changed input's old rows: the
    old part file (still holding two unchanged inputs) keeps them too, yet the dataset reads as
    the scan."""
    out = tmp_path / "ds"
    ingest([logs / "fleet"], out)
    saved = {p: (out / p).read_bytes() for p in _parts(out) if "host=host-a" in p}
    grown = logs / "fleet" / "host-a" / "vllm.log"
    lines = grown.read_text().splitlines(keepends=True)
    grown.write_text("".join(lines + lines[-4:]))
    ingest([logs / "fleet"], out)
    for p, data in saved.items():
        (out / p).write_bytes(data)
    hive = pl.read_parquet(out / "windows" / "**" / "*.parquet", hive_partitioning=False)
    raw = scan([logs / "fleet"], use_cache=False)
    assert hive.height > raw.windows.height  # the stale rows are there
    same(raw, load([out]))


def _to_layout_1(out: Path) -> None:
    """Rewrite a dataset into the ``@1`` layout: one ``<input id>.parquet`` per input and table, a
    manifest with ``_id`` instead of ``_part``."""
    m = read_manifest(out)
    ids = {p: f"id{i:03d}" for i, p in enumerate(m["path"])}
    for t in TABLES:
        for f in list((out / t).rglob("part-*.parquet")):
            for (src,), g in pl.read_parquet(f, hive_partitioning=False).group_by(["source"]):
                g.write_parquet(f.parent / f"{ids[src]}.parquet")
            f.unlink()
    m.with_columns(pl.col("path").replace_strict(ids).alias("_id")).drop("_part").write_parquet(out / MANIFEST)


def test_a_layout_1_dataset_reads_and_appends(logs, tmp_path):
    out = tmp_path / "ds"
    ingest([logs / "fleet"], out)
    _to_layout_1(out)
    raw = scan([logs / "fleet"], use_cache=False)
    same(raw, load([out]))
    old_b = [p for p in _parts(out) if "host=host-b" in p]
    grown = logs / "fleet" / "host-b" / "vllm.log"
    lines = grown.read_text().splitlines(keepends=True)
    grown.write_text("".join(lines + lines[-4:]))
    assert "0 inputs added, 1 replaced, 7 unchanged" in ingest([logs / "fleet"], out)
    assert old_b and not any((out / p).exists() for p in old_b)
    same(scan([logs / "fleet"], use_cache=False), load([out]))


def test_out_refuses_a_directory_that_is_not_a_dataset(logs, tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine\n")
    r = runner.invoke(app, ["ingest", str(logs / "fleet"), "--out", str(tmp_path / "other")])
    assert r.exit_code == 2 and "not a specdec-diag dataset" in r.output


def test_a_scan_of_a_parent_directory_ignores_the_dataset_files(logs, tmp_path):
    out = logs / "fleet" / "dataset"
    ingest([logs / "fleet" / "host-a"], out)
    paths = scan([logs / "fleet"], use_cache=False).inputs["path"].to_list()
    assert not [p for p in paths if "/dataset/" in p]


def test_walk_key_orders_like_a_directory_walk():
    paths = ["a/z.log", "a/b/x.log", "a/b/c/y.log", "a/b.log", "b.log"]
    assert sorted(paths, key=walk_key) == ["b.log", "a/b.log", "a/z.log", "a/b/x.log", "a/b/c/y.log"]


def test_dashboard_loader_reads_the_dataset(logs, tmp_path):
    """The dashboard's loader (no Streamlit calls) reads a dataset directory as the logs it holds,
    and its listing key changes when the dataset is appended to."""
    pytest.importorskip("streamlit")
    from specdec_diag.dashboard_app import data

    out = tmp_path / "ds"
    ingest([logs / "fleet"], out)
    lst = data.listing(out)
    assert lst.files and all(f.suffix == ".parquet" for f in lst.files) and not lst.refused
    loaded = data.ingest(out, lst, background=False)
    ref = scan([logs / "fleet"], use_cache=False)
    same(ref, loaded.result)
    assert loaded.runs.ids == segment(ref).ids and loaded.report["findings"] is not None
    (logs / "fleet" / "host-g").mkdir()
    shutil.copy(FLEET / "host-c" / "vllm.log", logs / "fleet" / "host-g" / "vllm.log")
    ingest([logs / "fleet"], out)
    assert data.listing(out).key != lst.key


def test_a_dataset_and_more_logs_read_together(logs, tmp_path):
    """``report DATASET LOGDIR``: the dataset's inputs and the scanned ones, finalised together."""
    out = tmp_path / "ds"
    ingest([logs / "fleet"], out)
    both = load([out, logs / "traces"])
    ref = scan([logs / "fleet", logs / "traces"], use_cache=False)
    same(ref, both)
    assert segment(both).ids == segment(ref).ids
