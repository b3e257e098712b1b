"""CAPACITY_QUEUEING: The server is full: KV cache near capacity, requests waiting, TTFT far above TPOT."""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule, label
from specdec_diag.analysis.stats import interval


class CapacityQueueing(Rule):
    """The server is full: KV cache near capacity, requests waiting, TTFT far above TPOT.

    **What it detects.** Windows with KV-cache usage at least ``kv_full`` (or waiting requests > 0
    where the KV usage is not printed) in at least ``queue_share`` of an engine's windows, over at least
    ``min_windows`` windows (at least 60 % when there are fewer than ``2 * min_windows``, e.g. a few
    Prometheus scrapes). Explicit evidence fires on fewer: requests waiting while the cache is full in
    ``min_explicit_windows`` window(s) and at least half of the windows there are (two lines of
    ``Waiting: 55 reqs, GPU KV cache usage: 96.5%`` say it all). A queue while the KV cache has room
    is not capacity: it comes from the running-request cap, and COMPUTE_BOUND_BATCH judges it. Also run
    summaries whose TTFT / TPOT is at least ``ttft_tpot_ratio`` - where requests could wait (a summary
    of concurrent requests, or a queue / running batch in the same log), not one request with a slow
    prefill.

    **Why it matters.** Slowness blamed on speculation is often capacity: requests wait for KV space or
    a prefill slot while decoding itself is fine (vllm #43295: "MTP seems very slow" at AR 77-89 % with
    KV 82-98 % and 6-7 waiting, mean TTFT 154 s). Speculation also takes KV headroom (draft KV,
    lookahead slots), so it can make queueing worse.

    **Evidence.** ``windows_full_or_waiting``, ``windows``, ``windows_waiting_at_full_kv``,
    ``max_kv_usage``, ``max_waiting``, ``ttft_ms`` / ``tpot_ms`` ratio.

    **Example.** KV usage 0.93-0.98 and 6-7 waiting in 70 % of windows.

    **Fix.** Lower the request rate or add capacity (more KV memory: ``gpu_memory_utilization``,
    smaller ``max_num_seqs``/context, another replica); account for the drafter's KV when sizing.
    """

    code = "CAPACITY_QUEUEING"
    name = "capacity / queueing"
    severity = "warning"
    thresholds = ("kv_full", "queue_share", "ttft_tpot_ratio", "min_windows", "min_explicit_windows")
    needs = (Need("windows", "min_windows", "windows with KV usage or queue numbers, judged by share"),
             Need("explicit_windows", "min_explicit_windows", "windows with requests waiting while the KV cache is full"),
             Need("runs", 1, "run summaries of concurrent requests with TTFT and TPOT"))
    problems = (20, 1)

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out: list[Finding] = []
        w = ctx.windows
        if w.is_empty():
            return out
        kv, wait = pl.col("kv_usage"), pl.col("waiting_reqs").fill_null(0)
        full = kv.fill_null(0) >= th.kv_full
        for (src, eng), g in ctx.window_groups(w):
            f = g.filter(kv.is_not_null() | pl.col("waiting_reqs").is_not_null())
            if f.height:
                found = self._windows(ctx, f, full, (wait > 0) & (kv.is_null() | full), full & (wait > 0),
                                      label(src, eng))
                if found:
                    out.append(found)
            out.extend(self._ttft(ctx, g, src))
        return out

    def _windows(self, ctx: Context, f: pl.DataFrame, full: pl.Expr, queued: pl.Expr, explicit: pl.Expr,
                 unit_name: str) -> Finding | None:
        """Judge one engine's windows: by share over ``min_windows`` or more, else on explicit evidence
        (requests waiting while the cache is full) in at least half of the few windows there are."""
        th = ctx.thresholds
        hit = f.filter(full | queued)
        shown = f.filter(explicit)
        share = hit.height / f.height
        # a handful of windows (Prometheus scrapes) needs a clear majority, not one queued window
        need = th.queue_share if f.height >= 2 * th.min_windows else max(th.queue_share, 0.6)
        if f.height >= th.min_windows and share >= need:
            sample = self.sample(ctx, "windows", f.height)
        elif shown.height >= th.min_explicit_windows and shown.height / f.height >= 0.5:
            sample, hit = self.sample(ctx, "explicit_windows", shown.height, explicit=True), shown
        else:
            return None
        ev = {"windows_full_or_waiting": hit.height, "windows": f.height, "share": share,
              "windows_waiting_at_full_kv": shown.height,
              "max_kv_usage": f["kv_usage"].max(), "max_waiting": f["waiting_reqs"].max(),
              "definitions": {"windows_full_or_waiting": f"windows with kv_usage >= {th.kv_full}, or waiting "
                                                         "requests > 0 where KV usage is not printed",
                              "windows_waiting_at_full_kv": "windows with requests waiting while KV usage >= "
                                                            f"{th.kv_full} (explicit evidence)"}}
        return self.finding(
            ctx, f"Server at capacity in {unit_name}: KV full or requests waiting in {100 * share:.0f} % of windows",
            ev, _CAP_REC, hit, score=share * 0.7, sample=sample,
            interval=interval("share of windows full or waiting", hit.height, f.height))

    def _ttft(self, ctx: Context, g: pl.DataFrame, src: str) -> list[Finding]:
        """TTFT far above TPOT, where requests could wait: a run summary of concurrent requests, or a
        per-request record of an engine that shows a queue or a running batch. One request with a slow
        prefill (CPU offload, a 30k-token prompt) has TTFT >> TPOT without any queue."""
        th = ctx.thresholds
        t = g.filter(pl.col("ttft_ms").is_not_null() & pl.col("tpot_ms").is_not_null() & (pl.col("tpot_ms") > 0))
        if t.is_empty():
            return []
        concurrent = bool(g.select((pl.col("waiting_reqs").fill_null(0) > 0).any()
                                   | (pl.col("running_reqs").fill_null(0) > 1).any()).item())
        for r in t.iter_rows(named=True):
            ratio = r["ttft_ms"] / r["tpot_ms"]
            if ratio < th.ttft_tpot_ratio or (r.get("window") == "request" and not concurrent):
                continue
            return [self.finding(
                ctx, f"TTFT {r['ttft_ms']:.0f} ms is {ratio:.0f}x TPOT {r['tpot_ms']:.1f} ms in {label(src)}: "
                     "requests queue before decoding",
                {"ttft_ms": r["ttft_ms"], "tpot_ms": r["tpot_ms"], "ratio": ratio,
                 "definitions": {"ratio": "ttft_ms / tpot_ms"}}, _CAP_REC, [(src, r["line"])],
                score=0.6, sample=self.sample(ctx, "runs", 1))]
        return []


_CAP_REC = ("Capacity, not the drafter: lower the request rate or add capacity (KV memory via "
            "gpu_memory_utilization, fewer max_num_seqs, another replica); size KV including the drafter's.")
