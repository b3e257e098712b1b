"""ACCEPTANCE_COLLAPSE on per-request records: judged in the order requests started, against the
spread between requests. The real 4-slot llama-server capture (sample_logs/engines/llamacpp/real/
parallel_slots_np4, README there: a correct diagnosis raises nothing) prints requests as they finish,
so file order mixes three prompts of different difficulty into a false "collapse"."""

from __future__ import annotations

import re
from pathlib import Path

from specdec_diag.analysis.report import run_findings
from specdec_diag.analysis.rules.acceptance._helpers import change_point
from specdec_diag.analysis.rules.acceptance.acceptance_collapse import started_order
from specdec_diag.analysis.rules.base import timeline
from specdec_diag.ingest import scan

CAPTURE = Path(__file__).resolve().parents[1] / "sample_logs" / "engines" / "llamacpp" / "real" / "parallel_slots_np4"
TIMING = re.compile(r"task (\d+) \| draft acceptance = [0-9.]+ \(\s*(\d+) accepted /\s*(\d+) generated\), mean len =\s*[0-9.]+")


def codes(path: Path) -> set[str]:
    return {f["code"] for f in run_findings(scan([path], use_cache=False)) if f["severity"] != "info"}


def test_finish_order_of_the_real_capture_looks_like_a_collapse():
    """What the rule saw before: in file (finish) order the draft-weighted rate halves after line 58."""
    t = timeline(scan([CAPTURE / "server.log"], use_cache=False).windows)
    cp = change_point(t["acceptance_rate"].to_list(), t["draft_tokens"].cast(float).to_list(), 3)
    assert cp is not None and (cp[1] - cp[2]) / cp[1] > 0.5
    started = started_order(t)
    assert started["request"].to_list() == [f"task {n}" for n in (1, 3, 32, 51, 53, 54, 55, 75)]


def test_the_real_four_slot_capture_has_no_collapse():
    for name in ("server.log", "requests.jsonl", "metrics.prom"):
        assert "ACCEPTANCE_COLLAPSE" not in codes(CAPTURE / name), name


def test_a_collapse_among_requests_as_started_is_still_found(tmp_path):
    """The same real log with the requests started after task 51 collapsing (2-4 % acceptance): found,
    although in file order they interleave with earlier requests (task 55 finishes before task 53)."""
    low = {53: (3, 104), 54: (4, 137), 55: (2, 65), 75: (3, 104)}

    def collapse(m: re.Match) -> str:
        task, acc, gen = int(m[1]), int(m[2]), int(m[3])
        acc, gen = low.get(task, (acc, gen))
        return (f"task {task} | draft acceptance = {acc / gen:.5f} ({acc:>5} accepted / {gen:>5} generated), "
                f"mean len = {1 + acc / max(1, gen // 4):5.2f}")

    text = TIMING.sub(collapse, (CAPTURE / "server.log").read_text())
    assert text.count("accepted /") == 8
    (tmp_path / "server.log").write_text(text)
    found = [f for f in run_findings(scan([tmp_path / "server.log"], use_cache=False))
             if f["code"] == "ACCEPTANCE_COLLAPSE"]
    assert len(found) == 1 and found[0]["severity"] == "warning", found
    ev = found[0]["evidence"]
    # the split falls before task 51, a hard prompt (0.20) that starts the low stretch
    assert ev["unit"] == "requests, as started" and (ev["windows_before"], ev["windows_after"]) == (3, 5)
    assert ev["change_at"]["line"] == 64 and ev["after"] < 0.1 and ev["z"] >= 3
