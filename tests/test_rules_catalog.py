"""The catalog's contract: one rule per file under rules/<family>/, all of them in the registry, each
with a doc page and fixtures; the codes of docs/architecture.md §5; one threshold object loadable from
TOML, ranked findings, select/ignore, locations capped, info notes instead of guesses, no torch on the
analysis side, and rules blind to the trace's fault label."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "rules"))

from synth import Spec, make_trace, write_trace  # noqa: E402

from specdec_diag.analysis.rules import FAMILIES, RULES, Finding, Thresholds, run_rules  # noqa: E402
from specdec_diag.analysis.rules.base import Context, locations, ranked  # noqa: E402
from specdec_diag.ingest import scan  # noqa: E402
from specdec_diag.ingest.base import IngestResult  # noqa: E402
from specdec_diag.schema import MALFORMED_SCHEMA  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

RULES_DIR = ROOT / "specdec_diag" / "analysis" / "rules"
RULE_SOURCES = "".join(p.read_text(encoding="utf-8") for p in sorted(RULES_DIR.rglob("*.py")))


def rule_files() -> dict[str, Path]:
    """The rule modules on disk, by the code their name spells: rules/<family>/<code>.py."""
    return {p.stem.upper(): p for fam in FAMILIES for p in (RULES_DIR / fam).glob("*.py")
            if not p.name.startswith("_")}


def test_registry_is_the_rule_files_on_disk():
    files = rule_files()
    assert set(RULES) == set(files), set(RULES) ^ set(files)
    for code, rule in RULES.items():
        path = files[code]
        assert type(rule).__module__ == f"specdec_diag.analysis.rules.{path.parent.name}.{path.stem}", code
        assert rule.family == path.parent.name, code
    assert {p.name for p in RULES_DIR.iterdir() if p.is_dir() and not p.name.startswith("__")} == set(FAMILIES)


def contract_codes(text: str) -> set[str]:
    """The codes in the first column of the tables of section 5 (finding codes) of an architecture doc."""
    start = re.search(r"^#+ *(?:§ *)?5[.\s)]", text, flags=re.M)
    assert start, "no section 5 (finding codes)"
    end = re.search(r"^#{1,2} ", text[start.end():], flags=re.M)
    sec = text[start.start(): start.end() + end.start() if end else len(text)]
    return set(re.findall(r"^\|\s*\[?`?([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`?", sec, flags=re.M))


def test_codes_match_the_architecture_contract():
    """docs/architecture.md §5 lists the report's finding codes: the registry is exactly that list."""
    arch = ROOT / "docs" / "architecture.md"
    if not arch.exists():
        pytest.skip("docs/architecture.md not in this checkout")
    table = contract_codes(arch.read_text(encoding="utf-8"))
    assert table == set(RULES), table ^ set(RULES)


@pytest.mark.parametrize("code", sorted(RULES))
def test_rule_has_doc_page_sections_and_known_thresholds(code):
    rule = RULES[code]
    assert rule.code == code and rule.severity in ("error", "warning", "info")
    for section in ("**What it detects.**", "**Why it matters.**", "**Evidence.**", "**Example.**", "**Fix.**"):
        assert section in rule.doc, f"{code} doc lacks {section}"
    assert rule.problems or rule.theory, code
    assert all(isinstance(n, int) and 1 <= n <= 99 for n in rule.problems), code
    known = set(Thresholds.__dataclass_fields__)
    assert set(rule.thresholds) <= known
    assert set(rule.explained_by) <= set(RULES)
    assert (ROOT / "docs" / "rules" / f"{code}.md").exists()


def test_docs_are_generated_from_the_rules():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_rule_docs.py"), "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr


def test_every_threshold_is_documented_and_used():
    from specdec_diag.analysis.rules import threshold_docs

    docs = threshold_docs()
    names = set(Thresholds.__dataclass_fields__)
    assert set(docs) == names
    used = set().union(*(r.thresholds for r in RULES.values()))
    for n in names:
        assert n in used or f"th.{n}" in RULE_SOURCES or f"thresholds.{n}" in RULE_SOURCES, f"threshold {n} unused"


def test_thresholds_from_toml(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text("[thresholds]\nlarge_batch = 64\nlow_alpha = 0.5\n")
    th = Thresholds.from_toml(p)
    assert th.large_batch == 64 and th.low_alpha == 0.5 and th.min_draft_tokens == Thresholds().min_draft_tokens
    p.write_text("[thresholds]\nlarge_btach = 64\n")
    with pytest.raises(ValueError, match=r"t\.toml: unknown threshold 'large_btach'"):
        Thresholds.from_toml(p)
    p.write_text("[thresholds]\nlarge_batch = 'many'\n")
    with pytest.raises(ValueError, match="must be an integer"):
        Thresholds.from_toml(p)
    p.write_text("[thresholds\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        Thresholds.from_toml(p)
    p.write_text("title = 'no table'\n")
    assert Thresholds.from_toml(p) == Thresholds()


def test_a_threshold_changes_the_verdict(tmp_path):
    path = write_trace(Spec(slow_draft=12, seed=13), tmp_path / "slow.jsonl")
    res = scan([path], use_cache=False)
    assert "DRAFT_TOO_EXPENSIVE" in {f.code for f in run_rules(res)}
    lax = Thresholds().with_overrides({"min_speedup": 0.01, "draft_share": 1.01})
    assert "DRAFT_TOO_EXPENSIVE" not in {f.code for f in run_rules(res, lax)}


def test_select_ignore_and_unknown_codes(tmp_path):
    path = write_trace(Spec(accept_all=True, seed=5), tmp_path / "a.jsonl")
    res = scan([path], use_cache=False)
    assert {f.code for f in run_rules(res, select=["kv_rollback"])} == set()
    assert {f.code for f in run_rules(res, select=["SUSPICIOUS_ACCEPTANCE"])} == {"SUSPICIOUS_ACCEPTANCE"}
    assert "SUSPICIOUS_ACCEPTANCE" not in {f.code for f in run_rules(res, ignore=["SUSPICIOUS_ACCEPTANCE"])}
    with pytest.raises(ValueError, match="NOT_A_CODE"):
        run_rules(res, select=["NOT_A_CODE"])


def test_ranking_errors_first_then_impact():
    fs = [Finding("B", "info", "", {}, "", score=9), Finding("A", "warning", "", {}, "", score=0.1),
          Finding("C", "error", "", {}, "", score=0.2), Finding("D", "warning", "", {}, "", score=0.5),
          Finding("E", "error", "", {}, "", score=0.9)]
    assert [f.code for f in ranked(fs)] == ["E", "C", "D", "A", "B"]


def test_locations_capped_and_counted():
    rows = pl.DataFrame({"source": ["f.log"] * 30, "line": list(range(1, 31))})
    locs, more = locations(rows, 20)
    assert len(locs) == 20 and more == 10 and locs[0] == {"path": "f.log", "line": 1}
    ctx = Context(IngestResult.empty())
    f = RULES["MALFORMED_INPUT"].finding(ctx, "t", {}, "r", rows)
    assert f.evidence["more_locations"] == 10 and len(f.locations) == 20


def test_malformed_input_error_share_and_unreadable():
    res = IngestResult.empty()
    res.malformed = pl.DataFrame({"source": ["x.log"] * 3, "line": [4, 5, 9], "reason": ["bad"] * 3,
                                  "text": ["SpecDecoding metrics: ..."] * 3}, schema=MALFORMED_SCHEMA)
    res.inputs = pl.DataFrame({"path": ["x.log", "gone.log"], "format": [None, None], "engine": [None, None],
                               "lines": [10, 0], "records": [1, 0], "malformed": [3, 0],
                               "fingerprint": ["a", "b"], "error": [None, "no such file"]})
    fs = run_rules(res, select=["MALFORMED_INPUT"])
    by = {f.locations[0]["path"]: f for f in fs}
    assert by["x.log"].severity == "error" and by["x.log"].evidence["malformed"] == 3
    assert [loc["line"] for loc in by["x.log"].locations] == [4, 5, 9]
    assert by["gone.log"].severity == "error" and "no such file" in by["gone.log"].title


def test_too_few_drafts_is_an_info_note_not_a_verdict(tmp_path):
    path = write_trace(Spec(steps=30, requests=1, noise=40.0, seed=27), tmp_path / "short.jsonl")
    fs = run_rules(scan([path], use_cache=False))
    assert all(f.severity == "info" for f in fs), [(f.code, f.severity) for f in fs]
    notes = {f.code: f for f in fs}
    assert "not enough data" in notes["DRAFTER_BROKEN"].title
    assert notes["BENCHMARK_ARTIFACT"].evidence["draft_tokens"] == 120


def test_symptoms_of_a_correctness_error_are_demoted(tmp_path):
    path = write_trace(Spec(nan_after=5, seed=12), tmp_path / "nan.jsonl")
    fs = run_rules(scan([path], use_cache=False))
    assert fs[0].code == "PINNED_ACCEPTANCE_LENGTH" and fs[0].severity == "error"
    demoted = [f for f in fs if f.evidence.get("explained_by")]
    assert demoted and all(f.severity == "info" for f in demoted)
    assert {f.code for f in demoted} >= {"DRAFTER_BROKEN"}


def test_findings_serialise_to_report_json(tmp_path):
    path = write_trace(Spec(no_rollback=True, seed=7), tmp_path / "n.jsonl")
    for f in run_rules(scan([path], use_cache=False)):
        d = json.loads(json.dumps(f.to_dict(), allow_nan=False))
        assert set(d) == {"code", "severity", "title", "evidence", "recommendation", "locations", "score"}


def test_rules_ignore_the_fault_label(tmp_path):
    """The header's ``fault`` is the sample traces' answer key: findings must not change with it."""
    recs = make_trace(Spec(drop_bonus=True, noise=0.3, seed=10))
    out = {}
    for label in (None, "drop-bonus", "accept-all"):
        recs[0]["fault"] = label
        p = tmp_path / f"{label}.jsonl"
        p.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
        out[label] = sorted((f.code, f.severity, f.score) for f in run_rules(scan([p], use_cache=False)))
    assert out[None] == out["drop-bonus"] == out["accept-all"]
    assert '"fault"' not in RULE_SOURCES and "'fault'" not in RULE_SOURCES


def test_analysis_side_never_imports_torch():
    code = ("import sys; from specdec_diag.ingest import scan; from specdec_diag.analysis.rules import run_rules; "
            "run_rules(scan(['tests/fixtures/rules/logs/vllm_healthy.log'], use_cache=False)); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr


def test_log_fixtures_match_their_generator():
    import make_logs

    for name, text in make_logs.build().items():
        assert (make_logs.HERE / name).read_text(encoding="utf-8") == text, f"rerun make_logs.py ({name})"
