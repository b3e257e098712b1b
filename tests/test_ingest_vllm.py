"""vLLM sources: one fixture per format variant, with numbers worked out by hand from the printed
lines (docs/log-formats.md §1-2, §8), and the identities the conversions must satisfy."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import polars as pl
import pytest
from _helpers import load_script

from specdec_diag.ingest import scan, vllm
from specdec_diag.ingest._textparse import lines_from_texts

FIX = Path(__file__).parent / "fixtures" / "vllm"
UTC = dt.UTC


def _scan(tmp_path: Path, name: str, mtime: dt.datetime | None = None):
    dst = tmp_path / name
    shutil.copy(FIX / name, dst)
    if mtime is not None:
        ts = mtime.timestamp()
        os.utime(dst, (ts, ts))
    return scan([dst], use_cache=False, sources=[vllm.SOURCE])


def _rows(res, **filters) -> list[dict]:
    w = res.windows
    for k, v in filters.items():
        w = w.filter(pl.col(k) == v)
    return w.sort("line").to_dicts()


def test_v0_typo_variant_cumulative_to_intervals_with_restart(tmp_path):
    res = _scan(tmp_path, "v0_2024_typo.log", dt.datetime(2024, 7, 24, 5, 0, tzinfo=UTC))
    cum = _rows(res, window="cumulative")
    iv = _rows(res, window="interval", format="vllm-v0-spec-metrics-2024")
    assert [r["line"] for r in cum] == [6, 9, 11]
    # line 6: k=5, draft 500 -> 100 drafts; emitted 300 = prefix accepted + one token per draft -> 200.
    # engine rate 0.600 counts non-prefix accepts; prefix rate = 200/500 = 0.4; MAL = 300/100 = 3.0
    # (= efficiency 0.5 * (k+1)).
    c0 = cum[0]
    assert (c0["k"], c0["num_drafts"], c0["draft_tokens"], c0["accepted_tokens"], c0["emitted_tokens"]) == (
        5, 100, 500, 200, 300)
    assert c0["acceptance_rate"] == pytest.approx(0.4)
    assert c0["mean_acceptance_length"] == pytest.approx(0.5 * 6)
    assert "any position" in c0["definition_note"] and "accepted=300" in c0["definition_note"]
    # intervals: first = since start; second = differences (500 draft, 100 drafts, 260 emitted, 160 prefix);
    # third: counters went down (restart) -> the window counts from zero: its own values.
    assert [(r["draft_tokens"], r["num_drafts"], r["emitted_tokens"], r["accepted_tokens"]) for r in iv] == [
        (500, 100, 300, 200), (500, 100, 260, 160), (100, 20, 50, 30)]
    assert [r["acceptance_rate"] for r in iv] == pytest.approx([0.4, 0.32, 0.3])
    assert [r["mean_acceptance_length"] for r in iv] == pytest.approx([3.0, 2.6, 2.5])
    assert "restart" in iv[2]["definition_note"] and "server start" in iv[0]["definition_note"]
    # time: no year in the line; mtime 2024 anchors it.
    assert cum[0]["time"] == dt.datetime(2024, 7, 24, 4, 0, 31, tzinfo=UTC)
    thr = _rows(res, format="vllm-v0-throughput")
    assert [(r["gen_tps"], r["prompt_tps"], r["running_reqs"], r["waiting_reqs"]) for r in thr] == [
        (85.2, 10.5, 3, 1), (92.0, 0.0, 4, 0)]
    assert thr[0]["kv_usage"] == pytest.approx(0.124)
    cfg = dict(res.configs.select("key", "value").iter_rows())
    assert cfg["draft_model"] == "JackFram/llama-68m" and cfg["num_speculative_tokens"] == "5"
    assert cfg["acceptance_method"] == "rejection_sampler" and cfg["proposer"] == "MultiStepWorker"
    assert res.malformed.height == 0


def test_v0_broken_medusa_typical_sampler_and_new_year(tmp_path):
    res = _scan(tmp_path, "v0_medusa_typical.log", dt.datetime(2025, 1, 1, 0, 10, tzinfo=UTC))
    cum = _rows(res, window="cumulative")
    # efficiency 0.059 = 1/17: only the bonus token per draft -> MAL 1, no prefix accepts.
    assert [(r["num_drafts"], r["accepted_tokens"], r["mean_acceptance_length"]) for r in cum] == [
        (200, 0, 1.0), (400, 0, 1.0)]
    iv = _rows(res, window="interval", engine="vllm")
    assert [r["draft_tokens"] for r in iv if r["format"].startswith("vllm-v0-spec")] == [3200, 3200]
    # 12-31 lies after the mtime's 01-01: the previous year.
    assert cum[0]["time"].year == 2024 and cum[1]["time"].year == 2025
    cfg = res.configs.filter(pl.col("key") == "acceptance_method")
    assert cfg["value"].to_list() == ["typical_acceptance_sampler"]
    assert res.configs.filter(pl.col("key") == "proposer")["value"].to_list() == ["MedusaWorker"]


def test_v1_a_fraction_rate(tmp_path):
    res = _scan(tmp_path, "v1_a.log")
    [a] = _rows(res, format="vllm-v1-specdecoding-A")
    assert (a["window"], a["accepted_tokens"], a["draft_tokens"]) == ("interval", 170, 400)
    assert a["acceptance_rate"] == pytest.approx(0.425)
    assert a["num_drafts"] is None and a["mean_acceptance_length"] is None


def test_v1_b_percent_rate(tmp_path):
    res = _scan(tmp_path, "v1_b.log")
    [b] = _rows(res, format="vllm-v1-specdecoding-B")
    assert b["acceptance_rate"] == pytest.approx(0.625) and b["k"] is None
    assert b["engine_id"] == "Engine 000"  # attached to the throughput line logged just before


def test_v1_c_ngram_num_drafts_from_mal(tmp_path):
    res = _scan(tmp_path, "v1_c_ngram.log", dt.datetime(2025, 6, 7, tzinfo=UTC))
    c1, c2 = _rows(res, format="vllm-v1-specdecoding-C")
    # ngram drafts fewer than k tokens: 150/k=75 gives 1+60/75=1.80, not the printed 1.60; from the MAL,
    # num_drafts = 60/(1.60-1) = 100, and 1 + 0.400 + 0.200 = 1.60.
    assert (c1["k"], c1["num_drafts"], c1["emitted_tokens"]) == (2, 100, 160)
    assert c1["acceptance_rate"] == pytest.approx(0.4)
    assert "approximate" in c1["definition_note"]
    assert 1 + sum(c1["per_position_acceptance"]) == pytest.approx(c1["mean_acceptance_length"])
    # no accepts: MAL 1.00 says nothing about num_drafts; drafted/k = 25 fits exactly.
    assert (c2["num_drafts"], c2["mean_acceptance_length"], c2["acceptance_rate"]) == (25, 1.0, 0.0)
    assert c1["time"] == dt.datetime(2025, 6, 6, 14, 20, 34, tzinfo=UTC)
    cfg = dict(res.configs.select("key", "value").iter_rows())
    assert cfg == {"method": "ngram", "num_speculative_tokens": "2",  # + the run's identity (vllm_startup)
                   "model": "Qwen/Qwen3-32B-FP8", "version": "0.9.0.1"}
    idle = _rows(res, format="vllm-v1-throughput")[-1]
    assert idle["gen_tps"] == 0.0 and idle["running_reqs"] == 0


def test_v1_d_apiserver_prefix(tmp_path):
    res = _scan(tmp_path, "v1_d_apiserver.log")
    [d] = _rows(res, format="vllm-v1-specdecoding-D")
    assert d["engine_id"] == "APIServer pid=1 Engine 000"
    assert (d["k"], d["num_drafts"], d["accepted_tokens"], d["draft_tokens"]) == (4, 100, 100, 400)
    assert (d["accepted_tps"], d["drafted_tps"]) == (10.0, 40.0)
    assert d["per_position_acceptance"] == pytest.approx([0.5, 0.3, 0.15, 0.05])
    # identities of §2.3: MAL = 1 + accepted/num_drafts = 1 + sum(per-position)
    assert d["mean_acceptance_length"] == pytest.approx(1 + d["accepted_tokens"] / d["num_drafts"])
    assert d["mean_acceptance_length"] == pytest.approx(1 + sum(d["per_position_acceptance"]))
    cfg = dict(res.configs.select("key", "value").iter_rows())
    assert cfg == {"method": "eagle", "draft_model": "yuhuili/EAGLE-LLaMA3.1-Instruct-8B",
                   "num_speculative_tokens": "4", "model": "meta-llama/Llama-3.1-8B-Instruct", "pid": "1"}


def test_v1_e_docker_ansi_data_parallel(tmp_path):
    res = _scan(tmp_path, "v1_e_docker_dp.log")
    rows = _rows(res, format="vllm-v1-specdecoding-E")
    assert [r["engine_id"] for r in rows] == ["APIServer pid=7 Engine 000", "APIServer pid=8 Engine 001",
                                             "APIServer pid=7 Engine 000"]
    # the container's UTC timestamp wins over vLLM's local MM-DD (and crosses New Year correctly)
    assert [r["time"] for r in rows] == [
        dt.datetime(2025, 12, 31, 23, 59, 50, tzinfo=UTC), dt.datetime(2025, 12, 31, 23, 59, 51, 250000, tzinfo=UTC),
        dt.datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)]
    assert [(r["num_drafts"], r["accepted_tokens"], r["emitted_tokens"]) for r in rows] == [
        (200, 300, 500), (200, 180, 380), (200, 420, 620)]
    assert [r["acceptance_rate"] for r in rows] == pytest.approx([0.5, 0.3, 0.7])
    for r in rows:
        assert r["mean_acceptance_length"] == pytest.approx(1 + r["accepted_tokens"] / r["num_drafts"])
        assert r["mean_acceptance_length"] == pytest.approx(1 + sum(r["per_position_acceptance"]), abs=0.006)
    thr = _rows(res, format="vllm-v1-throughput")
    assert [(r["running_reqs"], r["waiting_reqs"]) for r in thr] == [(8, 2), (7, 0), (9, 0)]
    assert [r["kv_usage"] for r in thr] == pytest.approx([0.45, 0.40, 0.475])


def test_v1_aggregated_engines(tmp_path):
    res = _scan(tmp_path, "v1_aggregated.log")
    thr, spec = _rows(res)
    assert thr["engine_id"] == spec["engine_id"] == "APIServer pid=1 2 Engines Aggregated"
    assert thr["waiting_reqs"] == 30 and thr["kv_usage"] == pytest.approx(0.99)
    # 2000 / k=4 = 500 drafts would give MAL 2.0; printed 1.50 -> 1000 drafts (500/0.5)
    assert (spec["k"], spec["num_drafts"]) == (4, 1000)


def test_unknown_variant_is_key_value_not_error(tmp_path):
    res = _scan(tmp_path, "v1_fork_kv.log")
    [r] = _rows(res)
    assert r["format"] == "vllm-v1-specdecoding-kv" and r["window"] == "cumulative"
    assert (r["accepted_tokens"], r["draft_tokens"], r["mean_acceptance_length"]) == (500, 1000, 2.35)
    assert res.malformed.height == 0


def test_bench_serve_block(tmp_path):
    res = _scan(tmp_path, "bench_serve.txt")
    [r] = _rows(res)
    assert (r["format"], r["window"], r["line"]) == ("vllm-bench-serve", "run", 25)
    assert (r["num_drafts"], r["draft_tokens"], r["accepted_tokens"]) == (11043, 88344, 38611)
    # printed 43.71 % = 38611/88344; length 4.50 = 1 + 38611/11043; k = 88344/11043 = 8 positions
    assert round(100 * r["acceptance_rate"], 2) == 43.71
    assert r["mean_acceptance_length"] == 4.50 and round(1 + 38611 / 11043, 2) == 4.50
    assert r["k"] == 8 and len(r["per_position_acceptance"]) == 8
    assert r["per_position_acceptance"][0] == pytest.approx(0.7617)
    assert 1 + sum(r["per_position_acceptance"]) == pytest.approx(r["mean_acceptance_length"], abs=0.01)
    assert (r["gen_tps"], r["ttft_ms"], r["tpot_ms"]) == (400.0, 120.5, 20.25)


def test_offline_example_block(tmp_path):
    res = _scan(tmp_path, "offline_spec_decode.txt")
    [r] = _rows(res)
    assert r["format"] == "vllm-offline-spec-decode"
    assert (r["num_drafts"], r["draft_tokens"], r["accepted_tokens"], r["emitted_tokens"], r["k"]) == (
        800, 2400, 1200, 2000, 3)
    assert r["acceptance_rate"] == 0.5 and r["mean_acceptance_length"] == 2.5
    assert r["per_position_acceptance"] == pytest.approx([0.8, 0.5, 0.2])


def test_malformed_lines_are_reported_with_line_numbers(tmp_path):
    res = _scan(tmp_path, "malformed.log")
    bad = dict(res.malformed.select("line", "reason").iter_rows())
    assert sorted(bad) == [1, 2, 3, 4, 5]
    assert "does not match" in bad[1]                      # cut mid-number ("Drafted: 6")
    assert "add up" in bad[2]                              # a per-position value lost
    assert "disagrees" in bad[3]                           # 75.0% printed, 100/400 counted
    assert "V0" in bad[4] and "throughput" in bad[5]
    assert _rows(res)[0]["line"] == 6                     # the good line after them still counts
    assert res.inputs["malformed"].to_list() == [5]


def test_year_unknown_without_anchor():
    lines = lines_from_texts(["INFO 06-06 14:20:34 [metrics.py:86] SpecDecoding metrics: Draft acceptance rate: "
                              "62.5%, Accepted: 250 tokens, Drafted: 400 tokens"])
    p = vllm.parse(lines, "x.log")
    assert p.windows["time"].to_list() == [None] and p.windows["acceptance_rate"].to_list() == [0.625]


def test_pasted_lines_without_prefix_and_crlf():
    lines = lines_from_texts([
        "SpecDecoding metrics: Mean acceptance length: 2.50, Accepted throughput: 30.00 tokens/s, Drafted "
        "throughput: 60.00 tokens/s, Accepted: 300 tokens, Drafted: 600 tokens, Per-position acceptance rate: "
        "0.800, 0.500, 0.200, Avg Draft acceptance rate: 50.0%\r",
        "Engine 000: Avg prompt throughput: 1.0 tokens/s, Avg generation throughput: 2.0 tokens/s, Running: 1 reqs, "
        "Waiting: 0 reqs, GPU KV cache usage: 0.5%, Prefix cache hit rate: 0.0%, MM cache hit rate: 0.0%",
    ])
    p = vllm.parse(lines, "x.log")
    assert p.malformed.height == 0
    assert p.windows.sort("line")["format"].to_list() == ["vllm-v1-specdecoding-E", "vllm-v1-throughput"]


def test_detect():
    assert vllm.detect("INFO 06-06 14:20:34 [loggers.py:116] Engine 000: Avg prompt")
    assert vllm.detect("(APIServer pid=1) INFO 05-06 06:11:23 [api_server.py:1] starting")
    assert not vllm.detect("[2025-01-07 20:16:02 TP0] Decode batch. #running-req: 1")


SAMPLES = Path(__file__).parent.parent / "sample_logs" / "engines" / "vllm"


def test_sample_logs_match_their_generator_and_parse_cleanly():
    mod = load_script("make_engine_samples")
    built = mod.build()
    assert sorted(built) == sorted(p.name for p in SAMPLES.iterdir() if p.name != "README.md")
    for name, lines in built.items():
        assert (SAMPLES / name).read_text() == "\n".join(lines) + "\n", f"{name} is stale: rerun the script"
    res = scan([SAMPLES], use_cache=False, sources=[vllm.SOURCE])
    assert res.malformed.height == 0 and res.inputs["records"].min() > 0
    iv = res.windows.filter(pl.col("window").is_in(["interval", "run"]) & pl.col("draft_tokens").is_not_null())
    ar = {Path(s).name: a for s, a in iv.group_by("source").agg(
        pl.col("accepted_tokens").sum() / pl.col("draft_tokens").sum()).iter_rows() if a == a}
    assert ar["v1_drafter_broken_mtp.log"] < 0.03 < 0.5 < ar["v1_healthy_eagle.log"]
    assert ar["v1_suspicious_pinned.log"] == 1.0
    cliff = res.windows.filter(pl.col("source").str.ends_with("v1_position_cliff.log")
                               & pl.col("per_position_acceptance").is_not_null())
    assert all(p[0] > 0.6 and p[1] < 0.05 for p in cliff["per_position_acceptance"].to_list())


def test_year_anchors_and_iso_times():
    from specdec_diag.ingest.timestamps import anchor_from, iso_time, month_day_time

    # an ISO date in the head: the log starts there; an earlier month-day is next year
    a = anchor_from("vllm-1  | 2025-12-30T08:00:00Z (APIServer pid=1) INFO 12-30 08:00:00 ...", mtime=0.0)
    assert (a.date.isoformat(), a.at_start, a.origin) == ("2025-12-30", True, "iso-in-file")
    md = pl.DataFrame({"md": ["12-30", "12-31", "01-02"], "hms": ["08:00:00", "23:59:59", "00:00:01"]})
    got = md.select(month_day_time(pl.col("md"), pl.col("hms"), a).alias("t"))["t"].dt.year().to_list()
    assert got == [2025, 2025, 2026]
    # only an mtime: the log ends there; a later month-day is the previous year
    b = anchor_from("INFO 12-30 08:00:00 metrics.py:1] x", mtime=dt.datetime(2026, 1, 2, tzinfo=UTC).timestamp())
    assert (b.date.isoformat(), b.at_start) == ("2026-01-02", False)
    got = md.select(month_day_time(pl.col("md"), pl.col("hms"), b).alias("t"))["t"].dt.year().to_list()
    assert got == [2025, 2025, 2026]
    assert md.with_columns(month_day_time(pl.col("md"), pl.col("hms"), None).alias("t"))["t"].to_list() == [None] * 3
    iso = pl.DataFrame({"s": ["2025-06-06T14:20:34.123456789Z", "2025-06-06 14:20:34+0200", "2025-06-06T14:20:34",
                              "garbage"]})
    assert iso.select(iso_time(pl.col("s")).alias("t"))["t"].to_list() == [
        dt.datetime(2025, 6, 6, 14, 20, 34, 123456, tzinfo=UTC), dt.datetime(2025, 6, 6, 12, 20, 34, tzinfo=UTC),
        dt.datetime(2025, 6, 6, 14, 20, 34, tzinfo=UTC), None]


_NAN_E = ("SpecDecoding metrics: Mean acceptance length: nan, Accepted throughput: 0.00 tokens/s, Drafted "
          "throughput: 0.00 tokens/s, Accepted: 0 tokens, Drafted: 0 tokens, Per-position acceptance rate: nan, "
          "nan, nan, Avg Draft acceptance rate: nan%")


@pytest.mark.parametrize("body,why", [
    (_NAN_E, "Mean acceptance length is nan"),  # what vLLM prints for an interval without drafts
    (_NAN_E.replace("Accepted: 0", "Accepted: 99999999999999999999999"), "Accepted is 99999999999999999999999"),
    ("SpecDecoding metrics: Draft acceptance rate: 40.0%, Mean acceptance length: 1.60, Accepted: "
     "99999999999999999999999 tokens, Drafted: 150 tokens, Per-position acceptance rate: 0.400, 0.200",
     "Accepted is 99999999999999999999999"),
    ("SpecDecoding metrics: Draft acceptance rate: inf%, Accepted: 250 tokens, Drafted: 400 tokens",
     "Draft acceptance rate is inf"),
    ("Speculative metrics: Draft acceptance rate: 0.6, System efficiency: 0.5, Number of speculative tokens: 5, "
     "Number of accepted tokens: 300, Number of draft tokens: 99999999999999999999999, Number of emitted "
     "tokens: 300.", "Number of draft tokens is 99999999999999999999999"),
    ("Engine 000: Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: NaN tokens/s, Running: 1 "
     "reqs, Waiting: 0 reqs, GPU KV cache usage: 1.0%", "Avg generation throughput is NaN"),
    ("Engine 000: Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 9.0 tokens/s, Running: 1 "
     "reqs, Waiting: 0 reqs, GPU KV cache usage: -inf%", "GPU KV cache usage is -inf"),
    ("SpecDecoding metrics: Mystery tokens: nan, Accepted: 5 tokens", "Mystery tokens is nan"),
])
def test_one_bad_line_costs_only_itself(tmp_path, body, why):
    """Issue 16 row 1: one line with nan/inf/huge values in a good log made the whole batch fail
    (0 of 60 records, one malformed row at line 1). Now: that line malformed at its own number."""
    lines = (SAMPLES / "v1_healthy_eagle.log").read_text().splitlines()
    good = scan([SAMPLES / "v1_healthy_eagle.log"], use_cache=False).windows.height
    at = len(lines) // 2
    prefix = ("INFO 03-14 09:01:00 metrics.py:367] " if body.startswith("Speculative")  # V0: no brackets
              else "2026-03-14T09:01:00.000000000Z (APIServer pid=1) INFO 03-14 09:01:00 [loggers.py:123] ")
    lines.insert(at, prefix + body)
    p = tmp_path / "one_bad.log"
    p.write_text("\n".join(lines) + "\n")
    res = scan([p], use_cache=False)
    assert res.windows.height == good
    assert res.malformed["line"].to_list() == [at + 1]
    assert why in res.malformed["reason"][0]


def test_v0_nan_rate_before_the_first_draft_is_not_malformed(tmp_path):
    """V0 prints rate and efficiency as nan until the first draft: quoted only, the line still counts."""
    res = scan([SAMPLES / "v0_spec_inactive.log"], use_cache=False)
    assert res.malformed.height == 0 and res.windows.height > 0


def test_a_nan_in_a_bench_summary_is_malformed_at_its_line_not_zero(tmp_path):
    text = (FIX / "bench_serve.txt").read_text()
    pos = next(ln for ln in text.splitlines() if ln.strip().startswith("Position 1"))
    p = tmp_path / "bench.txt"
    p.write_text(text.replace(pos, pos.split(":")[0] + ": nan"))
    res = scan([p], use_cache=False, sources=[vllm.SOURCE])
    no = text.splitlines().index(pos) + 1
    assert res.malformed.select("line").to_series().to_list() == [no]
    assert "position 1" in res.malformed["reason"][0]
    assert res.windows.filter(pl.col("format") == "vllm-bench-serve").height == 0
