"""The fleet view every renderer opens with (report@2, docs/report.md): one line per run, worst first,
and the comparisons between runs, as plain rows the terminal, Markdown, HTML and JUnit outputs share."""

from __future__ import annotations

from typing import Any

from specdec_diag.render.text import fmt, pct

#: fleet table columns: (header, right-aligned)
FLEET_COLUMNS = (("run", False), ("engine", False), ("model", False), ("method", False), ("k", True),
                 ("AR %", True), ("MAL", True), ("tok/s", True), ("win", True), ("worst finding", False))


def run_rank(run: dict[str, Any]) -> tuple[Any, ...]:
    """Worst first: errors, then warnings, then ok, then runs without data; then by finding impact."""
    order = {"error": 0, "warning": 1, "ok": 2, "no data": 3}
    fs = run.get("findings") or []
    return (order.get(run.get("status", "ok"), 9), -sum(f["severity"] == "error" for f in fs),
            -sum(f["severity"] == "warning" for f in fs), -max((f.get("score") or 0.0 for f in fs), default=0.0),
            str(run.get("id")))


def ordered_runs(report: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(report.get("runs") or [], key=run_rank)


def worst_finding(run: dict[str, Any]) -> dict[str, Any] | None:
    fs = [f for f in run.get("findings") or [] if f["severity"] != "info"]
    return fs[0] if fs else None


def throughput(s: dict[str, Any]) -> float | None:
    """The run's generation throughput: engine windows, else trace goodput."""
    return s.get("tokens_per_s") if s.get("tokens_per_s") is not None else s.get("goodput")


def fleet_row(run: dict[str, Any]) -> list[str]:
    """The cells of one run's fleet line (see :data:`FLEET_COLUMNS`)."""
    s = run.get("summary") or {}
    w = worst_finding(run)
    worst = f"{w['severity'][0].upper()} {w['code']}" if w else ("no data" if run.get("status") == "no data" else "-")
    model = str(run.get("model") or "-").rsplit("/", 1)[-1]
    k = fmt(run.get("k")) if run.get("speculative") else "off"
    ar = s.get("acceptance_rate")
    ar_txt = "-" if ar is None else f"{100 * ar:.1f}"
    return [str(run["id"]), fmt(run.get("engine")), model, fmt(run.get("method")), k, ar_txt,
            fmt(s.get("mean_acceptance_length"), 2), fmt(throughput(s), 0), str(run.get("window_count") or 0), worst]


def status_line(report: dict[str, Any]) -> str:
    """``12 runs: 1 error, 2 warning, 9 ok`` from the fleet rollup."""
    fleet = report.get("fleet") or {}
    by = fleet.get("by_status") or {}
    parts = [f"{n} {s}" for s, n in by.items() if n]
    return f"{fleet.get('runs', len(report.get('runs') or []))} runs: " + ", ".join(parts)


def comparison_rows(report: dict[str, Any]) -> list[list[str]]:
    """(kind, what, result, load) per comparison, speculation pairs first."""
    rows = []
    for c in report.get("comparisons") or []:
        if c["kind"] == "speculation":
            what = f"{c['run']} vs {c['baseline_run']}"
            res = f"speed-up {fmt(c.get('speedup'), 2)}x ({fmt(c.get('speculative_tps'), 0)} vs " \
                  f"{fmt(c.get('baseline_tps'), 0)} tok/s)"
        elif c["kind"] in ("k", "method"):
            a, b = c["a"], c["b"]
            what = f"{c.get('model')}: {a.get('method')} k={a.get('k')} vs {b.get('method')} k={b.get('k')}"
            res = f"throughput ratio {fmt(c.get('speedup'), 2)}x"
        else:
            what = f"{c['run']} vs {len(c.get('earlier_runs') or [])} earlier run(s)"
            res = f"acceptance {pct(c.get('acceptance_rate'))} vs {pct(c.get('earlier_acceptance_rate'))}" + \
                  (" REGRESSION" if c.get("regression") else "")
        load = c.get("reason") or ((c.get("load") or {}).get("matched_by") or "")
        if c["kind"] != "history" and not c.get("fair"):
            res = "no fair pair"
        rows.append([c["kind"], what, res, load])
    return rows


__all__ = ["FLEET_COLUMNS", "run_rank", "ordered_runs", "worst_finding", "throughput", "fleet_row", "status_line",
           "comparison_rows"]
