"""What the dashboard accepts from disk besides the logs: cached reports, log lines named by a
finding, tokenizers named by a trace header. None of these is trusted: a cached report is validated
before use, and every path, wherever it comes from, must have its real path inside the dashboard's
root (:mod:`specdec_diag.paths`). See docs/security.md.

No Streamlit calls here, so the checks are unit-tested directly.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from pathlib import Path
from typing import Any

from specdec_diag.paths import Refused, confine, real

#: rule codes as the rules name them; anything else is not used to build a docs/rules/ path
CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
SEVERITIES = ("error", "warning", "info")
#: characters of a log line the viewer shows
LINE_CHARS = 400


# ---------------------------------------------------------------------------------------------
# cached reports
# ---------------------------------------------------------------------------------------------


def _finding_problem(f: Any, paths: set[str]) -> str | None:
    if not isinstance(f, dict):
        return "a finding is not an object"
    if not isinstance(f.get("code"), str) or not CODE.fullmatch(f["code"]):
        return "a finding has no valid code"
    if f.get("severity") not in SEVERITIES:
        return f"finding {f['code']}: severity {f.get('severity')!r}"
    if not isinstance(f.get("title"), str):
        return f"finding {f['code']}: title is not text"
    if not isinstance(f.get("recommendation"), (str, type(None))) or not isinstance(f.get("evidence"), (dict, type(None))):
        return f"finding {f['code']}: recommendation or evidence of the wrong type"
    locs = f.get("locations")
    if not isinstance(locs, (list, type(None))):
        return f"finding {f['code']}: locations is not a list"
    for loc in locs or []:
        if not isinstance(loc, dict) or not isinstance(loc.get("path"), str):
            return f"finding {f['code']}: a location without a path"
        if loc["path"] not in paths:
            return f"finding {f['code']}: location {loc['path'][:80]!r} is not one of the loaded files"
        line = loc.get("line")
        if line is not None and (not isinstance(line, int) or isinstance(line, bool) or line < 1):
            return f"finding {f['code']}: location line {line!r}"
    return None


def report_problem(report: Any, inputs: list[dict[str, Any]]) -> str | None:
    """None when a cached dashboard report has the shape the dashboard writes and speaks only of the
    files just scanned (``inputs``: ``analysis.report.inputs_json`` of the scan); else why not."""
    from specdec_diag.schema import POOLED_REPORT_SCHEMA as REPORT_SCHEMA

    if not isinstance(report, dict):
        return "not a JSON object"
    if report.get("schema") != REPORT_SCHEMA:
        return f"schema {str(report.get('schema'))[:40]!r}, expected {REPORT_SCHEMA!r}"
    if report.get("inputs") != json.loads(json.dumps(inputs)):
        return "its inputs are not the files just scanned"
    if not isinstance(report.get("summary"), dict) or not isinstance(report.get("windows"), list):
        return "summary or windows of the wrong type"
    findings = report.get("findings")
    if not isinstance(findings, list):
        return "findings is not a list"
    paths = {str(i.get("path")) for i in inputs}
    why = _runs_problem(report, paths)
    if why:
        return why
    ids = {r["id"] for r in report.get("runs") or []}
    for f in findings:
        why = _finding_problem(f, paths)
        if why:
            return why
        if "run" in f and f["run"] not in ids:
            return f"finding {f['code']}: run {str(f['run'])[:60]!r} is not one of the report's runs"
    return None


def _runs_problem(report: dict[str, Any], paths: set[str]) -> str | None:
    """The run-by-run part (runs, comparisons, fleet): the shapes the pages read, sources among the
    files just scanned, every run's findings valid."""
    from specdec_diag.analysis.report import STATUSES

    runs = report.get("runs")
    if runs is None:
        return None
    if not isinstance(runs, list) or not isinstance(report.get("comparisons"), list) \
            or not isinstance(report.get("fleet"), dict):
        return "runs, comparisons or fleet of the wrong type"
    for r in runs:
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not isinstance(r.get("summary"), dict):
            return "a run without an id or summary"
        if r.get("status") not in STATUSES or not isinstance(r.get("findings"), list):
            return f"run {r['id'][:60]!r}: status or findings of the wrong type"
        if not isinstance(r.get("sources"), list) or not set(map(str, r["sources"])) <= paths:
            return f"run {r['id'][:60]!r}: its sources are not the files just scanned"
        for f in r["findings"]:
            why = _finding_problem(f, paths)
            if why:
                return f"run {r['id'][:60]!r}: {why}"
    return None


def cached_report(target: Path | None, inputs: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str | None]:
    """(the cached report, None) when it exists and passes :func:`report_problem`; (None, a
    one-line note) when it exists but is unreadable or invalid: it is then recomputed, not trusted."""
    if target is None or not target.exists():
        return None, None
    try:
        report = json.loads(target.read_text())
    except (OSError, ValueError) as exc:
        return None, f"cached report {target.name} unreadable ({type(exc).__name__}); recomputed"
    why = report_problem(report, inputs)
    if why is not None:
        return None, f"cached report {target.name} failed validation ({why}); recomputed"
    return report, None


# ---------------------------------------------------------------------------------------------
# log lines
# ---------------------------------------------------------------------------------------------


def log_line(root: Path, path: str, line: Any) -> str:
    """Line ``line`` of the log at ``path`` (gz transparently), read only when the path's real path
    lies inside ``root``; otherwise, or when unreadable, a parenthesised note saying so."""
    from specdec_diag.inputs import InputError, open_text_lines

    try:
        rp = confine(path, root)
    except Refused as exc:
        return f"(refused: {exc})"
    if not isinstance(line, int) or isinstance(line, bool) or line < 1:
        return "(no such line)"
    try:  # the input layer numbers lines as ingest does (gzip, UTF-16, bare-CR files alike)
        text = next(itertools.islice(open_text_lines(rp, long_lines="skip"), line - 1, None), None)
    except (InputError, OSError):
        return "(unreadable)"
    return "(no such line)" if text is None else text[:LINE_CHARS]


# ---------------------------------------------------------------------------------------------
# tokenizers (the tokenizers package only: never transformers / torch)
# ---------------------------------------------------------------------------------------------


@functools.cache
def _bundled_sha() -> dict[str, str]:
    """sha256 of the bundled pair's weights (as trace headers record them) -> its tokenizer file."""
    from specdec_diag.decoder.models import default_pair_dirs, weights_sha256  # no torch at import

    out = {}
    for d in default_pair_dirs():
        sha = weights_sha256(d) if d.is_dir() else None
        if sha and (d / "tokenizer.json").is_file():
            out[sha] = str(d / "tokenizer.json")
    return out


def bundled_tokenizer(header: dict[str, Any]) -> Path | None:
    """The package's own tokenizer.json when the header's target or draft weights are the bundled
    pair's (same sha256): the one tokenizer outside the root the dashboard loads, since it ships with
    the code rather than being named by a file."""
    models = header.get("models") or {}
    if not isinstance(models, dict):
        return None
    for role in ("target", "draft"):
        m = models.get(role)
        sha = m.get("sha256") if isinstance(m, dict) else None
        if isinstance(sha, str) and sha in _bundled_sha():
            return Path(_bundled_sha()[sha])
    return None


def _candidates(header: dict[str, Any]) -> list[str]:
    cands = []
    tok = header.get("tokenizer") or {}
    if isinstance(tok, dict):
        cands += [tok.get("path"), tok.get("name_or_path")]
    models = header.get("models") or {}
    if isinstance(models, dict):
        cands += [(models.get(k) or {}).get("path") for k in ("target", "draft") if isinstance(models.get(k), dict)]
    return [c for c in cands if isinstance(c, str) and c]


def tokenizer_file(header: dict[str, Any], root: Path) -> tuple[Path | None, str]:
    """(tokenizer.json to decode ids with, or None; a caption saying which and why). A path the header
    names (tokenizer, then target/draft model) is used only when its real path lies inside ``root``
    (relative paths are taken against it; no ``~`` expansion); else the bundled tokenizer when the
    trace is of the bundled pair; else none, and ids are shown."""
    refused = False
    for c in _candidates(header):
        try:
            p = confine(c, root)
            f = confine(p if p.name == "tokenizer.json" else p / "tokenizer.json", root)
        except Refused:
            refused = True
            continue
        if f.is_file():
            return f, f"tokens decoded with `{f.relative_to(real(root))}`"
    note = "; the path it names lies outside the dashboard's directory: refused" if refused else ""
    bundled = bundled_tokenizer(header)
    if bundled is not None:
        return bundled, f"tokens decoded with the bundled tokenizer (the trace is of the bundled model pair{note})"
    if refused:
        return None, "the tokenizer path in the trace lies outside the dashboard's directory: refused; token ids shown"
    return None, "tokenizer files not found locally: token ids shown"
