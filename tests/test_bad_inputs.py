"""Every command over every bad input (issues 15 and 16): no traceback, the documented exit code, the
path named on stderr, the records before the damage kept, memory bounded.

The corpus and the expected behaviour per case are in ``scripts/make_bad_inputs.py`` (committed files
in ``tests/fixtures/bad/``, large or unportable ones built into ``tmp_path``). CLI commands run as a
subprocess under a small wrapper that reports the child's peak RSS; the dashboard's loader
(:func:`specdec_diag.dashboard_app.data.load`) runs in-process, its "exit code" being 2 when it
raises ``PathError`` or reports an unreadable input without data, 3 without data, 0 otherwise.

``TODAY`` lists the (case, command) pairs that still fail, with what is wrong; they are strict
xfails, so each fix turns its entries into errors until they are deleted here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _helpers import REPO


def _load_generator() -> Any:
    """scripts/make_bad_inputs.py as a module (registered first: its dataclasses need sys.modules)."""
    spec = importlib.util.spec_from_file_location("make_bad_inputs", REPO / "scripts" / "make_bad_inputs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


bad = _load_generator()
FIXTURES = REPO / "tests" / "fixtures" / "bad"

#: what still fails, per (case, command): real bugs, strict xfails (a fix turns its entry into an error
#: until it is deleted here); see docs/errors.md for what each command prints
TODAY: dict[tuple[str, str], str] = {}  # none today

#: runs argv[1:] as a child and appends its peak RSS (KiB) to stderr, so RSS covers only that child
_WRAP = ("import resource, subprocess, sys\n"
         "r = subprocess.run(sys.argv[1:])\n"
         "sys.stderr.write(f'\\n@@maxrss_kb={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n')\n"
         "sys.exit(r.returncode)\n")
_CLI = "from specdec_diag.cli import main; main()"


@dataclass
class Outcome:
    """What one command did with one input."""

    exit: int | None
    stderr: str
    windows: pl.DataFrame | None = None
    steps: int | None = None
    malformed: set[int] = field(default_factory=set)
    summaries: list[dict[str, Any]] = field(default_factory=list)  # the report's per-run summaries
    records: int | None = None     # report@2: sum of runs[*].window_count; else the window rows
    rss_mb: float | None = None
    timed_out: bool = False


def _params() -> list[Any]:
    out = []
    for case in bad.all_cases():
        for cmd in case.commands:
            why = TODAY.get((case.id, cmd))
            marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
            if case.slow:  # only the 20,000-file case takes > 20 s (about 35 s); the 200 MB line ~1 s
                marks.append(pytest.mark.slow)
            out.append(pytest.param(case, cmd, id=f"{case.id}-{cmd}", marks=marks))
    return out


def _input(case: Any, tmp_path: Path) -> Path:
    if not case.runtime:
        return FIXTURES / case.path
    p = bad.build_runtime(case, tmp_path / "in")
    if p is None:
        pytest.skip("running as root and /proc/self/mem is readable: no way to make an unreadable file here")
    return p


def _arg(p: Path) -> str:
    """The path as the user types it: relative to the repository (where the CLI runs) when inside it."""
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(p)


def _run_cli(command: str, path: Path, case: Any, tmp_path: Path) -> Outcome:
    out, rep = tmp_path / "out", tmp_path / "report.json"
    extra = {"ingest": ["--out", str(out)], "report": ["-f", "json", "--windows", "--out", str(rep)],
             "check": ["--write-report", str(rep)], "replay": ["--json"]}[command]
    env = {**os.environ, "PYTHONPATH": str(REPO), "SPECDEC_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "400",
           "NO_COLOR": "1", "TERM": "dumb"}
    argv = [sys.executable, "-c", _WRAP, sys.executable, "-c", _CLI, command, _arg(path), *extra]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", start_new_session=True)
    try:
        _, err = proc.communicate(timeout=case.timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        return Outcome(None, err, timed_out=True)
    m = re.search(r"@@maxrss_kb=(\d+)", err)
    res = Outcome(proc.returncode, err[: m.start()] if m else err, rss_mb=int(m.group(1)) / 1024 if m else None)
    if command == "ingest" and (out / "_manifest.parquet").exists():  # the dataset ingest --out writes
        from specdec_diag.api import load

        got = load([out])
        res.windows, res.steps = got.windows, got.steps.height
        res.malformed = set(got.malformed["line"].drop_nulls().to_list())
    elif command in ("report", "check") and rep.exists():
        _read_report(res, json.loads(rep.read_text()))
    return res


def _read_report(res: Outcome, doc: dict[str, Any]) -> None:
    """report@2 (docs/report.md): records are ``runs[*].window_count``; the rows (``--windows``, and
    always in ``check --write-report``) are ``runs[*].windows``."""
    runs = doc.get("runs") or []
    rows = [w for r in runs for w in r.get("windows") or []]
    res.windows = pl.DataFrame(rows, infer_schema_length=None)
    res.records = sum(r.get("window_count") or 0 for r in runs)
    res.summaries = [r.get("summary") or {} for r in runs]
    res.steps = sum(s.get("steps") or 0 for s in res.summaries)


def _run_dashboard(path: Path, case: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    from specdec_diag.dashboard_app import data

    monkeypatch.setenv("SPECDEC_CACHE_DIR", str(tmp_path / "cache"))
    if not case.runtime:  # the dashboard opens directories: one holding a copy of the case
        (tmp_path / "dash").mkdir()
        path = Path(shutil.copy(path, tmp_path / "dash" / path.name)).parent
    else:
        path = path.parent
    try:  # the dashboard reads only files under its root (issue 16 row 2): the case's directory
        loaded = data.load(path, path)
    except data.PathError as exc:
        return Outcome(2, str(exc))
    r = loaded.result
    errs = [f"{p}: {e}" for p, e in r.inputs.select("path", "error").rows() if e]
    errs += loaded.notes  # the input layer's warnings (gzip damage), shown on the page
    has = r.windows.height > 0 or r.steps.height > 0
    code = 0 if has else (2 if errs or loaded.errors else 3)
    return Outcome(code, "\n".join([*loaded.errors, *errs]), r.windows, r.steps.height,
                   set(r.malformed["line"].drop_nulls().to_list()), [loaded.summary], r.windows.height)


def _check_invariants(case: Any, o: Outcome) -> list[str]:
    bad_: list[str] = []
    w = o.windows
    cols = {"accepted_tokens", "draft_tokens"}
    if "no_negative_counts" in case.invariants and w is not None and cols <= set(w.columns):
        n = w.filter((pl.col("accepted_tokens") < 0) | (pl.col("draft_tokens") < 0)).height
        if n:
            bad_.append(f"{n} window(s) with negative token counts")
    if "accepted_le_drafted" in case.invariants:
        if w is not None and cols <= set(w.columns):
            n = w.filter(pl.col("accepted_tokens") > pl.col("draft_tokens")).height
            if n:
                bad_.append(f"{n} window(s) with accepted > drafted")
        for s in o.summaries:
            if (s.get("accepted_tokens") or 0) > (s.get("draft_tokens") or 0):
                bad_.append(f"summary accepted {s['accepted_tokens']} > drafted {s['draft_tokens']}")
    return bad_


def _names_line(stderr: str, named: str, line: int, line_max: int | None) -> bool:
    """``path:LINE``, or the input layer's gzip-damage warning ``path: gzip data truncated after line
    N`` / ``path: corrupt gzip data after line N``, N + 1 being the first line not read whole: LINE
    for a truncated file, anything in LINE..line_max for a corrupt one (deflate notices damage late,
    see ``make_bad_inputs._corrupt_gz``). Issue 15 asks for "a warning [that] names the file and
    where it broke"; this wording does both."""
    if f"{named}:{line}" in stderr:
        return True
    damage = rf"{re.escape(named)}: (?:gzip data truncated|corrupt gzip data) after line (\d+)\b"
    return any(line <= int(n) + 1 <= (line_max or line) for n in re.findall(damage, stderr))


def _records(o: Outcome) -> int | None:
    """Window records kept: the report's ``window_count`` sum, else the rows read."""
    if o.records is not None:
        return o.records
    return o.windows.height if o.windows is not None else None


def _dump(case: Any, command: str, o: Outcome) -> None:
    """With $BADINPUT_DUMP set, append what happened as one JSON line (the status table is made from it)."""
    target = os.environ.get("BADINPUT_DUMP")
    if not target:
        return
    lines = [ln.strip() for ln in o.stderr.splitlines() if ln.strip() and not ln.startswith(("wrote ", "  "))]
    row = {"case": case.id, "command": command, "exit": o.exit, "timed_out": o.timed_out,
           "traceback": "Traceback" in o.stderr, "stderr": lines[-1][:300] if lines else "",
           "windows": _records(o), "steps": o.steps,
           "malformed": sorted(o.malformed)[:10], "rss_mb": round(o.rss_mb) if o.rss_mb else None}
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


@pytest.mark.parametrize(("case", "command"), _params())
def test_bad_input(case: Any, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _input(case, tmp_path)
    if command == "dashboard":
        o = _run_dashboard(path, case, tmp_path, monkeypatch)
        named = path.name
    else:
        o = _run_cli(command, path, case, tmp_path)
        named = _arg(path)
    _dump(case, command, o)
    tail = o.stderr.strip()[-1500:]
    assert not o.timed_out, f"{command} did not finish within {case.timeout_s} s"
    assert "Traceback" not in o.stderr, f"traceback:\n{tail}"
    want = case.exit_for(command)
    assert o.exit == want, f"exit {o.exit}, expected {want}; stderr:\n{tail}"
    if case.names_path and not (command == "dashboard" and want == 3):  # the page lists its inputs
        assert named in o.stderr, f"stderr does not name {named}:\n{tail}"
    if case.line is not None:
        where = f"{named}:{case.line}" + (f"..{case.line_max}" if case.line_max else "")
        assert _names_line(o.stderr, named, case.line, case.line_max), f"stderr does not name {where}:\n{tail}"
    if case.message:
        assert case.message in o.stderr, f"stderr lacks {case.message!r}:\n{tail}"
    if case.windows and command != "replay":
        got = _records(o) or 0
        assert got >= case.windows, f"{got} windows kept, expected >= {case.windows}; stderr:\n{tail}"
    if case.steps and command in ("ingest", "dashboard"):
        assert (o.steps or 0) >= case.steps, f"{o.steps} trace steps kept, expected >= {case.steps}"
    if case.malformed_lines and command in ("ingest", "dashboard"):
        missing = sorted(set(case.malformed_lines) - o.malformed)
        assert not missing, f"line(s) {missing} not reported malformed (malformed: {sorted(o.malformed)[:20]})"
    if command != "replay":
        problems = _check_invariants(case, o)
        assert not problems, "; ".join(problems)
    if case.max_rss_mb and o.rss_mb is not None:
        assert o.rss_mb < case.max_rss_mb, f"peak RSS {o.rss_mb:.0f} MB, bound {case.max_rss_mb} MB"


def test_corpus_is_current() -> None:
    """The committed files are exactly what the generator writes (and stay under 1 MB)."""
    files = bad.generate()
    stale = [n for n, b in files.items() if not (FIXTURES / n).is_file() or (FIXTURES / n).read_bytes() != b]
    assert not stale, f"regenerate with scripts/make_bad_inputs.py: {stale}"
    assert sum(f.stat().st_size for f in FIXTURES.iterdir()) < 1024 * 1024
