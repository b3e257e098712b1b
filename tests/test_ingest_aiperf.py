"""AIPerf speculative-decoding output: per-request records, run totals, console table. The excerpts
are AIPerf's documentation verbatim (tests/fixtures/real/bench, sidecars cite it) and its own test
values (tests/fixtures/aiperf/SOURCES.md); expected numbers by hand from AIPerf's metric formulas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specdec_diag.ingest import aiperf, scan
from specdec_diag.ingest._textparse import lines_from_texts

REAL = Path(__file__).parent / "fixtures" / "real" / "bench"
FIX = Path(__file__).parent / "fixtures" / "aiperf"


def test_per_request_record_pretty_printed_in_a_fence():
    res = scan([REAL / "aiperf_per_request_record_docs.log"], use_cache=False)
    assert res.malformed.height == 0
    r = res.windows.row(0, named=True)
    assert (r["engine"], r["format"], r["window"], r["line"]) == ("vllm", "aiperf-request", "request", 5)
    assert (r["k"], r["num_drafts"], r["draft_tokens"], r["accepted_tokens"]) == (5, 128, 640, 281)
    assert r["acceptance_rate"] == pytest.approx(281 / 640)
    assert r["mean_acceptance_length"] == pytest.approx(1 + 281 / 128)  # the docs' 3.18 is illustrative
    # histogram {0: 34, 1: 22, 2: 19, 3: 16, 4: 15, 5: 22} over 128 steps: position i accepted when j > i
    assert r["per_position_acceptance"] == pytest.approx([94 / 128, 72 / 128, 53 / 128, 37 / 128, 22 / 128])


def test_records_as_json_lines(tmp_path):
    text = (REAL / "aiperf_per_request_record_docs.log").read_text().strip().strip("`").removeprefix("json")
    rec = json.loads(text)
    p = tmp_path / "profile_export.jsonl"
    p.write_text(json.dumps(rec) + "\n" + json.dumps({"metadata": {}, "metrics": {}}) + "\n" + json.dumps(rec) + "\n")
    w = scan([p], use_cache=False).windows
    assert w["line"].to_list() == [1, 3] and w["draft_tokens"].to_list() == [640, 640]


def test_console_spec_decode_table():
    res = scan([REAL / "aiperf_spec_decode_console_docs.log"], use_cache=False)
    r = res.windows.row(0, named=True)
    assert (r["format"], r["window"]) == ("aiperf-console", "run")
    assert r["acceptance_rate"] == pytest.approx(0.468)  # Overall Draft Acceptance Rate (%) 46.80
    assert r["mean_acceptance_length"] == 3.20  # Token-Weighted Acceptance Length, wrapped label
    assert r["per_position_acceptance"] == pytest.approx([0.75, 0.57, 0.42, 0.29, 0.17])
    assert r["draft_tokens"] is None and r["k"] is None  # the table gives no counts: none invented


def test_run_totals_of_the_json_export():
    r = scan([FIX / "profile_export_aiperf_spec.json"], use_cache=False).windows.row(0, named=True)
    assert (r["format"], r["num_drafts"], r["draft_tokens"], r["accepted_tokens"]) == ("aiperf-run", 16, 64, 36)
    assert r["acceptance_rate"] == pytest.approx(0.5625)  # AIPerf's own overall rate, 56.25 %
    assert r["mean_acceptance_length"] == pytest.approx(3.25)  # its token-weighted length


def test_bad_records_are_malformed_and_never_raise(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"spec_decode_acceptance": {"num_accepted_draft_tokens": 9, "num_draft_tokens": 5, '
                 '"num_spec_steps": 2}}\n{"spec_decode_acceptance": {"num_draft_tokens": -1}}\n'
                 '{"spec_decode_acceptance": {"num_draft_tok\n')
    parsed = aiperf.parse_file(p, "bad")
    assert parsed.windows.height == 0
    assert parsed.malformed["line"].to_list() == [1, 2, 3]


def test_console_row_without_value_is_malformed():
    p = aiperf.parse(lines_from_texts(["│ Overall Draft Acceptance Rate (%) │  nan │ N/A │"]), "x")
    assert p.windows.height == 0 and "not a finite number" in p.malformed["reason"][0]
