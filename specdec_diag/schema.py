"""One place for every schema the toolkit shares: the trace (`specdec-trace@1`), the normalised
window table, and the report ids (`specdec-diag/report@2`, run by run; `@1`, the pooled shape the
dashboard caches and old baselines use).

The decoder writes traces, ingest reads them like any other source, analysis and the dashboard read
the tables. Field meanings are documented in ``docs/trace-schema.md``; keep the two in step.

This module must not import torch: the analysis side imports it.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.inputs import InputError, open_text_lines

TRACE_SCHEMA = "specdec-trace@1"
#: the report, run by run (docs/report.md); the pooled @1 shape stays readable (old baselines, the
#: dashboard's cached directory report)
REPORT_SCHEMA = "specdec-diag/report@2"
POOLED_REPORT_SCHEMA = "specdec-diag/report@1"


# ---------------------------------------------------------------------------------------------
# Trace: JSON Lines, one object per line, "type" first: header, step..., summary.
# ---------------------------------------------------------------------------------------------

LAST_TOKEN_KINDS = ("correction", "bonus")
TRIMMED_BY = ("none", "eos", "max_length")

#: step field -> (polars dtype, required, one-line meaning). Optional fields may be absent or null.
STEP_FIELDS: dict[str, tuple[Any, bool, str]] = {
    "step": (pl.Int64, True, "0-based index of the speculative step within the trace"),
    "request": (pl.Int64, False, "0-based index of the prompt this step belongs to (default 0)"),
    "context_len": (pl.Int64, True, "sequence length (prompt + generated) before the step: L"),
    "gamma_requested": (pl.Int64, True, "draft length the gamma policy asked for"),
    "gamma_drafted": (pl.Int64, True, "draft tokens actually proposed (< requested on confidence stop / budget)"),
    "draft_token_ids": (pl.List(pl.Int64), True, "the drafted token ids, length gamma_drafted"),
    "q": (pl.List(pl.Float64), True, "draft probability of each drafted token, after temperature/top-k/top-p"),
    "p": (pl.List(pl.Float64), True, "target probability of each drafted token, processed identically"),
    "uniforms": (pl.List(pl.Float64), False, "uniform draws r used by the sampling test (null for greedy)"),
    "accept_flags": (pl.List(pl.Boolean), True, "outcome of the acceptance test at each drafted position "
                     "(evaluated for every position in one pass); n_accepted is the leading run of true"),
    "n_accepted": (pl.Int64, True, "draft tokens accepted this step: n"),
    "emitted_token_ids": (pl.List(pl.Int64), True, "tokens appended this step: n accepted drafts + 1 verifier "
                          "token, unless trimmed by EOS / max length"),
    "last_token_kind": (pl.Utf8, True, "how the verifier's token arose: correction | bonus"),
    "trimmed_by": (pl.Utf8, False, "none | eos | max_length"),
    "target_forwards": (pl.Int64, True, "target (verifier) forward passes in this step; 1 when healthy"),
    "draft_forwards": (pl.Int64, False, "draft forward passes in this step"),
    "target_cache_before": (pl.Int64, False, "target KV cache length before the step"),
    "target_cache_after": (pl.Int64, False, "target KV cache length after the step (healthy: sequence length - 1)"),
    "draft_cache_before": (pl.Int64, False, "draft KV cache length before the step"),
    "draft_cache_after": (pl.Int64, False, "draft KV cache length after the step"),
    "verify_pos_first": (pl.Int64, False, "position id of the first token in the verify window (healthy: L - 1)"),
    "verify_pos_last": (pl.Int64, False, "position id of the last token in the verify window (L - 1 + gamma_drafted)"),
    "min_pq": (pl.List(pl.Float64), False, "sum_x min(p, q) = 1 - TV(p, q) at each drafted position"),
    "argmax_p": (pl.List(pl.Int64), False, "target argmax at each of the gamma_drafted + 1 verified positions"),
    "draft_ms": (pl.Float64, True, "wall time of the draft phase, ms (cuda-synchronised on GPU)"),
    "verify_ms": (pl.Float64, True, "wall time of the verification forward(s), ms"),
    "overhead_ms": (pl.Float64, True, "everything else in the step (acceptance, cache crop, bookkeeping), ms"),
    "gamma_next": (pl.Int64, False, "gamma the policy will request next step"),
    "threshold": (pl.Float64, False, "confidence threshold in force (confidence policy)"),
}

STEP_REQUIRED = tuple(k for k, (_, req, _) in STEP_FIELDS.items() if req)

HEADER_REQUIRED = ("schema", "mode", "rule", "gamma_policy", "sampling")
SUMMARY_REQUIRED = ("steps", "draft_tokens", "accepted_tokens", "emitted_tokens")


def unsupported_schema(schema: Any) -> str:
    """The one wording for a trace of another version (every command, replay included)."""
    return f"unsupported trace schema {schema!r} (this version reads @{TRACE_SCHEMA.rsplit('@', 1)[1]})"


class TraceError(ValueError):
    """A trace that cannot be read. ``str()`` is one line: ``path:line: message``."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path, self.line, self.message = str(path), line, message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass
class Trace:
    """A trace read from disk. ``dropped`` lists ``(line, reason)`` of lines that were not whole
    (a crashed run's truncated last line); everything whole before it is kept. ``step_lines[i]`` is
    the 1-based file line of ``steps[i]`` (empty for a trace built in memory), so a reader that
    reports a step never re-reads the file to find it."""

    path: str
    header: dict[str, Any]
    steps: list[dict[str, Any]]
    summary: dict[str, Any] | None
    dropped: list[tuple[int, str]] = field(default_factory=list)
    step_lines: list[int] = field(default_factory=list)

    @property
    def lossy(self) -> bool:
        return bool(self.header.get("rule", {}).get("lossy", False))

    def step_line(self, i: int) -> int | None:
        """The file line of step ``i``; None when the trace was not read from a file."""
        return self.step_lines[i] if 0 <= i < len(self.step_lines) else None

    def steps_frame(self) -> pl.DataFrame:
        return steps_to_frame(self.steps)


def open_text(path: str | Path):
    """Open a text file, transparently gunzipping ``.gz``; undecodable bytes are replaced."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _check_type(value: Any, dtype: Any) -> bool:
    if value is None:
        return True
    if dtype == pl.Int64:
        return isinstance(value, int) and not isinstance(value, bool)
    if dtype == pl.Float64:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype == pl.Utf8:
        return isinstance(value, str)
    if dtype == pl.Boolean:
        return isinstance(value, bool)
    if isinstance(dtype, pl.List):
        return isinstance(value, list) and all(_check_type(v, dtype.inner) for v in value)
    return True


def validate_step(rec: dict[str, Any]) -> str | None:
    """Return why a step record is invalid, or None. Checks presence, types and the structural
    invariants any reader may rely on (lengths agree, 0 <= n <= gamma_drafted)."""
    for name in STEP_REQUIRED:
        if name not in rec or rec[name] is None:
            return f"step record lacks required field {name!r}"
    for name, value in rec.items():
        spec = STEP_FIELDS.get(name)
        if spec and not _check_type(value, spec[0]):
            return f"field {name!r} has the wrong type ({type(value).__name__})"
    g = rec["gamma_drafted"]
    for name in ("draft_token_ids", "q", "p", "accept_flags"):
        if len(rec[name]) != g:
            return f"field {name!r} has {len(rec[name])} entries, gamma_drafted is {g}"
    if not 0 <= rec["n_accepted"] <= g:
        return f"n_accepted={rec['n_accepted']} outside 0..gamma_drafted={g}"
    if rec["last_token_kind"] not in LAST_TOKEN_KINDS:
        return f"last_token_kind must be one of {LAST_TOKEN_KINDS}, got {rec['last_token_kind']!r}"
    if rec.get("trimmed_by") not in (None, *TRIMMED_BY):
        return f"trimmed_by must be one of {TRIMMED_BY}, got {rec['trimmed_by']!r}"
    return None


def iter_trace_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Yield ``(line_no, record, error)`` for each non-blank line; record is None when the line is
    not a JSON object. Read through the one input layer (gzip, encodings, line endings): damage after
    some lines becomes one last bad record (a crashed run's cut line); damage before any is a
    :class:`TraceError`."""
    no = 0
    try:
        for no, raw in enumerate(open_text_lines(path, long_lines="skip"), start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield no, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(rec, dict) or "type" not in rec:
                yield no, None, "not a trace record (a JSON object with a 'type' field)"
                continue
            yield no, rec, None
    except InputError as exc:
        if no == 0:
            raise TraceError(path, exc.line, exc.message) from None
        yield no + 1, None, exc.message


def read_trace(path: str | Path) -> Trace:
    """Read and validate a ``specdec-trace@1`` file.

    Raises :class:`TraceError` naming the file and the first bad line. A bad *last* line (a crashed
    run) is not an error: it is dropped and listed in ``Trace.dropped``; a missing summary is allowed
    for the same reason.
    """
    path = Path(path)
    if not path.exists():
        raise TraceError(path, None, "no such file")
    records = list(iter_trace_records(path))
    if not records:
        raise TraceError(path, None, "empty trace: no header record")
    header: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = []
    step_lines: list[int] = []
    summary: dict[str, Any] | None = None
    dropped: list[tuple[int, str]] = []
    last = len(records) - 1
    for i, (no, rec, err) in enumerate(records):
        if err is not None or rec is None:
            if i == last and header is not None:
                dropped.append((no, f"truncated last line dropped: {err}"))
                continue
            raise TraceError(path, no, err or "unreadable")
        kind = rec["type"]
        if header is None:
            if kind != "header":
                raise TraceError(path, no, f"first record must be the header, got type {kind!r}")
            if rec.get("schema") != TRACE_SCHEMA:
                raise TraceError(path, no, unsupported_schema(rec.get("schema")))
            missing = [k for k in HEADER_REQUIRED if k not in rec]
            if missing:
                raise TraceError(path, no, f"header lacks {', '.join(missing)}")
            header = rec
        elif kind == "step":
            why = validate_step(rec)
            if why:
                if i == last:
                    dropped.append((no, f"incomplete last step dropped: {why}"))
                    continue
                raise TraceError(path, no, why)
            steps.append(rec)
            step_lines.append(no)
        elif kind == "summary":
            if summary is not None:
                raise TraceError(path, no, "second summary record")
            missing = [k for k in SUMMARY_REQUIRED if k not in rec]
            if missing:
                raise TraceError(path, no, f"summary lacks {', '.join(missing)}")
            summary = rec
        elif kind == "header":
            raise TraceError(path, no, "second header record")
        else:
            raise TraceError(path, no, f"unknown record type {kind!r}")
    assert header is not None
    return Trace(str(path), header, steps, summary, dropped, step_lines)


def steps_to_frame(steps: Iterable[dict[str, Any]]) -> pl.DataFrame:
    """Step records as a typed polars frame with every column of :data:`STEP_FIELDS`."""
    schema = {name: dtype for name, (dtype, _, _) in STEP_FIELDS.items()}
    rows = [{k: _finite(rec.get(k)) for k in schema} for rec in steps]
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def _finite(v: Any) -> Any:
    # JSON has no NaN; the decoder writes null for a NaN probability. Keep floats as they are.
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def trace_to_parquet(trace: Trace, out: str | Path) -> Path:
    """Export the steps of a trace to Parquet (same columns as the JSONL steps), atomically."""
    out = Path(out)
    return write_parquet_atomic(trace.steps_frame(), out)


def temp_beside(out: Path) -> Path:
    """A temporary name beside ``out``, unique per process and thread (concurrent writers of one entry
    never share a temporary file; the last rename wins, whole)."""
    import os
    import threading

    return out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_parquet_atomic(df: pl.DataFrame, out: str | Path) -> Path:
    """Write to a temp file beside ``out`` and rename, so readers never see a half-written file."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(out)
    df.write_parquet(tmp)
    tmp.replace(out)
    return out


def write_atomic(out: Path, data: bytes | str) -> bool:
    """``data`` written to ``out`` through a temporary file and a rename (readers never see half a
    file). False when the directory is not writable: callers use this for caches, where a failed
    write only costs speed."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(out)
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        tmp.replace(out)
        return True
    except OSError:
        return False


def jsonable(v: Any) -> Any:
    """Recursively make a value JSON-safe: NaN/inf -> None, datetimes -> ISO, tuples -> lists,
    numpy/torch scalars and arrays -> Python numbers and lists. The one converter every writer uses."""
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, (str, bytes)):
        return v
    if hasattr(v, "tolist"):  # numpy / torch scalars and arrays
        return jsonable(v.tolist())
    if hasattr(v, "item"):  # other one-value containers
        return jsonable(v.item())
    return v


def json_default(o: Any) -> Any:
    """``json.dumps`` default: :func:`jsonable` for what the encoder cannot write itself."""
    v = jsonable(o)
    if v is o:
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")
    return v


# ---------------------------------------------------------------------------------------------
# Normalised window table (docs/architecture.md §3): one row per metrics record of any source.
# ---------------------------------------------------------------------------------------------

#: column -> (dtype, meaning). The first block is the contract; the second block adds context that
#: the diagnosis rules use (null where a source lacks it).
WINDOW_COLUMNS: dict[str, tuple[Any, str]] = {
    "source": (pl.Utf8, "file path the record came from"),
    "line": (pl.Int64, "1-based line number in that file"),
    "engine": (pl.Utf8, "vllm | sglang | llama.cpp | tgi | trtllm | specdec-diag"),
    "format": (pl.Utf8, "format variant id, e.g. vllm-v1-specdecoding-D"),
    "time": (pl.Datetime("us", "UTC"), "record time in UTC when known"),
    "engine_id": (pl.Utf8, "engine / process / rank key (e.g. 'Engine 000', 'pid=1234', 'TP0')"),
    "window": (pl.Utf8, "interval | cumulative | request | run"),
    "k": (pl.Int64, "draft length gamma configured (or drafted, for traces)"),
    "num_drafts": (pl.Int64, "verify steps (draft sequences) in the window"),
    "draft_tokens": (pl.Int64, "draft tokens proposed in the window"),
    "accepted_tokens": (pl.Int64, "draft tokens accepted (prefix acceptance, bonus excluded)"),
    "emitted_tokens": (pl.Int64, "tokens emitted by speculative steps (accepted + one verifier token each)"),
    "acceptance_rate": (pl.Float64, "accepted_tokens / draft_tokens, bonus excluded, fraction"),
    "mean_acceptance_length": (pl.Float64, "tokens per verify step, bonus included (1 + accepted/num_drafts)"),
    "per_position_acceptance": (pl.List(pl.Float64), "fraction of drafts whose position j was accepted"),
    "accepted_tps": (pl.Float64, "accepted draft tokens per second"),
    "drafted_tps": (pl.Float64, "drafted tokens per second"),
    "gen_tps": (pl.Float64, "generation throughput, tokens/s"),
    "running_reqs": (pl.Int64, "running requests / batch size"),
    "waiting_reqs": (pl.Int64, "queued requests"),
    "kv_usage": (pl.Float64, "KV cache usage, fraction 0..1"),
    "cuda_graph": (pl.Boolean, "decode batch ran under CUDA graphs"),
    # --- context beyond the contract ---
    "prompt_tps": (pl.Float64, "prompt (prefill) throughput, tokens/s"),
    "temperature": (pl.Float64, "sampling temperature when known"),
    "context_len": (pl.Int64, "context length (tokens) at the record"),
    "request": (pl.Utf8, "request id / index for per-request records"),
    "draft_ms": (pl.Float64, "draft time in the window, ms (traces)"),
    "verify_ms": (pl.Float64, "verification time in the window, ms (traces)"),
    "overhead_ms": (pl.Float64, "other step time in the window, ms (traces)"),
    "target_forwards": (pl.Int64, "target forward passes in the window (traces)"),
    "step_ms": (pl.Float64, "wall time of one engine step (iteration) as the engine logged it, ms"),
    "ttft_ms": (pl.Float64, "time to first token, ms"),
    "tpot_ms": (pl.Float64, "time per output token, ms"),
    "definition_note": (pl.Utf8, "conversion applied to the engine's own numbers, if any"),
}

WINDOW_SCHEMA: dict[str, Any] = {name: dtype for name, (dtype, _) in WINDOW_COLUMNS.items()}
CONTRACT_WINDOW_COLUMNS = tuple(list(WINDOW_COLUMNS)[: list(WINDOW_COLUMNS).index("cuda_graph") + 1])
#: columns whose presence makes a window row a speculative-decoding record (not just engine context)
SPEC_COLUMNS = ("num_drafts", "draft_tokens", "accepted_tokens", "acceptance_rate", "mean_acceptance_length")
#: the token/step counts a window adds up; cumulative sources difference exactly these
COUNTER_COLUMNS = ("num_drafts", "draft_tokens", "accepted_tokens", "emitted_tokens")


def empty_windows() -> pl.DataFrame:
    return pl.DataFrame(schema=WINDOW_SCHEMA)


def conform_windows(df: pl.DataFrame) -> pl.DataFrame:
    """Add missing window columns as nulls, cast to the table's dtypes, and order them; extra
    columns are dropped so every source yields the same table."""
    exprs = []
    for name, dtype in WINDOW_SCHEMA.items():
        if name in df.columns:
            exprs.append(pl.col(name).cast(dtype, strict=False))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return df.select(exprs)


#: Malformed-line table: lines that looked like metrics but did not parse (-> MALFORMED_INPUT).
MALFORMED_SCHEMA: dict[str, Any] = {"source": pl.Utf8, "line": pl.Int64, "reason": pl.Utf8, "text": pl.Utf8}

#: Configuration facts seen in logs (startup lines, trace headers): one row per fact.
CONFIG_SCHEMA: dict[str, Any] = {
    "source": pl.Utf8, "line": pl.Int64, "engine": pl.Utf8, "key": pl.Utf8, "value": pl.Utf8,
}

#: Per-input summary (report JSON "inputs").
INPUT_SCHEMA: dict[str, Any] = {
    "path": pl.Utf8, "format": pl.Utf8, "engine": pl.Utf8, "lines": pl.Int64, "records": pl.Int64,
    "malformed": pl.Int64, "fingerprint": pl.Utf8, "error": pl.Utf8,
}


# ---------------------------------------------------------------------------------------------
# Reading a trace header: the one definition of each fact the analysis asks of it.
# ---------------------------------------------------------------------------------------------

#: header ``mode`` values of a plain autoregressive (no speculation) trace, lower case
BASELINE_MODES = ("baseline", "ar", "autoregressive", "plain", "no-spec", "nospec")


def trace_is_baseline(header: dict[str, Any]) -> bool:
    """A plain autoregressive trace (``specdec-diag decode --baseline``): its ``mode`` names the
    baseline. Its steps are the reference speed, never judged as speculation."""
    return str(header.get("mode", "")).lower() in BASELINE_MODES


def trace_rule_name(header: dict[str, Any]) -> str | None:
    """Name of the acceptance rule in a header (``rule.name``, or ``rule`` given as a string)."""
    rule = header.get("rule")
    if isinstance(rule, dict):
        return rule.get("name")
    return rule if isinstance(rule, str) else None


def trace_temperature(header: dict[str, Any]) -> float | None:
    """Sampling temperature of a trace, None when unknown. Greedy decoding (rule ``greedy``, or
    ``sampling.do_sample`` false) is temperature 0 whatever ``sampling.temperature`` says: the
    decoder records the sampling parameters it was given, not the ones the greedy rule used."""
    samp = header.get("sampling")
    samp = samp if isinstance(samp, dict) else {}
    if trace_rule_name(header) == "greedy" or samp.get("do_sample") is False:
        return 0.0
    t = samp.get("temperature")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None
