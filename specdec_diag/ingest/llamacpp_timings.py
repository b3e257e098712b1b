"""llama-server's per-response ``timings`` object (docs/log-formats.md §4.2): ``draft_n`` and
``draft_n_accepted`` (llama.cpp PR #12603; both ``null`` when the request never drafted) next to
``predicted_n`` / ``predicted_per_second``, as users paste it (``jq .timings``, pretty-printed) or as
JSON lines of responses (every key on one line). One ``request`` row per object that drafted.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from specdec_diag.ingest._textparse import finite, ratio, rows_to_windows
from specdec_diag.schema import WINDOW_SCHEMA

MARKERS = ('"draft_n"', '"draft_n_accepted"', '"predicted_per_second"', '"predicted_n"')
_KEY = re.compile(r'"(draft_n_accepted|draft_n|predicted_per_second|predicted_n)"\s*:\s*'
                  r'(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|null)')
#: keys of one object lie within this many lines of its draft_n (pretty-printed timings span ~12)
_SPAN = 12
_NOTE = ("llama-server response timings: acceptance_rate = draft_n_accepted / draft_n (bonus excluded); "
         "gen_tps = predicted_per_second")


def _occurrences(lines: pl.DataFrame) -> list[tuple[int, str, str]]:
    t = pl.col("text")
    cand = lines.filter(t.str.contains('"draft_n', literal=True) | t.str.contains('"predicted_', literal=True))
    out = []
    for ln, text in cand.select("line", "text").iter_rows():
        out += [(ln, m.group(1), m.group(2)) for m in _KEY.finditer(text[:100_000])]
    return out


def timings_rows(lines: pl.DataFrame, source: str, engine: str) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
    """Window rows and malformed ``(line, reason, text)`` of every timings object that drafted."""
    occ = _occurrences(lines)
    if not any(k == "draft_n" for _, k, _ in occ):
        return pl.DataFrame(schema=WINDOW_SCHEMA), []
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str, str]] = []
    for i, (ln, key, raw) in enumerate(occ):
        if key != "draft_n":
            continue
        near = _object_keys(occ, i, ln)
        draft, acc = _count(raw), _count(near.get("draft_n_accepted"))
        if raw == "null" or draft is None:
            if raw != "null":
                bad.append((ln, f"draft_n is {raw} (not a count)", ""))
            continue
        if acc is None or acc > draft:
            why = "without draft_n_accepted" if acc is None else f"accepts more ({acc}) than it drafted ({draft})"
            bad.append((ln, f"timings object {why}", ""))
            continue
        rows.append({
            "source": source, "line": ln, "engine": engine, "format": "llamacpp-timings", "window": "request",
            "draft_tokens": draft, "accepted_tokens": acc, "acceptance_rate": ratio(acc, draft),
            "gen_tps": finite(near.get("predicted_per_second")), "definition_note": _NOTE,
        })
    return rows_to_windows(rows), bad


def _object_keys(occ: list[tuple[int, str, str]], i: int, ln: int) -> dict[str, str]:
    """The other keys of draft_n's object within the span, never across another draft_n: the
    accepted count follows it (llama-server writes draft_n, then draft_n_accepted), the predicted_*
    keys precede it (else follow, in objects written in another key order)."""
    near: dict[str, str] = {}
    for j in range(i - 1, -1, -1):
        lj, kj, vj = occ[j]
        if kj == "draft_n" or ln - lj > _SPAN or (kj == "draft_n_accepted"):
            break
        near.setdefault(kj, vj)
    for j in range(i + 1, len(occ)):
        lj, kj, vj = occ[j]
        if kj == "draft_n" or lj - ln > _SPAN:
            break
        near.setdefault(kj, vj)
    return near


def _count(raw: str | None) -> int | None:
    v = finite(raw)
    return int(v) if v is not None and v >= 0 and v == int(v) and v < 2**62 else None


# --- the MTP benchmark client shared in llama.cpp's MTP pull requests (#22673, #23398) ----------------
#: "  code_python        pred= 192 draft= 166 acc= 107 rate=0.645 tok/s=93.6" (rate=n/a without drafts)
_BENCH = re.compile(r"^\s*(\S+)\s+pred=\s*(\d+)\s+draft=\s*(\d+)\s+acc=\s*(\d+)\s+rate=\s*(\S+)\s+tok/s=\s*(\S+)\s*$")
_AGG = re.compile(r'"(total_draft_accepted|total_draft|total_predicted|aggregate_accept_rate|n_requests)"\s*:\s*'
                  r'(-?\d+(?:\.\d+)?|null)')
BENCH_MARKERS = ("pred=", '"total_draft', '"total_predicted"', '"aggregate_accept_rate"')
_BENCH_NOTE = ("llama-server MTP bench client, one request: acceptance_rate = acc / draft (bonus excluded); "
               "gen_tps = the client's tok/s; draft=0 rows are runs without drafting (k = 0)")
_AGG_NOTE = "llama-server MTP bench client aggregate: acceptance_rate = total_draft_accepted / total_draft"


def bench_rows(lines: pl.DataFrame, source: str, engine: str) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
    """Per-prompt rows of the client's table and a run row per ``Aggregate: {...}`` that drafted."""
    t = pl.col("text")
    cand = lines.filter(t.str.contains("pred=", literal=True) | t.str.contains('"total_', literal=True)
                        | t.str.contains('"aggregate_accept_rate"', literal=True))
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str, str]] = []
    agg: dict[str, tuple[int, str]] = {}
    for ln, text in cand.select("line", "text").iter_rows():
        if m := _BENCH.match(text[:1000]):
            pred, draft, acc = int(m.group(2)), int(m.group(3)), int(m.group(4))
            if acc > draft:
                bad.append((ln, f"bench line accepts more ({acc}) than it drafted ({draft})", text[:300]))
                continue
            spec = {"draft_tokens": draft, "accepted_tokens": acc, "acceptance_rate": ratio(acc, draft)} if draft else {"k": 0}
            rows.append({"source": source, "line": ln, "engine": engine, "format": "llamacpp-mtp-bench",
                         "window": "request", "request": m.group(1), "emitted_tokens": pred if draft else None,
                         "gen_tps": finite(m.group(6)), **spec, "definition_note": _BENCH_NOTE})
        for m in _AGG.finditer(text[:10_000]):
            agg[m.group(1)] = (ln, m.group(2))
            if m.group(1) == "total_draft_accepted" or "total_draft_accepted" in agg and "total_draft" in agg:
                _aggregate(agg, rows, bad, source, engine)
    return rows_to_windows(rows), bad


def _aggregate(agg: dict[str, tuple[int, str]], rows: list, bad: list, source: str, engine: str) -> None:
    if "total_draft" not in agg or "total_draft_accepted" not in agg:
        return
    ln = agg["total_draft"][0]
    draft, acc = _count(agg["total_draft"][1]), _count(agg["total_draft_accepted"][1])
    agg.clear()
    if not draft:
        return  # a run without drafting (total_draft 0 or null)
    if acc is None or acc > draft:
        bad.append((ln, "bench aggregate: total_draft_accepted missing or above total_draft", ""))
        return
    rows.append({"source": source, "line": ln, "engine": engine, "format": "llamacpp-mtp-bench", "window": "run",
                 "draft_tokens": draft, "accepted_tokens": acc, "acceptance_rate": ratio(acc, draft),
                 "definition_note": _AGG_NOTE})
