"""The one cumulative -> interval differencing every cumulative source uses (vLLM V0 lines, Prometheus
snapshots, llama.cpp statistics): successive differences, counter resets, the first snapshot counted
since start, and files chained only when they continue each other. Numbers worked out by hand."""

from __future__ import annotations

import datetime as dt

import polars as pl

from specdec_diag.ingest.counters import differences, recompute_differences
from specdec_diag.schema import conform_windows


def cum(rows):
    base = {"engine": "x", "format": "f", "window": "cumulative", "engine_id": "e"}
    return conform_windows(pl.DataFrame([{**base, **r} for r in rows]))


T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_successive_differences_with_reset_and_rates():
    rows = [
        {"source": "a", "line": 1, "time": T0, "num_drafts": 10, "draft_tokens": 40, "accepted_tokens": 20},
        {"source": "a", "line": 2, "time": T0 + dt.timedelta(seconds=10), "num_drafts": 30, "draft_tokens": 120,
         "accepted_tokens": 80},
        # restart: counters went down, the later totals are the window
        {"source": "a", "line": 3, "time": T0 + dt.timedelta(seconds=20), "num_drafts": 5, "draft_tokens": 20,
         "accepted_tokens": 5},
    ]
    iv = differences(cum(rows)).sort("line")
    assert iv["line"].to_list() == [2, 3]
    assert iv["window"].to_list() == ["interval", "interval"]
    assert iv.select("num_drafts", "draft_tokens", "accepted_tokens").rows() == [(20, 80, 60), (5, 20, 5)]
    assert iv["acceptance_rate"].to_list() == [0.75, 0.25]
    assert iv["mean_acceptance_length"].to_list() == [4.0, 2.0]
    assert iv["accepted_tps"].to_list() == [6.0, None]  # no rate across a restart
    assert "counter reset" in iv["definition_note"][1] and "counter reset" not in iv["definition_note"][0]


def test_since_start_counts_the_first_snapshot_and_notes_are_the_callers():
    rows = [{"source": "a", "line": 1, "num_drafts": 10, "draft_tokens": 40, "accepted_tokens": 20},
            {"source": "a", "line": 2, "num_drafts": 12, "draft_tokens": 48, "accepted_tokens": 22}]
    iv = differences(cum(rows), ("source", "engine_id"), since_start=True, time_rates=False,
                     note=lambda own, first, reset: f"first={first} reset={reset}").sort("line")
    assert iv.select("num_drafts", "draft_tokens", "accepted_tokens").rows() == [(10, 40, 20), (2, 8, 2)]
    assert iv["definition_note"].to_list() == ["first=True reset=False", "first=False reset=False"]
    assert differences(cum(rows[:1])).height == 0  # one snapshot, no window unless since_start


def test_files_chain_only_when_they_continue():
    before = {"source": "before.prom", "line": 1, "num_drafts": 10, "draft_tokens": 40, "accepted_tokens": 20}
    after = {"source": "after.prom", "line": 1, "num_drafts": 30, "draft_tokens": 120, "accepted_tokens": 50}
    iv = differences(cum([after, before]))  # file order does not matter: counters only grow
    assert iv.select("source", "draft_tokens", "accepted_tokens").rows() == [("after.prom", 80, 30)]
    # per file (llama.cpp: each file its own server lifetime): nothing crosses files
    assert differences(cum([after, before]), ("source", "engine_id")).height == 0


def test_recompute_is_idempotent():
    rows = [{"source": "a", "line": i, "num_drafts": 10 * i, "draft_tokens": 40 * i, "accepted_tokens": 20 * i}
            for i in (1, 2, 3)]
    once = recompute_differences(cum(rows), ("f",))
    twice = recompute_differences(once, ("f",))
    assert once.height == 5 and twice.sort("line", "window").equals(once.sort("line", "window"))
