"""Excerpts as people paste them (issue 12, deliverable 2): ``specdec_diag.ingest.paste`` and
``specdec_diag.ingest.launch``.

Two kinds of input:

* verbatim pasted excerpts in ``tests/fixtures/paste/`` (sidecar: public source, what the lines state);
* real log lines (sources below) put through the damage a paste does - wrapping at the terminal width,
  a Docker Compose or Kubernetes prefix, colours, a quote or a line-number gutter, a marker left out -
  each of which must give the same numbers as the clean line.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specdec_diag.analysis.rules import run_rules
from specdec_diag.ingest import scan
from specdec_diag.ingest.launch import parse_command
from specdec_diag.ingest.paste import normalise

PASTE = Path(__file__).parent / "fixtures" / "paste"

#: https://github.com/AEON-7/Qwen3.6-27B-AEON-Ultimate-Uncensored-DFlash/issues/6 (verbatim)
VLLM_LINE = ("(APIServer pid=1) INFO 05-01 14:24:50 [metrics.py:101] SpecDecoding metrics: Mean acceptance length: "
             "2.37, Accepted throughput: 8.90 tokens/s, Drafted throughput: 97.50 tokens/s, Accepted: 89 tokens, "
             "Drafted: 975 tokens, Per-position acceptance rate: 0.600, 0.385, 0.215, 0.108, 0.062, 0.000, 0.000, "
             "0.000, 0.000, 0.000, 0.000, 0.000, 0.000, 0.000, 0.000, Avg Draft acceptance rate: 9.1%")
VLLM_PP = [0.6, 0.385, 0.215, 0.108, 0.062] + [0.0] * 10
#: https://github.com/mit-han-lab/fastrl/pull/4 (verbatim, trailing space kept)
SGLANG_LINE = ("2025-12-04 20:35:53 INFO 151972 [scheduler_metrics_mixin.py:287] Decode batch. #running-req: 48, "
               "#token: 3894, token usage: 0.00, accept len: 1.00, accept rate: 0.11, cuda graph: False, "
               "gen throughput (token/s): 5452.63, #queue-req: 0, ")


def _windows(tmp_path: Path, text: str, name: str = "paste.log"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    res = scan([p], use_cache=False)
    return res, res.windows.sort("line")


def _wrap(line: str, width: int = 80) -> str:
    """A terminal's soft wrap: the line cut every ``width`` characters, nothing added or lost."""
    return "\n".join(line[i:i + width] for i in range(0, len(line), width)) + "\n"


#: https://github.com/vllm-project/vllm/issues/41789 (verbatim)
VLLM_THR = ("(APIServer pid=1) INFO 05-06 06:11:23 [loggers.py:271] Engine 000: Avg prompt throughput: 1436.3 tokens/s, "
            "Avg generation throughput: 93.9 tokens/s, Running: 3 reqs, Waiting: 0 reqs, GPU KV cache usage: 36.1%, "
            "Prefix cache hit rate: 27.4%")


def test_wrapped_throughput_line(tmp_path):
    for width in (60, 80, 100):
        res, w = _windows(tmp_path, _wrap(VLLM_THR, width), f"thr{width}.log")
        assert res.malformed.height == 0 and w.height == 1, (width, res.malformed.rows())
        row = w.row(0, named=True)
        assert (row["gen_tps"], row["running_reqs"], row["kv_usage"]) == (93.9, 3, pytest.approx(0.361))


VLLM_DAMAGE = {
    "wrapped at 80 columns": _wrap(VLLM_LINE),
    "wrapped at 120 columns": _wrap(VLLM_LINE, 120),
    "docker compose prefix": f"vllm-1  | {VLLM_LINE}\n",
    "kubernetes CRI prefix": f"2026-05-01T14:24:50.123456789Z stdout F {VLLM_LINE}\n",
    "kubernetes CRI partial line": (f"2026-05-01T14:24:50.123456789Z stdout P {VLLM_LINE[:150]}\n"
                                    f"2026-05-01T14:24:50.123456789Z stdout F {VLLM_LINE[150:]}\n"),
    "ANSI colours": VLLM_LINE.replace("INFO", "\x1b[32mINFO\x1b[0m").replace("2.37", "\x1b[1m2.37\x1b[0m") + "\n",
    "ANSI colours with the ESC byte lost": VLLM_LINE.replace("INFO", "[32mINFO[0m") + "\n",
    "markdown quote in a fence": f"> ```\n> {VLLM_LINE}\n> ```\n",
    "line-number gutter": f"  11 | (APIServer pid=1) INFO 05-01 14:24:49 [loggers.py:271] started\n  12 | {VLLM_LINE}\n",
    "logger prefix and marker left out": VLLM_LINE.split("SpecDecoding metrics: ", 1)[1] + "\n",
    "per-position vector after its label's line break": VLLM_LINE.replace(
        "Per-position acceptance rate: ", "Per-position acceptance rate:\n") + "\n",
    "per-position vector on its own line": (
        VLLM_LINE.replace(", Per-position acceptance rate: " + VLLM_LINE.split("Per-position acceptance rate: ")[1]
                          .split(", Avg")[0], "") + "\nPer-position acceptance rate: "
        + VLLM_LINE.split("Per-position acceptance rate: ")[1].split(", Avg")[0] + "\n"),
}


@pytest.mark.parametrize("damage", list(VLLM_DAMAGE))
def test_damaged_vllm_line_gives_the_clean_numbers(tmp_path, damage):
    res, w = _windows(tmp_path, VLLM_DAMAGE[damage])
    assert w.height == 1, (damage, res.malformed.rows())
    row = w.row(0, named=True)
    assert row["mean_acceptance_length"] == pytest.approx(2.37)
    assert (row["accepted_tokens"], row["draft_tokens"]) == (89, 975)
    assert row["per_position_acceptance"] == pytest.approx(VLLM_PP)
    assert res.malformed.height == 0


@pytest.mark.parametrize("damage", ["wrapped", "compose", "quote", "gutter", "ansi"])
def test_damaged_sglang_line_gives_the_clean_numbers(tmp_path, damage):
    text = {"wrapped": _wrap(SGLANG_LINE, 100), "compose": f"sglang-1  | {SGLANG_LINE}\n",
            "quote": f"> {SGLANG_LINE}\n> {SGLANG_LINE}\n", "gutter": f"1: {SGLANG_LINE}\n2: {SGLANG_LINE}\n",
            "ansi": SGLANG_LINE.replace("INFO", "\x1b[32mINFO\x1b[0m") + "\n"}[damage]
    res, w = _windows(tmp_path, text)
    assert w.height >= 1 and res.malformed.height == 0, res.malformed.rows()
    row = w.row(0, named=True)
    assert (row["mean_acceptance_length"], row["running_reqs"], row["cuda_graph"], row["gen_tps"]) == (
        1.0, 48, False, pytest.approx(5452.63))


@pytest.mark.parametrize("head", ["2025/05/01 14:24:50 INFO ", "2025-05-01T14:24:50.123456+00:00 ",
                                  "2025-05-01T14:24:50.000000000Z stdout F "])
def test_other_timestamp_styles_give_the_record_its_time(tmp_path, head):
    _, w = _windows(tmp_path, head + SGLANG_LINE.split("] ", 1)[1] + "\n")
    assert w.height == 1 and str(w["time"][0]).startswith("2025-05-01 14:24:50")


def test_the_assumption_is_stated(tmp_path):
    _, w = _windows(tmp_path, VLLM_DAMAGE["logger prefix and marker left out"])
    assert "without their 'SpecDecoding metrics' marker" in w["definition_note"][0]
    res, w = _windows(tmp_path, _wrap(VLLM_LINE), "wrapped.log")
    assert "joined to it (a wrapped line)" in w["definition_note"][0]
    assert res.configs.filter(res.configs["key"] == "pasted_excerpt").height == 0  # nothing was stripped


def test_fields_without_counts_are_not_invented(tmp_path):
    """``Mean acceptance length: 1.00, Accepted throughput: ...`` alone: the fields it states, no counts."""
    text = "Mean acceptance length: 1.00, Accepted throughput: 0.00 tokens/s, Drafted throughput: 1.23 tokens/s\n"
    res, w = _windows(tmp_path, text)
    assert w.height == 1 and res.malformed.height == 0
    row = w.row(0, named=True)
    assert row["mean_acceptance_length"] == 1.0 and row["drafted_tps"] == pytest.approx(1.23)
    assert row["draft_tokens"] is None and row["accepted_tokens"] is None and row["acceptance_rate"] is None


def test_llama_speculative_summary_with_collapsed_spaces(tmp_path):
    """llama.cpp #5877's summary (verbatim numbers) as a chat or HTML view shows it: runs of spaces
    collapsed, so ``accept    =`` became ``accept =``."""
    text = "n_draft = 5\nn_predict = 1000\nn_drafted = 730\nn_accept = 526\naccept = 72.055%\n"
    res, w = _windows(tmp_path, text)
    assert res.malformed.height == 0
    row = w.row(0, named=True)
    assert (row["draft_tokens"], row["accepted_tokens"]) == (730, 526)
    assert row["acceptance_rate"] == pytest.approx(0.72055, abs=1e-4)


def test_a_lone_number_is_not_a_record(tmp_path):
    res, w = _windows(tmp_path, "Mean acceptance length: 2.47\naccept len: 3.1\n")
    assert not any(f == "vllm-v1-specdecoding-fields" or str(f).startswith("sglang")
                   for f in w["format"].to_list())


def test_a_table_is_not_a_compose_prefix():
    texts = ["Qwen3-4B | 3 | 10-11 tokens/s", "Qwen3-4B | 5 | 8-9 tokens/s"]
    assert normalise(texts)[0] == texts


def test_one_column_table_pipes_are_stripped_tables_are_not():
    col = ["Acceptance length: 2.13 |", "Drafts: 1203 |", "Draft tokens: 2406 |"]
    assert normalise(col)[0] == ["Acceptance length: 2.13", "Drafts: 1203", "Draft tokens: 2406"]
    table = ["| k | tok/s |", "| 2 | 201.69 |", "| 4 | 198 |"]
    assert normalise(table)[0] == table


def test_prose_after_a_record_is_not_joined():
    texts = [SGLANG_LINE, "After this PR the graph is captured for the non-speculative path: 6138 tok/s"]
    fixed, rep = normalise(texts)
    assert fixed == texts and not rep.notes


def test_a_command_does_not_swallow_the_output_after_it():
    texts = ["python3 -m sglang.launch_server --model-path meta-llama/Llama-3.1-8B-Instruct --speculative-algo EAGLE3",
             "============ Serving Benchmark Result ============",
             "Then we ran the benchmark again with the same settings"]
    assert normalise(texts)[0] == texts


def test_numbered_list_is_not_a_gutter():
    texts = ["3: the third point, with 12 numbers", "speed: 71.34 token/s"]
    assert normalise(texts)[0] == texts


# --- verbatim pasted excerpts -------------------------------------------------------------------------

CASES = sorted(PASTE.glob("*.log"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_pasted_excerpt(path):
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["source"].startswith("https://") and side["what"]
    want = side["expect"]
    res = scan([path], use_cache=False)
    assert res.malformed.height == 0, res.malformed.rows()
    w = res.windows.sort("line")
    if "windows" in want:
        assert w.height == want["windows"]
        for col in ("mean_acceptance_length", "acceptance_rate", "cuda_graph"):
            if col in want:
                assert w[col].to_list() == pytest.approx(want[col])
        assert all(want["note"] in (n or "") for n in w["definition_note"].to_list())
    if "configs" in want:
        got = {k: v for k, v in res.configs.select("key", "value").iter_rows()}
        assert {k: got.get(k) for k in want["configs"]} == want["configs"]
        assert want["engine"] in set(res.configs["engine"].to_list())


# --- launch commands ------------------------------------------------------------------------------------

REAL = Path(__file__).parent / "fixtures" / "real"


def test_wrapped_launch_command_mid_word():
    """sglang PR #4951: the command is cut mid-word ("m\\neta-llama", "-\\n-trust-remote-code")."""
    texts = (REAL / "sglang" / "fa3_send_one_disable_cuda_graph_pr4951.log").read_text().splitlines()
    fixed, rep = normalise(texts)
    cmd = next(t for t in fixed if "sglang.launch_server" in t)
    assert "meta-llama/Meta-Llama-3.1-8B-Instruct/" in cmd and " --trust-remote-code " in cmd
    engine, facts = parse_command(cmd)
    assert engine == "sglang" and ("disable_cuda_graph", "True") in facts
    assert ("model_path", "/shared/public/elr-models/meta-llama/Meta-Llama-3.1-8B-Instruct/"
                          "07eb05b21d191a58c577b4a45982fe0c049d0693") in facts


@pytest.mark.parametrize("rel", ["sglang/triton_eagle2_disable_cuda_graph_pr3466.log",
                                 "sglang/fa3_send_one_disable_cuda_graph_pr4951.log"])
def test_graphs_disabled_in_a_pasted_command_is_no_cuda_graph(rel):
    fs = run_rules(scan([REAL / rel], use_cache=False), strict=True)
    f = next(f for f in fs if f.code == "NO_CUDA_GRAPH")
    assert f.severity == "warning" and f.evidence["sample"]["explicit"] is True
    assert f.evidence["flags"]["disable_cuda_graph"] == "True"


def test_launch_facts_from_known_flags_only():
    engine, facts = parse_command(
        "vllm serve Qwen/Qwen3-8B --speculative-config '{\"method\": \"eagle3\", \"num_speculative_tokens\": 3}' "
        "--enforce-eager --compilation-config '{\"cudagraph_mode\": \"NONE\"}' --some-new-flag 7")
    assert engine == "vllm"
    assert dict(facts) == {"target_model": "Qwen/Qwen3-8B", "method": "eagle3", "num_speculative_tokens": "3",
                           "enforce_eager": "True", "cudagraph_mode": "NONE"}
    assert parse_command("python -m sglang.launch_server --model-path M --speculative-num-steps")[1] == [
        ("model_path", "M")]  # a flag cut before its value gives nothing
    assert parse_command("echo hello --speculative")[0] is None
    assert parse_command("I also tried --enforce-eager but it did not help")[0] is None  # prose
    assert parse_command("    --enforce-eager \\")[1] == [("enforce_eager", "True")]  # a continuation line


def test_kubernetes_args_list_and_docker_run():
    texts = ["        args:", "        - --model", "        - Qwen/Qwen3-8B", "        - --speculative-config",
             "        - '{\"method\": \"eagle3\", \"model\": \"d\", \"num_speculative_tokens\": 3}'",
             "        - --enforce-eager"]
    fixed, rep = normalise(texts)
    engine, facts = parse_command(fixed[1])
    assert engine == "vllm" and dict(facts) == {"target_model": "Qwen/Qwen3-8B", "method": "eagle3",
                                                "draft_model": "d", "num_speculative_tokens": "3",
                                                "enforce_eager": "True"}
    assert fixed[2:] == [""] * 4 and rep.notes[2]
    bullets = ["- --disable-cuda-graph made it slower", "- --enforce-eager too"]
    assert normalise(bullets)[0] == bullets  # prose bullets are not an args list
    engine, facts = parse_command("docker run -m 8g ghcr.io/ggml-org/llama.cpp:server -m /m/t.gguf -md /m/d.gguf "
                                  "--draft-max 8")
    assert engine == "llama.cpp" and dict(facts) == {"target_model": "/m/t.gguf", "draft_model": "/m/d.gguf",
                                                     "draft_max": "8"}


def test_v0_ngram_flags():
    engine, facts = parse_command(textwrap.dedent("""\
        CUDA_VISIBLE_DEVICES=3 python -m vllm.entrypoints.openai.api_server --host 0.0.0.0 --port 9002 --model \
        Qwen2-7B-Instruct -tp 1 --speculative_model [ngram] --num_speculative_tokens 5"""))
    assert engine == "vllm" and ("method", "ngram") in facts and ("num_speculative_tokens", "5") in facts


# --- never raises, never moves a line ------------------------------------------------------------------

_PIECES = [VLLM_LINE, SGLANG_LINE, "accept len: 1.00, accept rate: 0.00", "```", "> ", "  12 | ", "vllm-1  | ",
           "2026-01-01T00:00:00Z stdout P ", "\x1b[32m", "[0m", "vllm serve m --speculative-config '{", "\\",
           "--disable-cuda-graph", "Per-position acceptance rate: 0.5, 0.2", " |", "**", "-", ","]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=30)), max_size=6)
                .map("".join), max_size=12))
def test_normalise_and_launch_never_raise(texts):
    fixed, rep = normalise(texts)
    assert len(fixed) == len(texts)
    assert all(1 <= ln <= len(texts) for ln in rep.notes)
    for t in fixed:
        engine, facts = parse_command(t)
        assert engine is not None or not facts


# --- a join never swallows or breaks a complete record: one junk line costs at most itself ---------------

ROOT = Path(__file__).resolve().parents[1]
#: https://github.com/vllm-project/vllm/issues/9539 (verbatim)
V0_LINE = ("INFO 10-16 19:05:47 metrics.py:367] Speculative metrics: Draft acceptance rate: 0.642, System efficiency: "
           "0.598, Number of speculative tokens: 3, Number of accepted tokens: 8547, Number of draft tokens: 13311, "
           "Number of emitted tokens: 10616.")
#: falsifying cases of tests/test_ingest_junk_lines.py: (file, index the junk line is inserted at, junk)
JUNK_AFTER_RECORD = [
    ("sample_logs/engines/vllm/v0_medusa_typical.log", 5, "0"),  # was glued on: 'emitted tokens: 98.0'
    ("tests/fixtures/sglang/jax_cache_miss.log", 2, "[2"),  # was glued on: '#cache_miss: 0[2'
    ("sample_logs/engines/llamacpp/healthy_server.log", 1, "draft acceptance"),  # a marker line glued under
    ("tests/fixtures/llamacpp/server_rate_2024_two_headers.log", 9, "draft acceptance: "),  # took 'total time ='
    ("tests/fixtures/llamacpp/server_rate_2025.log", 6, "draft acceptance,"),  # took '      total time ='
]


def _v0_counts(w) -> tuple:
    row = w.filter(w["window"] == "cumulative").row(0, named=True)
    return row["num_drafts"], row["draft_tokens"], row["emitted_tokens"], row["k"]


@pytest.mark.parametrize("name, at, junk", JUNK_AFTER_RECORD)
def test_junk_after_a_record_is_not_joined_to_it(tmp_path, name, at, junk):
    lines = (ROOT / name).read_text().split("\n")
    damaged = [*lines[:at], junk, *lines[at:]]
    fixed, rep = normalise(damaged)
    assert fixed[at - 1:at + 1] == damaged[at - 1:at + 1] and not rep.notes.get(at), rep.notes
    _, clean = _windows(tmp_path, "\n".join(lines), Path(name).name)
    res, got = _windows(tmp_path, "\n".join(damaged), "damaged-" + Path(name).name)
    shifted = clean.with_columns((clean["line"] + (clean["line"] > at)).alias("line"))
    assert got.drop("source").sort("line", "window").equals(shifted.drop("source").sort("line", "window"))
    if junk.startswith("draft acceptance"):  # a record marker alone: reported at its own line
        assert at + 1 in res.malformed["line"].to_list()


def test_a_complete_record_does_not_swallow_the_next_line(tmp_path):
    res, w = _windows(tmp_path, V0_LINE + "\n0\n")
    assert _v0_counts(w) == (13311 // 3, 13311, 10616, 3) and res.malformed.height == 0


def test_a_wrapped_record_is_joined_but_not_the_junk_after_it(tmp_path):
    """The run of pieces that reads best is joined: all of the record's pieces, not the junk line."""
    text = _wrap(V0_LINE) + "0\n"
    fixed, rep = normalise(text.splitlines())
    assert fixed[0] == V0_LINE and fixed[-1] == "0", fixed
    res, w = _windows(tmp_path, text)
    assert _v0_counts(w) == (13311 // 3, 13311, 10616, 3) and res.malformed.height == 0
