"""JUnit XML, the format every CI system shows as a test report: one testcase per rule code (so
passing rules show as passed tests) and, for ``check``, one per gate check."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from xml.etree import ElementTree as ET

from specdec_diag.analysis.gate import FAIL_SEVERITIES, Check, GateResult
from specdec_diag.analysis.rules import RULES
from specdec_diag.render.text import evidence_items, fmt_check, loc_str


def rule_codes(findings: Iterable[dict[str, Any]]) -> list[str]:
    """Every registered rule code, plus any finding codes (a report saved by another version)."""
    codes = list(RULES)
    for f in findings:
        if f["code"] not in codes:
            codes.append(f["code"])
    return codes


def check_case(c: Check) -> dict[str, Any]:
    """A gate check as an ``extra_cases`` entry of :func:`render_junit`; its numbers go in the text."""
    text = c.message + "".join(f"\n  {k}: {fmt_check(v)}" for k, v in c.evidence.items())
    name = f"{c.name} [{c.run}]" if getattr(c, "run", None) else c.name
    return {"name": name, "status": c.status, "message": c.message, "text": text}


def render_gate_junit(outcome: GateResult, fail_on: str) -> str:
    """The ``check`` command's JUnit: the gate checks, then the rules failing under ``fail_on``."""
    cases = [check_case(c) for c in outcome.checks if c.name != "findings"]
    return render_junit(outcome.report, cases, suite="specdec-diag check", fail_severities=FAIL_SEVERITIES[fail_on])


def render_junit(report: dict[str, Any], extra_cases: list[dict[str, Any]] | None = None,
                 suite: str = "specdec-diag", fail_severities: tuple[str, ...] = ("error",)) -> str:
    """JUnit XML: one testcase per rule code, a failure for each code with findings of
    ``fail_severities`` (the rest go to system-out). ``extra_cases`` (the gate's checks) are dicts
    with name, status ('pass'|'fail'|'insufficient'), message, text. Numbers go in the failure text
    too, because GitLab ignores properties and failure messages."""
    cases = [_extra_case(ec, suite) for ec in extra_cases or []]
    by_code: dict[str, list[dict[str, Any]]] = {}
    for f in report["findings"]:
        by_code.setdefault(f["code"], []).append(f)
    cases += [_run_case(r, suite, fail_severities) for r in report.get("runs") or []]
    cases += [_rule_case(code, by_code.get(code, []), suite, fail_severities) for code in rule_codes(report["findings"])]
    failures = sum(tc.find("failure") is not None for tc in cases)
    skipped = sum(tc.find("skipped") is not None for tc in cases)
    root = ET.Element("testsuites", name=suite, tests=str(len(cases)), failures=str(failures), errors="0",
                      skipped=str(skipped))
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures), errors="0",
                       skipped=str(skipped), time="0", timestamp=datetime.now().replace(microsecond=0).isoformat())
    ts.extend(cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _extra_case(ec: dict[str, Any], suite: str) -> ET.Element:
    tc = ET.Element("testcase", classname=f"{suite}.check", name=ec["name"], time="0")
    if ec["status"] == "fail":
        el = ET.SubElement(tc, "failure", message=ec["message"], type="gate")
        el.text = ec.get("text") or ec["message"]
    elif ec["status"] == "insufficient":
        ET.SubElement(tc, "skipped", message=ec["message"])
    else:
        ET.SubElement(tc, "system-out").text = ec.get("text") or ec["message"]
    return tc


def _run_case(run: dict[str, Any], suite: str, fail_severities: tuple[str, ...]) -> ET.Element:
    """One testcase per run (report@2): failed when the run has findings of ``fail_severities``."""
    tc = ET.Element("testcase", classname=f"{suite}.runs", name=str(run["id"]), time="0")
    bad = [f for f in run.get("findings") or [] if f["severity"] in fail_severities]
    if bad:
        el = ET.SubElement(tc, "failure", message=f"{run['id']}: {bad[0]['code']}: {bad[0]['title']}", type="run")
        el.text = "\n\n".join(_finding_text(f) for f in bad)
    else:
        s = run.get("summary") or {}
        ET.SubElement(tc, "system-out").text = (f"{run['id']}: status {run.get('status')}, acceptance "
                                                f"{s.get('acceptance_rate')}, MAL {s.get('mean_acceptance_length')}")
    return tc


def _rule_case(code: str, fs: list[dict[str, Any]], suite: str, fail_severities: tuple[str, ...]) -> ET.Element:
    tc = ET.Element("testcase", classname=f"{suite}.rules", name=code, time="0")
    errors = [f for f in fs if f["severity"] in fail_severities]
    if errors:
        el = ET.SubElement(tc, "failure", message=errors[0]["title"], type=code)
        el.text = "\n\n".join(_finding_text(f) for f in errors)
    rest = [f for f in fs if f["severity"] not in fail_severities]
    if rest:
        ET.SubElement(tc, "system-out").text = "\n\n".join(_finding_text(f) for f in rest)
    return tc


def _finding_text(f: dict[str, Any]) -> str:
    run = f" [run {f['run']}]" if f.get("run") else ""
    lines = [f"[{f['severity']}] {f['code']}{run}: {f['title']}"]
    lines += [f"  {k}: {v}" for k, v in evidence_items(f.get("evidence") or {})]
    if f.get("recommendation"):
        lines.append(f"  recommendation: {f['recommendation']}")
    lines += [f"  at {loc_str(x)}" for x in (f.get("locations") or [])[:20]]
    return "\n".join(lines)


__all__ = ["rule_codes", "check_case", "render_gate_junit", "render_junit"]
