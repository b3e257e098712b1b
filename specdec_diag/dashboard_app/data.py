"""Loading and shaping data for the dashboard pages.

The dashboard never parses logs and never computes a metric itself: it calls
:func:`specdec_diag.ingest.scan` and :func:`specdec_diag.analysis.report.build_report`, and the
pages call :mod:`specdec_diag.analysis.metrics` / ``theory`` / ``gate`` for anything derived.

Caching, two levels (see docs/dashboard.md):

* ingest keeps a Parquet cache per file keyed by its content fingerprint, so re-opening a directory
  (even after a restart) skips parsing;
* in the server, loaded directories live in one process-wide store (``st.cache_resource``: no copy
  per rerun, which matters at 1 GB of logs) keyed by a directory key built from the sorted
  (path, size, mtime_ns) of every file the scan would read; derived frames use ``st.cache_data``
  with that key as a normal, hashed argument and the heavy object as an ``_underscore`` argument.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import streamlit as st

from specdec_diag import paths
from specdec_diag.dashboard_app import ROOT_ENV

if TYPE_CHECKING:
    from specdec_diag.ingest.base import IngestResult

#: loaded directories kept in memory at once
STORE_ENTRIES = 4
DASH = "—"


class PathError(ValueError):
    """A directory the dashboard will not open; ``str()`` is a one-line message for the page."""


# ---------------------------------------------------------------------------------------------
# paths
# ---------------------------------------------------------------------------------------------


def start_root() -> Path:
    """The directory given at start: ``$SPECDEC_DASHBOARD_ROOT`` (set by ``specdec-diag dashboard``),
    else the argument after ``--`` of ``streamlit run app.py -- LOGDIR``, else the working directory."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    if len(sys.argv) > 1 and sys.argv[0].endswith("app.py") and not sys.argv[1].startswith("-"):
        return Path(sys.argv[1]).expanduser().resolve()
    return Path.cwd().resolve()


def resolve(root: Path, text: str) -> Path:
    """``text`` (relative to ``root``, or absolute) as a real path inside ``root``. Raises PathError,
    one line, for ``..`` escapes, links pointing outside, paths that do not exist, and names the OS
    cannot take (NUL byte, too long, link loop, unknown ``~user``): see :func:`paths.user_path`."""
    try:
        return paths.user_path(root, text)
    except paths.Refused as exc:
        msg = str(exc)
        if ": outside the directory" in msg:
            msg += "; only it and its subdirectories can be opened"
        raise PathError(msg) from None


def display(root: Path, p: Path) -> str:
    """``p`` relative to ``root`` (``.`` for the root itself)."""
    try:
        rel = p.relative_to(root)
    except ValueError:
        return str(p)
    return str(rel) if str(rel) != "." else "."


def choices(root: Path, limit: int = 400) -> list[str]:
    """Subdirectories and log files under ``root`` (relative, sorted), for the Compare pickers; files
    whose real path leaves the root are not offered."""
    from specdec_diag.ingest.scan import wanted

    dirs_with_logs: set[Path] = set()
    files_: list[Path] = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(dirpath)
        hits = paths.partition([base / f for f in sorted(files) if wanted(f)], root)[0]
        if hits:
            files_.extend(hits)
            p = base
            while p != root and p not in dirs_with_logs:  # every ancestor holds logs too
                dirs_with_logs.add(p)
                p = p.parent
        if len(files_) >= limit:
            break
    out = ["."] + sorted(display(root, d) for d in dirs_with_logs) + [display(root, f) for f in files_]
    return out[:limit]


def trace_sources(steps: pl.DataFrame) -> list[str]:
    """Trace files in the steps table, those that drafted first (an autoregressive baseline has
    gamma 0 at every step), healthy runs before faults, then by name."""
    if steps.height == 0:
        return []
    g = steps.group_by("source").agg(pl.col("gamma_drafted").max().alias("g"))
    return [r[0] for r in sorted(g.rows(), key=lambda r: (not (r[1] or 0) > 0, "healthy" not in Path(str(r[0])).name,
                                                      str(r[0])))]


@dataclass
class Listing:
    """What a scan of a directory may read: the files whose real path lies inside the root, and
    those it may not (``refused``, one line each), with a key that changes when either changes."""

    key: str
    files: list[Path]
    bytes: int
    errors: list[str]
    refused: list[str]


def listing(path: Path, root: Path | None = None) -> Listing:
    """The files under ``path`` a scan would read, each confined to ``root`` (default ``path``):
    blake2b over the sorted (path, size, mtime_ns) triples, plus errors and refusals. Cheap (stat
    only), so every rerun can check it."""
    from specdec_diag.ingest.dataset import dataset_files, is_dataset
    from specdec_diag.ingest.scan import iter_files

    h = hashlib.blake2b(digest_size=16)
    total = 0
    kept: list[Path] = []
    errors: list[str] = []
    refused: list[str] = []
    check = paths.Confiner(root or path)
    # an `ingest --out` dataset: its Parquet files are what is read (and what the key watches)
    found = [(f, None) for f in dataset_files(path)] if is_dataset(path) else iter_files([path])
    for f, err in sorted(found, key=lambda t: str(t[0])):
        why = check.outside(f)
        if why is not None:
            refused.append(why)
            h.update(f"{f}\0refused\n".encode())
            continue
        if err is not None:
            errors.append(f"{f}: {err}")
            h.update(f"{f}\0{err}\n".encode())
            continue
        try:
            st_ = f.stat()
        except OSError as exc:
            errors.append(f"{f}: {exc.strerror or exc}")
            continue
        kept.append(f)
        total += st_.st_size
        h.update(f"{f}\0{st_.st_size}\0{st_.st_mtime_ns}\n".encode())
    return Listing(h.hexdigest(), kept, total, errors, refused)


def dir_key(path: Path, root: Path | None = None) -> tuple[str, int, int, list[str]]:
    """(key, files, bytes, listing errors) of :func:`listing`."""
    lst = listing(path, root)
    return lst.key, len(lst.files), lst.bytes, lst.errors


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------


@dataclass
class Loaded:
    """One loaded directory: the ingest result, its report, and how long loading took."""

    path: Path
    key: str
    files: int
    bytes: int
    result: IngestResult
    report: dict[str, Any]
    load_s: float
    errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # files whose real path leaves the root: not read
    notes: list[str] = field(default_factory=list)    # e.g. a cached report that failed validation
    findings_error: str | None = None
    rules_s: float | None = None
    warmed: threading.Event = field(default_factory=threading.Event)
    runs: Any = None                # analysis.runs.Runs of ``result`` (docs/runs.md)
    scopes: dict[str, Any] = field(default_factory=dict)  # run id / group -> scoped Loaded (fleet.scoped)
    scope: str | None = None        # set on a scoped Loaded: the run id or configuration it shows

    @property
    def summary(self) -> dict[str, Any]:
        return self.report.get("summary") or {}

    @property
    def has_data(self) -> bool:
        from specdec_diag.analysis.report import has_data

        return has_data(self.report)


@st.cache_resource(show_spinner=False)
def _store() -> tuple[OrderedDict[str, Loaded], threading.Lock]:
    """Process-wide LRU of loaded directories. Shared by all sessions and never mutated after
    insertion, so no copy is needed (cache_data would pickle a GB-sized frame on every rerun)."""
    return OrderedDict(), threading.Lock()


def _analysis_version() -> str:
    """Size and mtime of every analysis source file: a cached report is reused only while the code
    that produced it is unchanged (an edited rule must not show stale findings)."""
    import specdec_diag.analysis as analysis

    h = hashlib.blake2b(digest_size=8)
    for f in sorted(Path(analysis.__file__).parent.rglob("*.py")):
        st_ = f.stat()
        h.update(f"{f.name}:{st_.st_size}:{st_.st_mtime_ns};".encode())
    return h.hexdigest()


#: above this many window rows (or trace steps) the diagnosis rules run in a background thread, so
#: the pages render from the summary first and the findings arrive when ready
BACKGROUND_ROWS = 100_000
#: ... or above this many runs (each run is judged on its own: a fleet's diagnosis takes a while), so the
#: Overview shows the runs table at once and their statuses when the rules finish
BACKGROUND_RUNS = 20


def _report_cache(result: IngestResult, cache_root: Path | None) -> Path | None:
    if cache_root is None or not result.fingerprint:
        return None
    return cache_root / "dashboard" / f"report-{result.fingerprint}-{_analysis_version()}.json"


def _write_report(target: Path | None, report: dict[str, Any]) -> None:
    import json

    from specdec_diag.schema import write_atomic

    if target is not None:
        write_atomic(target, json.dumps(report))  # a read-only log directory: no report cache, still correct


def _run_rules(loaded: Loaded, target: Path | None, cache_dir: Path | None = None) -> None:
    """Fill ``loaded.report`` with the run-by-run diagnosis (once; readers only ever see None or the
    full lists): ``findings`` (each naming its run), ``runs`` (each with summary and findings),
    ``comparisons`` and ``fleet`` of :func:`analysis.report.build_report`; each run's part comes from
    the per-run cache under ``cache_dir`` when its rows did not change (``analysis.run_cache``)."""
    from specdec_diag.analysis.report import build_report

    t0 = time.perf_counter()
    try:
        rep = build_report(loaded.result, runs=loaded.runs, cache_dir=cache_dir)
    except Exception as exc:  # noqa: BLE001 - shown in the page as one line
        loaded.findings_error = f"the diagnosis rules failed: {type(exc).__name__}: {exc}"
        loaded.report.update({"runs": [], "comparisons": [], "fleet": {}})
        loaded.report["findings"] = []
        return
    loaded.rules_s = time.perf_counter() - t0
    loaded.report.update({k: rep[k] for k in ("runs", "comparisons", "fleet")})
    loaded.report["findings"] = rep["findings"]  # last: its presence means the rest is there
    _write_report(target, loaded.report)


def ingest(path: Path, lst: Listing, progress: Any = None, background: bool | None = None) -> Loaded:
    """Scan and analyse the files of ``lst`` (those under ``path`` whose real path lies in the root;
    no Streamlit calls, so tests use it directly).

    The report holds the directory's inputs and pooled summary (the sidebar's totals) and, from
    :func:`analysis.report.build_report`, the runs (each with its summary and findings), the
    comparisons, the fleet rollup and every finding with its run; no ``windows`` list: the pages read
    the tables instead (turning a million windows into dicts costs seconds). It is cached as JSON beside the ingest cache, keyed by
    the content fingerprint and the analysis code, so re-opening a directory is instant. On large
    inputs (``background`` None: more than BACKGROUND_ROWS rows) the rules run in a thread."""
    from specdec_diag.analysis.report import inputs_json
    from specdec_diag.analysis.runs import segment
    from specdec_diag.api import load as load_inputs
    from specdec_diag.dashboard_app import scan_cache
    from specdec_diag.dashboard_app.guard import cached_report
    from specdec_diag.ingest.dataset import is_dataset
    from specdec_diag.ingest.scan import default_cache_dir
    from specdec_diag.schema import POOLED_REPORT_SCHEMA

    t0 = time.perf_counter()
    cache_dir = default_cache_dir([path])
    # the listed files, not ``path``: a file the listing refused (a link out of the root) is never read;
    # a dataset (`ingest --out`) is read, not scanned; a directory re-opened unchanged reads its combined
    # tables at once (dashboard_app/scan_cache.py); large inputs use every core
    if is_dataset(path):
        result = load_inputs([path], cache_dir=cache_dir, use_cache=cache_dir is not None, progress=progress)
    else:
        skey = scan_cache.key(lst.files) if cache_dir is not None else None
        result = scan_cache.load(cache_dir, skey, lst.files)
        if result is None:
            result = load_inputs(lst.files, cache_dir=cache_dir, use_cache=cache_dir is not None, progress=progress)
            scan_cache.store(cache_dir, skey, result)
    target = _report_cache(result, cache_dir)
    inputs = inputs_json(result.inputs)
    report, note = cached_report(target, inputs)
    # unreadable inputs and inputs read only up to damage: the same lines the CLI prints
    meta = {"errors": [*lst.errors, *result.errors], "refused": lst.refused,
            "notes": [*([note] if note else []), *result.warnings], "runs": segment(result)}
    if report is not None:
        return Loaded(path, lst.key, len(lst.files), lst.bytes, result, report, time.perf_counter() - t0, **meta)
    report = {"schema": POOLED_REPORT_SCHEMA, "inputs": inputs, "summary": _directory_summary(result, meta["runs"]),
              "windows": [], "findings": None}
    loaded = Loaded(path, lst.key, len(lst.files), lst.bytes, result, report, 0.0, **meta)
    if background is None:
        background = (max(result.windows.height, result.steps.height) > BACKGROUND_ROWS
                      or meta["runs"].table.height > BACKGROUND_RUNS)
    if background:
        threading.Thread(target=_run_rules, args=(loaded, target, cache_dir), name="specdec-rules",
                         daemon=True).start()
    else:
        _run_rules(loaded, target, cache_dir)
    loaded.load_s = time.perf_counter() - t0
    return loaded


def _directory_summary(result: IngestResult, runs: Any) -> dict[str, Any]:
    """The directory's own summary: for one run (or runs of one configuration) its numbers; else only the
    sidebar's totals (window rows and trace steps of its runs), never metrics pooled across runs (each
    page shows a run's own summary, ``fleet.page_scope``), which would also cost seconds on 500 runs."""
    from specdec_diag.analysis import metrics
    from specdec_diag.dashboard_app.fleet import one_configuration
    from specdec_diag.schema import jsonable

    if runs is None or runs.table.height <= 1 or one_configuration(runs.table):  # comparable runs only
        return jsonable(metrics.summarize(result))
    return {"windows_used": int(runs.table["windows"].sum()), "steps": int(runs.table["steps"].sum()),
            "runs": runs.table.height}


def findings(loaded: Loaded) -> list[dict[str, Any]] | None:
    """The findings, or None while the rules still run: then the page says so and polls."""
    f = loaded.report.get("findings")
    if f is None:
        st.info(f"Running the diagnosis rules over {loaded.result.windows.height:,} windows and "
                f"{loaded.result.steps.height:,} steps; findings appear here when they finish.")

        @st.fragment(run_every=2.0)
        def _poll() -> None:
            if loaded.report.get("findings") is not None:
                st.rerun()

        _poll()
        return None
    if loaded.findings_error:
        st.error(loaded.findings_error)
    return f


def load(path: Path, root_: Path | None = None) -> Loaded:
    """The loaded directory, from the store when its key is unchanged, else ingested now with a
    progress bar; only files whose real path lies in ``root_`` (default: the dashboard's root) are
    read. Raises PathError with a one-line message for empty or unreadable directories."""
    lst = listing(path, root_ or root())
    key, files, nbytes, errors = lst.key, len(lst.files), lst.bytes, lst.errors
    if files == 0:
        if errors:
            raise PathError(f"{path}: cannot be read: {errors[0]}")
        if lst.refused:
            raise PathError(f"{path}: no readable log files; {len(lst.refused)} refused: {lst.refused[0]}")
        raise PathError(f"{path}: no log files here (looked for *.log, *.txt, *.jsonl, *.json, *.prom, "
                        "optionally .gz, in all subdirectories)")
    store, lock = _store()
    with lock:
        hit = store.get(key)
        if hit is not None:
            store.move_to_end(key)
            return hit
    with st.status(f"Loading {files} file(s), {nbytes / 1e6:,.1f} MB …", expanded=True) as status:
        bar = st.progress(0.0, text="reading (cached files are instant)")
        last = [0.0]

        def tick(name: str, done: int, total: int) -> None:
            now = time.perf_counter()
            if now - last[0] > 0.2 or done >= total:
                last[0] = now
                bar.progress(min(1.0, done / total) if total else 1.0, text=f"{Path(name).name}: "
                             f"{done / 1e6:,.1f} of {total / 1e6:,.1f} MB")

        try:
            loaded = ingest(path, lst, tick)
        except Exception as exc:  # noqa: BLE001 - one line in the page, never a traceback
            status.update(label="Loading failed", state="error")
            first = (str(exc).splitlines() or [""])[0]
            raise PathError(f"{path}: could not be analysed: {type(exc).__name__}: {first}") from None
        status.update(label=f"Loaded {files} file(s) in {loaded.load_s:.1f} s", state="complete",
                      expanded=False)
    with lock:
        store[key] = loaded
        while len(store) > STORE_ENTRIES:
            store.popitem(last=False)
    if max(loaded.result.windows.height, loaded.result.steps.height) > BACKGROUND_ROWS:
        threading.Thread(target=warm, args=(loaded,), name="specdec-warm", daemon=True).start()
    else:
        loaded.warmed.set()
    return loaded


def current() -> Loaded:
    """The directory chosen in the sidebar; stops the page with a clear message when there is none."""
    loaded = st.session_state.get("loaded")
    if loaded is None:
        st.info(st.session_state.get("load_error") or "Choose a log directory in the sidebar.")
        st.stop()
    return loaded


def root() -> Path:
    return st.session_state.get("root") or start_root()


# ---------------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------------


def pct(v: Any, nd: int = 1) -> str:
    return DASH if v is None else f"{v * 100:.{nd}f} %"


def num(v: Any, nd: int = 2, suffix: str = "") -> str:
    if v is None:
        return DASH
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}{suffix}"
    return f"{v:,.{nd}f}{suffix}"


def definition(summary: dict[str, Any], name: str) -> str:
    """The metric's definition as the analysis states it (bonus included or not, window)."""
    return (summary.get("definitions") or {}).get(name, "")


# derived frames live in series.py; re-exported here, the pages' one namespace
from specdec_diag.dashboard_app.series import (  # noqa: E402,F401
    MAX_POINTS,
    SERIES_SCHEMA,
    SPLITS,
    acceptance_series,
    blocks,
    bucket,
    compare_noise,
    engine_context,
    split_table,
    warm,
)

# ---------------------------------------------------------------------------------------------
# tokenizer (the tokenizers package only: never transformers / torch)
# ---------------------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=8)
def load_tokenizer(path: str) -> Any:
    """A tokenizers.Tokenizer, or None when the package is missing or the file does not load."""
    try:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(path)
    except Exception:  # noqa: BLE001 - the page then shows ids
        return None


def token_texts(tok: Any, ids: list[int]) -> list[str]:
    """Each id decoded on its own (so a rejected draft shows as the text it would have added)."""
    if tok is None:
        return [f"#{i}" for i in ids]
    out = []
    for i in ids:
        try:
            t = tok.decode([int(i)], skip_special_tokens=False)
        except Exception:  # noqa: BLE001
            t = None
        out.append(t if t else (tok.id_to_token(int(i)) or f"#{i}"))
    return out
