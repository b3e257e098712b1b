"""The real-excerpt corpus (tests/fixtures/real/) is well-formed: every excerpt has a sidecar with a
public source address, its codes are finding codes of the catalog, and there are enough excerpts
across the engines. Not the precision or recall of the rules on it: that is measured by
``tests/fixtures/real/evaluate_real.py`` and is a target, not yet a guarantee."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from specdec_diag.analysis.rules import RULES

REAL = Path(__file__).parent / "fixtures" / "real"
LOGS = sorted(REAL.glob("*/*.log"))
SIDECAR_KEYS = {"source", "retrieved_via", "engine", "engine_version", "what", "expected", "not_expected",
                "expected_pending", "resolution", "numbers", "notes"}
REQUIRED = {"source", "retrieved_via", "engine", "what", "expected", "not_expected", "resolution"}
ENGINE_DIRS = {"vllm", "sglang", "llamacpp", "trtllm", "tgi", "bench"}


def _side(log: Path) -> dict:
    return json.loads(log.with_suffix(".json").read_text(encoding="utf-8"))


def test_corpus_size_and_engines():
    assert len(LOGS) >= 40, f"only {len(LOGS)} excerpts"
    dirs = {p.parent.name for p in LOGS}
    assert dirs <= ENGINE_DIRS, dirs - ENGINE_DIRS
    for engine in ("vllm", "sglang", "llamacpp", "trtllm", "tgi"):
        assert engine in dirs, f"no excerpt for {engine}"
    assert len({p.stem for p in LOGS}) == len(LOGS), "slugs must be unique across engines"


def test_no_orphan_files():
    sidecars = sorted(REAL.glob("*/*.json"))
    assert {p.with_suffix(".log") for p in sidecars} == set(LOGS)
    assert all(p.suffix in (".log", ".json") for p in REAL.glob("*/*")), "only <slug>.log / <slug>.json in engine folders"


@pytest.mark.parametrize("log", LOGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_sidecar(log: Path):
    side = _side(log)
    assert REQUIRED <= set(side), REQUIRED - set(side)
    assert set(side) <= SIDECAR_KEYS, set(side) - SIDECAR_KEYS
    assert re.match(r"^https://[^\s/]+\.[^\s/]+/\S+$", side["source"]), side["source"]
    assert side["retrieved_via"].startswith("search tool"), side["retrieved_via"]
    for key in ("expected", "not_expected"):
        codes = side[key]
        assert isinstance(codes, list) and all(isinstance(c, str) for c in codes)
        assert set(codes) <= set(RULES), f"{key}: unknown codes {set(codes) - set(RULES)}"
        assert len(set(codes)) == len(codes)
    assert not set(side["expected"]) & set(side["not_expected"]), "a code cannot be both expected and ruled out"
    info_only = {c for c in side["expected"] if RULES[c].severity == "info"}
    assert not info_only, f"info codes are never scored, do not expect them: {info_only}"
    assert all(c not in RULES for c in side.get("expected_pending", [])), "pending codes are ones the catalog lacks"
    assert side["what"].strip() and side["resolution"].strip()
    numbers = side.get("numbers", {})
    assert isinstance(numbers, dict)
    sys.path.insert(0, str(REAL))
    from evaluate_real import NUMBER_KEYS

    assert set(numbers) <= set(NUMBER_KEYS), set(numbers) - set(NUMBER_KEYS)


@pytest.mark.parametrize("log", LOGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_excerpt_text(log: Path):
    raw = log.read_bytes()
    text = raw.decode("utf-8")  # must be valid UTF-8
    assert text.strip(), "empty excerpt"
    assert text.endswith("\n") and not text.endswith("\n\n\n"), "one trailing newline"
    numbers = _side(log).get("numbers", {})
    # every stated integer count appears literally in the excerpt (with or without thousands separators)
    flat = text.replace(",", "")
    for key in ("draft_tokens", "accepted_tokens", "emitted_tokens", "num_drafts", "waiting_reqs"):
        values = numbers.get(key)
        for v in (values if isinstance(values, list) else [values] if values is not None else []):
            assert str(v) in flat, f"{key}={v} not in the excerpt"
