"""Every command over every bad input (issues 15 and 16): no traceback, the documented exit code, the
path named on stderr, the records before the damage kept, memory bounded.

The corpus and the expected behaviour per case are in ``scripts/make_bad_inputs.py`` (committed files
in ``tests/fixtures/bad/``, large or unportable ones built into ``tmp_path``). CLI commands run as a
subprocess under a small wrapper that reports the child's peak RSS; the dashboard's loader
(:func:`specdec_diag.dashboard_app.data.load`) runs in-process, its "exit code" being 2 when it
raises ``PathError`` or reports an unreadable input without data, 3 without data, 0 otherwise.

``TODAY`` lists the (case, command) pairs that fail on main before the fixes, with what is wrong;
they are strict xfails, so each fix turns its entries into errors until they are deleted here.
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

_NODATA_UNNAMED = "issue 15: the no-data message does not name the file"
_GZ_HIDDEN = "issue 15/16 row 8: records before the damage dropped (gzip read in 8 MB blocks), corruption hidden as no data"
_GZ_FATAL = "issue 15/16 row 8: records before the damage dropped and a partial read is an error (exit 2), not a warning"
_UTF16 = "issue 15: UTF-16 is read as UTF-8: no records found (exit 3)"
_CR = "issue 16 row 12: bare CR is not a line break: 1 of 60 records"
_US = "issue 16 row 12: \\x1f is the line reader's separator: 10 of 30 metric lines lost, none counted"
_NAN = "issue 16 row 1: nan in one SpecDecoding line fails the whole vLLM batch (strict Int64 cast): 0 of 60 kept"
_PROM_SILENT = "issue 16 row 11: NaN/Inf/beyond-int64 sample values become null silently, not malformed"
_SCHEMA = "issue 15: a specdec-trace@9 header is not detected as a trace: 'no records' (exit 3)"
_UNREAD_INGEST = "issue 16 row 9: ingest hides an unreadable input in a table column and exits 3"

#: what is wrong on today's main, per (case, command); see /work/prompts/badinput_status.md
TODAY: dict[tuple[str, str], str] = {
    ("empty", "report"): _NODATA_UNNAMED, ("empty", "check"): _NODATA_UNNAMED,
    ("binary", "report"): _NODATA_UNNAMED, ("binary", "check"): _NODATA_UNNAMED,
    ("truncated_gz", "ingest"): _GZ_HIDDEN, ("truncated_gz", "report"): _GZ_FATAL,
    ("truncated_gz", "check"): _GZ_FATAL, ("truncated_gz", "dashboard"): _GZ_FATAL,
    ("corrupt_gz", "ingest"): _GZ_HIDDEN, ("corrupt_gz", "report"): _GZ_FATAL,
    ("corrupt_gz", "check"): _GZ_FATAL, ("corrupt_gz", "dashboard"): _GZ_FATAL,
    ("not_gzip", "ingest"): "issue 15: not-gzip hidden as 'no records' (exit 3)",
    ("not_gzip", "report"): "issue 15: says 'corrupt or truncated gzip data: Not a gzipped file', not 'not gzip data'",
    ("not_gzip", "check"): "issue 15: says 'corrupt or truncated gzip data: Not a gzipped file', not 'not gzip data'",
    ("not_gzip", "dashboard"): "issue 15: says 'corrupt or truncated gzip data: Not a gzipped file'",
    ("not_gzip", "replay"): "issue 15: traceback (gzip.BadGzipFile from schema.open_text)",
    ("utf16le_bom", "ingest"): _UTF16, ("utf16le_bom", "report"): _UTF16, ("utf16le_bom", "check"): _UTF16,
    ("utf16le_bom", "dashboard"): _UTF16,
    ("utf16be_bom", "ingest"): _UTF16, ("utf16be_bom", "report"): _UTF16, ("utf16be_bom", "check"): _UTF16,
    ("utf16be_bom", "dashboard"): _UTF16,
    ("cr_only", "ingest"): _CR, ("cr_only", "report"): _CR, ("cr_only", "check"): _CR, ("cr_only", "dashboard"): _CR,
    ("unit_separator", "ingest"): _US, ("unit_separator", "report"): _US, ("unit_separator", "check"): _US,
    ("unit_separator", "dashboard"): _US,
    ("nan_metrics", "ingest"): _NAN, ("nan_metrics", "report"): _NAN, ("nan_metrics", "dashboard"): _NAN,
    ("nan_metrics", "check"): _NAN + "; the crash row fails the gate (MALFORMED_INPUT at line 1)",
    ("prom_nan_inf", "ingest"): _PROM_SILENT, ("prom_nan_inf", "dashboard"): _PROM_SILENT,
    ("prom_nan_inf", "report"): "issue 16 row 11: traceback: -Inf/NaN reach the report JSON (allow_nan=False)",
    ("prom_nan_inf", "check"): "issue 16 row 11: traceback: -Inf/NaN reach the report JSON (allow_nan=False)",
    ("prom_bigint", "ingest"): _PROM_SILENT, ("prom_bigint", "dashboard"): _PROM_SILENT,
    ("prom_accepted_gt_drafted", "ingest"): "issue 16 row 11: accepted > drafted not counted malformed",
    ("prom_accepted_gt_drafted", "dashboard"): "issue 16 row 11: accepted > drafted not counted malformed",
    ("prom_accepted_gt_drafted", "report"): "issue 16 row 11: windows and summary show accepted > drafted",
    ("prom_accepted_gt_drafted", "check"): "issue 16 row 11: windows and summary show accepted > drafted",
    ("trace_schema9", "ingest"): _SCHEMA, ("trace_schema9", "report"): _SCHEMA, ("trace_schema9", "check"): _SCHEMA,
    ("trace_schema9", "dashboard"): _SCHEMA,
    ("trace_schema9", "replay"): "issue 15: wording 'unsupported schema ...; expected ...' differs from the agreed one",
    ("trace_truncated", "check"): "MALFORMED_INPUT compares malformed lines with request windows (1 per trace): "
                                  "a dropped last line = 100 % -> error, exit 1",
    ("trace_truncated_gz", "ingest"): _GZ_HIDDEN, ("trace_truncated_gz", "report"): _GZ_FATAL,
    ("trace_truncated_gz", "check"): _GZ_FATAL, ("trace_truncated_gz", "dashboard"): _GZ_FATAL,
    ("trace_truncated_gz", "replay"): "issue 15: EOFError from gzip becomes click's 'Aborted.' with exit 1",
    ("directory_replay", "replay"): "issue 15: traceback (IsADirectoryError from schema.open_text)",
    ("symlink_loop", "ingest"): _UNREAD_INGEST, ("unreadable", "ingest"): _UNREAD_INGEST,
    ("many_files", "ingest"): "issue 16 row 6: ~40 ms per small file; 20,000 files take > 40 s (600 s measured)",
    ("huge_line", "ingest"): "issue 16 row 7: a 200 MB line is read whole: > 30 s, 3.6 GB RSS",
}

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
    summary: dict[str, Any] | None = None
    rss_mb: float | None = None
    timed_out: bool = False


def _params() -> list[Any]:
    out = []
    for case in bad.all_cases():
        for cmd in case.commands:
            why = TODAY.get((case.id, cmd))
            marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
            if case.max_rss_mb or (cmd == "replay" and case.steps):  # big inputs; replay loading models
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
    extra = {"ingest": ["--out", str(out)], "report": ["-f", "json", "--out", str(rep)],
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
    if command == "ingest" and (out / "windows.parquet").exists():
        res.windows = pl.read_parquet(out / "windows.parquet")
        res.steps = pl.read_parquet(out / "steps.parquet").height
        res.malformed = set(pl.read_parquet(out / "malformed.parquet")["line"].drop_nulls().to_list())
    elif command in ("report", "check") and rep.exists():
        doc = json.loads(rep.read_text())
        res.windows = pl.DataFrame(doc.get("windows") or [], infer_schema_length=None)
        res.summary = doc.get("summary") or {}
        res.steps = res.summary.get("steps")
    return res


def _run_dashboard(path: Path, case: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    from specdec_diag.dashboard_app import data

    monkeypatch.setenv("SPECDEC_CACHE_DIR", str(tmp_path / "cache"))
    if not case.runtime:  # the dashboard opens directories: one holding a copy of the case
        (tmp_path / "dash").mkdir()
        path = Path(shutil.copy(path, tmp_path / "dash" / path.name)).parent
    else:
        path = path.parent
    try:
        loaded = data.load(path)
    except data.PathError as exc:
        return Outcome(2, str(exc))
    r = loaded.result
    errs = [f"{p}: {e}" for p, e in r.inputs.select("path", "error").rows() if e]
    has = r.windows.height > 0 or r.steps.height > 0
    code = 0 if has else (2 if errs or loaded.errors else 3)
    return Outcome(code, "\n".join([*loaded.errors, *errs]), r.windows, r.steps.height,
                   set(r.malformed["line"].drop_nulls().to_list()), loaded.summary)


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
        s = o.summary or {}
        if (s.get("accepted_tokens") or 0) > (s.get("draft_tokens") or 0):
            bad_.append(f"summary accepted {s['accepted_tokens']} > drafted {s['draft_tokens']}")
    return bad_


def _dump(case: Any, command: str, o: Outcome) -> None:
    """With $BADINPUT_DUMP set, append what happened as one JSON line (the status table is made from it)."""
    target = os.environ.get("BADINPUT_DUMP")
    if not target:
        return
    lines = [ln.strip() for ln in o.stderr.splitlines() if ln.strip() and not ln.startswith(("wrote ", "  "))]
    row = {"case": case.id, "command": command, "exit": o.exit, "timed_out": o.timed_out,
           "traceback": "Traceback" in o.stderr, "stderr": lines[-1][:300] if lines else "",
           "windows": o.windows.height if o.windows is not None else None, "steps": o.steps,
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
        where = f"{named}:{case.line}"
        assert where in o.stderr, f"stderr does not name {where}:\n{tail}"
    if case.message:
        assert case.message in o.stderr, f"stderr lacks {case.message!r}:\n{tail}"
    if case.windows and command != "replay":
        got = o.windows.height if o.windows is not None else 0
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
