"""SGLang decode/prefill lines: every documented variant, with numbers checked by hand against the
definitions in docs/log-formats.md §3 (accept len = 1 + accepted/verify step; accept rate A = al/N,
B = (al-1)/(N-1), jax = al/num_steps)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from _helpers import load_script, marker_lines

from specdec_diag.ingest import sglang
from specdec_diag.ingest._textparse import lines_from_texts
from specdec_diag.ingest.definitions import fit_accept_rate_definition
from specdec_diag.schema import CONFIG_SCHEMA, MALFORMED_SCHEMA, WINDOW_SCHEMA

FIX = Path(__file__).parent / "fixtures" / "sglang"


def lines_of(path: Path, markers: tuple[str, ...] = sglang.MARKERS) -> pl.DataFrame:
    return marker_lines(path, markers)


def parse(name: str):
    p = sglang.parse(lines_of(FIX / name), str(FIX / name))
    assert dict(p.windows.schema) == WINDOW_SCHEMA
    return p


def decode_rows(p) -> list[dict]:
    return p.windows.filter(pl.col("format").str.starts_with("sglang-decode")).to_dicts()


def test_early_accept_len_uses_configured_steps():
    p = parse("early_accept_len.log")
    rows = decode_rows(p)
    assert [r["line"] for r in rows] == [5, 6, 7]
    # k = speculative_num_steps = 5 from server_args; AR = (al - 1) / 5
    assert rows[0]["k"] == 5 and rows[0]["acceptance_rate"] == pytest.approx(1.8 / 5)
    assert rows[1]["acceptance_rate"] == pytest.approx(2.4 / 5)
    assert rows[0]["mean_acceptance_length"] == 2.80
    assert rows[1]["waiting_reqs"] == 3 and rows[1]["running_reqs"] == 2 and rows[1]["kv_usage"] == 0.02
    assert rows[0]["gen_tps"] == pytest.approx(118.52)
    assert rows[0]["context_len"] == 452 and rows[1]["context_len"] == 450  # #token / #running-req
    # a non-speculative decode line is kept (throughput, batch) but carries no acceptance
    assert rows[2]["format"] == "sglang-decode" and rows[2]["mean_acceptance_length"] is None
    assert rows[2]["acceptance_rate"] is None
    assert all(r["time"].year == 2025 and r["engine_id"] == "TP0" for r in rows)
    prefill = p.windows.filter(pl.col("format") == "sglang-prefill")
    assert prefill["line"].to_list() == [4] and prefill["kv_usage"][0] == 0.01
    cfg = dict(zip(p.configs["key"], p.configs["value"], strict=True))
    assert cfg["speculative_algorithm"] == "EAGLE" and cfg["speculative_num_steps"] == "5"
    assert cfg["speculative_num_draft_tokens"] == "6" and cfg["cuda_graph_max_bs"] == "8"
    assert p.malformed.height == 0


def test_accept_rate_including_bonus_is_detected_and_converted():
    """Version A: rate = accept_len / N; with N = 4 the floor is 0.25 at accept len 1.00."""
    rows = decode_rows(parse("ar_bonus_2025.log"))
    assert {r["format"] for r in rows} == {"sglang-decode-ar-bonus"}
    assert [r["k"] for r in rows] == [3, 3, 3, 3]  # N = 4 inferred from the numbers alone
    assert [r["acceptance_rate"] for r in rows] == pytest.approx([1.5 / 3, 0.0, 2.2 / 3, 1.0 / 3])
    assert [r["mean_acceptance_length"] for r in rows] == [2.5, 1.0, 3.2, 2.0]
    assert rows[1]["acceptance_rate"] == 0.0  # the engine printed 0.25 here
    assert [r["cuda_graph"] for r in rows] == [True, True, True, False]
    assert rows[3]["waiting_reqs"] == 12 and rows[3]["running_reqs"] == 40
    assert "includes the bonus" in rows[0]["definition_note"]


def test_accept_rate_excluding_bonus_2026_hybrid_pools_and_ranks():
    rows = decode_rows(parse("ar_nobonus_2026_hybrid.log"))
    assert [r["line"] for r in rows] == [1, 2, 3, 4]  # incl. "Decode batch [120]," with an iteration tag
    assert {r["format"] for r in rows} == {"sglang-decode-ar"}
    assert [r["acceptance_rate"] for r in rows] == pytest.approx([0.6, 0.3, 0.0, 0.7])
    assert [r["engine_id"] for r in rows] == ["DP0 TP0", "DP0 TP0", "DP1 TP1", "DP1 TP1"]
    # hybrid pools: the full-attention pool's usage is the KV usage
    assert [r["kv_usage"] for r in rows] == [0.12, 0.13, 0.05, 0.05]
    assert rows[0]["context_len"] == 5000 // 8
    assert rows[2]["cuda_graph"] is False and "npu graph" in rows[2]["definition_note"]
    assert "already excludes the bonus" in rows[0]["definition_note"]


def test_pd_decode_fields_and_fork_prefix():
    p = parse("pd_decode_fork.log")
    rows = decode_rows(p)
    assert [r["engine_id"] for r in rows] == ["pid=151972", "pid=151972"]
    assert [r["acceptance_rate"] for r in rows] == pytest.approx([0.98 / 3, 1.26 / 3])
    assert [r["cuda_graph"] for r in rows] == [False, True]
    assert rows[0]["time"].hour == 20 and rows[0]["time"].second == 53
    keys = dict(zip(p.configs["key"], p.configs["value"], strict=True))
    assert keys["pd_decode_mode"] == "true" and keys["disaggregation_mode"] == "decode"


def test_sglang_jax_rate_divided_by_steps():
    p = parse("jax_cache_miss.log")
    rows = decode_rows(p)
    assert {r["format"] for r in rows} == {"sglang-decode-ar-jax"}
    assert [r["k"] for r in rows] == [3, 3]
    assert [r["acceptance_rate"] for r in rows] == pytest.approx([0.5, 0.2])
    keys = dict(zip(p.configs["key"], p.configs["value"], strict=True))
    assert keys["speculative_num_steps"] == "3" and keys["tp_size"] == "4"


def test_malformed_lines_are_reported_with_line_numbers():
    p = parse("malformed.log")
    assert dict(p.malformed.schema) == MALFORMED_SCHEMA
    bad = dict(zip(p.malformed["line"], p.malformed["reason"], strict=True))
    assert set(bad) == {2, 3, 6}  # cut line, "0.x1" usage, "cuda graph: Maybe"
    assert "truncated" in bad[2] and "token usage" in bad[3] and "graph" in bad[6]
    rows = decode_rows(p)
    # line 5 is a warning that merely mentions "Decode batch"; line 4 printed "accept len: nan"
    assert [r["line"] for r in rows] == [1, 4]
    assert rows[1]["mean_acceptance_length"] is None and "nan" in rows[1]["definition_note"]
    assert rows[1]["format"] == "sglang-decode-ar-bonus"


def test_definition_fit_needs_numbers_not_guesses():
    # with only accept len 1.00 / rate 0.00 any N fits version B: k must stay unknown
    df = pl.DataFrame({"al": [1.0, 1.0], "ar": [0.0, 0.0]})
    assert fit_accept_rate_definition(df, None, False) == ("B", None)
    # numbers that fit neither definition
    df = pl.DataFrame({"al": [2.0, 3.0], "ar": [0.9, 0.1]})
    assert fit_accept_rate_definition(df, None, False) == ("unknown", None)
    # version A with N = 6 (floor 1/6)
    df = pl.DataFrame({"al": [1.0, 3.0, 4.2], "ar": [0.17, 0.5, 0.7]})
    assert fit_accept_rate_definition(df, None, False) == ("A", 6)


def test_detect():
    assert sglang.detect((FIX / "ar_bonus_2025.log").read_text())
    assert not sglang.detect(
        "INFO 06-06 14:20:34 [loggers.py:116] Engine 000: Avg prompt throughput: 0.0 tokens/s"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Decode batch",
        "Decode batch. ",
        "Decode batch. #running-req: 99999999999999999999999, ",
        "[2025-13-45 99:99:99 TP0] Decode batch. #running-req: 1, #token: 5, token usage: 0.1, "
        "accept len: 2.0, "
        "accept rate: 9.99, cuda graph: True, gen throughput (token/s): 1, #queue-req: 0, ",
        "Prefill batch. #new-seq: x",
        "server_args=ServerArgs(" + "a=(" * 1000,
        "\x00\xff Decode batch. \ud7ff",
        "Decode batch. #running-req: 1, " + "x" * 1_000_000,
        "python -m sglang.launch_server --speculative-num-steps --speculative-eagle-topk",
    ],
)
def test_never_raises(text):
    p = sglang.parse(pl.DataFrame({"line": [1, 2], "text": [text, text]}), "junk.log")
    assert dict(p.windows.schema) == WINDOW_SCHEMA and dict(p.configs.schema) == CONFIG_SCHEMA
    assert (
        p.malformed["text"].str.len_chars().max() is None or p.malformed["text"].str.len_chars().max() <= 300
    )


def test_scan_end_to_end(tmp_path):
    """Through the real scan (marker filter, family registry): same rows as a direct parse."""
    from specdec_diag.ingest import scan

    res = scan(FIX / "ar_bonus_2025.log", use_cache=False)
    dec = res.windows.filter(pl.col("engine") == "sglang").filter(
        pl.col("format").str.starts_with("sglang-decode")
    )
    assert dec["acceptance_rate"].to_list() == pytest.approx([0.5, 0.0, 2.2 / 3, 1 / 3])


SAMPLES = Path(__file__).parents[1] / "sample_logs" / "engines"


def test_sample_generator_is_deterministic(tmp_path):
    """The committed samples are exactly what scripts/make_engine_samples_other.py writes."""
    mod = load_script("make_engine_samples_other")
    assert mod.main(["x", str(tmp_path)]) == 0
    for family in ("sglang", "llamacpp", "prometheus", "trtllm"):
        made = sorted(p.name for p in (tmp_path / family).iterdir())
        assert made == sorted(
            p.name for p in (SAMPLES / family).iterdir() if p.is_file() and not p.name.startswith(".")
        )
        for name in made:
            assert (tmp_path / family / name).read_bytes() == (SAMPLES / family / name).read_bytes(), name


def test_samples_parse_cleanly():
    files = sorted((SAMPLES / "sglang").glob("*.log"))
    assert len(files) >= 5
    by = {}
    for f in files:
        p = sglang.parse(lines_of(f), str(f))
        assert p.malformed.height == 0, f
        dec = p.windows.filter(pl.col("format").str.starts_with("sglang-decode"))
        by[f.stem] = dec
    assert by["unhealthy_drafter_broken"]["mean_acceptance_length"].unique().to_list() == [1.0]
    assert by["unhealthy_drafter_broken"]["acceptance_rate"].max() == 0.0
    assert not by["unhealthy_no_cuda_graph"]["cuda_graph"].tail(10).any()
    assert by["healthy_eagle3"]["cuda_graph"].all()
    col = by["unhealthy_collapse"]["acceptance_rate"]
    assert col.head(30).mean() > 0.55 and col.tail(30).mean() < 0.15


def test_fuzzed_lines_never_raise():
    """Lines assembled from real fragments in random order, cut anywhere."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    frags = st.sampled_from(
        [
            "[2025-10-21 09:00:03 TP0] ",
            "[2026-03-02 14:20:00 DP0 TP0] ",
            "Decode batch. ",
            "Decode batch, ",
            "Prefill batch. ",
            "#running-req: ",
            "#token: ",
            "token usage: ",
            "accept len: ",
            "accept rate: ",
            "cuda graph: ",
            "True",
            "False",
            "gen throughput (token/s): ",
            "#queue-req: ",
            "#cache_miss: ",
            "#full token: ",
            "full token usage: ",
            "nan",
            "-1",
            "0.62",
            "99999999999999999999",
            ", ",
            "1.",
            ".5",
            "server_args=ServerArgs(",
            "speculative_num_steps=",
            "speculative_num_draft_tokens=",
            "'x'",
            ")",
            "sglang --speculative-num-steps ",
            "#transfer-req: ",
            "\x00",
            "é",
        ]
    )
    line = st.lists(frags, max_size=14).map("".join)

    @settings(max_examples=30, deadline=None)
    @given(st.lists(line, min_size=1, max_size=8), st.integers(0, 200))
    def run(texts, cut):
        texts = [t[: len(t) - cut % (len(t) + 1)] if i % 2 else t for i, t in enumerate(texts)]
        p = sglang.parse(lines_from_texts(texts), "fuzz.log")
        assert dict(p.windows.schema) == WINDOW_SCHEMA
        rates = p.windows["acceptance_rate"].drop_nulls()
        assert rates.is_empty() or (rates.min() >= 0 and rates.max() <= 1)

    run()


def test_batch_tag_that_is_not_a_count_is_malformed():
    """Regression (junk-line property): ``Decode batch [nan], ...`` matched neither the record nor the
    cut-marker pattern and was dropped silently; it is a damaged record line."""
    line = (Path(__file__).parent / "fixtures" / "sglang" / "ar_nobonus_2026_hybrid.log").read_text().split("\n")[2]
    for tag in ("nan", "", "-7", "12x3"):
        parsed = sglang.parse(lines_from_texts([line.replace("Decode batch [120]", f"Decode batch [{tag}]")]), "t")
        assert parsed.windows.height == 0
        assert parsed.malformed["reason"].to_list() == ["batch line whose [batch] tag is not a count"], tag
