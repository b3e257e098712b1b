"""Benchmark tables as people paste them, on real published excerpts (each file's sidecar names its
source address): whitespace-aligned tables without a marker word on their rows (paste repair),
acceptance-vs-context tables (ACCEPTANCE_DECAY_CONTEXT's summary-table path), accepted/drafted pairs
in cells, ``--spec-draft-n-max`` sweeps with a ``none`` baseline row."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from specdec_diag.analysis.comparisons import benchmark_k_sweeps
from specdec_diag.analysis.rules import run_rules
from specdec_diag.ingest import scan
from specdec_diag.ingest.bench_context import context_tokens
from specdec_diag.ingest.bench_labels import vs_speeds
from specdec_diag.ingest.paste_tables import aligned_tables

REAL = Path(__file__).parent / "fixtures" / "real"


def rows(path: Path) -> pl.DataFrame:
    return scan([path], use_cache=False).windows.sort("line")


def findings(path: Path) -> list:
    return [f for f in run_rules(scan([path], use_cache=False)) if f.severity != "info"]


# --- whitespace-aligned tables (paste repair) ----------------------------------------------------------

def test_aligned_sweep_is_read_and_its_best_k_found():
    """ashalliants/ninfer-3090#65: an indented table whose rows ('4   59.1   +56.5%   <- best') carry no
    marker word; the k=4 optimum and the recommended k=7 are 18 % apart."""
    w = rows(REAL / "bench" / "dflash2_draft_tokens_sweep_ninfer65.log")
    assert w["k"].to_list() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12]
    assert w.filter(pl.col("k") == 0)["engine_id"].item().startswith("bench[baseline]")
    assert "whitespace-aligned table" in w["definition_note"][0]
    (sweep,) = benchmark_k_sweeps(w, 0.05)
    assert (sweep["best_k"], sweep["largest_k"], sweep["too_large"]) == (4, 12, True)
    assert [f.code for f in findings(REAL / "bench" / "dflash2_draft_tokens_sweep_ninfer65.log")] == ["K_TOO_LARGE"]


@pytest.mark.parametrize("lines", [
    # llama.cpp speculative summary (ggml-org/llama.cpp#2926): '=' lines are key/value pairs
    ["n_draft   = 8", "n_predict = 129", "n_drafted = 132", "n_accept  = 47", "accept    = 35.606%"],
    # llama.cpp server-bench (ggml-org/llama.cpp#23869): a dashed rule under the header, its own reader
    ["category       base_avg_pred_t/s  spec_avg_pred_t/s  decode_speedup",
     "-------------  -----------------  -----------------  --------------",
     "coding         51.55              84.54              1.64x",
     "humanities     51.61              66.80              1.29x",
     "math           51.63              69.47              1.35x"],
    # llama_perf timing lines (ggml-org/llama.cpp#5877): 'key: value' lines
    ["llama_perf_context_print:        load time =    3575.03 ms",
     "llama_perf_context_print: prompt eval time =      56.80 ms /    14 tokens",
     "llama_perf_context_print:        eval time =   27636.04 ms /   898 runs",
     "llama_perf_context_print:       total time =   29298.72 ms /   912 tokens"],
])
def test_aligned_tables_leave_log_lines_alone(lines):
    out, recut = aligned_tables(lines)
    assert out == lines and recut == []


# --- acceptance against context length -----------------------------------------------------------------

@pytest.mark.parametrize("cell, tokens", [("2k", 2000), ("~34K", 34000), ("~100 tok", 100), ("4096", 4096)])
def test_context_cells(cell, tokens):
    assert context_tokens(cell) == tokens


def test_al_vs_context_table_decays_for_full_attention_only():
    """vllm-project/speculators#684: EAGLE3 acceptance length 2.295 at 2k -> 1.084 at 20k; the sliding-
    window drafter stays ~1.55 and is not flagged."""
    path = REAL / "bench" / "eagle3_al_vs_context_table_speculators684.log"
    w = rows(path)
    full = w.filter(pl.col("engine_id").str.ends_with(": Eagle3"))
    assert full["context_len"].to_list() == list(range(2000, 20001, 2000))
    assert full["mean_acceptance_length"][0] == pytest.approx(2.295)
    assert w.filter(pl.col("engine_id").str.contains("Δ")).is_empty()
    (f,) = findings(path)
    assert f.code == "ACCEPTANCE_DECAY_CONTEXT" and "Eagle3]" in f.title and "Eagle3-SW" not in f.title
    assert f.evidence["relative_drop"] > 0.9


def test_rate_vs_context_table_with_ranges():
    """vllm-project/vllm#47602 (llama.cpp data point): '80-91%' at ~100 tokens, '~53%' at ~34K, '40-55%'
    at ~86K; the 'MTP vs plain decode' column is a ratio, not a series."""
    path = REAL / "llamacpp" / "mtp_acceptance_vs_context_vulkan_vllm47602.log"
    w = rows(path)
    assert w["context_len"].to_list() == [100, 34000, 86000]
    assert w["acceptance_rate"].to_list() == pytest.approx([0.855, 0.53, 0.475])
    assert [f.code for f in findings(path)] == ["ACCEPTANCE_DECAY_CONTEXT"]


# --- accepted/drafted pairs, n-max sweeps ----------------------------------------------------------------

def test_pairs_in_cells_give_counts_and_a_broken_backend():
    """ROCmFPX/ROCmFPX#23: '**0.1%** (1/894)' on Vulkan0 against '60.1% (83/138)' on ROCm0."""
    path = REAL / "llamacpp" / "mtp_vulkan_not_engaging_rocmfpx23.log"
    w = rows(path)
    assert w.select("accepted_tokens", "draft_tokens").rows() == [(83, 138), (1, 894), (17, 402)]
    assert w["mean_acceptance_length"].to_list() == [3.31, 1.0, 1.17]
    broken = [f for f in findings(path) if f.code == "DRAFTER_BROKEN"]
    assert len(broken) == 1 and "Vulkan0]" in broken[0].title


def test_draft_n_max_sweep_with_none_row():
    """LostRuins/koboldcpp#2262 (llama-server b9628): 'none' is the baseline, not a k taken from the
    command above the table; n-max 1 is fastest and n-max 8 falls below no speculation."""
    path = REAL / "llamacpp" / "server_mtp_draft_n_max_sweep_kcpp2262.log"
    w = rows(path)
    assert w["k"].to_list() == [0, None, 1, 2, 3, 4, 8]
    assert w["acceptance_rate"].to_list()[1:] == pytest.approx([0.44, 0.47, 0.30, 0.23, 0.20, 0.11])
    codes = {f.code for f in findings(path)}
    assert "K_TOO_LARGE" in codes and "SPEC_INACTIVE" not in codes


# --- two speeds compared in one phrase -------------------------------------------------------------------

@pytest.mark.parametrize("text, header, expected", [
    ("Net throughput loss even at 90% acceptance: 5.1 t/s with MTP vs 21.4 t/s no-spec (short ctx)", "",
     (("with MTP", 5.1), ("no-spec", 21.4))),
    ("−32% (61 vs 90 tok/s)", "decode vs baseline", (("", 61.0), ("baseline", 90.0))),
    ("61 vs 90 tok/s", "decode", None),  # nothing says which side is the baseline
    ("EAGLE-3 vs EAGLE-2", "", None),
])
def test_vs_speeds(text, header, expected):
    assert vs_speeds(text, header) == expected


def test_per_backend_speedups_beside_acceptance():
    """ggml-org/llama.cpp#26750: '**−32%** (61 vs 90 tok/s)' on CUDA, '+128% (218 vs 96 tok/s)' on Vulkan:
    each row carries its own baseline; only the CUDA comparison is a slowdown."""
    path = REAL / "llamacpp" / "mtp_cuda_vs_vulkan_accept_tables_26750.log"
    w = rows(path).filter(pl.col("gen_tps").is_not_null())
    assert w.select("line", "k", "gen_tps").rows() == [(9, None, 61.0), (9, 0, 90.0), (10, None, 218.0),
                                                        (10, 0, 96.0), (11, None, 124.0), (11, 0, 70.0)]
    (slow,) = [f for f in findings(path) if f.code == "NO_SPEEDUP"]
    assert slow.evidence["comparisons_without_speedup"] == 1 and slow.evidence["speedup"] == pytest.approx(61 / 90)


def test_prose_comparison_is_two_runs():
    """ggml-org/llama.cpp#27836: '**5.1 t/s with MTP vs 21.4 t/s no-spec**' at 90 % acceptance."""
    path = REAL / "llamacpp" / "mtp_vulkan_gfx1151_net_loss_pr27836.log"
    assert "NO_SPEEDUP" in {f.code for f in findings(path)}


def test_drafted_accepted_count_columns():
    """vllm-project/vllm-metal#456: 'Prompt | Drafted | Accepted | Rate' - counts, not an acceptance
    rate column (150 accepted is no percentage); 'Rate' beside them is their rate."""
    w = rows(REAL / "bench" / "vllm_metal_ngram_prompt_table_pr456.log")
    assert w.select("draft_tokens", "accepted_tokens").rows() == [(150, 150), (180, 118), (147, 81)]
    assert w["acceptance_rate"].to_list() == pytest.approx([1.0, 118 / 180, 81 / 147])


def test_context_table_of_speeds_is_not_acceptance():
    """A table comparing speeds with and without speculation per context is no acceptance series, even
    where the speeds are small numbers; a bare 'acc' column is accuracy, not acceptance."""
    from specdec_diag.ingest.bench_context import context_records
    from specdec_diag.ingest.bench_tables import table_records

    body = [(2, ["2k", "12.3", "10.1"]), (3, ["8k", "11.0", "9.9"]), (4, ["32k", "8.2", "9.0"])]
    assert context_records(["Context", "MTP", "no MTP"], body) == []
    assert table_records(["model", "acc"], [(2, ["qwen3-8b", "0.85"]), (3, ["llama-8b", "0.81"])], "", 1) == []
