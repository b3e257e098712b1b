"""Our own traces as an ingest source: steps table with file/line, one window per request computed
from the steps, header configs without the fault label, and salvage of damaged traces."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from specdec_diag.ingest import scan, trace, vllm
from specdec_diag.ingest.base import STEPS_SCHEMA
from specdec_diag.schema import TRACE_SCHEMA


def header(**over):
    h = {"type": "header", "schema": TRACE_SCHEMA, "mode": "speculative",
         "rule": {"name": "typical", "lossy": True, "params": {"epsilon": 0.1}},
         "gamma_policy": {"name": "constant", "gamma": 3},
         "sampling": {"temperature": 0.7, "top_k": 0, "top_p": 1.0, "do_sample": True},
         "seed": 0, "device": "cpu", "dtype": "float32", "models": {"target": "tiny-t", "draft": "tiny-d"},
         "created": "2026-01-02T03:04:05+00:00", "fault": "bonus_dropped", "fault_params": {"p": 1}}
    h.update(over)
    return h


def step(i, request, ctx, gamma, n, *, ms=(1.0, 2.0, 0.5), forwards=1):
    emitted = list(range(n + 1))
    return {"type": "step", "step": i, "request": request, "context_len": ctx, "gamma_requested": gamma,
            "gamma_drafted": gamma, "draft_token_ids": [5] * gamma, "q": [0.5] * gamma, "p": [0.4] * gamma,
            "accept_flags": [True] * n + [False] * (gamma - n), "n_accepted": n, "emitted_token_ids": emitted,
            "last_token_kind": "bonus" if n == gamma else "correction", "target_forwards": forwards,
            "draft_ms": ms[0], "verify_ms": ms[1], "overhead_ms": ms[2]}


# request 0: n = 3, 1, 0 (gamma 3); request 1: n = 2, 2 (gamma 3), two verify forwards in its 2nd step
STEPS = [step(0, 0, 10, 3, 3), step(1, 0, 14, 3, 1), step(2, 0, 16, 3, 0),
         step(3, 1, 20, 3, 2), step(4, 1, 23, 3, 2, forwards=2)]


def write(path: Path, records, tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def summary():
    return {"type": "summary", "steps": 5, "draft_tokens": 15, "accepted_tokens": 8, "emitted_tokens": 13}


def test_steps_windows_configs(tmp_path):
    p = write(tmp_path / "run.jsonl", [header(), *STEPS, summary()])
    res = scan([p], use_cache=False)
    assert res.steps.schema == pl.Schema(STEPS_SCHEMA)
    assert res.steps["line"].to_list() == [2, 3, 4, 5, 6]
    assert res.steps["n_accepted"].to_list() == [3, 1, 0, 2, 2]
    w = res.windows.sort("request").to_dicts()
    assert [r["window"] for r in w] == ["request", "request"]
    r0, r1 = w
    assert (r0["engine"], r0["format"], r0["line"], r0["k"]) == ("specdec-diag", TRACE_SCHEMA, 2, 3)
    assert (r0["num_drafts"], r0["draft_tokens"], r0["accepted_tokens"], r0["emitted_tokens"]) == (3, 9, 4, 7)
    assert r0["acceptance_rate"] == pytest.approx(4 / 9)
    assert r0["mean_acceptance_length"] == pytest.approx(1 + 4 / 3)
    # position j accepted in: j=0 -> steps with n>0 (2 of 3); j=1 -> n>1 (1); j=2 -> n>2 (1)
    assert r0["per_position_acceptance"] == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    assert 1 + sum(r0["per_position_acceptance"]) == pytest.approx(r0["mean_acceptance_length"])
    assert (r0["draft_ms"], r0["verify_ms"], r0["overhead_ms"]) == (3.0, 6.0, 1.5)
    assert (r0["context_len"], r0["temperature"], r0["target_forwards"]) == (10, 0.7, 3)
    assert (r1["accepted_tokens"], r1["target_forwards"], r1["per_position_acceptance"]) == (4, 3, [1.0, 1.0, 0.0])
    assert r0["time"].isoformat() == "2026-01-02T03:04:05+00:00"
    cfg = dict(res.configs.select("key", "value").iter_rows())
    assert cfg["acceptance_method"] == "typical" and cfg["lossy"] == "true"
    assert cfg["num_speculative_tokens"] == "3" and cfg["gamma_policy"] == "constant"
    assert cfg["sampling.temperature"] == "0.7" and cfg["draft_model"] == "tiny-d"
    assert not any("fault" in k for k in cfg)                  # never exposed as a config...
    assert res.headers[0]["fault"] == "bonus_dropped"           # ...but tests can read the header
    assert res.headers[0]["source"] == str(p)
    assert res.inputs["format"].to_list() == [TRACE_SCHEMA] and res.inputs["lines"].to_list() == [7]
    assert res.malformed.height == 0


def test_truncated_last_line_is_dropped_and_reported(tmp_path):
    p = write(tmp_path / "crashed.jsonl", [header(), *STEPS[:3]], tail='{"type": "step", "step": 3, "requ')
    res = scan([p], use_cache=False)
    assert res.steps.height == 3
    assert res.malformed["line"].to_list() == [5] and "truncated" in res.malformed["reason"][0]


def test_bad_middle_line_is_salvaged(tmp_path):
    bad = dict(STEPS[1], n_accepted=7)  # n > gamma_drafted
    p = write(tmp_path / "bad.jsonl", [header(), STEPS[0], bad, *STEPS[2:], summary()])
    res = scan([p], use_cache=False)
    assert res.steps["line"].to_list() == [2, 4, 5, 6]
    assert res.malformed["line"].to_list() == [3]
    assert "n_accepted" in res.malformed["reason"][0]
    assert res.windows.height == 2


def test_bad_header_gives_malformed_not_abort(tmp_path):
    p = write(tmp_path / "hdr.jsonl", [header(schema=TRACE_SCHEMA, mode=None) | {"rule": None}, *STEPS])
    p.write_text(p.read_text().replace('"mode": null, ', ""))  # drop a required header key
    res = scan([p], use_cache=False)
    assert res.windows.height == 0 and res.steps.height == 0
    assert res.malformed["line"].to_list()[0] == 1


def test_detect_only_our_schema():
    assert trace.detect(json.dumps(header()))
    assert trace.detect(json.dumps(header(schema="specdec-trace@2")))  # ours, another version
    assert not trace.detect('{"type": "header", "schema": "other@1"}')
    assert not vllm.detect(json.dumps(header()))


def test_baseline_trace_without_drafts(tmp_path):
    steps = [dict(step(i, 0, 10 + i, 0, 0), last_token_kind="correction") for i in range(3)]
    p = write(tmp_path / "base.jsonl", [header(mode="baseline", gamma_policy={"name": "constant", "gamma": 0}),
                                        *steps])
    [r] = scan([p], use_cache=False).windows.to_dicts()
    assert (r["num_drafts"], r["emitted_tokens"], r["acceptance_rate"], r["mean_acceptance_length"]) == (
        0, 3, None, None)


def test_gzipped_trace(tmp_path):
    import gzip

    plain = write(tmp_path / "run.jsonl", [header(), *STEPS, summary()])
    gz = tmp_path / "run.jsonl.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = scan([plain], use_cache=False), scan([gz], use_cache=False)
    assert b.steps.height == 5 and b.windows.drop("source").equals(a.windows.drop("source"))


def test_read_trace_keeps_each_steps_line(tmp_path):
    """Blank lines and a dropped truncated last line must not shift the recorded step lines: readers
    (ingest, replay) report a step's line from the Trace instead of re-reading the file."""
    from specdec_diag.schema import read_trace

    p = tmp_path / "gaps.jsonl"
    p.write_text(json.dumps(header()) + "\n\n" + json.dumps(STEPS[0]) + "\n\n\n" + json.dumps(STEPS[1]) + "\n"
                 + json.dumps(STEPS[2]) + "\n" + '{"type": "step", "step": 3, "requ')
    tr = read_trace(p)
    assert tr.step_lines == [3, 6, 7] and len(tr.steps) == 3
    assert [tr.step_line(i) for i in (0, 2, 3, -1)] == [3, 7, None, None]
    assert tr.dropped and tr.dropped[0][0] == 8
    res = scan([p], use_cache=False)
    assert res.steps["line"].to_list() == [3, 6, 7]


def test_another_schema_version_is_named_not_silently_skipped(tmp_path):
    """Issue 15: a trace of another version is detected as ours and answered in one line at line 1."""
    p = write(tmp_path / "v9.jsonl", [header(schema="specdec-trace@9"), *STEPS])
    assert trace.detect(p.read_text())
    res = scan([p], use_cache=False)
    assert res.windows.height == 0 and res.steps.height == 0
    assert res.malformed.select("line", "reason").rows() == [
        (1, "unsupported trace schema 'specdec-trace@9' (this version reads @1)")]
    assert trace.unsupported_schema("specdec-trace@9").endswith("(this version reads @1)")


def test_truncated_middle_line_keeps_every_whole_record(tmp_path):
    """Issue 15: a JSON line cut in the middle of a trace: the steps before and after it are kept."""
    cut = json.dumps(STEPS[2])[:40]
    p = write(tmp_path / "cut.jsonl", [header(), *STEPS[:2]], tail=cut + "\n" + "".join(
        json.dumps(r) + "\n" for r in STEPS[3:]))
    res = scan([p], use_cache=False)
    assert res.steps["line"].to_list() == [2, 3, 5, 6]
    assert res.malformed["line"].to_list() == [4] and "not valid JSON" in res.malformed["reason"][0]


@pytest.mark.parametrize("field,value", [("draft_ms", float("inf")), ("context_len", -3), ("n_accepted", 2**70),
                                         ("draft_token_ids", [5, 2**70, 5])])
def test_a_step_with_unusable_numbers_is_malformed_at_its_line(tmp_path, field, value):
    """NaN/Infinity (which Python's JSON reads), negative or beyond-int64 numbers: that step alone is
    malformed; its request keeps the other steps."""
    p = tmp_path / "bad.jsonl"
    bad = json.dumps(dict(STEPS[1], **{field: value}))
    p.write_text("".join(json.dumps(r) + "\n" for r in [header(), STEPS[0]]) + bad + "\n"
                 + "".join(json.dumps(r) + "\n" for r in STEPS[2:]))
    res = scan([p], use_cache=False)
    assert res.malformed["line"].to_list() == [3] and field in res.malformed["reason"][0]
    assert res.steps["line"].to_list() == [2, 4, 5, 6]
