"""Benchmark outputs (ingest ``bench``) on real published excerpts, and the measured comparisons
they feed (NO_SPEEDUP, K_TOO_LARGE, CAPACITY_QUEUEING). Every file read here is a verbatim public
excerpt whose sidecar (``<file>.json``) names its source address."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from specdec_diag.analysis.comparisons import benchmark_k_sweeps, benchmark_speedups
from specdec_diag.analysis.report import build_report
from specdec_diag.analysis.rules import run_rules
from specdec_diag.ingest import scan
from specdec_diag.ingest.bench import clean, kv_items
from specdec_diag.ingest.bench_labels import BASE, SPEC, classify, number
from specdec_diag.ingest.bench_tables import split_row

REAL = Path(__file__).parent / "fixtures" / "real"
OWN = Path(__file__).parent / "fixtures" / "bench"


def bench_rows(path: Path) -> pl.DataFrame:
    w = scan([path], use_cache=False).windows
    return w.filter(pl.col("format").str.starts_with("bench")).sort("line")


def codes(path: Path) -> dict[str, list]:
    found: dict[str, list] = {}
    for f in run_rules(scan([path], use_cache=False)):
        if f.severity != "info":
            found.setdefault(f.code, []).append(f)
    return found


# --- labels and numbers ------------------------------------------------------------------------------

@pytest.mark.parametrize("label, kind, k", [
    ("speed, -SD", BASE, 0), ("speed, +SD", SPEC, None), ("#non-sp", BASE, 0), ("#sp=3", SPEC, 3),
    ("vanilla (`meta-llama/Llama-3.1-8B-Instruct`)", BASE, 0), ("* K=2", SPEC, 2), ("MTP=off", BASE, 0),
    ("MTP=on", SPEC, None), ("(none)", BASE, 0), ("EAGLE-3 (num_steps=8)", SPEC, 8),
    ("Tokens per second for the baseline", BASE, 0), ("- No draft model", BASE, 0), ("- With draft model", SPEC, None),
    ("--speculative_model [gram] --num_speculative_tokens 5", SPEC, 5), ("num_speculative_tokens=0", BASE, 0),
    ("7b", None, None), ("Qwen3-4B", None, None), ("decode speed", None, None),
])
def test_label_says_with_or_without_speculation(label, kind, k):
    st = classify(label)
    assert (st.kind, st.k) == (kind, k)


def test_numbers_as_people_print_them():
    assert number("10-11 tokens/s") == (10.5, "tokens/s", True)
    assert number("**1.89**")[0] == 1.89
    assert number("N/A")[0] is None and number("-")[0] is None
    # exllamav2 examples/inference_speculative.py: print(f"speed, -SD: {...:.2f} tokens/second")
    assert kv_items("speed, -SD: 11.65 tokens/second") == [("speed, -SD", 11.65, "tokens/second", "out_tps")]
    # vLLM offline tqdm tail: the input speed is not the output speed
    items = kv_items(clean("* k=2: [01:34<00:00,  1.18s/it, est. speed input: 64.12 toks/s, output: 175.49 toks/s] "
                           "**Accpt Len: 1.89**"))
    assert [(v, m) for _, v, _, m in items if m] == [(175.49, "out_tps"), (1.89, "mal")]
    assert [v for _, v, _, m in kv_items("Average latency per output token: 0.54 s") if m == "tpot_ms"] == [540.0]


def test_table_rows_split_on_pipes_and_tabs():
    assert split_row("| 2k | 2.295 | 1.584 | -31.0% |") == ["2k", "2.295", "1.584", "-31.0%"]
    assert split_row("1 | 222.47") == ["1", "222.47"]
    assert split_row("Qwen3-4B\t3\t10-11 tokens/s") == ["Qwen3-4B", "3", "10-11 tokens/s"]
    assert split_row("|--------|-------|") is None
    assert split_row("Mean ITL (ms): 163.09 |") is None


# --- runs with and without speculation -> measured speed-up ---------------------------------------------

def test_exllamav2_speculative_example_no_speedup():
    path = REAL / "bench" / "exllamav2_speculative_150w_tabby166.log"
    rows = bench_rows(path)
    assert rows.select("k", "gen_tps").rows() == [(0, 11.65), (None, 11.34)]
    (c,) = benchmark_speedups(rows)
    assert c["speedup"] == pytest.approx(11.34 / 11.65)
    (f,) = codes(path)["NO_SPEEDUP"]
    assert f.evidence["basis"] == "measured (benchmark output)"
    assert "output tokens per second" in f.evidence["definitions"]["speedup"]


def test_unlabelled_run_next_to_a_speculative_one_is_the_assumed_baseline():
    path = REAL / "vllm" / "v0_ngram_slower_than_plain_8439.log"  # "7b:" vs "spec 7b", decode speed token/s
    rows = bench_rows(path)
    assert rows["gen_tps"].round(2).to_list() == [69.79, 61.79]
    assert "assumed baseline" in rows["definition_note"][0]
    (f,) = codes(path)["NO_SPEEDUP"]
    assert f.evidence["speedup"] == pytest.approx(61.794836902788866 / 69.78935823702163)


def test_client_summaries_compared_on_time_per_output_token():
    path = REAL / "tgi" / "medusa_benchmark_no_gain_1503.log"  # "#non-sp" / "#sp=3", 0.54 s per output token each
    rows = bench_rows(path)
    assert rows.select("k", "tpot_ms").rows() == [(0, 540.0), (3, 540.0)]
    (f,) = codes(path)["NO_SPEEDUP"]
    assert f.evidence["speedup"] == pytest.approx(1.0)
    assert "time per output token" in f.evidence["definitions"]["speedup"]


def test_tables_per_batch_size():
    path = REAL / "sglang" / "bench_eagle3_slower_than_base_specforge339.log"
    rows = bench_rows(path)
    base = rows.filter(pl.col("k") == 0)
    assert base.select("running_reqs", "gen_tps").rows()[:2] == [(1, 222.47), (4, 566.21)]
    comps = {c["load"]: c for c in benchmark_speedups(rows)}
    assert set(comps) == {1, 4}  # no speculative run at bs 8-64: nothing to compare there
    assert comps[1]["speculative_tps"] == 207.62 and comps[4]["speculative_tps"] == 447.90
    (f,) = codes(path)["NO_SPEEDUP"]
    assert f.evidence["comparisons_without_speedup"] == 2


def test_runs_as_columns_table_speeds_up():
    path = REAL / "sglang" / "bench_mtp_on_off_table_pr10281.log"  # | Metric | MTP=off | MTP=on | % Difference |
    rows = bench_rows(path)
    assert rows.select("k", "gen_tps", "mean_acceptance_length").rows() == [(0, 82.72, None), (None, 151.53, 2.69)]
    (c,) = benchmark_speedups(rows)
    assert c["speedup"] == pytest.approx(151.53 / 82.72)
    assert "NO_SPEEDUP" not in codes(path)


def test_method_table_with_vanilla_row():
    path = OWN / "fr_spec_method_table_vllm24343.log"
    rows = bench_rows(path)
    assert rows.filter(pl.col("k") == 0).select("gen_tps", "mean_acceptance_length").rows() == [(61.74, None)]
    (c,) = benchmark_speedups(rows)
    assert c["speedup"] == pytest.approx(121.99 / 61.74)
    assert not {"NO_SPEEDUP", "K_TOO_LARGE"} & set(codes(path))


# --- k sweeps -> K_TOO_LARGE from measured speed -------------------------------------------------------

@pytest.mark.parametrize("name, best, largest", [
    ("vllm/offline_eagle1_k_sweep_pr16937.log", 2, 7),   # "* K=2: 201.69, speedup:  1.51x" (no unit)
    ("vllm/offline_eagle_k2_vs_k4_pr16035.log", 2, 4),   # tqdm tails, output toks/s
])
def test_k_sweep_measured(name, best, largest):
    path = REAL / name
    (f,) = codes(path)["K_TOO_LARGE"]
    assert (f.evidence["recommended_k"], f.evidence["k"]) == (best, largest)
    assert f.evidence["verify_cost_source"].startswith("measured")
    assert "NO_SPEEDUP" not in codes(path)


def test_quoted_tab_table_sweeps_per_draft_model():
    path = REAL / "vllm" / "v0_draft_k_sweep_quoted_21278.log"
    rows = bench_rows(path)
    assert rows.filter(pl.col("engine_id").str.contains("Qwen3-4B"))["gen_tps"].to_list() == [10.5, 8.5, 4.5]
    sweeps = benchmark_k_sweeps(rows, 0.05)
    assert [(s["config"], s["best_k"], s["largest_k"]) for s in sweeps] == [
        ("Qwen3-4B", 3, 10), ("Qwen3-1.7B", 3, 10), ("Qwen3-0.6B", 3, 10)]
    assert len(codes(path)["K_TOO_LARGE"]) == 3


def test_larger_k_faster_is_no_finding():
    path = REAL / "sglang" / "bench_eagle3_vs_eagle2_pr4247.log"  # EAGLE-3 num_steps 8 faster than 5
    assert "K_TOO_LARGE" not in codes(path)


def test_report_keeps_a_benchmark_sweep_in_one_run():
    report = build_report(scan([REAL / "vllm" / "offline_eagle1_k_sweep_pr16937.log"], use_cache=False))
    (run,) = report["runs"]
    assert "K_TOO_LARGE" in {f["code"] for f in run["findings"]}


# --- serving summaries ------------------------------------------------------------------------------------

def test_serving_summary_without_speculative_section_tells_queueing():
    path = REAL / "vllm" / "bench_serve_mtp_ttft_queueing_43295.log"
    (row,) = bench_rows(path).rows(named=True)
    assert (row["gen_tps"], row["ttft_ms"], row["tpot_ms"], row["k"]) == (1042.18, 153886.28, 17.41, None)
    assert "CAPACITY_QUEUEING" in codes(path)


def test_sglang_serving_summary_accept_length_and_concurrency():
    row = bench_rows(REAL / "sglang" / "bench_serving_overlap_accept_len_pr9588.log").row(0, named=True)
    assert (row["gen_tps"], row["mean_acceptance_length"], row["running_reqs"], row["engine"]) == (
        1067.83, 3.46, 4, "sglang")


def test_vllm_summary_with_speculative_section_is_left_to_the_vllm_source():
    assert bench_rows(REAL / "vllm" / "bench_serve_mtp1_pr48892.log").height == 0


@pytest.mark.parametrize("name", ["vllm/v1_healthy_eagle.log", "llamacpp/healthy_server.log", "sglang/healthy_eagle3.log"])
def test_engine_logs_give_no_benchmark_rows(name):
    assert bench_rows(Path(__file__).parents[1] / "sample_logs" / "engines" / name).height == 0


def test_serving_summary_numbers_and_load():
    path = OWN / "bench_serve_no_spec_c1_vllm35714.log"
    (row,) = bench_rows(path).rows(named=True)
    assert (row["gen_tps"], row["ttft_ms"], row["tpot_ms"], row["running_reqs"]) == (39.96, 330.66, 21.80, 1)
    assert not {"CAPACITY_QUEUEING", "NO_SPEEDUP"} & set(codes(path))  # 331 ms TTFT vs 21.8 ms TPOT: no queue


def test_summary_next_to_one_with_a_speculative_section_is_its_baseline(tmp_path):
    # pairing mechanics on real lines: a summary without speculation (vllm #35714, concurrency 1)
    # followed by one with vLLM's speculative section (vllm #48892); the two come from different
    # threads, so only the pairing is tested here, not a claim about either run
    plain = (OWN / "bench_serve_no_spec_c1_vllm35714.log").read_text()
    spec = (REAL / "vllm" / "bench_serve_mtp8_pr48892.log").read_text()
    path = tmp_path / "two_summaries.log"
    path.write_text(plain + "\n" + spec)
    rows = scan([path], use_cache=False).windows.filter(pl.col("window") == "run").sort("line")
    base = rows.filter(pl.col("format") == "bench-summary").row(0, named=True)
    assert base["k"] == 0 and "assumed baseline" in base["definition_note"]
    assert rows.filter(pl.col("format") == "vllm-bench-serve").height == 1


# --- formats taken from the tools' print statements (numbers illustrative, lines as the code prints them) ---

def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_spec_bench_speed_report(tmp_path):
    # hemingkx/Spec-Bench evaluation/speed.py: print("="*30, "Task: ", task, "="*30);
    # print("#Mean accepted tokens: ", ...); print('Tokens per second: ', ...);
    # print('Tokens per second for the baseline: ', ...); print("Speedup ratio: ", ...)
    eq = "=" * 30
    path = write(tmp_path, "speed.txt", "".join(
        f"{eq} Task:  {task} {eq}\n#Mean accepted tokens:  {mal}\nTokens per second:  {sd}\n"
        f"Tokens per second for the baseline:  {base}\nSpeedup ratio:  {sd / base}\n"
        for task, mal, sd, base in (("mt_bench", 3.5712, 78.1042, 31.2287), ("translation", 1.021, 29.8001, 31.0555))))
    comps = benchmark_speedups(bench_rows(path))
    assert [round(c["speedup"], 4) for c in comps] == [round(78.1042 / 31.2287, 4), round(29.8001 / 31.0555, 4)]
    (f,) = codes(path)["NO_SPEEDUP"]
    assert f.evidence["comparisons_without_speedup"] == 1


def test_exllamav2_streaming_example_titles_reach_over_the_generated_text(tmp_path):
    # turboderp/exllamav2 examples/speculative.py: print("Normal decoding:") ... the streamed text ...
    # print(f"Response generated in {t:.2f} seconds, {n} tokens, {n / t:.2f} tokens/second")
    gen = "void quicksort(int* a, int n) {\n" + "  // ...\n" * 12 + "}\n"
    text = "".join(f"{'-' * 81}\n{title}:\n\nHere is a simple Quicksort implementation in C++:\n{gen}\n"
                   f"Prompt processed in 0.01 seconds, 11 tokens, 1014.60 tokens/second\n"
                   f"Response generated in {t} seconds, 250 tokens, {250 / t:.2f} tokens/second\n"
                   for title, t in (("Normal decoding", 5.07), ("Speculative decoding", 2.61)))
    rows = bench_rows(write(tmp_path, "exl.txt", text))
    assert rows.select("k", "gen_tps").rows() == [(0, 49.31), (None, 95.79)]
    assert "NO_SPEEDUP" not in codes(tmp_path / "exl.txt")


def test_unit_less_numbers_need_speed_words(tmp_path):
    path = write(tmp_path, "acc.txt", "Acceptance by draft length:\n* k=2: 0.81\n* k=4: 0.62\n* k=8: 0.41\n")
    assert bench_rows(path).height == 0
    assert "K_TOO_LARGE" not in codes(path)


def test_vllm_throughput_line_output_speed():
    items = kv_items("Throughput: 3.08 requests/s, 1234.56 total tokens/s, 567.89 output tokens/s")
    assert [(v, m) for _, v, _, m in items] == [(3.08, "req_ps"), (567.89, "out_tps")]


def test_saved_result_lines(tmp_path):
    # vllm/benchmarks/serve.py --save-result (json.dump of result_json: output_throughput, mean_ttft_ms,
    # mean_tpot_ms, max_concurrency, spec_decode_* counts) and sglang bench_serving's JSONL (tag, accept_length)
    plain = {"backend": "vllm", "max_concurrency": 8, "output_throughput": 812.5, "mean_ttft_ms": 88.0,
             "mean_tpot_ms": 9.1}
    spec = {**plain, "output_throughput": 700.5, "mean_tpot_ms": 10.1, "spec_decode_acceptance_rate": 23.7,
            "spec_decode_acceptance_length": 1.95, "spec_decode_num_drafts": 11043, "spec_decode_draft_tokens": 44172,
            "spec_decode_accepted_tokens": 10473}
    tagged = {"backend": "sglang", "max_concurrency": 8, "output_throughput": 900.0, "accept_length": None,
              "tag": "no spec"}
    path = write(tmp_path, "results.jsonl", "\n".join(json.dumps(x) for x in (plain, spec, tagged)) + "\n{not json\n")
    rows = bench_rows(path)
    assert rows.select("k", "gen_tps", "running_reqs", "draft_tokens", "accepted_tokens").rows() == [
        (0, 812.5, 8, None, None), (None, 700.5, 8, 44172, 10473), (0, 900.0, 8, None, None)]
    assert rows["acceptance_rate"][1] == pytest.approx(10473 / 44172)
    assert "NO_SPEEDUP" in codes(path)


def test_out_of_range_numbers_never_break_the_rows(tmp_path):
    path = write(tmp_path, "big.txt", "============ Serving Benchmark Result ============\n"
                                      "Max request concurrency:                 99999999999999999999\n"
                                      "Output token throughput (tok/s):         1e999\n"
                                      "Mean TTFT (ms):                          -5\n"
                                      "Mean TPOT (ms):                          9.87\n"
                                      '{"output_throughput": 5.0, "spec_decode_num_drafts": 99999999999999999999}\n')
    res = scan([path], use_cache=False)
    assert res.malformed.height == 0
    rows = res.windows.filter(pl.col("format").str.starts_with("bench")).sort("line")
    assert rows.select("running_reqs", "gen_tps", "ttft_ms", "tpot_ms").row(0) == (None, None, None, 9.87)


def test_sglang_bench_speculative_sweep(tmp_path):
    # sgl-project/sglang scripts/playground/bench_speculative.py: node0_print(f"Finish {i=}: {batch_size=},
    # {steps=}, {topk=}, {num_draft_tokens=}, {speed=:.2f} token/s, step_time=...") and its JSONL record;
    # speeds are SpecForge #339's table, which this script printed
    lines = ["Finish i=0: batch_size=1, steps=0, topk=0, num_draft_tokens=0, speed=222.47 token/s, step_time=4.49 ms",
             "Finish i=1: batch_size=1, steps=3, topk=3, num_draft_tokens=8, speed=172.99 token/s, step_time=12.72 ms",
             json.dumps({"batch_size": 1, "steps": 3, "topk": 3, "num_draft_tokens": 4, "acc_length": 1.99,
                         "step_time": 0.00958, "speed": 207.62, "completion_tokens": 512.0})]
    path = write(tmp_path, "bench_speculative.log", "\n".join(lines) + "\n")
    rows = bench_rows(path)
    assert rows.select("k", "gen_tps", "running_reqs", "mean_acceptance_length").rows() == [
        (0, 222.47, 1, None), (8, 172.99, 1, None), (4, 207.62, 1, 1.99)]
    found = codes(path)
    assert found["NO_SPEEDUP"][0].evidence["speedup"] == pytest.approx(207.62 / 222.47)
    assert found["K_TOO_LARGE"][0].evidence["recommended_k"] == 4


def test_paired_speed_columns(tmp_path):
    # llama.cpp server-bench speed-bench (PR #23869) prints base_avg_pred_t/s and spec_avg_pred_t/s on
    # one row; pasted as Markdown each row is a baseline and a speculative run of its category
    path = write(tmp_path, "paired.md", "| category | base_avg_pred_t/s | spec_avg_pred_t/s | decode_speedup |\n"
                                        "|---|---|---|---|\n| coding | 51.55 | 84.54 | 1.64x |\n"
                                        "| humanities | 51.61 | 66.80 | 1.29x |\n")
    comps = benchmark_speedups(bench_rows(path))
    assert [round(c["speedup"], 4) for c in comps] == [round(84.54 / 51.55, 4), round(66.80 / 51.61, 4)]
    assert "NO_SPEEDUP" not in codes(path)


def test_two_runs_on_one_line(tmp_path):
    path = write(tmp_path, "prose.txt", "MTP off: 82.7 tok/s, MTP on: 151.5 tok/s\n"
                                        "without speculative decoding: 60 tok/s, with EAGLE-3: 45 tok/s\n")
    comps = benchmark_speedups(bench_rows(path))
    assert [(c["baseline"]["label"], round(c["speedup"], 3)) for c in comps] == [
        ("MTP off", round(151.5 / 82.7, 3)), ("without speculative decoding", 0.75)]


@pytest.mark.parametrize("junk", ["=====", "\t"])
def test_stray_rule_inside_a_summary_does_not_end_it(tmp_path, junk):
    """Regression (junk-line property): a ``=====`` or tab-only line inside a serving summary used to
    close it, so the speculative section below became a second record; a summary ends at its closing
    rule (as wide as its title rule)."""
    src = Path(__file__).parent / "fixtures" / "vllm" / "bench_serve.txt"
    lines = src.read_text().split("\n")
    at = lines.index("---------------Speculative Decoding---------------") + 1
    p = tmp_path / src.name
    p.write_text("\n".join([*lines[:at], junk, *lines[at:]]))
    assert bench_rows(p).height == bench_rows(src).height == 0  # the vLLM source reads this summary
    before, after = scan([src], use_cache=False).windows, scan([p], use_cache=False).windows
    assert after.height == before.height > 0
    assert after.drop("line", "source").equals(before.drop("line", "source"))
