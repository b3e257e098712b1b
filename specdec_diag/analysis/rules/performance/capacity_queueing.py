"""CAPACITY_QUEUEING: The server is full: KV cache near capacity, requests waiting, TTFT far above TPOT."""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis.rules.base import Context, Finding, Rule, label


class CapacityQueueing(Rule):
    """The server is full: KV cache near capacity, requests waiting, TTFT far above TPOT.

    **What it detects.** Windows with KV-cache usage at least ``kv_full`` or waiting requests > 0 in at
    least ``queue_share`` of an engine's windows (at least 60 % when there are fewer than
    ``2 * min_windows`` windows, e.g. a few Prometheus scrapes); or run summaries whose TTFT / TPOT is
    at least ``ttft_tpot_ratio``.

    **Why it matters.** Slowness blamed on speculation is often capacity: requests wait for KV space or
    a prefill slot while decoding itself is fine (vllm #43295: "MTP seems very slow" at AR 77-89 % with
    KV 82-98 % and 6-7 waiting, mean TTFT 154 s). Speculation also takes KV headroom (draft KV,
    lookahead slots), so it can make queueing worse.

    **Evidence.** ``windows_full_or_waiting``, ``windows``, ``max_kv_usage``, ``max_waiting``,
    ``ttft_ms`` / ``tpot_ms`` ratio.

    **Example.** KV usage 0.93-0.98 and 6-7 waiting in 70 % of windows.

    **Fix.** Lower the request rate or add capacity (more KV memory: ``gpu_memory_utilization``,
    smaller ``max_num_seqs``/context, another replica); account for the drafter's KV when sizing.
    """

    code = "CAPACITY_QUEUEING"
    name = "capacity / queueing"
    severity = "warning"
    thresholds = ("kv_full", "queue_share", "ttft_tpot_ratio", "min_windows")
    problems = (20, 1)

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        w = ctx.windows
        if w.is_empty():
            return out
        for (src, eng), g in ctx.window_groups(w):
            f = g.filter(pl.col("kv_usage").is_not_null() | pl.col("waiting_reqs").is_not_null())
            if f.height >= th.min_windows:
                hit = f.filter((pl.col("kv_usage").fill_null(0) >= th.kv_full)
                               | (pl.col("waiting_reqs").fill_null(0) > 0))
                share = hit.height / f.height
                # a handful of windows (Prometheus scrapes) needs a clear majority, not one queued window
                need = th.queue_share if f.height >= 2 * th.min_windows else max(th.queue_share, 0.6)
                if share >= need:
                    ev = {"windows_full_or_waiting": hit.height, "windows": f.height, "share": share,
                          "max_kv_usage": f["kv_usage"].max(), "max_waiting": f["waiting_reqs"].max(),
                          "definitions": {"windows_full_or_waiting": f"windows with kv_usage >= {th.kv_full} or "
                                                                     "waiting requests > 0"}}
                    unit_name = label(src, eng)
                    out.append(self.finding(
                        ctx, f"Server at capacity in {unit_name}: KV full or requests waiting in "
                             f"{100 * share:.0f} % of windows", ev, _CAP_REC, hit, score=share * 0.7))
            t = g.filter(pl.col("ttft_ms").is_not_null() & pl.col("tpot_ms").is_not_null() & (pl.col("tpot_ms") > 0))
            for r in t.iter_rows(named=True):
                ratio = r["ttft_ms"] / r["tpot_ms"]
                if ratio >= th.ttft_tpot_ratio:
                    out.append(self.finding(
                        ctx, f"TTFT {r['ttft_ms']:.0f} ms is {ratio:.0f}x TPOT {r['tpot_ms']:.1f} ms in {label(src)}: "
                             "requests queue before decoding",
                        {"ttft_ms": r["ttft_ms"], "tpot_ms": r["tpot_ms"], "ratio": ratio,
                         "definitions": {"ratio": "ttft_ms / tpot_ms"}}, _CAP_REC, [(src, r["line"])],
                        score=0.6))
                    break
        return out


_CAP_REC = ("Capacity, not the drafter: lower the request rate or add capacity (KV memory via "
            "gpu_memory_utilization, fewer max_num_seqs, another replica); size KV including the drafter's.")
