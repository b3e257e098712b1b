"""LOSSY_ACCEPTANCE: A lossy acceptance rule is configured: outputs may differ from the target model's."""

from __future__ import annotations

import polars as pl

from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule, label

_LOSSY_METHODS = ("typical", "lenient", "typical_acceptance_sampler", "TypicalAcceptanceSampler")


_SGL_THRESHOLDS = ("speculative_accept_threshold_single", "speculative_accept_threshold_acc")


class LossyAcceptance(Rule):
    """A lossy acceptance rule is configured: outputs may differ from the target model's.

    **What it detects.** A typical-acceptance or lenient rule: vLLM ``acceptance_method =
    typical_acceptance_sampler`` / ``Configuring SpecDecodeWorker with sampler=...TypicalAcceptanceSampler``,
    SGLang ``speculative_accept_threshold_single/acc`` below 1, or a trace header whose rule is marked
    ``lossy``.

    **Why it matters.** Rejection sampling (and greedy argmax matching) guarantees the output
    distribution of the target. Typical acceptance (Medusa) and lenient rules accept more drafts by
    design, so outputs can differ - acceptance numbers from such runs are not comparable with lossless
    ones and quality must be evaluated separately.

    **Evidence.** ``setting`` and ``value`` (or the trace ``rule``), where it was configured.

    **Example.** ``Configuring SpecDecodeWorker with sampler=<class '...TypicalAcceptanceSampler'>``.

    **Fix.** Use rejection sampling (vLLM ``acceptance_method=rejection_sampler``, SGLang thresholds at 1.0,
    trace rule ``sampling``/``greedy``) unless the quality trade-off was measured and accepted.
    """

    code = "LOSSY_ACCEPTANCE"
    name = "lossy acceptance rule"
    severity = "warning"
    needs = (Need("records", 1, "configuration facts naming the acceptance rule"),)
    problems = (9,)
    theory = ("1.8",)

    def check(self, ctx: Context) -> list[Finding]:
        out = []
        cfg = ctx.configs
        if cfg.height:  # trace headers are judged below, from the rule itself
            cfg = cfg.filter(~pl.col("source").is_in(list(ctx.trace_sources)))
        if cfg.height:
            lossy = cfg.filter(pl.col("key").is_in(["acceptance_method", "sampler"])
                                & pl.col("value").is_in(list(_LOSSY_METHODS)))
            thr = cfg.filter(pl.col("key").is_in(list(_SGL_THRESHOLDS)))
            thr = thr.filter(pl.col("value").cast(pl.Float64, strict=False) < 1.0)
            for src in pl.concat([lossy, thr])["source"].unique(maintain_order=True).to_list():
                rows = pl.concat([lossy, thr]).filter(pl.col("source") == src)
                settings = {k: v for k, v in rows.select("key", "value").iter_rows()}
                out.append(self.finding(
                    ctx, f"Lossy acceptance configured in {label(src)}: "
                         + ", ".join(f"{k}={v}" for k, v in settings.items()),
                    {"settings": settings, "definitions": {"settings": "acceptance settings seen at startup"}},
                    _LOSSY_REC, rows, score=0.3))
        for src, h in ctx.headers.items():
            rule = h.get("rule") if isinstance(h.get("rule"), dict) else {}
            if rule.get("lossy"):
                out.append(self.finding(
                    ctx, f"Trace {label(src)} uses the lossy acceptance rule {rule.get('name')!r}",
                    {"rule": rule.get("name"), "params": rule.get("params"),
                     "definitions": {"rule": "acceptance rule named in the trace header"}},
                    _LOSSY_REC, [(src, 1)], score=0.3))
        return out


_LOSSY_REC = ("Use a lossless rule (rejection sampling / greedy: vLLM acceptance_method=rejection_sampler, "
              "SGLang accept thresholds 1.0) unless the quality impact was measured; do not compare its "
              "acceptance with lossless runs.")
