"""DEGENERATE_OUTPUT (issue 12, deliverable 5): logged generated text reaches the rules (ingest source
``generated_text``) and loops in it are found; with pinned acceptance the finding points at the
verifier."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "rules"))

from make_logs import _vllm_window  # noqa: E402

from specdec_diag.analysis.rules import Thresholds, run_rules  # noqa: E402
from specdec_diag.analysis.rules.correctness.degenerate_output import find_loop, longest_loop  # noqa: E402
from specdec_diag.ingest import scan  # noqa: E402
from specdec_diag.ingest.generated_text import parse_line, texts  # noqa: E402

TH = Thresholds()
RESPONSE = ("(APIServer pid=1) INFO 09-15 11:00:{s:02d} [logger.py:71] Generated response chatcmpl-{i}: output: "
            "{out!r}, output_token_ids: [{ids}], finish_reason: length")


@pytest.mark.parametrize("line,text,ids", [
    ("Prompt: 'Hello, my name is', Generated text: ' Joel, my dad\\'s name'", " Joel, my dad's name", None),
    ('Prompt: "It\'s", Generated text: "a \\"quoted\\" word\\n"', 'a "quoted" word\n', None),
    ("INFO [logger.py:71] Generated response cmpl-1: output: 'Hi', output_token_ids: [1, 2], finish_reason: stop",
     "Hi", [1, 2]),
    ("INFO [logger.py:71] Generated response cmpl-1 (streaming complete): output: 'Hi there', finish_reason: stop",
     "Hi there", None),
    ('{"id": 3, "generated_text": "foo \\u00e9 bar"}', "foo é bar", None),
])
def test_parse_line(line, text, ids):
    assert parse_line(line) == (text, ids)


@pytest.mark.parametrize("line", [
    "INFO [logger.py:71] Generated response cmpl-1 (streaming delta): output: 'Hi', finish_reason: None",
    "Generated text: ",  # nothing after the marker
    "the generated_text field is documented here",
])
def test_parse_line_skips(line):
    assert parse_line(line) is None


def test_longest_loop():
    assert longest_loop("abcabcabcx", 4) == (3, 0, 9)
    assert longest_loop([7, 7, 7, 7], 2) == (1, 0, 4)
    assert longest_loop("ab", 4) is None


@pytest.mark.parametrize("text,ids,unit", [
    ("!" * 40, None, "character"),
    ("The answer is" + " the" * 30, None, "word"),
    ("这是" * 30, None, "character"),
    ("ok", [5, 6] + [9] * 20, "token"),
])
def test_find_loop(text, ids, unit):
    loop = find_loop(text, ids, TH)
    assert loop is not None and loop.unit == unit and loop.repeats >= TH.degenerate_repeats


@pytest.mark.parametrize("text", [
    "A perfectly ordinary answer about Paris, the capital of France.",
    "| a | b |\n|---|---|\n| 1 | 2 |\n" + "=" * 60 + "\n" + "-" * 60,
    "Count: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10.",
    "ha ha ha",  # a short laugh is not a loop
])
def test_no_loop_in_ordinary_text(text):
    assert find_loop(text, None, TH) is None


def _log(tmp_path: Path, pp: list[float], outputs: list[tuple[str, list[int]]]) -> Path:
    lines = [ln for t in range(10, 100, 10) for ln in _vllm_window(t, 400, pp)]
    lines += [RESPONSE.format(s=i, i=i, out=o, ids=", ".join(map(str, ids))) for i, (o, ids) in enumerate(outputs)]
    p = tmp_path / "server.log"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_request_logging_reaches_the_rule(tmp_path):
    p = _log(tmp_path, [0.8, 0.6, 0.45, 0.3], [("Fine text here.", [1, 2, 3]), ("x", [42] * 30)])
    t = texts(scan([p], use_cache=False).configs)
    assert t.height == 2 and t["token_ids"][1].to_list() == [42] * 30
    f = next(f for f in run_rules(scan([p], use_cache=False)) if f.code == "DEGENERATE_OUTPUT")
    assert f.severity == "warning" and not f.evidence["verifier_suspect"]
    assert f.evidence["examples"][0]["unit"] == "token" and f.evidence["speculation"]["units"] == 1
    assert f.evidence["sample"] == {"unit": "texts", "size": 1.0, "minimum": 1.0, "explicit": True}


def test_loop_with_pinned_acceptance_points_at_the_verifier(tmp_path):
    p = _log(tmp_path, [1.0, 1.0, 1.0, 1.0], [("!" * 50, [0] * 50)])
    f = next(f for f in run_rules(scan([p], use_cache=False)) if f.code == "DEGENERATE_OUTPUT")
    assert f.severity == "error" and f.evidence["verifier_suspect"]
    assert f.evidence["speculation"]["acceptance_pinned"] and "verifier" in f.title


def test_healthy_text_with_speculation_is_silent(tmp_path):
    p = _log(tmp_path, [0.8, 0.6, 0.45, 0.3], [("A normal reply, nothing odd.", [3, 4, 5, 6])])
    assert "DEGENERATE_OUTPUT" not in {f.code for f in run_rules(scan([p], use_cache=False))}
