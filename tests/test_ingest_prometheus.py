"""Prometheus snapshots: vLLM V1/V0 counters, SGLang gauges, TGI histogram; snapshot splitting,
differences (within and across files), counter resets. Expected numbers are worked out by hand
from the counter definitions in docs/log-formats.md §1.4, §2.4, §3.4, §5."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from _helpers import parse_samples

from specdec_diag.ingest import prometheus
from specdec_diag.ingest._textparse import lines_from_texts
from specdec_diag.schema import MALFORMED_SCHEMA, WINDOW_SCHEMA

FIX = Path(__file__).parent / "fixtures" / "prometheus"


def parse(name: str):
    p = prometheus.parse_file(FIX / name, str(FIX / name))
    assert dict(p.windows.schema) == WINDOW_SCHEMA
    return p


def rows(p, window: str) -> list[dict]:
    return p.windows.filter(pl.col("window") == window).to_dicts()


def test_vllm_v1_two_scrapes_with_separator_times():
    p = parse("vllm_v1_two_scrapes.prom")
    cum = rows(p, "cumulative")
    assert [r["num_drafts"] for r in cum] == [1000, 1500]
    assert cum[0]["time"].isoformat() == "2025-06-01T12:00:00+00:00"
    assert cum[0]["acceptance_rate"] == 0.5 and cum[0]["mean_acceptance_length"] == 2.5
    assert cum[0]["per_position_acceptance"] == pytest.approx([0.8, 0.45, 0.25])
    assert cum[0]["k"] == 3 and cum[0]["engine_id"] == "meta-llama/Llama-3.1-8B-Instruct engine=0"
    assert (cum[0]["running_reqs"], cum[0]["waiting_reqs"], cum[0]["kv_usage"]) == (4, 0, 0.125)
    (iv,) = rows(p, "interval")
    # 500 drafts, 1500 draft tokens, 400 accepted; per position 250, 100, 50 of 500
    assert (iv["num_drafts"], iv["draft_tokens"], iv["accepted_tokens"]) == (500, 1500, 400)
    assert iv["acceptance_rate"] == pytest.approx(400 / 1500)
    assert iv["mean_acceptance_length"] == pytest.approx(1.8)
    assert iv["per_position_acceptance"] == pytest.approx([0.5, 0.2, 0.1])
    assert 1 + sum(iv["per_position_acceptance"]) == pytest.approx(iv["mean_acceptance_length"])
    assert iv["accepted_tps"] == pytest.approx(40.0) and iv["drafted_tps"] == pytest.approx(150.0)
    assert (iv["running_reqs"], iv["waiting_reqs"], iv["kv_usage"]) == (16, 3, 0.5)
    assert p.malformed.height == 0


def test_snapshots_in_separate_files_are_differenced_by_finalize():
    """after.prom sorts before before.prom by name; the counters give the true order."""
    parts = [prometheus.parse_file(FIX / n, n) for n in ("after.prom", "before.prom")]
    assert all(p.windows["window"].to_list() == ["cumulative"] for p in parts)
    out = prometheus.finalize(pl.concat([p.windows for p in parts]))
    (iv,) = out.filter(pl.col("window") == "interval").to_dicts()
    assert iv["source"] == "after.prom"
    assert (iv["num_drafts"], iv["draft_tokens"], iv["accepted_tokens"]) == (1000, 2000, 1000)
    assert iv["acceptance_rate"] == 0.5 and iv["mean_acceptance_length"] == 2.0
    assert iv["per_position_acceptance"] == pytest.approx([0.7, 0.3])
    assert prometheus.finalize(out).height == out.height  # idempotent


def test_counter_reset_and_sample_timestamps():
    p = parse("vllm_v1_reset_timestamps.prom")
    cum = rows(p, "cumulative")
    assert [r["num_drafts"] for r in cum] == [100, 300, 50]  # split by repeated series
    assert cum[1]["time"].isoformat() == "2025-06-01T12:01:00+00:00"
    first, reset = rows(p, "interval")
    assert (first["num_drafts"], first["accepted_tokens"]) == (200, 240)
    assert first["accepted_tps"] == pytest.approx(4.0)  # 240 accepted in 60 s
    # after the restart the later totals are the window
    assert (reset["num_drafts"], reset["draft_tokens"], reset["accepted_tokens"]) == (50, 100, 10)
    assert "reset" in reset["definition_note"] and reset["accepted_tps"] is None


def test_vllm_v0_non_prefix_counts_are_converted():
    (r,) = rows(parse("vllm_v0.prom"), "cumulative")
    # efficiency 0.5 = 2500 / ((4000 / k) * (k + 1)) -> k = 4; drafts 1000; prefix accepted 2500 - 1000
    assert r["k"] == 4 and r["num_drafts"] == 1000
    assert r["accepted_tokens"] == 1500 and r["emitted_tokens"] == 2500
    assert r["acceptance_rate"] == pytest.approx(0.375)  # the engine's own (non-prefix) gauge said 0.45
    assert r["mean_acceptance_length"] == pytest.approx(2.5)
    assert "non-prefix" in r["definition_note"]


def test_sglang_gauges_convert_the_bonus_including_rate():
    ws = rows(parse("sglang_gauges.prom"), "interval")
    assert [r["mean_acceptance_length"] for r in ws] == [2.5, 3.0]
    assert [r["acceptance_rate"] for r in ws] == pytest.approx([0.5, 2 / 3])  # N = 4
    assert [r["k"] for r in ws] == [3, 3]
    assert [(r["running_reqs"], r["waiting_reqs"]) for r in ws] == [(3, 0), (5, 1)]
    assert ws[0]["engine_id"] == "Qwen/Qwen3-8B DP0 PP0 TP0" and ws[0]["engine"] == "sglang"


def test_tgi_skipped_tokens_histogram():
    p = parse("tgi.prom")
    c0, c1 = rows(p, "cumulative")
    # 100 steps: 20 accepted 0, 40 accepted 1, 40 accepted 2 -> sum 120. The router's buckets are
    # 0..speculate (router/src/server.rs `(0..shard_info.speculate + 1)`), so le=3 is the last: k = 3
    assert (c0["num_drafts"], c0["accepted_tokens"], c0["k"]) == (100, 120, 3)
    assert c0["mean_acceptance_length"] == pytest.approx(2.2)
    assert c0["per_position_acceptance"] == pytest.approx([0.8, 0.4, 0.0])
    assert c0["acceptance_rate"] == pytest.approx(120 / 300)
    assert c1["time"].isoformat() == "2025-03-01T08:01:00+00:00"
    (iv,) = rows(p, "interval")
    # the next 100 steps: 70 x 0, 20 x 1, 10 x 2 -> 40 accepted
    assert (iv["num_drafts"], iv["accepted_tokens"]) == (100, 40)
    assert iv["per_position_acceptance"] == pytest.approx([0.3, 0.1, 0.0])
    assert iv["mean_acceptance_length"] == pytest.approx(1.4)
    assert (iv["running_reqs"], iv["waiting_reqs"]) == (8, 4)


def test_engines_are_kept_apart():
    cum = rows(parse("two_engines.prom"), "cumulative")
    by = {r["engine_id"]: r for r in cum}
    assert by["m engine=0"]["acceptance_rate"] == 0.5 and by["m engine=1"]["acceptance_rate"] == 0.1
    assert rows(parse("two_engines.prom"), "interval") == []


def test_malformed_samples():
    p = parse("malformed.prom")
    assert dict(p.malformed.schema) == MALFORMED_SCHEMA
    assert p.malformed["line"].to_list() == [2, 3, 5]


def test_detect():
    assert prometheus.detect((FIX / "tgi.prom").read_text())
    assert prometheus.detect((FIX / "two_engines.prom").read_text())
    assert not prometheus.detect(
        "INFO 05-06 06:11:23 [metrics.py:101] SpecDecoding metrics: Accepted: 1 tokens"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "vllm:spec_decode_num_drafts_total",
        'vllm:spec_decode_num_drafts_total{engine="0"} NaN',
        'vllm:spec_decode_num_drafts_total{engine="0"} 1e400',
        "vllm:spec_decode_num_drafts_total -Inf",
        'tgi_request_skipped_tokens_bucket{le="x"} 3',
        "tgi_request_skipped_tokens_count 1e300",
        "# 9999-99-99T99:99:99Z",
        "sglang:spec_accept_length{" + "a" * 1_000_000 + "} 1",
        "vllm:spec_decode_num_drafts_total 5 99999999999999999999999",
    ],
)
def test_never_raises(text):
    lines = [
        text,
        "tgi_request_skipped_tokens_sum 3",
        text,
        "vllm:spec_decode_num_draft_tokens_total 1",
        "vllm:spec_decode_num_drafts_total 0",
        "sglang:spec_accept_rate nan",
    ]
    p = prometheus.parse(lines_from_texts(lines), "junk.prom")
    assert dict(p.windows.schema) == WINDOW_SCHEMA
    prometheus.finalize(p.windows)


def test_scan_end_to_end():
    from specdec_diag.ingest import scan

    res = scan([FIX / "before.prom", FIX / "after.prom"], use_cache=False)
    iv = res.windows.filter((pl.col("format") == "prometheus-vllm-v1") & (pl.col("window") == "interval"))
    assert iv["num_drafts"].to_list() == [1000]


def test_overlapping_files_with_the_same_labels_are_not_differenced(tmp_path):
    """Two runs that share model/engine labels (each scraped from its own start) stay separate."""
    text = (FIX / "vllm_v1_two_scrapes.prom").read_text()
    a, b = tmp_path / "run_a.prom", tmp_path / "run_b.prom"
    a.write_text(text)
    b.write_text(text.replace(" 1500.0", " 1600.0").replace(" 4500.0", " 4800.0"))
    ws = pl.concat([prometheus.parse_file(f, str(f)).windows for f in (a, b)])
    out = prometheus.finalize(ws).filter(pl.col("window") == "interval")
    assert sorted(out["num_drafts"].to_list()) == [500, 600]  # one per file, none from a to b


def test_samples_parse_cleanly():
    got = parse_samples(prometheus, "prometheus")
    iv = got["healthy_vllm_v1_scrapes"].filter(pl.col("window") == "interval")
    assert iv.height == 5 and iv["num_drafts"].to_list() == [900] * 5
    assert iv["accepted_tps"].to_list() == pytest.approx((iv["accepted_tokens"] / 15).to_list())
    cliff = got["unhealthy_vllm_v1_position_cliff"].filter(pl.col("window") == "interval")
    assert all(pp[0] > 0.6 and pp[2] == 0.0 for pp in cliff["per_position_acceptance"].to_list())
    inactive = got["unhealthy_vllm_v1_spec_inactive"].filter(pl.col("window") == "interval")
    assert inactive["num_drafts"].to_list() == [0, 0, 0] and inactive["acceptance_rate"].null_count() == 3


def test_fuzzed_scrapes_never_raise():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    names = st.sampled_from(
        [
            "vllm:spec_decode_num_drafts_total",
            "vllm:spec_decode_num_draft_tokens_total",
            "vllm:spec_decode_num_accepted_tokens_total",
            "vllm:spec_decode_num_accepted_tokens_per_pos_total",
            "vllm:spec_decode_num_emitted_tokens_total",
            "vllm:spec_decode_efficiency",
            "sglang:spec_accept_length",
            "sglang:spec_accept_rate",
            "tgi_request_skipped_tokens_bucket",
            "tgi_request_skipped_tokens_count",
            "tgi_request_skipped_tokens_sum",
            "vllm:num_requests_running",
        ]
    )
    labels = st.sampled_from(
        [
            "",
            '{engine="0",model_name="m"}',
            '{position="1",engine="0"}',
            '{le="1.0"}',
            '{le="+Inf"}',
            '{position="x"}',
            "{",
        ]
    )
    values = st.sampled_from(["0", "1", "5.0", "-3", "NaN", "+Inf", "1e308", "x", ""])
    seps = st.sampled_from(["# 2025-06-01T12:00:00Z", "# EOF", "=== 2025-06-01 12:00:01 UTC ===", "# time=5"])
    sample = st.tuples(names, labels, values).map(lambda t: f"{t[0]}{t[1]} {t[2]}")

    @settings(max_examples=60, deadline=None)
    @given(st.lists(sample | seps, min_size=1, max_size=25))
    def run(texts):
        p = prometheus.parse(lines_from_texts(texts), "fuzz.prom")
        assert dict(p.windows.schema) == WINDOW_SCHEMA
        prometheus.finalize(pl.concat([p.windows, p.windows.with_columns(pl.lit("b").alias("source"))]))

    run()


@pytest.mark.parametrize(
    ("sep", "iso"),
    [
        ("# 2025-06-01T14:00:05+02:00", "2025-06-01T12:00:05+00:00"),
        ("=== 2025-06-01 12:00:05 UTC ===", "2025-06-01T12:00:05+00:00"),
        ("# scrape_time=1748779205", "2025-06-01T12:00:05+00:00"),
        ("# ts: 1748779205000", "2025-06-01T12:00:05+00:00"),
    ],
)
def test_separator_time_forms(sep, iso):
    lines = [
        sep,
        'vllm:spec_decode_num_drafts_total{engine="0"} 4',
        'vllm:spec_decode_num_draft_tokens_total{engine="0"} 8',
        'vllm:spec_decode_num_accepted_tokens_total{engine="0"} 2',
    ]
    p = prometheus.parse(pl.DataFrame({"line": range(1, 5), "text": lines}), "t.prom")
    assert p.windows["time"][0].isoformat() == iso


def _replace_value(text: str, prefix: str, nth: int, value: str) -> tuple[str, int]:
    """``text`` with the value of the ``nth`` sample starting with ``prefix`` replaced; and its line."""
    lines = text.splitlines()
    hits = [i for i, t in enumerate(lines) if t.startswith(prefix)]
    i = hits[nth]
    lines[i] = lines[i].rsplit(" ", 1)[0] + " " + value
    return "\n".join(lines) + "\n", i + 1


@pytest.mark.parametrize("value,why", [("NaN", "not a finite number"), ("+Inf", "not a finite number"),
                                       ("-Inf", "not a finite number"), ("-5", "negative"),
                                       ("99999999999999999999999", "beyond the int64 range")])
@pytest.mark.parametrize("metric", ["vllm:spec_decode_num_draft_tokens_total",
                                    "vllm:spec_decode_num_accepted_tokens_per_pos_total"])
def test_unusable_sample_values_are_malformed_at_their_line(value, why, metric):
    """Issue 16 row 11: NaN/+-Inf and integers beyond int64 became nulls silently (and a NaN
    per-position count a 0.0 rate). Each is a malformed line now; nothing shows NaN or 0.0 for it."""
    text, no = _replace_value((FIX / "vllm_v1_two_scrapes.prom").read_text(), metric, 1, value)
    p = prometheus.parse(lines_from_texts(text.splitlines()), "x.prom")
    assert p.malformed.select("line").to_series().to_list() == [no]
    assert why in p.malformed["reason"][0]
    w = p.windows
    assert w.height == 3  # two scrapes and their interval: the bad sample only loses its own value
    pp = [v for lst in w["per_position_acceptance"].drop_nulls().to_list() for v in lst]
    assert all(0.0 < v <= 1.0 for v in pp)  # a NaN position never becomes 0.0
    assert (w["accepted_tokens"].fill_null(0) <= w["draft_tokens"].fill_null(2**62)).all()


def test_accepted_beyond_drafted_is_rejected_with_its_line():
    """Issue 16 row 11: accepted 3144 > drafted 3000 was shown beside an acceptance rate. The accepted
    sample is malformed at its line; no window shows accepted > drafted."""
    text, no = _replace_value((FIX / "vllm_v1_two_scrapes.prom").read_text(),
                              "vllm:spec_decode_num_accepted_tokens_total", 0, "3144.0")
    p = prometheus.parse(lines_from_texts(text.splitlines()), "x.prom")
    assert p.malformed.select("line", "reason").rows() == [(no, "accepted tokens exceed drafted tokens (3144 > 3000)")]
    w = p.windows
    assert w.filter(pl.col("accepted_tokens") > pl.col("draft_tokens")).height == 0
    first = w.filter(pl.col("window") == "cumulative").sort("line").row(0, named=True)
    assert first["accepted_tokens"] is None and first["acceptance_rate"] is None


def test_interval_breaking_accepted_le_drafted_is_never_shown():
    """Two scrapes whose differences accept more than they draft: the interval is malformed (parse)
    and left out (finalize over files)."""
    text = (FIX / "vllm_v1_two_scrapes.prom").read_text()
    text, _ = _replace_value(text, "vllm:spec_decode_num_accepted_tokens_total", 1, "2999.0")
    text, _ = _replace_value(text, "vllm:spec_decode_num_draft_tokens_total", 1, "3001.0")
    p = prometheus.parse(lines_from_texts(text.splitlines()), "x.prom")
    assert p.windows.filter(pl.col("window") == "interval").height == 0
    assert "accepted tokens exceed drafted tokens" in p.malformed["reason"][0]
    assert prometheus.finalize(p.windows).filter(pl.col("window") == "interval").height == 0


# --- trtllm-serve (provenance of the fixtures: tests/fixtures/prometheus/SOURCES.md) ---------------


def test_trtllm_per_position_counters_of_two_workers_add_up():
    """Per-request position counters of two workers (a public test of a TensorRT-LLM DSpark
    measurement script): drafted 30/30/30 and accepted 30/20/10 summed over workers; position 0's
    drafted count is the number of drafts, so AL = 1 + 60/30 = 3.0 as that test expects."""
    r = rows(parse("trtllm_per_position_two_workers.prom"), "cumulative")[0]
    assert (r["engine"], r["format"], r["k"], r["num_drafts"]) == ("trtllm", "prometheus-trtllm", 3, 30)
    assert (r["draft_tokens"], r["accepted_tokens"]) == (90, 60)
    assert r["mean_acceptance_length"] == pytest.approx(3.0)
    assert r["per_position_acceptance"] == pytest.approx([1.0, 20 / 30, 10 / 30])


def test_trtllm_collector_sample_counters_and_gauges():
    """TensorRT-LLM's own SAMPLE_ITERATION_STATS as its collector exposes it: counters 20 / 15, the
    acceptance-length gauge 3.75 stated as is (no draft count), draft overhead 1.2 is no ratio."""
    p = parse("trtllm_collector_sample.prom")
    cum = rows(p, "cumulative")[0]
    assert (cum["draft_tokens"], cum["accepted_tokens"], cum["acceptance_rate"]) == (20, 15, 0.75)
    assert (cum["running_reqs"], cum["waiting_reqs"], cum["kv_usage"]) == (5, 3, 0.6)
    assert cum["mean_acceptance_length"] is None and cum["engine_id"] == "test_model"
    gauge = rows(p, "interval")[0]
    assert gauge["format"] == "prometheus-trtllm-gauges" and gauge["mean_acceptance_length"] == 3.75
    assert gauge["draft_ms"] is None and gauge["verify_ms"] is None


def test_trtllm_draft_overhead_gauge_gives_draft_and_verify_time():
    text = (FIX / "trtllm_collector_sample.prom").read_text().replace(
        'draft_overhead{model_name="test_model"} 1.2', 'draft_overhead{model_name="test_model"} 0.4')
    p = prometheus.parse(lines_from_texts(text.splitlines()), "scrape")
    g = p.windows.filter(pl.col("format") == "prometheus-trtllm-gauges").row(0, named=True)
    assert g["draft_ms"] == pytest.approx(0.4 * 15.5) and g["verify_ms"] == pytest.approx(0.6 * 15.5)


def test_trtllm_scrapes_are_differenced():
    text = (FIX / "trtllm_collector_sample.prom").read_text()
    later = text.replace("} 20.0", "} 120.0").replace("} 15.0", "} 45.0")
    p = prometheus.parse(lines_from_texts(("# 2026-01-01T00:00:00Z\n" + text + "# 2026-01-01T00:01:00Z\n"
                                           + later).splitlines()), "two")
    d = p.windows.filter((pl.col("format") == "prometheus-trtllm") & (pl.col("window") == "interval")).row(0, named=True)
    assert (d["draft_tokens"], d["accepted_tokens"], d["acceptance_rate"]) == (100, 30, 0.3)


def test_sglang_draft_and_target_engines_are_kept_apart():
    """Real exposition with a draft and a unified engine (public SGLang gauge regression test):
    each keeps its own accept length; no rate is invented where the pair fits no definition."""
    w = parse("sglang_draft_and_unified_engines.prom").windows.sort("engine_id")
    assert w["mean_acceptance_length"].to_list() == [2.7, 2.8]
    assert w["engine_id"].to_list() == ["draft-model PP0 TP0", "qwen3.8-27b-sglang PP0 TP0"]


def test_llamacpp_counters_from_a_real_llama_server_capture():
    """/metrics of a real llama-server run (sample_logs/engines/llamacpp/real, made by
    scripts/make_llamacpp_samples.py): before (zeros) and after three requests."""
    path = Path(__file__).parents[1] / "sample_logs/engines/llamacpp/real/healthy_draft_k4/metrics.prom"
    p = prometheus.parse_file(path, str(path))
    (iv,) = rows(p, "interval")
    assert (iv["engine"], iv["format"]) == ("llama.cpp", "prometheus-llamacpp")
    assert (iv["num_drafts"], iv["draft_tokens"], iv["accepted_tokens"], iv["k"]) == (79, 306, 109, 4)
    assert iv["mean_acceptance_length"] == pytest.approx(1 + 109 / 79)
    assert iv["per_position_acceptance"] == pytest.approx([58 / 79, 20 / 79, 16 / 79, 15 / 79])


def test_sglang_stated_draft_tokens_give_k_and_the_rate():
    """sglang:spec_num_draft_tokens = steps + 1 (a chain): N = 4 stated by the server, so
    acceptance_rate = (2.3 - 1) / 3 whatever definition the printed 0.72 follows (it fits none)."""
    (r,) = parse("sglang_spec_num_steps_gauges.prom").windows.to_dicts()
    assert r["k"] == 3 and r["acceptance_rate"] == pytest.approx(1.3 / 3)
    assert "sglang:spec_num_draft_tokens" in r["definition_note"]


def test_sglang_tree_draft_tokens_are_not_a_chain_length():
    text = (FIX / "sglang_spec_num_steps_gauges.prom").read_text().replace(
        'spec_num_draft_tokens{model_name="aeon"} 4', 'spec_num_draft_tokens{model_name="aeon"} 16')
    (r,) = prometheus.parse(lines_from_texts(text.splitlines()), "tree").windows.to_dicts()
    assert r["k"] is None and r["acceptance_rate"] is None and r["mean_acceptance_length"] == 2.3
