"""Chart data from a report dict, without a plotting library: series of acceptance over time (long
ones bucketed, draft-weighted) and the accepted-length distribution. The HTML figures and the
dashboard both chart these, so the two show the same numbers."""

from __future__ import annotations

import math
from typing import Any

#: points per series in HTML charts; longer series are bucketed (draft-weighted) to this many
MAX_POINTS = 1500


def downsample(xs: list[Any], ys: list[float], ws: list[float], max_points: int = MAX_POINTS
               ) -> tuple[list[Any], list[float]]:
    """Bucket a long series into ``max_points`` consecutive buckets: x of the bucket's first point,
    y the weight-weighted mean (so a bucket's rate is still accepted/drafted)."""
    n = len(xs)
    if n <= max_points:
        return xs, ys
    size = math.ceil(n / max_points)
    ox, oy = [], []
    for i in range(0, n, size):
        w = ws[i:i + size]
        y = ys[i:i + size]
        tw = sum(w)
        ox.append(xs[i])
        oy.append(sum(a * b for a, b in zip(y, w, strict=True)) / tw if tw > 0 else sum(y) / len(y))
    return ox, oy


def window_series(windows: list[dict[str, Any]]) -> dict[str, tuple[list[Any], list[float], list[float], str]]:
    """Acceptance over time per (source, engine_id) from the report's window rows:
    key -> (x, rate, draft weight, x-axis label); x = time when every row has one, else line number."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for w in windows:
        if w.get("acceptance_rate") is None:
            continue
        key = f"{w.get('engine_id') or w.get('engine') or ''} · {w.get('source')}"
        groups.setdefault(key, []).append(w)
    out = {}
    for key, rows in groups.items():
        kinds = {r.get("window") for r in rows}
        if "interval" in kinds or "request" in kinds:  # the windows the metrics aggregate (no cumulative)
            rows = [r for r in rows if r.get("window") in ("interval", "request")]
        use_time = all(r.get("time") for r in rows)
        rows = sorted(rows, key=lambda r: (r.get("time") or "", r.get("line") or 0))
        xs = [r["time"] if use_time else r.get("line") for r in rows]
        ys = [r["acceptance_rate"] for r in rows]
        ws = [float(r.get("draft_tokens") or 1.0) for r in rows]
        out[key] = (xs, ys, ws, "time (UTC)" if use_time else "line")
    return out


def accepted_length_distribution(summary: dict[str, Any]) -> tuple[dict[int, float], str] | None:
    """Share of steps accepting n drafts: measured from trace steps, else derived from per-position
    rates (P(n = j) = a_j - a_(j+1), a_0 = 1)."""
    hist = summary.get("accepted_length_histogram")
    if hist:
        total = sum(hist.values())
        return {int(k): v / total for k, v in hist.items()}, "trace steps"
    pp = summary.get("per_position_acceptance")
    if pp and all(x is not None for x in pp):
        a = [1.0, *pp, 0.0]
        return {j: max(0.0, a[j] - a[j + 1]) for j in range(len(pp) + 1)}, "derived from per-position rates"
    return None


__all__ = ["MAX_POINTS", "downsample", "window_series", "accepted_length_distribution"]
