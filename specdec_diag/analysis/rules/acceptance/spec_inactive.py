"""SPEC_INACTIVE: Speculation is configured but not running."""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis.rules.acceptance._helpers import gated_off
from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule, label
from specdec_diag.analysis.stats import interval

SPEC_CONFIG_KEYS = ("num_speculative_tokens", "draft_model", "method", "proposer", "speculative_algorithm",
                    "speculative_num_steps", "speculative_num_draft_tokens", "speculative_draft_model_path",
                    "draft_max", "n_draft", "spec_type")


class SpecInactive(Rule):
    """Speculation is configured but not running.

    **What it detects.** An engine whose speculative records show no drafting at all (zero drafts /
    draft tokens in every one of at least ``min_inactive_windows`` windows); an engine printing accept
    length exactly 1.00 in every window, without draft counts, at a running batch of at least
    ``large_batch`` (a batch-size gate switched drafting off: SGLang adaptive speculation prints
    ``accept len: 1.00, accept rate: 0.11`` there; the same at small batches is DRAFTER_BROKEN); per-request records where most requests
    drafted nothing after the first ones (llama.cpp ngram only on the first request); a speculative
    setup in the startup configuration with throughput lines but no speculative line anywhere; a
    speculative-mode trace that never drafted.

    **Why it matters.** The server pays the drafter's memory and setup, users believe speculation is on,
    and nothing is gained (llama.cpp #19231, PrismML llama.cpp #203, fastrl PR #4: accept len exactly
    1.00 once adaptive speculation switched itself off).

    **Evidence.** ``windows``, ``windows_without_drafts``, ``requests_without_drafts``, ``busy_windows``,
    ``config`` (the speculative settings seen).

    **Example.** ``speculative_config={'method': 'eagle3', 'num_speculative_tokens': 4}`` at startup, then
    40 throughput lines and not one ``SpecDecoding metrics`` line. (An engine that prints ``accept len:
    1.00`` in every window did verify drafts and accepted none: that is DRAFTER_BROKEN.)

    **Fix.** Check the speculative flags are accepted by this model/engine version (hybrid/recurrent
    targets disable it silently), that adaptive/batch-size gates (``disable_by_batch_size``) are not
    switching it off, and that draft lines appear in the log.
    """

    code = "SPEC_INACTIVE"
    name = "speculation inactive"
    severity = "warning"
    thresholds = ("min_windows", "min_inactive_windows", "large_batch")
    needs = (Need("windows", "min_inactive_windows", "speculative windows, every one without drafting"),
             Need("requests", "min_windows", "per-request records"),
             Need("busy_windows", "min_windows", "busy throughput windows without any speculative line"),
             Need("steps", "min_windows", "trace steps"))
    problems = (16, 21)

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        out = []
        for (src, eng), g in ctx.window_groups():
            n = g.height
            no_drafts = g.filter((pl.col("num_drafts") == 0) | (pl.col("draft_tokens") == 0)).height
            req = g.filter(pl.col("window") == "request")
            req_none = req.filter(pl.col("draft_tokens").fill_null(0) == 0).height
            unit_name = label(src, eng)
            ev = {"windows": n, "windows_without_drafts": no_drafts,
                  "definitions": {"windows_without_drafts": "speculative windows with 0 drafts / draft tokens"}}
            if no_drafts == n:
                out.append(self.finding(
                    ctx, f"Speculation configured but not running in {unit_name}: no drafts in any window", ev, _REC,
                    g, score=1.0, sample=self.sample(ctx, "windows", n)))
            elif gated_off(g, ctx):
                ev.update(median_running=float(g["running_reqs"].median()), mean_acceptance_length=1.0,
                          note="accept length exactly 1.00 in every window at a running batch >= large_batch "
                               f"({th.large_batch}) without draft counts: a batch-size gate switched drafting off "
                               "(an SGLang accept rate of 1/(k+1) is its formula with nothing drafted)")
                out.append(self.finding(
                    ctx, f"Speculation switched off in {unit_name}: accept length exactly 1.00 in all {n} windows "
                         f"at {ev['median_running']:.0f} running requests (batch-size gate)", ev, _REC, g, score=0.9,
                    sample=self.sample(ctx, "windows", n)))
            elif req.height >= th.min_windows and req_none / req.height >= 0.5 and req_none < req.height:
                first_none = req.filter(pl.col("draft_tokens").fill_null(0) == 0)
                ev.update(requests=req.height, requests_without_drafts=req_none)
                out.append(self.finding(
                    ctx, f"Speculation stopped in {unit_name}: {req_none} of {req.height} requests drafted nothing",
                    ev, _REC, first_none, score=req_none / req.height, sample=self.sample(ctx, "requests", req.height),
                    interval=interval("share of requests without drafts", req_none, req.height)))
        out.extend(self._config_only(ctx))
        for src in {s for s in ctx.steps["source"].unique().to_list()} if ctx.steps.height else ():
            h = ctx.headers.get(src, {})
            s = ctx.steps.filter(pl.col("source") == src)
            if s["baseline"][0] or s.height < th.min_windows or int(s["gamma_drafted"].sum()) > 0:
                continue
            if not int(s["gamma_requested"].sum()):
                continue
            out.append(self.finding(
                ctx, f"Speculative trace {label(src)} never drafted a token in {s.height} steps",
                {"steps": s.height, "mode": h.get("mode"),
                 "definitions": {"steps": "steps with gamma_requested > 0 but gamma_drafted == 0"}},
                _REC, s, score=1.0, sample=self.sample(ctx, "steps", s.height)))
        return out

    def _config_only(self, ctx: Context) -> list[Finding]:
        cfg = ctx.configs
        if cfg.is_empty():
            return []
        spec_cfg = cfg.filter(pl.col("key").is_in(list(SPEC_CONFIG_KEYS))
                              & ~pl.col("value").str.to_lowercase().is_in(["none", "null", "0", "false", ""]))
        out = []
        w = ctx.windows
        for src in spec_cfg["source"].unique().to_list():
            mine = w.filter(pl.col("source") == src) if w.height else w
            if mine.is_empty() or ctx.spec_windows.filter(pl.col("source") == src).height:
                continue
            busy = mine.filter(pl.col("gen_tps").fill_null(0) > 0)
            if busy.height < ctx.thresholds.min_windows:
                continue
            conf = {k: v for k, v in spec_cfg.filter(pl.col("source") == src).select("key", "value").iter_rows()}
            out.append(self.finding(
                ctx, f"Speculation configured in {label(src)} but no speculative metrics line in "
                     f"{busy.height} busy windows",
                {"config": conf, "busy_windows": busy.height,
                 "definitions": {"busy_windows": "throughput windows with generation > 0 tok/s",
                                 "config": "speculative settings seen at startup"}},
                _REC, spec_cfg.filter(pl.col("source") == src), score=0.9,
                sample=self.sample(ctx, "busy_windows", busy.height)))
        return out


_REC = ("Check that this engine/model version actually enables the speculative method (hybrid/recurrent "
        "targets may disable it silently), that no batch-size/adaptive gate (disable_by_batch_size) turns it "
        "off, and that drafting appears in the logs (vLLM: log stats enabled).")
