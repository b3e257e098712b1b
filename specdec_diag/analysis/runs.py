"""Run segmentation: cut an :class:`IngestResult` into runs, one engine process with one configuration
each (docs/runs.md), so metrics and findings are never pooled across processes, engines, k or models.

A log directory is a fleet: several hosts, DP ranks, restarts, config changes, rotated files. This
module sits between ingest and the rest of analysis. It reads only the ingest tables and decides:

* **streams**: files of one process split by rotation (``x.log``, ``x.log.1``, ``x.log.2.gz``,
  ``x-2026-03-14.log``) are one stream, oldest file first;
* **process tags** inside a stream: ``pid=N``, ``Engine NNN``, ``DPn``, ``engine=N`` from the window
  table's ``engine_id`` (a TP rank is part of its replica, a llama.cpp drafter name is not a process);
* **restarts** inside one process tag: a startup banner (configuration lines after metrics lines),
  cumulative counters going down, a time gap longer than :data:`GAP`, or the draft length k changing.

Each run gets a readable, stable id ``host/file#engine[:tag]@start`` (host = the file's directory; tag
``p1e0`` = pid 1, engine 0; ``dp1`` = DP rank 1).
:func:`segment` returns a :class:`Runs` with the one-row-per-run table and :meth:`Runs.split`, the
per-run ``IngestResult`` every later step (summary, rules, comparisons) works on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePath
from typing import Any

import polars as pl

from specdec_diag.ingest.base import IngestResult
from specdec_diag.schema import trace_is_baseline

#: a silence longer than this between two records of one process tag is a restart
GAP = timedelta(minutes=30)

_GZ = re.compile(r"\.gz$")
_ROT_NUM = re.compile(r"\.(\d{1,3})$")
_DATE = re.compile(r"[._-](\d{4}-?\d{2}-?\d{2}(?:[T_-]?\d{2}(?:-?\d{2}){0,2})?)(?=\.[A-Za-z]|$)")
_PROC = re.compile(r"pid=\d+|Engine \d+|\bDP\d+\b|engine=\d+")
_VERSION_FMT = re.compile(r"^vllm-(v\d)")

#: config keys that name the target model / the drafting method / k / the engine version, in order
MODEL_KEYS = ("model", "model_path", "served_model_name", "target_model_name", "models.target.path")
METHOD_KEYS = ("method", "speculative_algorithm", "speculative_algo", "proposer")
K_KEYS = ("num_speculative_tokens", "speculative_num_steps", "n_draft", "draft_max")
VERSION_KEYS = ("version", "engine_version", "vllm_version", "sglang_version", "build")
#: config keys printed at process start: a group of them after metrics lines is a restart
STARTUP_KEYS = frozenset(MODEL_KEYS + METHOD_KEYS + K_KEYS + VERSION_KEYS + (
    "draft_model", "speculative_draft_model_path", "tp_size", "dp_size", "startup_error", "acceptance_method"))

#: the runs table (docs/runs.md), one row per run
RUNS_SCHEMA: dict[str, Any] = {
    "id": pl.Utf8, "host": pl.Utf8, "stream": pl.Utf8, "engine": pl.Utf8, "tag": pl.Utf8,
    "engine_id": pl.Utf8, "version": pl.Utf8, "model": pl.Utf8, "method": pl.Utf8, "k": pl.Int64,
    "speculative": pl.Boolean, "start": pl.Datetime("us", "UTC"), "end": pl.Datetime("us", "UTC"),
    "windows": pl.Int64, "steps": pl.Int64, "sources": pl.List(pl.Utf8), "first_line": pl.Int64,
    "last_line": pl.Int64, "split": pl.Utf8,
}


def stream_of(path: str) -> tuple[str, str, int]:
    """``(stream path, date suffix, rotation number)`` of a file: ``a/x.log.2.gz`` is stream
    ``a/x.log``, rotation 2; ``a/x-2026-03-14.log`` is stream ``a/x.log``, date ``20260314``."""
    p = PurePath(path)
    name = _GZ.sub("", p.name)
    rot = 0
    date = ""
    for _ in range(3):
        m = _ROT_NUM.search(name)
        if m and "." in name[: m.start()]:
            rot, name = int(m.group(1)), name[: m.start()]
            continue
        m = _DATE.search(name)
        if m and m.start() > 0:
            date, name = m.group(1).replace("-", ""), name[: m.start()] + name[m.end():]
            continue
        break
    return str(p.with_name(name)), date, rot


def proc_tag(engine_id: str | None) -> str:
    """The process part of an ``engine_id``: ``pid=1 Engine 000`` of ``APIServer pid=1 Engine 000``;
    empty when it names no process (a TP rank, a llama.cpp drafter)."""
    return " ".join(_PROC.findall(engine_id or ""))


@dataclass
class Runs:
    """The runs of one ingest result: ``table`` (one row per run, :data:`RUNS_SCHEMA`) and which rows
    of each ingest table belong to which run."""

    table: pl.DataFrame
    result: IngestResult
    window_run: pl.Series      # run id per row of result.windows (same order)
    config_runs: pl.DataFrame  # (config row index, run id): a startup banner may serve several runs
    malformed_run: pl.Series   # run id per malformed row
    source_runs: dict[str, list[str]]  # source -> run ids that read it

    @property
    def ids(self) -> list[str]:
        return self.table["id"].to_list()

    def split(self) -> dict[str, IngestResult]:
        """One ``IngestResult`` per run id (in table order): its windows, steps, configs, malformed
        rows, trace headers and input rows. Runs share nothing but a startup banner (DP ranks)."""
        r = self.result
        wparts = _partition(r.windows, self.window_run)
        mparts = _partition(r.malformed, self.malformed_run)
        conf = r.configs.with_row_index("_i").join(self.config_runs, on="_i", how="inner")
        cparts = {k[0]: g.drop("_i", "_run") for k, g in conf.group_by(["_run"], maintain_order=True)}
        out: dict[str, IngestResult] = {}
        for row in self.table.select("id", "sources").iter_rows():
            rid, srcs = row
            steps = r.steps.filter(pl.col("source").is_in(srcs)) if r.steps.height else r.steps
            # a file read by several runs (DP ranks, restarts) is listed by each; its malformed rows
            # belong to the run whose lines they fall in
            inputs = r.inputs.filter(pl.col("path").is_in(srcs)) if r.inputs.height else r.inputs
            out[rid] = IngestResult(
                wparts.get(rid, r.windows.clear()), steps, inputs, mparts.get(rid, r.malformed.clear()),
                cparts.get(rid, r.configs.clear()), [h for h in r.headers if h.get("source") in srcs],
                fingerprint=f"{r.fingerprint}#{rid}")
        return out


def _partition(df: pl.DataFrame, run: pl.Series) -> dict[str, pl.DataFrame]:
    if df.height == 0:
        return {}
    tagged = df.with_columns(run.alias("_run"))
    return {k[0]: g.drop("_run") for k, g in tagged.group_by(["_run"], maintain_order=True)}


# ---------------------------------------------------------------------------------------------
# segmentation
# ---------------------------------------------------------------------------------------------


def _file_order(sources: list[str], windows: pl.DataFrame) -> pl.DataFrame:
    """source -> (stream, rank within the stream): files of a stream by first record time when every
    file has one, else by date suffix and rotation number (``.2`` is older than ``.1``)."""
    first = (windows.group_by("source").agg(pl.col("time").min().alias("t0")) if windows.height
             else pl.DataFrame(schema={"source": pl.Utf8, "t0": pl.Datetime("us", "UTC")}))
    t0 = dict(first.iter_rows())
    rows = [(s, *stream_of(s), t0.get(s)) for s in sources]
    by_stream: dict[str, list[tuple[str, str, int, Any]]] = {}
    for s, stream, date, rot, t in rows:
        by_stream.setdefault(stream, []).append((s, date, rot, t))
    out = []
    for stream, files in by_stream.items():
        if all(f[3] is not None for f in files):
            files.sort(key=lambda f: (f[3], f[1], -f[2]))
        else:
            files.sort(key=lambda f: (f[1], -f[2], f[0]))
        out += [(f[0], stream, i) for i, f in enumerate(files)]
    return pl.DataFrame(out, schema={"source": pl.Utf8, "stream": pl.Utf8, "_rank": pl.Int64}, orient="row")


def _banners(configs: pl.DataFrame, windows: pl.DataFrame) -> pl.DataFrame:
    """Config rows grouped into startup banners: consecutive config lines of a source with no
    metrics line between them. Columns: config row index ``_i``, source, line, ``banner`` (its first
    line) and ``_before`` (metrics lines of the source before it)."""
    c = configs.with_row_index("_i").filter(pl.col("key").is_in(list(STARTUP_KEYS))).select("_i", "source", "line")
    if c.height == 0:
        return c.with_columns(pl.lit(None, pl.Int64).alias("banner"), pl.lit(0, pl.Int64).alias("_before"))
    # metrics lines of the same source strictly before each config line: one sort, not a search per row
    marks = pl.concat([c.select("_i", "source", "line", pl.lit(0, pl.Int64).alias("_m")),
                       windows.select(pl.lit(None, c.schema["_i"]).alias("_i"), "source", "line",
                                      pl.lit(1, pl.Int64).alias("_m")).cast({"line": c.schema["line"]})])
    before = (marks.sort("source", "line", "_m").with_columns(pl.col("_m").cum_sum().over("source").alias("_before"))
              .filter(pl.col("_m") == 0).select("_i", "_before"))
    c = c.join(before, on="_i", how="left").sort("_i")
    c = c.with_columns(pl.col("_before").fill_null(0))
    return c.with_columns(pl.col("line").min().over("source", "_before").alias("banner"))


def _tag_rows(windows: pl.DataFrame, order: pl.DataFrame, banners: pl.DataFrame,
              trace_sources: set[str]) -> pl.DataFrame:
    """The window rows with stream, file rank, process tag, the banner each follows and the reason
    a row starts a new run (null: it continues the previous one)."""
    w = windows.select("source", "line", "time", "engine", "engine_id", "k", "format", "window", "draft_tokens",
                       "num_drafts", "acceptance_rate", "mean_acceptance_length").with_row_index("_w")
    w = w.join(order, on="source", how="left").with_columns(
        pl.col("engine_id").fill_null("").str.extract_all(_PROC.pattern).list.join(" ").alias("tag"))
    w = _merge_partial_tags(w)
    bl = banners.select("source", pl.col("banner").alias("_b")).unique().sort("_b")
    if bl.height:
        w = w.sort("line").join_asof(bl.sort("_b"), left_on="line", right_on="_b", by="source",
                                     strategy="backward", check_sortedness=False)
        w = w.with_columns(pl.when(pl.col("_b").is_not_null())
                           .then(pl.col("source") + pl.lit(":") + pl.col("_b").cast(pl.Utf8)).alias("banner"))
    else:
        w = w.with_columns(pl.lit(None, pl.Utf8).alias("banner"))
    w = w.sort("stream", "tag", "_rank", "line")
    part = ["stream", "tag"]
    single = pl.col("tag").n_unique().over("stream") == 1
    is_trace = pl.col("source").is_in(list(trace_sources))
    first = pl.int_range(pl.len()).over(part) == 0
    banner = (single & ~is_trace & ~first & pl.col("banner").is_not_null()
              & (pl.col("banner") != pl.col("banner").shift().over(part).fill_null("")))
    # the window-level signals compare rows within one banner's stretch: a banner already cut there
    w = w.with_columns(banner.alias("_bsplit")).with_columns(pl.col("_bsplit").cum_sum().over(part).alias("_bseg"))
    seg = [*part, "_bseg"]
    k_prev = pl.col("k").forward_fill().shift().over([*seg, "format"])
    cum = pl.col("window") == "cumulative"
    d_prev = pl.col("draft_tokens").shift().over([*seg, "format", "window"])
    n_prev = pl.col("num_drafts").shift().over([*seg, "format", "window"])
    reason = (
        pl.when(first).then(pl.lit("start"))
        .when(is_trace).then(pl.lit(None, pl.Utf8))
        .when(pl.col("_bsplit")).then(pl.lit("startup banner"))
        # one benchmark's runs at several k (a sweep, ingest ``bench``) stay one run: they are compared there
        .when(pl.col("k").is_not_null() & k_prev.is_not_null() & (pl.col("k") != k_prev)
              & ~pl.col("format").fill_null("").str.starts_with("bench")).then(pl.lit("k changed"))
        .when(cum & ((pl.col("draft_tokens") < d_prev) | (pl.col("num_drafts") < n_prev)))
        .then(pl.lit("counters reset"))
        .when((pl.col("time") - pl.col("time").shift().over(part)) > GAP).then(pl.lit("time gap"))
        .otherwise(pl.lit(None, pl.Utf8))
    )
    w = w.with_columns(reason.alias("split"))
    return w.with_columns(pl.col("split").is_not_null().cum_sum().over(part).alias("_seg"))


def _merge_partial_tags(w: pl.DataFrame) -> pl.DataFrame:
    """A tag that is part of exactly one fuller tag of its stream is that process: vLLM prints
    ``Engine 000`` on throughput lines only, so a file that opens with a SpecDecoding line tags it
    ``pid=1`` alone."""
    pairs = w.select("stream", "tag").unique()
    if pairs.height == pairs["stream"].n_unique():
        return w
    mapping: dict[tuple[str, str], str] = {}
    for (stream,), g in pairs.group_by(["stream"]):
        tags = [t for t in g["tag"].to_list() if t is not None]
        for t in tags:
            parts = set(t.split(" ")) if t else set()
            fuller = [u for u in tags if u != t and parts < set(u.split(" "))]
            if len(fuller) == 1:
                mapping[(stream, t)] = fuller[0]
    if not mapping:
        return w
    m = pl.DataFrame([(s, t, u) for (s, t), u in mapping.items()], schema=["stream", "tag", "_full"], orient="row")
    return w.join(m, on=["stream", "tag"], how="left").with_columns(
        pl.coalesce("_full", "tag").alias("tag")).drop("_full")


def segment(result: IngestResult) -> Runs:
    """Cut ``result`` into runs (see the module docstring and docs/runs.md)."""
    sources = list(dict.fromkeys(
        (result.inputs["path"].to_list() if result.inputs.height else [])
        + (result.windows["source"].unique(maintain_order=True).to_list() if result.windows.height else [])
        + (result.steps["source"].unique(maintain_order=True).to_list() if result.steps.height else [])))
    trace_sources = set(result.steps["source"].unique().to_list()) if result.steps.height else set()
    trace_sources |= {str(h["source"]) for h in result.headers if h.get("source")}
    order = _file_order(sources, result.windows)
    banners = _banners(result.configs, result.windows)
    rows: list[dict[str, Any]] = []
    if result.windows.height:
        w = _tag_rows(result.windows, order, banners, trace_sources)
        w = w.with_columns(pl.concat_str([pl.col("stream"), pl.col("tag"), pl.col("_seg").cast(pl.Utf8)],
                                         separator="\x1f").alias("_key"))
        rows += _window_runs(w)
        key_of_row = w.sort("_w")["_key"]
    else:
        key_of_row = pl.Series("_key", [], pl.Utf8)
    seen = {s for r in rows for s in r["sources"]}
    for src in sources:  # files with no window rows (traces without windows, startup errors only)
        if src not in seen:
            stream = stream_of(src)[0]
            rows.append({"_key": f"{src}\x1ffile", "stream": stream, "tag": "", "engine": None, "engine_id": None,
                         "sources": [src], "first_line": None, "last_line": None, "start": None, "end": None,
                         "windows": 0, "k_mode": None, "formats": [], "banner": None, "split": "start",
                         "_rank": 0, "drafted": False})
    return _finish(result, rows, key_of_row, banners, trace_sources)


def _window_runs(w: pl.DataFrame) -> list[dict[str, Any]]:
    """One dict per run key: its extent and the facts the windows give."""
    agg = w.group_by("_key", maintain_order=True).agg(
        pl.col("stream").first(), pl.col("tag").first(), pl.col("engine").drop_nulls().first(),
        pl.col("engine_id").drop_nulls().first(), pl.col("source").unique(maintain_order=True).alias("sources"),
        pl.col("line").first().alias("first_line"), pl.col("line").last().alias("last_line"),
        pl.col("time").min().alias("start"), pl.col("time").max().alias("end"), pl.len().alias("windows"),
        pl.col("k").drop_nulls().mode().sort().first().alias("k_mode"),
        pl.col("format").unique(maintain_order=True).alias("formats"),
        pl.col("banner").drop_nulls().first(), pl.col("split").first(), pl.col("_rank").first(),
        ((pl.col("draft_tokens") > 0) | pl.col("acceptance_rate").is_not_null()
         | pl.col("mean_acceptance_length").is_not_null()).any().alias("drafted"))
    return agg.to_dicts()


def _finish(result: IngestResult, rows: list[dict[str, Any]], key_of_row: pl.Series, banners: pl.DataFrame,
            trace_sources: set[str]) -> Runs:
    """Ids, configuration facts, and the row -> run maps."""
    conf = result.configs.with_row_index("_i").join(banners.select("_i", "banner"), on="_i", how="left")
    conf = conf.with_columns((pl.col("source") + pl.lit(":") + pl.col("banner").cast(pl.Utf8)).alias("bkey"))
    facts_by_banner = {k[0]: g for k, g in conf.group_by(["bkey"])} if conf.height else {}
    headers = {str(h.get("source")): h for h in result.headers if h.get("source")}
    rows.sort(key=lambda r: (r["stream"], r["start"] is None, r["start"].timestamp() if r["start"] else 0.0,
                             r["_rank"], r["first_line"] or 0, r["tag"]))
    used: dict[str, int] = {}
    table_rows, key_to_id = [], {}
    for r in rows:
        facts = _facts(facts_by_banner.get(r["banner"]) if r["banner"] else
                       conf.filter(pl.col("source").is_in(r["sources"])), r, headers, result, trace_sources)
        rid = _run_id(r, facts["engine"])
        n = used.get(rid, 0)
        used[rid] = n + 1
        rid = rid if n == 0 else f"{rid}~{n + 1}"
        key_to_id[r["_key"]] = rid
        table_rows.append({"id": rid, "host": PurePath(r["stream"]).parent.name or ".", "stream": r["stream"],
                           "tag": r["tag"], "engine_id": r["engine_id"], **facts, "start": r["start"],
                           "end": r["end"], "windows": r["windows"], "sources": r["sources"],
                           "first_line": r["first_line"], "last_line": r["last_line"], "split": r["split"]})
    table = pl.DataFrame(table_rows, schema=RUNS_SCHEMA) if table_rows else pl.DataFrame(schema=RUNS_SCHEMA)
    window_run = key_of_row.replace_strict(key_to_id, return_dtype=pl.Utf8) if key_of_row.len() else key_of_row
    source_runs: dict[str, list[str]] = {}
    for rid, srcs in table.select("id", "sources").iter_rows():
        for s in srcs:
            source_runs.setdefault(s, []).append(rid)
    config_runs = _config_runs(conf, table, rows, key_to_id, source_runs)
    malformed_run = _line_runs(result.malformed, table, source_runs)
    return Runs(table, result, window_run.rename("_run"), config_runs, malformed_run, source_runs)


def _facts(conf: pl.DataFrame | None, r: dict[str, Any], headers: dict[str, dict[str, Any]],
           result: IngestResult, trace_sources: set[str]) -> dict[str, Any]:
    """engine, version, model, method, k, speculative, steps of one run from its banner (or the
    config rows of its files), its windows and, for our traces, the header."""
    kv: dict[str, str] = {}
    if conf is not None and conf.height:
        for key, value in conf.select("key", "value").iter_rows():
            if value not in (None, "", "None", "null", "none"):
                kv.setdefault(key, value)
    srcs = r["sources"]
    trace = next((headers[s] for s in srcs if s in headers), None)
    is_trace = trace is not None or any(s in trace_sources for s in srcs)
    engine = "specdec-diag" if is_trace else r["engine"] or (conf["engine"][0] if conf is not None and conf.height
                                                             else None)
    model = next((kv[k] for k in MODEL_KEYS if kv.get(k)), None)
    if model is None and r["engine_id"] and any((f or "").startswith("prometheus") for f in r["formats"]):
        model = r["engine_id"].split(" engine=")[0].split(" DP")[0].strip() or None
        model = None if model == engine else model
    if model and model.startswith("/"):
        model = "/".join(model.rstrip("/").split("/")[-2:])
    method = next((kv[k] for k in METHOD_KEYS if kv.get(k)), None)
    if method is None and engine == "llama.cpp" and r["engine_id"] and not r["tag"]:
        method = r["engine_id"]
    if is_trace:
        method = method or "draft_model"
    k = _int(next((kv[k] for k in K_KEYS if kv.get(k)), None))
    # a run cut by the windows alone (k changed, counters reset) still carries the older banner
    if k is None or (r["split"] not in ("start", "startup banner") and r["k_mode"] is not None):
        k = r["k_mode"] if r["k_mode"] is not None else k
    version = next((kv[k] for k in VERSION_KEYS if kv.get(k)), None)
    fmt_v = next((m.group(1) for f in r["formats"] if f and (m := _VERSION_FMT.match(f))), None)
    version = version or fmt_v
    steps = result.steps.filter(pl.col("source").is_in(srcs)) if result.steps.height else result.steps
    drafted = steps.height and int(steps.filter(pl.col("gamma_drafted") > 0).height) > 0
    spec = (bool(drafted) or bool(r["drafted"]) or (trace is not None and not trace_is_baseline(trace))
            or (not is_trace and (k is not None or method is not None)))
    if trace is not None and trace_is_baseline(trace):
        spec = False
    return {"engine": engine, "version": version, "model": model, "method": method, "k": k,
            "speculative": spec, "steps": int(steps.height)}


def _int(v: Any) -> int | None:
    try:
        return int(str(v))
    except (TypeError, ValueError):
        return None


def _run_id(r: dict[str, Any], engine: str | None) -> str:
    """``host/file#engine[:tag]@start``: start is the first record's UTC time to the second, else
    ``L<first line>``."""
    p = PurePath(r["stream"])
    host = p.parent.name or "."
    tag = _short_tag(r["tag"])
    eng = (engine or "unknown") + (f":{tag}" if tag else "")
    if r["start"] is not None:
        at = r["start"].strftime("%Y-%m-%dT%H:%M:%S")
    elif r["first_line"] is not None:
        at = f"L{r['first_line']}"
    else:
        at = "file"
    return f"{host}/{p.name}#{eng}@{at}"


def _short_tag(tag: str) -> str:
    """``pid=1 Engine 000`` -> ``p1e0``, ``DP1`` -> ``dp1``, ``engine=0`` -> ``e0`` (ids stay short)."""
    out = []
    for part in _PROC.findall(tag):
        num = int(re.sub(r"\D", "", part) or 0)
        out.append(("p" if part.startswith("pid") else "dp" if part.startswith("DP") else "e") + str(num))
    return "".join(out)


def _config_runs(conf: pl.DataFrame, table: pl.DataFrame, rows: list[dict[str, Any]],
                 key_to_id: dict[str, str], source_runs: dict[str, list[str]]) -> pl.DataFrame:
    """(config row, run): a startup banner's rows go to every run it starts (DP ranks share one);
    every other config row (a fact logged later, a banner no metrics followed) to the run of its file
    whose lines it falls in."""
    by_banner: dict[str, list[str]] = {}
    for r in rows:
        if r["banner"]:
            by_banner.setdefault(r["banner"], []).append(key_to_id[r["_key"]])
    pairs: list[tuple[int, str]] = []
    rest = []
    for i, bkey in conf.select("_i", "bkey").iter_rows():
        targets = by_banner.get(bkey) if bkey else None
        if targets:
            pairs += [(i, rid) for rid in targets]
        else:
            rest.append(i)
    if rest:
        others = conf.filter(pl.col("_i").is_in(rest))
        ids = _line_runs(others, table, source_runs)
        pairs += [(i, rid) for i, rid in zip(others["_i"].to_list(), ids.to_list(), strict=True) if rid]
    return pl.DataFrame(pairs, schema={"_i": pl.UInt32, "_run": pl.Utf8}, orient="row")


def _line_runs(df: pl.DataFrame, table: pl.DataFrame, source_runs: dict[str, list[str]]) -> pl.Series:
    """Run id per (source, line) row: the run of that file whose first line is the last one at or
    before the line (the file's first run for lines before any run)."""
    if df.height == 0:
        return pl.Series("_run", [], pl.Utf8)
    starts = table.select("id", "sources", "first_line").explode("sources").rename({"sources": "source"})
    starts = starts.with_columns(pl.col("first_line").fill_null(0)).sort("first_line")
    x = df.select("source", "line").with_row_index("_r").with_columns(pl.col("line").fill_null(0))
    j = x.sort("line").join_asof(starts, left_on="line", right_on="first_line", by="source", strategy="backward",
                                check_sortedness=False)
    first = {s: ids[0] for s, ids in source_runs.items()}
    j = j.with_columns(pl.coalesce(pl.col("id"), pl.col("source").replace_strict(first, default=None,
                                                                                 return_dtype=pl.Utf8)))
    return j.sort("_r")["id"].rename("_run")


__all__ = ["GAP", "RUNS_SCHEMA", "Runs", "segment", "stream_of", "proc_tag"]
