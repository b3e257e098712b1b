"""Write ``specdec-trace@1`` files (header / step / summary JSON Lines) and compute the summary.

Steps are serialised once each, to a buffered file, so a crashed run still leaves every whole step
on disk and tracing stays a few percent of the step time. JSON has no NaN: non-finite floats are
written as null (a NaN verifier shows up as null p values).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

from specdec_diag.schema import TRACE_SCHEMA, Trace, json_default, jsonable, trace_to_parquet


class Timer:
    """perf_counter timer that synchronises CUDA first, so GPU work is charged to the right phase."""

    def __init__(self, device: str = "cpu"):
        self.cuda = device.startswith("cuda")
        if self.cuda:
            import torch

            self._sync = torch.cuda.synchronize
        else:
            self._sync = None

    def now(self) -> float:
        if self._sync is not None:
            self._sync()
        return time.perf_counter()


def clean(v: Any) -> Any:
    """JSON-safe copy of a trace record or replay result (non-finite floats -> None): the one
    converter, :func:`specdec_diag.schema.jsonable`, under the name the decoder uses."""
    return jsonable(v)


class TraceWriter:
    """Append records to a JSONL file (``None`` path: keep them in memory only)."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self.records: list[dict[str, Any]] = []
        self._fh = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115

    def write(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        if self._fh is not None:
            self._fh.write(json.dumps(rec, default=json_default, allow_nan=False) + "\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def versions() -> dict[str, str]:
    import torch
    import transformers

    from specdec_diag import __version__ as ours

    return {"specdec_diag": ours, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def summarise(steps: list[dict[str, Any]], wall_s: float, outputs: list[dict[str, Any]],
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary record. Definitions (as the CLI table prints them):
    acceptance_rate = accepted / drafted (bonus excluded); mean_acceptance_length = 1 + accepted / steps
    (tokens per verify step if nothing is trimmed, bonus included); per_position_acceptance[j] =
    share of steps that drafted position j+1 whose accepted count n >= j+1."""
    spec = [s for s in steps if s["gamma_drafted"] > 0]
    drafted = sum(s["gamma_drafted"] for s in steps)
    accepted = sum(s["n_accepted"] for s in steps)
    emitted = sum(len(s["emitted_token_ids"]) for s in steps)
    gmax = max((s["gamma_drafted"] for s in spec), default=0)
    per_pos = []
    for j in range(1, gmax + 1):
        tried = [s for s in spec if s["gamma_drafted"] >= j]
        per_pos.append(sum(s["n_accepted"] >= j for s in tried) / len(tried))
    n = len(steps)
    tot = {k: sum(s[k] for s in steps) for k in ("draft_ms", "verify_ms", "overhead_ms")}
    return {
        "type": "summary",
        "steps": n,
        "draft_tokens": drafted,
        "accepted_tokens": accepted,
        "emitted_tokens": emitted,
        "acceptance_rate": accepted / drafted if drafted else None,
        "mean_acceptance_length": 1 + accepted / n if n else None,
        "tokens_per_step": emitted / n if n else None,
        "per_position_acceptance": per_pos,
        "target_forwards": sum(s["target_forwards"] for s in steps),
        "tokens_per_s": emitted / wall_s if wall_s > 0 else None,
        "wall_s": wall_s,
        "draft_ms_total": tot["draft_ms"],
        "verify_ms_total": tot["verify_ms"],
        "overhead_ms_total": tot["overhead_ms"],
        **(extra or {}),
        "outputs": outputs,
    }


def header_record(**fields: Any) -> dict[str, Any]:
    return {"type": "header", "schema": TRACE_SCHEMA, **fields}


def records_to_trace(records: list[dict[str, Any]], path: str = "<memory>") -> Trace:
    """A Trace from a writer's records; they are the file's lines in order (one record a line), so
    each step's line number is its 1-based position, as ``read_trace`` would give it."""
    header = next(r for r in records if r["type"] == "header")
    steps = [r for r in records if r["type"] == "step"]
    summary = next((r for r in records if r["type"] == "summary"), None)
    step_lines = [n for n, r in enumerate(records, 1) if r["type"] == "step"]
    return Trace(path, header, steps, summary, step_lines=step_lines)


def export_parquet(records: list[dict[str, Any]], out: str | Path) -> Path:
    """Parquet of the steps (schema.trace_to_parquet), from in-memory records."""
    return trace_to_parquet(records_to_trace(records), out)
