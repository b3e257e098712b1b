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
from typing import Any

import polars as pl
import streamlit as st

from specdec_diag.dashboard_app import ROOT_ENV

#: points per chart series; longer series are bucketed (draft-weighted), see bucket()
MAX_POINTS = 2000
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
    """``text`` (relative to ``root``, or absolute) as a path inside ``root``. Raises PathError for
    ``..`` escapes, links pointing outside, and paths that do not exist."""
    text = (text or "").strip() or "."
    cand = Path(text).expanduser()
    p = (cand if cand.is_absolute() else root / cand).resolve()
    if p != root and root not in p.parents:
        raise PathError(f"{text}: outside the directory the dashboard was started on ({root}); "
                        "only it and its subdirectories can be opened")
    if not p.exists():
        raise PathError(f"{text}: no such directory or file under {root}")
    return p


def display(root: Path, p: Path) -> str:
    """``p`` relative to ``root`` (``.`` for the root itself)."""
    try:
        rel = p.relative_to(root)
    except ValueError:
        return str(p)
    return str(rel) if str(rel) != "." else "."


def choices(root: Path, limit: int = 400) -> list[str]:
    """Subdirectories and log files under ``root`` (relative, sorted), for the Compare pickers."""
    from specdec_diag.ingest.scan import wanted

    dirs_with_logs: set[Path] = set()
    files_: list[Path] = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(dirpath)
        hits = [base / f for f in sorted(files) if wanted(f)]
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


def dir_key(path: Path) -> tuple[str, int, int, list[str]]:
    """(key, files, bytes, listing errors) for what a scan of ``path`` would read: blake2b over the
    sorted (path, size, mtime_ns) triples. Cheap (stat only), so every rerun can check it."""
    from specdec_diag.ingest.scan import iter_files

    h = hashlib.blake2b(digest_size=16)
    n = total = 0
    errors: list[str] = []
    for f, err in sorted(iter_files([path]), key=lambda t: str(t[0])):
        if err is not None:
            errors.append(f"{f}: {err}")
            h.update(f"{f}\0{err}\n".encode())
            continue
        try:
            st_ = f.stat()
        except OSError as exc:
            errors.append(f"{f}: {exc.strerror or exc}")
            continue
        n += 1
        total += st_.st_size
        h.update(f"{f}\0{st_.st_size}\0{st_.st_mtime_ns}\n".encode())
    return h.hexdigest(), n, total, errors


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
    result: Any                     # specdec_diag.ingest.IngestResult
    report: dict[str, Any]
    load_s: float
    errors: list[str] = field(default_factory=list)

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


def analyse(result: Any, cache_root: Path | None) -> dict[str, Any]:
    """The report the dashboard shows: :func:`analysis.report.build_report`'s inputs, summary and
    findings (same functions), without its ``windows`` list, which the pages read from the tables
    instead (turning a million windows into dicts costs seconds). Cached as JSON beside the ingest
    cache, keyed by the content fingerprint and the analysis code, so re-opening a directory is instant."""
    import json

    from specdec_diag.analysis import metrics
    from specdec_diag.analysis.report import inputs_json, jsonable, run_findings
    from specdec_diag.schema import REPORT_SCHEMA

    target = None
    if cache_root is not None and result.fingerprint:
        target = cache_root / "dashboard" / f"report-{result.fingerprint}-{_analysis_version()}.json"
        try:
            return json.loads(target.read_text())
        except (OSError, ValueError):
            pass
    report = {"schema": REPORT_SCHEMA, "inputs": inputs_json(result.inputs),
              "summary": jsonable(metrics.summarize(result)), "windows": [], "findings": run_findings(result)}
    if target is not None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(json.dumps(report))
            tmp.replace(target)
        except OSError:
            pass  # a read-only log directory: no report cache, still correct
    return report


def ingest(path: Path, key: str, files: int, nbytes: int, errors: list[str],
           progress: Any = None) -> Loaded:
    """Scan and analyse ``path`` (no Streamlit calls; the benchmark and tests use it directly)."""
    from specdec_diag.ingest import scan
    from specdec_diag.ingest.scan import default_cache_dir

    t0 = time.perf_counter()
    result = scan([path], progress=progress)
    report = analyse(result, default_cache_dir([path]))
    return Loaded(path, key, files, nbytes, result, report, time.perf_counter() - t0, errors)


def load(path: Path) -> Loaded:
    """The loaded directory, from the store when its key is unchanged, else ingested now with a
    progress bar. Raises PathError with a one-line message for empty or unreadable directories."""
    key, files, nbytes, errors = dir_key(path)
    if files == 0:
        if errors:
            raise PathError(f"{path}: cannot be read: {errors[0]}")
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
            loaded = ingest(path, key, files, nbytes, errors, tick)
        except Exception as exc:  # noqa: BLE001 - one line in the page, never a traceback
            status.update(label="Loading failed", state="error")
            raise PathError(f"{path}: could not be analysed: {type(exc).__name__}: {exc}") from None
        status.update(label=f"Loaded {files} file(s) in {loaded.load_s:.1f} s", state="complete",
                      expanded=False)
    with lock:
        store[key] = loaded
        while len(store) > STORE_ENTRIES:
            store.popitem(last=False)
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


# ---------------------------------------------------------------------------------------------
# derived frames (cached by key; the heavy object is an underscore argument, not hashed)
# ---------------------------------------------------------------------------------------------


SERIES_SCHEMA = {"series": pl.Utf8, "x": pl.Float64, "y": pl.Float64, "axis": pl.Utf8}


def bucket(df: pl.DataFrame, max_points: int, weight: str | None = None) -> pl.DataFrame:
    """``df`` (columns x, y, and ``weight``) in at most ``max_points`` consecutive buckets: x of each
    bucket's first row, y the weighted mean. The same rule as :func:`analysis.report.downsample`
    (tested against it), done in polars because a 1 GB log has a million windows."""
    n = df.height
    if n <= max_points:
        return df.select("x", "y")
    size = -(-n // max_points)
    w = pl.col(weight).cast(pl.Float64) if weight else pl.lit(1.0)
    return (df.with_columns((pl.int_range(pl.len()) // size).alias("_b"), w.alias("_w"))
            .group_by("_b", maintain_order=True)
            .agg(pl.col("x").first(),
                 pl.when(pl.col("_w").sum() > 0).then((pl.col("y") * pl.col("_w")).sum() / pl.col("_w").sum())
                 .otherwise(pl.col("y").mean()).alias("y"))
            .select("x", "y"))


def _x_expr(g: pl.DataFrame) -> tuple[pl.Expr, str]:
    """Seconds since the series' first record when every record has a time, else the record's index:
    files from different days then share one readable axis."""
    if g["time"].null_count() == 0:
        t0 = g["time"].min()
        return ((pl.col("time") - t0).dt.total_microseconds().cast(pl.Float64) / 1e6).alias("x"), \
            "seconds since the file's first record"
    return pl.int_range(pl.len()).cast(pl.Float64).alias("x"), "record # in the file (no timestamps)"


def _series_frame(name: str, xs: list[Any], ys: list[Any], axis: str) -> pl.DataFrame:
    return pl.DataFrame({"series": [name] * len(xs), "x": xs, "y": ys, "axis": [axis] * len(xs)},
                        schema=SERIES_SCHEMA)


@st.cache_data(show_spinner=False, max_entries=32)
def acceptance_series(key: str, _result: Any, max_points: int = MAX_POINTS) -> tuple[pl.DataFrame, list[str]]:
    """Acceptance rate over time, one series per (engine_id, file): the engine's per-window
    accepted/drafted (bonus excluded), interval/request windows only (cumulative totals are not a
    time series). Trace steps give one series per trace over step index. Long series are bucketed
    (draft-weighted, by analysis.report.downsample)."""
    from specdec_diag.analysis.report import downsample

    frames: list[pl.DataFrame] = []
    notes: list[str] = []
    w = _result.windows
    if w.height:
        w = w.filter(pl.col("acceptance_rate").is_not_null() & pl.col("window").fill_null("interval")
                     .is_in(["interval", "request"]))
    for (src, eid), g in (w.group_by(["source", "engine_id"], maintain_order=True) if w.height else []):
        g = g.sort(["time", "line"], nulls_last=True)
        xe, axis = _x_expr(g)
        pts = bucket(g.select(xe, pl.col("acceptance_rate").alias("y"),
                              pl.col("draft_tokens").cast(pl.Float64).fill_null(1.0).alias("w")), max_points, "w")
        name = f"{eid or g['engine'][0] or ''} · {Path(str(src)).name}"
        if pts.height < g.height:
            notes.append(f"{name}: {g.height:,} windows shown as {pts.height:,} draft-weighted buckets")
        frames.append(pts.with_columns(pl.lit(name).alias("series"), pl.lit(axis).alias("axis"))
                      .select(list(SERIES_SCHEMA)))
    s = _result.steps
    if s.height:
        s = s.filter(pl.col("gamma_drafted") >= 1)
        for (src,), g in s.group_by(["source"], maintain_order=True):
            g = g.sort(["request", "step"], nulls_last=True)
            xs = [float(i) for i in range(g.height)]
            ys = (g["n_accepted"] / g["gamma_drafted"]).to_list()
            ws = g["gamma_drafted"].cast(pl.Float64).to_list()
            dx, dy = downsample(xs, ys, ws, min(max_points, max(1, g.height // 4)))
            name = f"trace · {Path(str(src)).name}"
            notes.append(f"{name}: {g.height:,} steps in {len(dx):,} draft-weighted buckets")
            frames.append(_series_frame(name, dx, dy, "step # in the trace (requests in order)"))
    return (pl.concat(frames) if frames else pl.DataFrame(schema=SERIES_SCHEMA)), notes


SPLITS = ("file", "engine / process", "temperature", "context length", "request")


def _trace_temperatures(result: Any) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for h in result.headers or []:
        samp = h.get("sampling") or {}
        t = samp.get("temperature")
        if samp.get("do_sample") is False:
            t = 0.0
        out[str(h.get("source"))] = t
    return out


@st.cache_data(show_spinner=False, max_entries=32)
def split_table(key: str, _result: Any, by: str, buckets: int = 8) -> pl.DataFrame:
    """Acceptance split by a category; each group's numbers come from analysis.metrics on the
    group's own rows (windows and trace steps kept apart: their definitions match, their units don't)."""
    from specdec_diag.analysis import metrics

    rows: list[dict[str, Any]] = []

    def add(kind: str, label: Any, table: pl.DataFrame) -> None:
        rows.append({
            "group": str(label), "from": kind,
            "drafted tokens": metrics.draft_tokens(table),
            "acceptance rate": metrics.acceptance_rate(table),
            "mean acceptance length": metrics.mean_acceptance_length(table),
        })

    w = metrics.aggregation_rows(_result.windows)
    s = _result.steps.filter(pl.col("gamma_drafted") >= 1) if _result.steps.height else _result.steps
    if by == "file":
        for (src,), g in w.group_by(["source"], maintain_order=True):
            add("windows", src, g)
        for (src,), g in s.group_by(["source"], maintain_order=True):
            add("steps", src, g)
    elif by == "engine / process":
        for (eng, eid), g in w.group_by(["engine", "engine_id"], maintain_order=True):
            add("windows", f"{eng} {eid or ''}".strip(), g)
        if s.height:
            add("steps", "specdec-diag traces", s)
    elif by == "temperature":
        for (t,), g in w.filter(pl.col("temperature").is_not_null()).group_by(["temperature"]):
            add("windows", f"T={t:g}", g)
        temps = _trace_temperatures(_result)
        if s.height:
            s2 = s.with_columns(pl.col("source").replace_strict(temps, default=None, return_dtype=pl.Float64)
                                .alias("_t"))
            for (t,), g in s2.group_by(["_t"]):
                add("steps", "T=?" if t is None else f"T={t:g}", g.drop("_t"))
    elif by == "context length":
        for kind, table in (("windows", w.filter(pl.col("context_len").is_not_null())), ("steps", s)):
            if table.height == 0:
                continue
            lo, hi = int(table["context_len"].min()), int(table["context_len"].max())
            width = max(1, -(-(hi - lo + 1) // buckets))
            t2 = table.with_columns(((pl.col("context_len") - lo) // width).alias("_b"))
            for (b,), g in t2.sort("_b").group_by(["_b"], maintain_order=True):
                a = lo + int(b) * width
                add(kind, f"{a}–{a + width - 1}", g.drop("_b"))
    elif by == "request":
        for (r,), g in w.filter(pl.col("request").is_not_null()).group_by(["request"], maintain_order=True):
            add("windows", r, g)
        for (src, r), g in s.group_by(["source", "request"], maintain_order=True):
            add("steps", f"{Path(str(src)).name} #{r}", g)
    schema = {"group": pl.Utf8, "from": pl.Utf8, "drafted tokens": pl.Int64, "acceptance rate": pl.Float64,
              "mean acceptance length": pl.Float64}
    df = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    return df.filter(pl.col("drafted tokens").fill_null(0) > 0)


ENGINE_COLUMNS = ("running_reqs", "waiting_reqs", "kv_usage", "gen_tps")


@st.cache_data(show_spinner=False, max_entries=32)
def engine_context(key: str, _result: Any, max_points: int = MAX_POINTS) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Batch, queue, KV usage and throughput over time per (engine_id, file), bucketed to
    ``max_points``; and per file the share of windows that ran under CUDA graphs."""

    schema = {"metric": pl.Utf8, **SERIES_SCHEMA}
    w = _result.windows
    frames = []
    graphs = pl.DataFrame(schema={"file": pl.Utf8, "windows": pl.Int64, "cuda graph share": pl.Float64})
    if w.height == 0:
        return pl.DataFrame(schema=schema), graphs
    for (src, eid), g in w.group_by(["source", "engine_id"], maintain_order=True):
        g = g.sort(["time", "line"], nulls_last=True)
        name = f"{eid or g['engine'][0] or ''} · {Path(str(src)).name}"
        for col in ENGINE_COLUMNS:
            gg = g.filter(pl.col(col).is_not_null())
            if gg.height == 0:
                continue
            xe, axis = _x_expr(gg)
            pts = bucket(gg.select(xe, pl.col(col).cast(pl.Float64).alias("y")), max_points)
            frames.append(pts.with_columns(pl.lit(name).alias("series"), pl.lit(axis).alias("axis"),
                                           pl.lit(col).alias("metric")).select(list(schema)))
    cg = w.filter(pl.col("cuda_graph").is_not_null())
    if cg.height:
        graphs = (cg.group_by("source", maintain_order=True)
                  .agg(pl.len().cast(pl.Int64).alias("windows"),
                       pl.col("cuda_graph").cast(pl.Float64).mean().alias("cuda graph share"))
                  .rename({"source": "file"}))
    return (pl.concat(frames) if frames else pl.DataFrame(schema=schema)), graphs


# ---------------------------------------------------------------------------------------------
# tokenizer (the tokenizers package only: never transformers / torch)
# ---------------------------------------------------------------------------------------------


def tokenizer_file(header: dict[str, Any]) -> Path | None:
    """A local ``tokenizer.json`` named by a trace header (tokenizer, then target model path)."""
    cands = []
    tok = header.get("tokenizer") or {}
    if isinstance(tok, dict):
        cands += [tok.get("path"), tok.get("name_or_path")]
    models = header.get("models") or {}
    if isinstance(models, dict):
        cands += [(models.get(k) or {}).get("path") for k in ("target", "draft") if isinstance(models.get(k), dict)]
    for c in cands:
        if not c:
            continue
        p = Path(str(c)).expanduser()
        f = p if p.name == "tokenizer.json" else p / "tokenizer.json"
        if f.is_file():
            return f
    return None


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
