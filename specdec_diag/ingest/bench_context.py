"""Acceptance against context length, pasted as a table: a context column (``Context``, ``ISL``,
``prompt len``) and one or more acceptance columns, each a series (speculators #684: ``Context |
Eagle3 | Eagle3-SW`` with acceptance lengths per 2k-20k context; vLLM #47602: ``Context | Acceptance
| MTP vs plain decode`` with ``80-91%`` at ~100 tokens, ``~53%`` at ~34K).

A series column is an acceptance rate when its header says so (``Acceptance``, ``accept rate``) or its
cells are percentages or fractions; an acceptance length when its header says so (``AL``, ``accept
length``) or, under a header naming a drafting method (``Eagle3``), its unit-less cells lie between 1
and :data:`MAX_LENGTH` (tokens per verify step can be nothing else in a table keyed by context). Each
(row, series) is one record with ``ctx`` set, read by ACCEPTANCE_DECAY_CONTEXT's summary-table path.
"""

from __future__ import annotations

import re
from typing import Any

from specdec_diag.ingest.bench_labels import BASE, SPEC, classify, number

#: the longest acceptance length a table value is read as (k + 1 of the deepest drafters)
MAX_LENGTH = 20.0
_CTX_HEADER = re.compile(
    r"^(?:context(?:[ _-]?(?:len(?:gth)?|size|tokens?))?|ctx(?:[ _-]?len)?|isl|input[ _-]?(?:len(?:gth)?|tokens)|"
    r"prompt[ _-]?(?:len(?:gth)?|tokens)|seq(?:uence)?[ _-]?len(?:gth)?)(?:\s*\((?:tokens?|tok)\))?$", re.I)
_RATE_HEADER = re.compile(r"^(?:avg[ _-]?)?(?:draft[ _-]?)?(?:accept(?:ance)?(?:[ _-]?(?:rate|%|\(%\)))?|"
                          r"acc\.?[ _-]?(?:rate|%|\(%\)))$", re.I)
_LENGTH_HEADER = re.compile(r"accept(?:ance|ed)?[ _-]*len(?:gth)?|^\s*(?:mean[ _-]?)?(?:al|τ|tau)\s*$", re.I)
_SKIP = re.compile(r"speed-?up|ratio|\bvs\b|diff|Δ|change|gain|delta|t/s|tok|throughput|latency|time", re.I)
_SCALE = re.compile(r"^([kKmM])\b")


def context_tokens(cell: str) -> float | None:
    """A context length as printed: ``2k`` / ``~34K`` / ``~100 tok`` / ``4096``, in tokens."""
    v, unit, _ = number(cell)
    if v is None or v < 0:
        return None
    m = _SCALE.match(unit.strip())
    return v * (1000.0 if m and m.group(1) in "kK" else 1e6 if m else 1.0)


def _series_kind(header: str, values: list[tuple[float, str]], speeds: bool) -> str | None:
    """``acc`` (a rate), ``mal`` (tokens per step) or None for a column of a context table. ``speeds``:
    the table compares runs with and without speculation (a baseline column), so a column named by a
    drafting method holds speeds there, not acceptance."""
    if not values or _SKIP.search(header):
        return None
    pct = all("%" in u for _, u in values)
    if _LENGTH_HEADER.search(header):
        return "mal"
    if _RATE_HEADER.match(header.strip()) or pct:
        return "acc"
    if not speeds and classify(header).kind == SPEC and not any(u.strip() for _, u in values):
        if all(1.0 <= v <= MAX_LENGTH for v, _ in values):
            return "mal"
        if all(0.0 <= v <= 1.0 for v, _ in values):
            return "acc"
    return None


def context_records(header: list[str], body: list[tuple[int, list[str]]]) -> list[dict[str, Any]]:
    """The (row, series) records of an acceptance-vs-context table, empty when it is not one."""
    ctx_col = next((j for j, h in enumerate(header) if _CTX_HEADER.match(h.strip())), None)
    if ctx_col is None:
        return []
    speeds = any(classify(h).kind == BASE for j, h in enumerate(header) if j != ctx_col)
    out = []
    for j, name in enumerate(header):
        if j == ctx_col:
            continue
        cells = [(line, cs[ctx_col], cs[j]) for line, cs in body if j < len(cs) and ctx_col < len(cs)]
        parsed = [(line, context_tokens(c), *number(v)) for line, c, v in cells]
        parsed = [p for p in parsed if p[1] is not None and p[2] is not None]
        kind = _series_kind(name, [(v, u) for _, _, v, u, _ in parsed], speeds)
        if kind is None or len(parsed) < 2:
            continue
        for line, ctx, v, unit, ranged in parsed:
            value = v / 100.0 if kind == "acc" and ("%" in unit or v > 1.0) else v
            out.append({"line": line, "label": name, "kind": SPEC, "k": None, "metrics": {kind: (value, name)},
                        "ctx": int(ctx), "origin": "table", "format": "bench-context-table", "ranged": ranged})
    return out


__all__ = ["MAX_LENGTH", "context_records", "context_tokens"]
