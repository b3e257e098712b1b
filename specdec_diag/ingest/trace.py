"""Our own ``specdec-trace@1`` files: the steps table (every step, with file and line), one window
per request (window='request', the same columns engine logs fill, so the rules treat both alike),
and configuration rows from the header.

The header's ``fault`` is deliberately not exposed as a config: diagnosis must find injected bugs
from behaviour, not read them off the label (tests may read it from ``IngestResult.headers``).
A trace that fails validation is salvaged step by step; what cannot be read becomes malformed rows.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.ingest._textparse import reject_windows, value_problem
from specdec_diag.ingest.base import STEPS_SCHEMA, Parsed, Source
from specdec_diag.schema import (
    CONFIG_SCHEMA,
    HEADER_REQUIRED,
    MALFORMED_SCHEMA,
    STEP_FIELDS,
    TRACE_SCHEMA,
    WINDOW_SCHEMA,
    TraceError,
    conform_windows,
    iter_trace_records,
    read_trace,
    steps_to_frame,
    trace_temperature,
    unsupported_schema,
    validate_step,
)

FAMILY = "trace"
ENGINE = "specdec-diag"
FORMAT = TRACE_SCHEMA

#: header keys never turned into configs (the fault label, bulky or private fields).
_HIDDEN = {"type", "schema", "fault", "fault_params", "prompts", "prompt_token_ids", "versions"}


#: any version of our trace: another version is still ours, and gets a clear "unsupported" answer
_ANY_VERSION = '"' + TRACE_SCHEMA.split("@", 1)[0] + "@"


def detect(sample: str) -> bool:
    return _ANY_VERSION in sample and '"header"' in sample


def _step_problem(rec: dict[str, Any]) -> str | None:
    """A step whose scalar numbers are unusable (NaN/Infinity, negative, an id or count beyond int64):
    malformed at its own line, so one bad step never distorts its request's window."""
    for name, (dtype, _, _) in STEP_FIELDS.items():
        v = rec.get(name)
        whole = dtype in (pl.Int64, pl.List(pl.Int64))
        for x in v if isinstance(v, list) else [v]:
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                why = value_problem(x, f"step field '{name}'", count=whole)
                if why:
                    return why
    return None


def parse_file(path: Path, source: str) -> Parsed:
    """Read a trace with :func:`schema.read_trace`; if it is invalid, keep every valid step and
    report each bad line."""
    malformed: list[dict[str, Any]] = []
    try:
        trace = read_trace(path)
        header, dropped = trace.header, trace.dropped
        steps = list(zip(trace.step_lines, trace.steps, strict=True))
        for no, why in dropped:
            malformed.append({"source": source, "line": no, "reason": why, "text": ""})
    except TraceError as exc:
        header, steps, bad = _salvage(path)
        if exc.line not in {no for no, _ in bad}:
            malformed.append({"source": source, "line": exc.line, "reason": exc.message, "text": ""})
        malformed.extend({"source": source, "line": no, "reason": why, "text": ""} for no, why in bad)
    except (OSError, UnicodeError) as exc:
        return Parsed(malformed=pl.DataFrame([{"source": source, "line": None, "reason": str(exc), "text": ""}],
                                             schema=MALFORMED_SCHEMA))
    kept = []
    for no, rec in steps:
        why = _step_problem(rec)
        if why:
            malformed.append({"source": source, "line": no, "reason": why, "text": ""})
        else:
            kept.append((no, rec))
    steps = kept
    malformed.sort(key=lambda m: m["line"] or 0)
    mal = pl.DataFrame(malformed, schema=MALFORMED_SCHEMA) if malformed else pl.DataFrame(schema=MALFORMED_SCHEMA)
    if header is None:
        # a trace of another schema version is unreadable as a whole: say so as the file's error
        other = next((m["reason"] for m in malformed if m["reason"].startswith("unsupported trace schema")), None)
        return Parsed(malformed=mal, error=f"1: {other}" if other else None)
    frame = steps_to_frame([s for _, s in steps])
    frame = frame.with_columns(
        pl.lit(source).alias("source"), pl.Series("line", [no for no, _ in steps], dtype=pl.Int64)
    ).select(list(STEPS_SCHEMA))
    hdr = {**header, "source": source}
    windows, net = reject_windows(conform_windows(request_windows(frame, header, source)), source)
    return Parsed(windows=windows, malformed=pl.concat([mal, net]) if net.height else mal,
                  configs=header_configs(header, source), steps=frame, headers=[hdr])


def _salvage(path: Path) -> tuple[dict[str, Any] | None, list[tuple[int, dict[str, Any]]], list[tuple[int, str]]]:
    """Lenient read: the header if valid, every valid step, and ``(line, reason)`` for the rest."""
    header = None
    steps: list[tuple[int, dict[str, Any]]] = []
    bad: list[tuple[int, str]] = []
    for no, rec, err in iter_trace_records(path):
        if rec is None:
            bad.append((no, err or "unreadable"))
            continue
        kind = rec.get("type")
        if kind == "header" and header is None:
            missing = [k for k in HEADER_REQUIRED if k not in rec]
            if rec.get("schema") != TRACE_SCHEMA:
                bad.append((no, unsupported_schema(rec.get("schema"))))
                return None, [], bad
            if missing:
                bad.append((no, f"header lacks {', '.join(missing)}"))
                return None, [], bad
            header = rec
        elif kind == "step" and header is not None:
            why = validate_step(rec)
            if why:
                bad.append((no, why))
            else:
                steps.append((no, rec))
        elif kind not in ("summary",):
            bad.append((no, f"unexpected record type {kind!r}"))
    return header, steps, bad


def request_windows(steps: pl.DataFrame, header: dict[str, Any], source: str) -> pl.DataFrame:
    """One row per request: counts, rates, per-position acceptance (vLLM's definition: fraction of
    drafts whose position j was accepted) and the time split of the steps."""
    if steps.height == 0:
        return pl.DataFrame(schema=WINDOW_SCHEMA)
    s = steps.with_columns(pl.col("request").fill_null(0), pl.col("emitted_token_ids").list.len().alias("_emit"))
    kmax = int(s["gamma_drafted"].max() or 0)
    pos = [((pl.col("n_accepted") > j) & (pl.col("gamma_drafted") > 0)).sum().alias(f"_p{j}") for j in range(kmax)]
    g = s.group_by("request", maintain_order=True).agg(
        pl.col("line").min().alias("line"),
        pl.col("gamma_requested").max().alias("k"),
        (pl.col("gamma_drafted") > 0).sum().cast(pl.Int64).alias("num_drafts"),
        pl.col("gamma_drafted").sum().alias("draft_tokens"),
        pl.col("n_accepted").sum().alias("accepted_tokens"),
        pl.col("_emit").sum().cast(pl.Int64).alias("emitted_tokens"),
        pl.col("context_len").min().alias("context_len"),
        pl.col("draft_ms").sum(), pl.col("verify_ms").sum(), pl.col("overhead_ms").sum(),
        pl.col("target_forwards").sum(),
        *pos,
    )
    nd = pl.col("num_drafts").cast(pl.Float64)
    pp = pl.concat_list([pl.col(f"_p{j}").cast(pl.Float64) / nd for j in range(kmax)]) if kmax else pl.lit(None)
    temp = trace_temperature(header)
    created = _created(header)
    return g.select(
        pl.lit(source).alias("source"), pl.col("line"), pl.lit(ENGINE).alias("engine"), pl.lit(FORMAT).alias("format"),
        pl.lit(created, dtype=pl.Datetime("us", "UTC")).alias("time"),
        pl.lit(None, dtype=pl.Utf8).alias("engine_id"), pl.lit("request").alias("window"),
        pl.col("k"), pl.col("num_drafts"), pl.col("draft_tokens"), pl.col("accepted_tokens"), pl.col("emitted_tokens"),
        pl.when(pl.col("draft_tokens") > 0).then(pl.col("accepted_tokens") / pl.col("draft_tokens"))
        .alias("acceptance_rate"),
        pl.when(nd > 0).then(1.0 + pl.col("accepted_tokens") / nd).alias("mean_acceptance_length"),
        pl.when(nd > 0).then(pp).alias("per_position_acceptance"),
        pl.lit(temp, dtype=pl.Float64).alias("temperature"),
        pl.col("context_len"), pl.col("request").cast(pl.Utf8),
        pl.col("draft_ms"), pl.col("verify_ms"), pl.col("overhead_ms"), pl.col("target_forwards"),
    )


def _created(header: dict[str, Any]) -> dt.datetime | None:
    v = header.get("created")
    if not isinstance(v, str):
        return None
    try:
        t = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def header_configs(header: dict[str, Any], source: str) -> pl.DataFrame:
    """Header facts as config rows: nested keys flattened with dots (``sampling.temperature``),
    plus the keys the rules share with engine logs: acceptance_method, lossy, num_speculative_tokens,
    gamma_policy, temperature, draft_model, target_model."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        elif v is not None:
            rows.append((prefix, v if isinstance(v, str) else json.dumps(v)))

    for k, v in header.items():
        if k not in _HIDDEN:
            walk(k, v)
    rule = header.get("rule") or {}
    pol = header.get("gamma_policy") or {}
    models = header.get("models") or {}
    shared = {
        "acceptance_method": rule.get("name") if isinstance(rule, dict) else rule,
        "lossy": rule.get("lossy") if isinstance(rule, dict) else None,
        "num_speculative_tokens": pol.get("gamma") if isinstance(pol, dict) else None,
        "gamma_policy": pol.get("name") if isinstance(pol, dict) else pol,
        "temperature": (header.get("sampling") or {}).get("temperature"),
        "draft_model": models.get("draft") if isinstance(models, dict) else None,
        "target_model": models.get("target") if isinstance(models, dict) else None,
    }
    for k, v in shared.items():
        if v is not None:
            rows.append((k, v if isinstance(v, str) else json.dumps(v)))
    return pl.DataFrame(
        {"source": [source] * len(rows), "line": [1] * len(rows), "engine": [ENGINE] * len(rows),
         "key": [k for k, _ in rows], "value": [v for _, v in rows]},
        schema=CONFIG_SCHEMA,
    )


SOURCE = Source(family=FAMILY, markers=(), detect=detect, parse_file=parse_file)
