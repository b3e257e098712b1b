"""Benchmark results pasted as tables: Markdown (``| a | b |``, or GitHub's ``a | b`` without outer
pipes, as a dataset viewer or an issue renders them) and tab-separated. Two orientations:

* **runs as rows** - a header names the columns (``bs | steps | topk | num_draft | throughput | acc
  len``; ``Draft Model<TAB>num_speculative_tokens<TAB>Inference Speed``): each body row is one run,
  its k from a draft-length column, its load from a batch/concurrency column, its speed from a
  throughput/speed column;
* **runs as columns** - the first column names metrics (``Output token throughput (tok/s) | 82.72 |
  151.53``) and the header names the runs (``MTP=off | MTP=on``), as people paste two ``bench_serving``
  summaries side by side.

A table says nothing about speculation by itself: each run's status comes from its k cell, its label
cells, else the heading above the table. :func:`table_records` returns the same record dicts as the
line parser (:mod:`specdec_diag.ingest.bench`).
"""

from __future__ import annotations

import re
from typing import Any

from specdec_diag.ingest.bench_context import context_records
from specdec_diag.ingest.bench_labels import (
    BASE,
    SPEC,
    Status,
    classify,
    metric_of,
    number,
    to_metric_value,
    vs_speeds,
)

_SEPARATOR = re.compile(r"^:?-{2,}:?$")
_K_HEADER = re.compile(
    r"^-*(?:k|γ|gamma|num[_ ]?spec(?:ulative)?[_ ]?tokens|draft[-_ ]?(?:max|tokens|n|len)|n[_ ]?draft|"
    r"num[_ ]?draft(?:[_ ]?tokens)?|spec(?:ulative)?[_ ]?tokens|lookahead|depth|(?:spec[-_ ]?)?draft[-_ ]?n[-_ ]?max)$", re.I)
#: accepted / drafted counts in a cell: ``60.1% (83/138)``, or a column of them (``Draft Accepted/Total``)
_PAIR = re.compile(r"(?<![\d.])(\d[\d,]*)\s*/\s*(\d[\d,]*)(?![\d.])")
_PAIR_HEADER = re.compile(r"accept\w*\s*/\s*(?:total|draft\w*|generated|proposed)", re.I)
#: count columns: drafted and accepted tokens (``Prompt | Drafted | Accepted | Rate``)
_COUNT_HEADERS = (("drafted", re.compile(r"^#?\s*(?:drafted|proposed)(?:[ _]tokens)?$", re.I)),
                  ("accepted", re.compile(r"^#?\s*accepted(?:[ _]tokens)?$", re.I)))
#: a column of acceptance rates (accepted / drafted): ``accept rate``, ``Accept %``, llama.cpp's ``draft rate``
#: (a bare ``acc`` is no acceptance rate: evaluation tables print accuracy under it)
_ACC_HEADER = re.compile(r"^(?:avg[ _-]?)?(?:draft[ _-]?)?(?:accept(?:ance|ed)?[ _-]?(?:rate|%|\(%\))?|"
                         r"acc\.?[ _-]?(?:rate|%|\(%\)))$|^draft[ _-]?(?:acceptance[ _-]?)?rate$", re.I)
_STEPS_HEADER = re.compile(r"^(?:num[_ ]?)?steps$", re.I)
_SKIP_HEADER = re.compile(r"speed-?up|ratio|\bvs\b|diff|Δ|change|gain|%|improvement|delta", re.I)
_NONE_CELL = re.compile(r"^\(?(?:none|off|no|disabled?|baseline|vanilla|n/?a|-+|—)\)?$", re.I)
_TRANSPOSED_HEAD = re.compile(r"^(?:metric|metrics|name|parameter|config(?:uration)?|setting|)$", re.I)


def split_row(text: str) -> list[str] | None:
    """The cells of a table row (pipes or tabs), None when the line is not one; separator rows too."""
    if "\t" in text and "|" not in text:
        cells = [c.strip() for c in text.split("\t")]
    elif "|" in text:
        t = text.strip()
        t = t[1:] if t.startswith("|") else t
        t = t[:-1] if t.endswith("|") else t
        cells = [c.strip() for c in t.split("|")]
    else:
        return None
    cells = [c.strip("*`").strip() for c in cells]
    if len(cells) < 2 or all(_SEPARATOR.match(c) or not c for c in cells):
        return None
    return cells


def _numeric(cell: str) -> bool:
    return number(cell)[0] is not None


def table_records(header: list[str], body: list[tuple[int, list[str]]], heading: str,
                  first_line: int) -> list[dict[str, Any]]:
    """Records of one table (see the module docstring); empty when the table is not a benchmark's."""
    if not body or sum(_numeric(c) for c in header) > len(header) // 2:
        return []  # no header row: columns cannot be named
    by_context = context_records(header, body)
    if by_context:
        return by_context
    metric_rows = [cells for _, cells in body if cells and metric_of(cells[0]) is not None]
    if _TRANSPOSED_HEAD.match(header[0]) and len(metric_rows) >= 2:
        return _by_columns(header, body, first_line)
    return _by_rows(header, body, heading)


def _roles(header: list[str]) -> dict[int, str]:
    """Column index -> role: ``k``, a metric id, ``skip`` (a ratio column) or ``label``."""
    roles: dict[int, str] = {}
    for j, h in enumerate(header):
        name = h.strip()
        if _K_HEADER.match(name.replace(" ", "_")) or _K_HEADER.match(name):
            roles[j] = "k"
        elif any(rx.match(name) for _, rx in _COUNT_HEADERS):
            roles[j] = next(role for role, rx in _COUNT_HEADERS if rx.match(name))
        elif _ACC_HEADER.match(name):
            roles[j] = "acc"
        elif _PAIR_HEADER.search(name):
            roles[j] = "pair"
        elif _SKIP_HEADER.search(name):
            roles[j] = "skip"
        else:
            roles[j] = metric_of(name) or "label"
    if "drafted" in roles.values() and "accepted" in roles.values():  # "Rate" beside the counts is theirs
        roles.update({j: "acc" for j, h in enumerate(header) if h.strip().lower() in ("rate", "ratio", "%")})
    if "k" not in roles.values():
        for j, h in enumerate(header):
            if _STEPS_HEADER.match(h.strip()):
                roles[j] = "k"
                break
    return roles


def _paired_columns(header: list[str], roles: dict[int, str]) -> tuple[int, int] | None:
    """``(baseline column, speculative column)`` of a table that prints both speeds on one row
    (llama.cpp server-bench ``base_avg_pred_t/s`` / ``spec_avg_pred_t/s``), else None."""
    speed = [j for j, r in roles.items() if r == "out_tps"]
    base = [j for j in speed if classify(header[j]).kind == BASE]
    spec = [j for j in speed if classify(header[j]).kind == SPEC]
    return (base[0], spec[0]) if len(speed) == 2 and len(base) == 1 and len(spec) == 1 else None


def _split_pairs(header: list[str], roles: dict[int, str], body: list[tuple[int, list[str]]],
                 pair: tuple[int, int]) -> list[dict[str, Any]]:
    """Each row of a paired-columns table as two runs: the baseline's speed and the speculative one's."""
    out = []
    for kind, drop in ((BASE, pair[1]), (SPEC, pair[0])):
        r = {**roles, drop: "skip"}
        for line, cells in body:
            rec = _row_record(header, r, cells, line, Status(kind, 0 if kind == BASE else None))
            if rec is not None:
                rec["kind"], rec["k"] = kind, (0 if kind == BASE else rec["k"])
                out.append(rec)
    return out


def _by_rows(header: list[str], body: list[tuple[int, list[str]]], heading: str) -> list[dict[str, Any]]:
    roles = _roles(header)
    if not any(r in ("out_tps", "mal", "tpot_ms", "acc", "pair", "drafted") for r in roles.values()):
        return []
    pair = _paired_columns(header, roles)
    if pair is not None:
        return _split_pairs(header, roles, body, pair)
    table_status = classify(heading)
    out = []
    for line, cells in body:
        rec = _row_record(header, roles, cells, line, table_status)
        if rec is not None:
            out.append(rec)
            if rec["vs_base"] is not None and rec["kind"] == SPEC:  # the row's own baseline, printed beside it
                out.append({**rec, "label": f"{rec['label']} (baseline)".strip(), "kind": BASE, "k": 0, "pair": None,
                            "metrics": {"out_tps": (rec["vs_base"], rec["metrics"]["out_tps"][1])}, "vs_base": None})
    return out


def _row_record(header: list[str], roles: dict[int, str], cells: list[str], line: int, table_status) -> dict | None:
    metrics: dict[str, tuple[float, str]] = {}
    labels: list[str] = []
    k, kind, ranged, pair, vs_base = None, None, False, None, None
    counts: dict[str, float | None] = {}
    for j, cell in enumerate(cells[: len(header)]):
        role = roles.get(j, "label")
        if role == "k":
            v, _, _ = number(cell)
            if v is not None and v == int(v) and v >= 0:
                k = int(v)
            elif _NONE_CELL.match(cell.strip()):
                k = 0
            continue
        if role == "skip":
            if (vs := vs_speeds(cell, header[j])) is not None:  # "-32% (61 vs 90 tok/s)" under "vs baseline"
                metrics.setdefault("out_tps", (vs[0][1], header[j]))
                vs_base = vs[1][1]
            continue
        if role in ("acc", "pair") and (pm := _PAIR.search(cell)) is not None:
            acc_n, drafted = (int(x.replace(",", "")) for x in pm.groups())
            if 0 <= acc_n <= drafted:
                pair = (acc_n, drafted)
        if role in ("drafted", "accepted"):
            counts[role] = number(cell)[0]
            continue
        if role == "pair":
            continue
        v, unit, is_range = number(cell)
        if role == "acc":
            if v is not None and 0 <= v <= 100:
                metrics["acc"] = (v / 100.0 if "%" in unit or "%" in header[j] or v > 1 else v, header[j])
            continue
        if role == "label" or v is None:
            if role == "label" and cell:
                labels.append(f"{header[j]}={cell}" if v is not None else cell)
            continue
        mv = to_metric_value(role, v, unit, header[j])
        if mv is not None and mv >= 0:
            metrics[role] = (mv, header[j])
            ranged = ranged or is_range
    d, a = counts.get("drafted"), counts.get("accepted")
    if pair is None and d is not None and a is not None and d == int(d) and a == int(a) and 0 <= a <= d:
        pair = (int(a), int(d))
    if not any(m in metrics for m in ("out_tps", "mal", "tpot_ms", "acc")) and pair is None:
        return None
    label = ", ".join(labels)
    st = classify(label)
    if k == 0 and metrics.get("acc", (0.0, ""))[0] > 0:
        kind, k = SPEC, None  # "n-max 0" with drafts accepted: the engine's default depth, not no speculation
    elif k is not None:
        kind = BASE if k == 0 else SPEC
    elif st.kind is not None:  # a speculative row without its own k takes the one its heading states
        kind, k = st.kind, st.k if st.k is not None or st.kind == BASE or table_status.kind != SPEC else table_status.k
    elif table_status.kind is not None:
        kind, k = table_status.kind, table_status.k
    if kind is None and ("acc" in metrics or pair is not None or metrics.get("mal", (0.0, ""))[0] > 1.0):
        kind = SPEC  # a run that prints what its drafts achieved speculates
    return {"line": line, "label": label, "kind": kind, "k": k, "metrics": metrics, "origin": "table",
            "format": "bench-table", "ranged": ranged, "pair": pair, "vs_base": vs_base}


def _by_columns(header: list[str], body: list[tuple[int, list[str]]], first_line: int) -> list[dict[str, Any]]:
    out = []
    for j in range(1, len(header)):
        name = header[j]
        if _SKIP_HEADER.search(name):
            continue
        metrics: dict[str, tuple[float, str]] = {}
        for _, cells in body:
            if j >= len(cells):
                continue
            metric = metric_of(cells[0])
            v, unit, _ = number(cells[j])
            if metric is None or v is None:
                continue
            mv = to_metric_value(metric, v, unit, cells[0])
            if mv is not None and mv >= 0 and metric not in metrics:
                metrics[metric] = (mv, cells[0])
        if not metrics:
            continue
        st = classify(name)
        kind = st.kind or (SPEC if metrics.get("mal", (0.0, ""))[0] > 1.0 else None)
        out.append({"line": first_line, "label": name, "kind": kind, "k": st.k, "metrics": metrics,
                    "origin": "table", "format": "bench-table-columns", "ranged": False})
    return out


__all__ = ["split_row", "table_records"]
