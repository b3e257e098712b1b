"""llama.cpp: example summaries, llama-server per-request lines (three variants), per-step lines and
cumulative statistics; expected numbers worked out by hand from docs/log-formats.md §4."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from _helpers import marker_lines, sample_files

from specdec_diag.ingest import llamacpp
from specdec_diag.ingest._textparse import lines_from_texts
from specdec_diag.schema import MALFORMED_SCHEMA, WINDOW_SCHEMA

FIX = Path(__file__).parent / "fixtures" / "llamacpp"


def lines_of(path: Path) -> pl.DataFrame:
    return marker_lines(path, llamacpp.MARKERS)


def parse(name: str):
    p = llamacpp.parse(lines_of(FIX / name), str(FIX / name))
    assert dict(p.windows.schema) == WINDOW_SCHEMA
    return p


def test_speculative_example_summary():
    rows = parse("speculative_example.txt").windows.to_dicts()
    assert len(rows) == 1
    r = rows[0]
    assert r["format"] == "llamacpp-example" and r["window"] == "run" and r["line"] == 11
    assert (r["k"], r["draft_tokens"], r["accepted_tokens"], r["emitted_tokens"]) == (8, 112, 36, 136)
    assert r["acceptance_rate"] == pytest.approx(0.32143, abs=1e-5)  # printed "accept = 32.143%"
    # 136 tokens from 136 - 36 = 100 target forwards
    assert r["mean_acceptance_length"] == pytest.approx(1.36)
    assert r["gen_tps"] == pytest.approx(4.701)


def test_lookup_example_summary_with_timing_lines_between():
    r = parse("lookup_example.txt").windows.row(0, named=True)
    assert (r["k"], r["draft_tokens"], r["accepted_tokens"]) == (10, 210, 150)
    assert r["acceptance_rate"] == pytest.approx(0.71429, abs=1e-5)
    assert r["mean_acceptance_length"] == pytest.approx(256 / 106)
    assert r["gen_tps"] == pytest.approx(82.448)


def test_server_rate_variant_2025():
    rows = parse("server_rate_2025.log").windows.to_dicts()
    assert [r["request"] for r in rows] == ["task 0", "task 2"]
    a, b = rows
    assert a["format"] == "llamacpp-server-rate" and a["window"] == "request"
    assert (a["accepted_tokens"], a["draft_tokens"]) == (19, 33)
    assert a["acceptance_rate"] == pytest.approx(19 / 33)
    assert (
        a["gen_tps"] == 99.0
        and a["tpot_ms"] == pytest.approx(10.10)
        and a["ttft_ms"] == pytest.approx(129.05)
    )
    assert a["prompt_tps"] == pytest.approx(100.74)
    assert a["mean_acceptance_length"] is None and a["time"] is None
    assert b["acceptance_rate"] == 0.0 and b["draft_tokens"] == 64 and b["gen_tps"] == 80.0


def test_server_mean_len_variant_with_elapsed_prefix():
    r = parse("server_meanlen_2026.log").windows.row(0, named=True)
    assert r["format"] == "llamacpp-server-meanlen" and r["request"] == "task 0"
    assert (r["accepted_tokens"], r["draft_tokens"], r["mean_acceptance_length"]) == (50, 80, 2.25)
    assert r["gen_tps"] == 150.0 and r["ttft_ms"] == 50.0
    assert r["time"] is None  # elapsed-since-start prefix is not a wall-clock time


def test_server_per_position_steps_and_statistics():
    p = parse("server_pos_2026.log")
    w = p.windows
    req = w.filter(pl.col("format") == "llamacpp-server-pos").row(0, named=True)
    # printed per-position rates; num_drafts from the four per-step lines of task 7
    assert req["per_position_acceptance"] == pytest.approx([0.75, 0.5, 0.5, 0.25])
    assert (req["k"], req["num_drafts"], req["accepted_tokens"], req["draft_tokens"]) == (4, 4, 8, 16)
    assert req["mean_acceptance_length"] == 3.0 and req["engine_id"] == "pid=4242"
    # task 9 has step lines only: exact aggregate (2/4 and 2/4)
    steps = w.filter(pl.col("format") == "llamacpp-server-steps").row(0, named=True)
    assert steps["request"] == "task 9" and steps["num_drafts"] == 2
    assert steps["acceptance_rate"] == 0.5 and steps["mean_acceptance_length"] == 3.0
    assert steps["per_position_acceptance"] == [1.0, 1.0, 0.0, 0.0]
    # statistics: cumulative 4 -> 6 drafts, 16 -> 24 tokens, 8 -> 12 accepted; dur(g) 12 -> 20 ms
    cum = w.filter((pl.col("format") == "llamacpp-statistics") & (pl.col("window") == "cumulative"))
    assert (
        cum["num_drafts"].to_list() == [4, 6] and cum["engine_id"].to_list() == ["pid=4242 draft-simple"] * 2
    )
    iv = w.filter((pl.col("format") == "llamacpp-statistics") & (pl.col("window") == "interval")).row(
        0, named=True
    )
    assert (iv["num_drafts"], iv["draft_tokens"], iv["accepted_tokens"]) == (2, 8, 4)
    assert iv["acceptance_rate"] == 0.5 and iv["mean_acceptance_length"] == 3.0 and iv["draft_ms"] == 8.0
    # per-position difference of printed (3-decimal) cumulative rates: counts 3,2,2,1 -> 5,4,2,1
    assert iv["per_position_acceptance"] == pytest.approx([1.0, 1.0, 0.0, 0.0], abs=0.005)
    assert iv["line"] == 12


def test_finalize_is_idempotent_and_keeps_files_apart():
    p = parse("server_pos_2026.log")
    other = p.windows.with_columns(pl.lit("other.log").alias("source"))
    both = pl.concat([p.windows, other])
    once = llamacpp.finalize(both)
    assert once.height == both.height  # each file's one difference, none across the two files
    assert (
        llamacpp.finalize(once).sort("source", "line", "window").equals(once.sort("source", "line", "window"))
    )


def test_vocab_mismatch_becomes_config_fact():
    p = parse("vocab_mismatch.log")
    assert p.windows.height == 0
    assert p.configs["key"].to_list() == ["startup_error"]
    assert "target vocab size 152064" in p.configs["value"][0]


def test_malformed_lines():
    p = parse("malformed.log")
    assert dict(p.malformed.schema) == MALFORMED_SCHEMA
    assert p.malformed["line"].to_list() == [2, 3, 4, 5, 6, 7]
    assert p.windows.height == 0  # the vLLM "Draft acceptance rate:" line on line 8 is not ours


def test_detect():
    assert llamacpp.detect((FIX / "server_rate_2025.log").read_text())
    assert llamacpp.detect((FIX / "speculative_example.txt").read_text())
    assert not llamacpp.detect("[2025-10-21 09:00:03 TP0] Decode batch. #running-req: 1, #token: 256")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "draft acceptance = ",
        "draft acceptance rate = nan (nan accepted / -1 generated)",
        "statistics x: #calls(b,g,a) = 1 2",
        "n_draft = 99999999999999999999999999",
        "accept    = %",
        "slot update_slots: id  0 | task 1 | accepted 99999999999999999999/4 draft tokens",
        "draft acceptance = 0.5 (1 accepted / 2 generated), mean len = 2.0, "
        "acceptance rate per position = (,,)",
        "eval time = " + "9" * 1_000_000,
        "\x00\ufffd statistics  #calls",
        "n_drafted = 99999999999999999999999",
        "n_accept = 1.5.5",
    ],
)
def test_never_raises(text):
    lines = [text, "n_draft = 3", text, "n_accept = 99999999999999999999999", "n_drafted = 4"]
    p = llamacpp.parse(pl.DataFrame({"line": range(1, 6), "text": lines}), "junk.log")
    assert dict(p.windows.schema) == WINDOW_SCHEMA
    assert dict(p.malformed.schema) == MALFORMED_SCHEMA


def test_scan_end_to_end():
    from specdec_diag.ingest import scan

    res = scan(FIX / "server_pos_2026.log", use_cache=False)
    iv = res.windows.filter((pl.col("format") == "llamacpp-statistics") & (pl.col("window") == "interval"))
    assert iv["num_drafts"].to_list() == [2]


def test_samples_parse_cleanly():
    got = {}
    for f in sample_files("llamacpp"):
        p = llamacpp.parse(lines_of(f), str(f))
        assert p.malformed.height == 0, f
        got[f.stem] = p
    cliff = got["unhealthy_position_cliff"].windows.filter(pl.col("format") == "llamacpp-server-pos")
    pp = cliff["per_position_acceptance"].to_list()
    assert all(r[0] > 0.6 and r[2] == 0.0 for r in pp)
    healthy = got["healthy_server"].windows.filter(pl.col("format") == "llamacpp-server-pos")
    assert healthy["acceptance_rate"].min() > 0.4
    # per-request summaries agree with the per-step lines they summarise
    for r in healthy.to_dicts():
        assert r["mean_acceptance_length"] == pytest.approx(
            1 + r["accepted_tokens"] / r["num_drafts"], abs=0.005
        )
    stops = got["unhealthy_spec_stops"].windows
    iv = stops.filter((pl.col("format") == "llamacpp-statistics") & (pl.col("window") == "interval"))
    assert iv["num_drafts"].to_list() == [0] * iv.height  # drafting stopped after the first request
    assert got["unhealthy_vocab_mismatch"].configs["key"].to_list() == ["startup_error"]


def test_fuzzed_lines_never_raise():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    frags = st.sampled_from(
        [
            "slot print_timing: id  0 | task 3 | ",
            "slot update_slots: id  0 | task 3 | ",
            "accepted ",
            "/",
            " draft tokens",
            "draft acceptance = ",
            "draft acceptance rate = ",
            "(",
            ")",
            " accepted / ",
            " generated",
            ", mean len = ",
            ", mean acceptance length = ",
            ", acceptance rate per position = (",
            "statistics draft-simple: #calls(b,g,a) = ",
            ", #gen drafts = ",
            ", #acc drafts = ",
            ", #gen tokens = ",
            ", #acc tokens = ",
            ", dur(b,g,a) = ",
            " ms",
            "n_draft   = ",
            "n_drafted = ",
            "n_accept  = ",
            "n_predict = ",
            "accept    = ",
            "%",
            "eval time = ",
            " ms / ",
            " tokens (",
            " ms per token, ",
            " tokens per second)",
            "0",
            "4",
            "0.5",
            "nan",
            "99999999999999999999",
            ", ",
            "[12] ",
            "\x00",
        ]
    )
    line = st.lists(frags, max_size=16).map("".join)

    @settings(max_examples=60, deadline=None)
    @given(st.lists(line, min_size=1, max_size=10))
    def run(texts):
        p = llamacpp.parse(lines_from_texts(texts), "fuzz.log")
        assert dict(p.windows.schema) == WINDOW_SCHEMA
        llamacpp.finalize(p.windows)

    run()


def test_server_rate_variant_with_a_second_header_before_the_draft_line():
    """Older builds log the draft line with its own ``print_timing`` header (two SLT_INF calls)."""
    rows = parse("server_rate_2024_two_headers.log").windows.to_dicts()
    assert [r["request"] for r in rows] == ["task 0", "task 4"]
    assert [r["gen_tps"] for r in rows] == [99.0, 80.0]  # the eval line under the first header
    assert [r["ttft_ms"] for r in rows] == pytest.approx([129.05, 80.0])
    assert [r["acceptance_rate"] for r in rows] == pytest.approx([19 / 33, 0.25])


def test_inline_headers_and_older_statistics_form():
    """2026 builds put the slot header on every timing line; early statistics print '#calls = n'."""
    w = parse("server_inline_headers_2026.log").windows
    req = w.filter(pl.col("window") == "request").row(0, named=True)
    assert (req["request"], req["accepted_tokens"], req["draft_tokens"]) == ("task 0", 1800, 3000)
    assert req["gen_tps"] == 60.0 and req["ttft_ms"] == 1500.0 and req["engine_id"] == "pid=51234"
    cum = w.filter(pl.col("window") == "cumulative")
    assert cum["engine_id"].to_list() == ["pid=51234 draft-mtp", "ngram_simple", "ngram_simple", "draft-mtp"]
    assert cum["num_drafts"].to_list() == [1000, 5, 9, 1090]
    assert cum["draft_ms"].to_list()[:2] == [20000.0, None]
    iv = w.filter(pl.col("window") == "interval")
    # ngram_simple: 5 -> 9 drafts, 60 -> 108 tokens, 40 -> 52 accepted; the two draft-mtp lines have
    # different engine ids (one with a pid wrapper), so they are not differenced together
    assert iv.select("engine_id", "num_drafts", "draft_tokens", "accepted_tokens").rows() == [
        ("ngram_simple", 4, 48, 12)
    ]
    assert iv["mean_acceptance_length"][0] == pytest.approx(4.0)
    last = cum.row(3, named=True)
    assert last["per_position_acceptance"] == pytest.approx([0.889, 0.6, 0.33]) and last["k"] == 3


def test_records_accepting_more_than_drafted_are_malformed():
    lines = [
        "draft acceptance rate = 2.00000 (   20 accepted /    10 generated)",
        "statistics draft-simple: #calls(b,g,a) = 1 2 2, #gen drafts = 2, #acc drafts = 2, #gen tokens = 8, "
        "#acc tokens = 2026",
        "n_draft   = 4",
        "n_predict = 10",
        "n_drafted = 8",
        "n_accept  = 9",
        "accept    = 112.500%",
    ]
    p = llamacpp.parse(pl.DataFrame({"line": range(1, 8), "text": lines}), "x.log")
    assert p.windows.height == 0
    assert p.malformed["line"].to_list() == [1, 2, 3]  # the summary block is reported at its start


def test_example_summary_behind_log_prefixes():
    """Builds with timestamps on print the summary through the logger: '0.31.337.771 I n_draft = 3'."""
    lines = [
        "0.31.300.000 I decoded  260 tokens in   10.400 seconds, speed:   25.000 t/s",
        "0.31.337.771 I n_draft   = 3",
        "0.31.337.772 I n_predict = 260",
        "0.31.337.773 I n_drafted = 270",
        "0.31.337.774 I n_accept  = 170",
        "0.31.337.775 I accept    = 62.963%",
    ]
    p = llamacpp.parse(pl.DataFrame({"line": range(1, 7), "text": lines}), "x.log")
    r = p.windows.row(0, named=True)
    assert (r["k"], r["draft_tokens"], r["accepted_tokens"], r["emitted_tokens"]) == (3, 270, 170, 260)
    assert r["mean_acceptance_length"] == pytest.approx(260 / 90) and r["gen_tps"] == 25.0
    assert p.malformed.height == 0


def test_zero_duration_eval_rate_is_unknown_not_malformed(tmp_path):
    """A real llama-speculative run prints `eval time = 0.00 ms / 1 runs (0.00 ms per token, inf tokens
    per second)`: llama.cpp's own way of saying it could not measure the rate; no malformed line."""
    from specdec_diag.ingest import scan

    real = Path(__file__).resolve().parent.parent / "sample_logs/engines/llamacpp/real/speculative_example_k4"
    res = scan([real / "llama-speculative.txt"], use_cache=False)
    assert res.malformed.height == 0 and res.windows.height >= 1


REAL = Path(__file__).parent / "fixtures" / "real" / "llamacpp"


def _real(name: str):
    return llamacpp.parse(lines_of(REAL / name), str(REAL / name))


def test_statistics_with_dur_after_rate_per_position_real_pr24536():
    """Real lines (llama.cpp PR #24536, sidecar cites it): dur(b,g,a) printed after #acc rate/pos."""
    w = _real("server_print_timing_eagle3_pr24536.log").windows
    cum = w.filter(pl.col("format") == llamacpp.STAT_FORMAT).row(0, named=True)
    assert (cum["num_drafts"], cum["draft_tokens"], cum["accepted_tokens"]) == (87, 259, 167)
    assert cum["draft_ms"] == pytest.approx(325.555)
    assert cum["per_position_acceptance"] == pytest.approx([0.805, 0.632, 0.483])
    # the first request since start (#calls b = 1) owns all of dur(g); eval time includes drafting
    req = w.filter(pl.col("window") == "request").row(0, named=True)
    assert req["draft_ms"] == pytest.approx(325.555)
    assert req["verify_ms"] == pytest.approx(2296.72 - 325.555)


def test_statistics_with_dur_right_after_counts_real_pr19493():
    """Real line (llama.cpp PR #19493): dur(b,g,a) right after the counts, no mean length."""
    w = _real("server_statistics_draft_checkpoint_pr19493.log").windows
    cum = w.filter(pl.col("format") == llamacpp.STAT_FORMAT).row(0, named=True)
    assert (cum["num_drafts"], cum["draft_tokens"], cum["accepted_tokens"]) == (350, 1552, 691)
    assert cum["draft_ms"] == pytest.approx(9413.544)
    assert cum["mean_acceptance_length"] == pytest.approx(1 + 691 / 350)


def test_request_draft_cost_from_growth_of_dur_g():
    """Second statistics line (#calls b 1 -> 2): the request in between drafted 20 - 12 = 8 ms; its eval
    time is not logged, so no verify time is invented for it."""
    w = parse("server_pos_2026.log").windows.filter(pl.col("window") == "request").sort("line")
    first, second = w.to_dicts()
    assert (first["draft_ms"], first["verify_ms"]) == (pytest.approx(12.0), pytest.approx(88.0))
    assert second["draft_ms"] is None and second["verify_ms"] is None


def test_no_draft_cost_attributed_with_several_slots():
    """Statistics totals of a multi-slot server mix concurrent requests: nothing is attributed."""
    text = (REAL / "server_print_timing_eagle3_pr24536.log").read_text().splitlines()
    other = [ln.replace("id  1 | task 0", "id  2 | task 5") for ln in text if "print_timing" in ln]
    p = llamacpp.parse(lines_from_texts(other + text), "multi")
    assert p.windows["verify_ms"].drop_nulls().len() == 0


def test_response_timings_object_real_pr12603():
    """Real `jq .timings` output (llama.cpp PR #12603): draft_n / draft_n_accepted, pretty-printed."""
    r = _real("server_timings_json_draft_n_pr12603.log").windows.row(0, named=True)
    assert (r["format"], r["window"], r["draft_tokens"], r["accepted_tokens"]) == ("llamacpp-timings", "request", 347, 65)
    assert r["acceptance_rate"] == pytest.approx(65 / 347)
    assert r["gen_tps"] == pytest.approx(18.0462970532382)


def test_response_timings_as_json_lines_with_a_request_that_never_drafted():
    """Responses logged one per line: the same real timings values, and one whose draft fields are
    null (speculation never ran, PrismML-Eng/llama.cpp#203) - no row, nothing malformed."""
    import json

    text = (REAL / "server_timings_json_draft_n_pr12603.log").read_text()
    timings = json.loads(text[text.index("\n{") + 1: text.rindex("}") + 1])
    none = {**timings, "draft_n": None, "draft_n_accepted": None}
    lines = [json.dumps({"content": "...", "timings": t}) for t in (timings, none, timings)]
    p = llamacpp.parse(lines_from_texts(lines), "responses.jsonl")
    assert p.windows["line"].to_list() == [1, 3] and p.malformed.height == 0
    assert p.windows["accepted_tokens"].to_list() == [65, 65]


def test_response_timings_accepting_more_than_drafted_is_malformed():
    p = llamacpp.parse(lines_from_texts(['{"timings": {"draft_n": 5, "draft_n_accepted": 9}}']), "x")
    assert p.windows.height == 0 and "accepts more" in p.malformed["reason"][0]


def test_mean_len_variant_and_tagged_statistics_real_pr27618():
    w = parse("mtp_meanlen_statistics_pr27618.log").windows
    req = w.filter(pl.col("window") == "request").row(0, named=True)
    assert req["format"] == "llamacpp-server-meanlen"
    assert (req["accepted_tokens"], req["draft_tokens"], req["mean_acceptance_length"]) == (561, 750, 3.24)
    cum = w.filter(pl.col("format") == llamacpp.STAT_FORMAT).row(0, named=True)
    assert (cum["engine_id"], cum["num_drafts"], cum["draft_tokens"], cum["accepted_tokens"]) == ("draft-mtp", 250, 750, 561)
    assert cum["draft_ms"] == pytest.approx(3828.419)
    assert cum["per_position_acceptance"] == pytest.approx([0.868, 0.744, 0.632])
    assert req["draft_ms"] is None  # no eval time in the excerpt: no verify time, no attribution


def test_mean_len_variant_behind_elapsed_prefix_real_rocm_129():
    r = parse("meanlen_rocm_129.log").windows.row(0, named=True)
    assert (r["accepted_tokens"], r["draft_tokens"], r["mean_acceptance_length"]) == (5995, 9089, 4.30)
    assert r["acceptance_rate"] == pytest.approx(0.65959, abs=5e-6)


def test_older_draft_acceptance_rate_variant_real_pr14132():
    r = _real("server_draft_acceptance_rate_qwen235b_pr14132.log").windows.row(0, named=True)
    assert r["format"] == "llamacpp-server-rate" and r["mean_acceptance_length"] is None


def test_mtp_bench_client_table_and_aggregate_real_pr23398():
    w = _real("gemma4_mtp_request_table_pr23398.log").windows
    req = w.filter(pl.col("window") == "request")
    assert req.height == 9 and req["draft_tokens"].sum() == 1455 and req["accepted_tokens"].sum() == 986
    first = req.row(0, named=True)
    assert (first["request"], first["draft_tokens"], first["accepted_tokens"], first["gen_tps"]) == (
        "code_python", 166, 107, 93.6)
    run = w.filter(pl.col("window") == "run").row(0, named=True)
    assert (run["draft_tokens"], run["accepted_tokens"]) == (1455, 986)
    assert run["acceptance_rate"] == pytest.approx(0.6777, abs=5e-5)


def test_mtp_bench_rows_without_drafts_are_plain_runs():
    line = "  code_python        pred= 192 draft=   0 acc=   0 rate=n/a tok/s=33.9"  # PR #23398, "No MTP"
    r = llamacpp.parse(lines_from_texts([line]), "x").windows.row(0, named=True)
    assert r["k"] == 0 and r["draft_tokens"] is None and r["gen_tps"] == 33.9


def test_llama_speculative_summary_real_3649():
    """Real `speculative` example output pasted by a maintainer (llama.cpp#3649)."""
    r = _real("speculative_example_v100_case0_3649.log").windows.row(0, named=True)
    assert (r["format"], r["k"], r["draft_tokens"], r["accepted_tokens"], r["emitted_tokens"]) == (
        "llamacpp-example", 5, 260, 208, 261)
    assert r["acceptance_rate"] == pytest.approx(0.8)  # "accept    = 80.000%"
    assert r["mean_acceptance_length"] == pytest.approx(261 / (261 - 208))
    assert r["gen_tps"] == pytest.approx(87.954)  # "decoded  261 tokens in 2.967 seconds, speed: 87.954 t/s"
