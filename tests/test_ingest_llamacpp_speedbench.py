"""llama.cpp SPEED-Bench tables: the real compare table of llama.cpp PR #23869 (corpus sidecar cites
it) and single-run tables rendered with speed_bench.py's own formatting (tests/fixtures/llamacpp/SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from specdec_diag.ingest import llamacpp_speedbench, scan

FIX = Path(__file__).parent / "fixtures" / "llamacpp"
REAL = Path(__file__).parent / "fixtures" / "real" / "llamacpp"


def test_compare_table_real_pr23869():
    res = scan([REAL / "server_bench_speed_bench_pr23869.log"], use_cache=False)
    w = res.windows
    assert res.malformed.height == 0 and w.height == 16  # 8 categories, a baseline and a speculative run each
    coding = w.filter(pl.col("request") == "coding").sort("engine_id")
    base, spec = coding.to_dicts()
    assert (base["engine_id"], base["k"], base["gen_tps"]) == ("bench[baseline]: coding", 0, 51.55)
    assert (spec["engine_id"], spec["gen_tps"], spec["acceptance_rate"]) == ("bench[speculative]: coding", 84.54, 0.7545)
    assert spec["gen_tps"] / base["gen_tps"] == pytest.approx(1.64, abs=0.005)  # the printed decode_speedup


def test_single_run_tables():
    p = llamacpp_speedbench.parse_file(FIX / "speed_bench_runs_rendered.log", "runs")
    w = p.windows
    assert w["engine_id"].to_list() == ["coding", "qa", "bench[speculative]: coding", "bench[speculative]: qa"]
    assert w["acceptance_rate"].to_list() == [None, None, 0.7545, 0.8068]
    assert w["gen_tps"].to_list() == [51.55, 51.66, 84.54, 76.48]


def test_cut_row_is_malformed(tmp_path):
    text = (REAL / "server_bench_speed_bench_pr23869.log").read_text().rstrip("\n`") + "\nmultilingual   51.58   7\n"
    p = tmp_path / "cut.log"
    p.write_text(text)
    parsed = llamacpp_speedbench.parse_file(p, "cut")
    assert "cells" in parsed.malformed["reason"][-1] and parsed.windows.height == 16


def test_llamacpp_lines_in_the_same_file_are_still_read(tmp_path):
    table = (REAL / "server_bench_speed_bench_pr23869.log").read_text()
    server = (REAL / "server_print_timing_eagle3_pr24536.log").read_text()
    p = tmp_path / "both.log"
    p.write_text(table + server)
    formats = set(scan([p], use_cache=False).windows["format"].to_list())
    assert {"llamacpp-speed-bench", "llamacpp-server-pos", "llamacpp-statistics"} <= formats


def test_stray_blank_line_inside_a_table_costs_no_row(tmp_path):
    """Regression (junk-line property): a blank line between the header and its rule used to end the
    table, losing every row below it."""
    lines = (FIX / "speed_bench_runs_rendered.log").read_text().split("\n")
    p = tmp_path / "blank.log"
    p.write_text("\n".join([lines[0], "", *lines[1:]]))
    parsed = llamacpp_speedbench.parse_file(p, "blank")
    assert parsed.windows["gen_tps"].to_list() == [51.55, 51.66, 84.54, 76.48]
    assert parsed.malformed.height == 0
