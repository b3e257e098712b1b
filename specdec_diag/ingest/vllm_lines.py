"""vLLM's less common line records, split from :mod:`specdec_diag.ingest.vllm` (which routes lines
here): ``DiffusionDecoding metrics:`` (diffusion LMs reuse the speculative counters under other
names), ``Iteration(N):`` per-step lines (``--enable-logging-iteration-details``), unknown
``SpecDecoding metrics:`` suffixes read as key/value pairs, and the mean-acceptance-length definition
of the engine version (docs/log-formats.md §2.2-2.3, the registry in
:mod:`specdec_diag.ingest.definitions`).
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from specdec_diag.ingest._textparse import (
    counts_problem,
    first_problem,
    malformed,
    malformed_rows,
    value_problem,
    value_problem_expr,
)
from specdec_diag.ingest.definitions import VLLM_MAL_BONUS_SINCE, version_at_least
from specdec_diag.ingest.vllm_blocks import ENGINE
from specdec_diag.schema import MALFORMED_SCHEMA, WINDOW_SCHEMA

M_DIFF = "DiffusionDecoding metrics:"
M_ITER = "Iteration("
_NUM = r"(?:[-+]?[\w.]*)"

_DIFF = (
    rf"DiffusionDecoding metrics: Committed token throughput: (?P<tps>{_NUM}) tokens/s, "
    rf"Mean denoising steps per canvas: (?P<spc>{_NUM}), "
    rf"Mean tokens committed per denoising step: (?P<tps_step>{_NUM}), "
    r"Committed: (?P<committed>\d+) tokens, Denoising steps: (?P<steps>\d+), "
    r"Canvas positions evaluated: (?P<canvas>\d+)"
)
# vllm PR #31193 (Dec 2025): "Iteration(515): 0 context requests, 0 context tokens, 20 generation
# requests, 20 generation tokens, iteration elapsed time: 10.99 ms"; PR #46647 (2026) moved it to the
# frontend logger and appends ", GPU KV cache usage: U%, encoder inputs: N, ..." after the time.
_ITER = (
    r"Iteration\((?P<it>\d+)\): (?P<ctx_req>\d+) context requests?, (?P<ctx_tok>\d+) context tokens?, "
    r"(?P<gen_req>\d+) generation requests?, (?P<gen_tok>\d+) generation tokens?, "
    rf"iteration elapsed time: (?P<ms>{_NUM}) ms(?:, GPU KV cache usage: (?P<kv>{_NUM})%)?"
)


def _base(source: str, fmt: str) -> list[pl.Expr]:
    return [pl.lit(source).alias("source"), pl.col("line"), pl.lit(ENGINE).alias("engine"),
            pl.lit(fmt).alias("format"), pl.col("time"), pl.col("proc").alias("engine_id"),
            pl.lit("interval").alias("window")]


def parse_diffusion(df: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``DiffusionDecoding metrics:`` lines: a diffusion LM's denoising counters. They are not
    speculation (no drafts, no bonus token), so no speculative column is filled: the window carries
    the committed-token throughput and names the counters in its note."""
    df = df.with_columns(pl.col("text").str.extract_groups(_DIFF).alias("_g")).unnest("_g")
    # a quoted line with its numbers elided ("Committed token throughput: ... tokens/s") still says
    # the engine decodes by diffusion: a row without numbers, never a malformed line
    elided = pl.col("committed").is_null() & pl.col("text").str.contains(r"(?:\.\.\.|…)")
    why = first_problem(
        pl.when(pl.col("committed").is_null() & ~elided).then(pl.lit("DiffusionDecoding metrics line does not "
                                                                      "match the known format")),
        value_problem_expr("tps", "Committed token throughput"),
        value_problem_expr("committed", "Committed", count=True),
        value_problem_expr("steps", "Denoising steps", count=True),
        value_problem_expr("canvas", "Canvas positions evaluated", count=True),
    )
    df = df.with_columns(why.alias("_why"))
    ok = df.filter(pl.col("_why").is_null())
    win = ok.select(
        *_base(source, "vllm-v1-diffusion"),
        pl.col("tps").cast(pl.Float64).alias("gen_tps"),
        pl.when(pl.col("committed").is_null()).then(pl.lit(
            "diffusion decoding, not speculation (the quoted line elides its numbers)")).otherwise(pl.concat_str([
            pl.lit("diffusion decoding, not speculation: committed "), pl.col("committed"),
            pl.lit(" tokens in "), pl.col("steps"), pl.lit(" denoising steps over "), pl.col("canvas"),
            pl.lit(" canvas positions (engine: "), pl.col("tps_step"),
            pl.lit(" tokens per step, "), pl.col("spc"), pl.lit(" steps per canvas); gen_tps = committed "
                                                             "token throughput over the log interval"),
        ])).alias("definition_note"),
        pl.col("proc").alias("_proc"),
    )
    return win, malformed(df.filter(pl.col("_why").is_not_null()), source, pl.col("_why"))


def parse_iteration(df: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``Iteration(N):`` lines: one engine step each. ``running_reqs`` = context + generation
    requests scheduled in the step, ``step_ms`` = the printed elapsed time, ``target_forwards`` = 1."""
    df = df.with_columns(pl.col("text").str.extract_groups(_ITER).alias("_g")).unnest("_g")
    why = first_problem(
        pl.when(pl.col("it").is_null()).then(pl.lit("Iteration line does not match the known format")),
        value_problem_expr("ms", "iteration elapsed time"), value_problem_expr("kv", "GPU KV cache usage"),
    )
    df = df.with_columns(why.alias("_why"))
    ok = df.filter(pl.col("_why").is_null())
    cast = {c: pl.col(c).cast(pl.Int64) for c in ("it", "ctx_req", "ctx_tok", "gen_req", "gen_tok")}
    ok = ok.with_columns(**cast)
    win = ok.select(
        *_base(source, "vllm-v1-iteration"),
        (pl.col("ctx_req") + pl.col("gen_req")).alias("running_reqs"),
        pl.lit(1, dtype=pl.Int64).alias("target_forwards"),
        pl.col("ms").cast(pl.Float64).alias("step_ms"),
        (pl.col("kv").cast(pl.Float64) / 100.0).round(6).alias("kv_usage"),
        pl.format("iteration {}: {} context requests ({} tokens), {} generation requests ({} tokens)",
                  "it", "ctx_req", "ctx_tok", "gen_req", "gen_tok").alias("definition_note"),
        pl.col("proc").alias("_proc"),
    )
    return win, malformed(df.filter(pl.col("_why").is_not_null()), source, pl.col("_why"))


# ---------------------------------------------------------------------------------------------
# the mean-acceptance-length definition (vllm PR #17908, first released in v0.9.0)
# ---------------------------------------------------------------------------------------------

_VERSION_RX = re.compile(r"(?:vLLM API server version |LLM engine \(v|vllm version[ :=]+v?)(\d+\.\d+(?:\.\d+)?)([\w.+-]*)")


def vllm_version(texts: list[str]) -> str | None:
    """The engine version a startup line names (``vLLM API server version 0.8.5`` or ``Initializing
    a V1 LLM engine (v0.9.0.1)``), else None. A development build (``0.8.6.dev45+g...``) may or may
    not carry a change merged near its version, so it decides nothing: None."""
    for t in texts:
        m = _VERSION_RX.search(t)
        if m:
            return None if "dev" in m[2] else m[1]
    return None


#: note of a row whose num_drafts came from the rounded MAL (Drafted is not a multiple of k)
ND_NOTE = "num_drafts inferred from the rounded mean acceptance length (approximate)"
#: note of a row under dynamic depth: the depth printed and the vector's length (``{}``: both numbers,
#: filled by ``pl.format`` on the polars path and ``str.format`` on the compiled one)
DEPTH_NOTE = ("dynamic speculative depth: k = current depth {} at the log line; the per-position vector has {} "
              "entries (the maximum depth)")


def mal_excludes_bonus(version: str | None) -> pl.Expr:
    """Whether a V1 line's printed ``Mean acceptance length`` is the pre-v0.9.0 one (accepted /
    drafts, bonus excluded). A known version decides; otherwise the line's own numbers: the
    per-position rates add up to the printed MAL (old) rather than to MAL - 1 (current), or the MAL
    is below 1, which the current definition cannot print."""
    if version is not None:
        return pl.lit(not version_at_least(version, VLLM_MAL_BONUS_SINCE)) & pl.col("mal").is_finite().fill_null(False)
    pp_sum = pl.col("ppl").list.sum()
    tol = 0.006 + 0.0005 * pl.col("ppl").list.len()
    by_pp = ((pp_sum - pl.col("mal")).abs() <= tol) & ((1.0 + pp_sum - pl.col("mal")).abs() > tol)
    return (pl.col("mal").is_finite() & ((pl.col("ppl").is_not_null() & by_pp) | (pl.col("mal") < 1.0))).fill_null(False)


def mal_note(version: str | None, old: pl.Expr) -> pl.Expr:
    """What was done with the printed MAL (null in the common, current case)."""
    how = f"engine version {version}" if version else "the line's numbers (per-position sum / MAL < 1)"
    return pl.when(old).then(pl.lit(
        f"vLLM before v{VLLM_MAL_BONUS_SINCE} printed Mean acceptance length without the bonus token "
        f"(vllm PR #17908): mean_acceptance_length = 1 + printed; decided by {how}"))


# ---------------------------------------------------------------------------------------------
# unknown SpecDecoding suffixes: key/value pairs
# ---------------------------------------------------------------------------------------------

_KV_ITEM = re.compile(r"([A-Za-z][A-Za-z _\-/()]*?):\s*([-+]?[\w.]+)\s*(%|tokens/s|tokens)?(?=,|$)")
#: a ``key:`` item with nothing readable after it: a damaged line, never a key to skip silently
_EMPTY_ITEM = re.compile(r"(?:^|,)\s*([A-Za-z][A-Za-z _\-/()]*?):\s*(?=,|$)")
_COUNTS = {"accepted", "drafted", "total accepted", "total drafted", "current speculative depth"}


def _num(pairs: dict[str, tuple[str, str]], *names: str) -> float | None:
    for want in names:
        for k, (v, _) in pairs.items():
            if k.lower() == want:
                try:
                    return float(v)
                except ValueError:
                    return None
    return None


def parse_v1_kv(df: pl.DataFrame, source: str, marker: str, known: set[str],
                version: str | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Lines whose suffix is not a known variant: parse ``key: value`` pairs. A line whose keys are all
    known is a damaged known variant (malformed); one with an unknown key is a new variant. A printed
    mean acceptance length is taken as bonus-including (current vLLM) unless the version or a value
    below 1 says otherwise, and the note says which."""
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str, str]] = []
    for rec in df.iter_rows(named=True):
        text = rec["text"].rstrip()
        suffix = text.split(marker, 1)[1]
        pairs = {k.strip(): (v, unit) for k, v, unit in _KV_ITEM.findall(suffix)}
        if (empty := _EMPTY_ITEM.search(suffix)) is not None:
            bad.append((rec["line"], f"SpecDecoding metrics item {empty.group(1).strip()!r} has no value", text))
            continue
        if not pairs or all(k in known for k in pairs):
            bad.append((rec["line"], "SpecDecoding metrics line does not match any known variant", text))
            continue
        why = next((w for k, (v, _) in pairs.items()
                    if (w := value_problem(v, k, count=k.lower() in _COUNTS)) is not None), None)
        acc, draft, window = _num(pairs, "accepted"), _num(pairs, "drafted"), "interval"
        if acc is None and draft is None:
            # only running totals (a fork's "Total accepted/drafted"): cumulative, not this window
            acc, draft, window = _num(pairs, "total accepted"), _num(pairs, "total drafted"), "cumulative"
        why = why or counts_problem(acc, draft)
        if why:
            bad.append((rec["line"], why, text))
            continue
        rows.append(_kv_row(rec, source, pairs, acc, draft, window, version))
    w = pl.DataFrame(rows, schema_overrides={"time": pl.Datetime("us", "UTC")}) if rows else pl.DataFrame(
        schema=WINDOW_SCHEMA)
    return w, malformed_rows(bad, source) if bad else pl.DataFrame(schema=MALFORMED_SCHEMA)


def _kv_row(rec: dict[str, Any], source: str, pairs: dict[str, tuple[str, str]], acc: float | None,
            draft: float | None, window: str, version: str | None) -> dict[str, Any]:
    rate = _num(pairs, "draft acceptance rate", "avg draft acceptance rate")
    mal = next((float(v) for k, (v, _) in pairs.items() if "length" in k.lower()), None)
    note = "unrecognised SpecDecoding variant parsed as key/value pairs; keys: " + ", ".join(pairs)
    if mal is not None:
        old = (version is not None and not version_at_least(version, VLLM_MAL_BONUS_SINCE)) or mal < 1.0
        if old:
            mal, note = mal + 1.0, note + "; printed mean acceptance length excludes the bonus token " \
                                          "(vLLM before v0.9.0, PR #17908): 1 added"
        elif version is None:
            note += "; mean acceptance length assumed to include the bonus token (vLLM >= 0.9.0; version unknown)"
    depth = _num(pairs, "current speculative depth")
    row: dict[str, Any] = {
        "source": source, "line": rec["line"], "engine": ENGINE, "format": "vllm-v1-specdecoding-kv",
        "time": rec["time"], "engine_id": rec["proc"], "window": window,
        "k": int(depth) if depth else None,
        "accepted_tokens": int(acc) if acc is not None else None,
        "draft_tokens": int(draft) if draft is not None else None,
        "mean_acceptance_length": mal, "definition_note": note,
        "accepted_tps": _num(pairs, "accepted throughput"), "drafted_tps": _num(pairs, "drafted throughput"),
    }
    if acc is not None and draft:
        row["acceptance_rate"] = acc / draft
    elif rate is not None and window == "interval":
        row["acceptance_rate"] = rate / 100.0
    return row
