"""The ``specdec-requests@1`` file: what `specdec-diag capture` writes and ingest / replay read.

JSON Lines, ``type`` first: one ``header``, one ``request`` per completed (or failed) request in
completion order, and a closing ``summary`` (absent when the capture was killed; readers cope).
Field meanings are documented in ``docs/capture.md``; keep the two in step. No torch here: the
log-analysis side imports this module.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUESTS_SCHEMA = "specdec-requests@1"

#: engines a capture can name in its header (the window table's ``engine`` values)
ENGINES = ("llama.cpp", "vllm", "sglang", "trtllm", "openai")
#: request APIs the client speaks
APIS = ("llamacpp", "openai", "sglang")

#: normalised per-request speculative counters (``record["spec"]``); null where the engine lacks one
SPEC_FIELDS = ("num_drafts", "draft_tokens", "accepted_tokens", "k", "accepted_per_pos", "source")


class RequestsFileError(ValueError):
    """A requests file that cannot be read; ``str()`` is one line ``path[:line]: message``."""


@dataclass
class RequestsFile:
    """A read ``specdec-requests@1`` file; ``dropped`` lists ``(line, reason)`` of unreadable lines."""

    path: str
    header: dict[str, Any]
    requests: list[dict[str, Any]]
    summary: dict[str, Any] | None
    lines: list[int] = field(default_factory=list)  # 1-based line of each request record
    dropped: list[tuple[int, str]] = field(default_factory=list)

    @property
    def engine(self) -> str:
        return str(self.header.get("engine") or "openai")


def is_requests_file(path: str | Path) -> bool:
    """True when the file's first line is a ``specdec-requests@1`` header (cheap: reads one line)."""
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            first = fh.readline(1 << 20)
    except OSError:
        return False
    return f'"{REQUESTS_SCHEMA}"' in first and '"header"' in first


def read_requests(path: str | Path) -> RequestsFile:
    """Read a requests file; a bad line is dropped (recorded in ``dropped``), a bad header raises."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    header: dict[str, Any] | None = None
    requests: list[dict[str, Any]] = []
    lines: list[int] = []
    summary = None
    dropped: list[tuple[int, str]] = []
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            for no, text in enumerate(fh, 1):
                if not text.strip():
                    continue
                try:
                    rec = json.loads(text)
                except json.JSONDecodeError as exc:
                    dropped.append((no, f"not JSON: {exc.msg}"))
                    continue
                kind = rec.get("type") if isinstance(rec, dict) else None
                if header is None:
                    if kind != "header" or rec.get("schema") != REQUESTS_SCHEMA:
                        raise RequestsFileError(f"{path}:{no}: not a {REQUESTS_SCHEMA} header")
                    header = rec
                elif kind == "request":
                    requests.append(rec)
                    lines.append(no)
                elif kind == "summary":
                    summary = rec
                else:
                    dropped.append((no, f"unknown record type {kind!r}"))
    except OSError as exc:
        raise RequestsFileError(f"{path}: {exc.strerror or exc}") from None
    if header is None:
        raise RequestsFileError(f"{path}: empty file, no {REQUESTS_SCHEMA} header")
    return RequestsFile(str(path), header, requests, summary, lines, dropped)
