"""VOCAB_MISMATCH: Draft and target vocabularies or tokenizers differ."""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule, label

_VOCAB_ERR = re.compile(r"vocab(?: type)? must match|does not match draft vocab|token \d+ content differs|"
                        r"vocab(?:ulary)? (?:size )?mismatch", re.I)


_VOCAB_KEYS = ("vocab_size", "vocab", "tokenizer_hash", "tokenizer", "tokenizer_name")


class VocabMismatch(Rule):
    """Draft and target vocabularies or tokenizers differ.

    **What it detects.** Startup errors of the form ``draft model vocab must match target model ...``
    / ``... token 0 content differs`` (llama.cpp, koboldcpp), configuration facts giving different
    target and draft vocabulary sizes, and trace headers whose target and draft models declare a
    different ``vocab_size`` or tokenizer (name or hash).

    **Why it matters.** Speculation compares token ids: if an id means different strings to the two
    models, drafts are nonsense to the target (acceptance near 0, "draft generating random unrelated
    stuff", llama.cpp PR #3812). Padding-only differences (Qwen 151936 vs 152064) are safe only when the
    extra ids are never produced (vllm #10913); otherwise vocabularies must match or be mapped
    (universal assisted decoding).

    **Evidence.** ``target`` / ``draft`` values that differ (vocab size, tokenizer), or the startup
    ``error`` line.

    **Example.** ``target vocab size 152064 does not match draft vocab size 32002``.

    **Fix.** Use a drafter from the same model family/tokenizer; for padding-only differences pad the
    draft embedding; otherwise use a universal (token-mapping) drafting method.
    """

    code = "VOCAB_MISMATCH"
    name = "vocabulary mismatch"
    severity = "error"
    needs = (Need("records", 1, "configuration facts or startup lines naming the vocabularies"),)
    problems = (4,)
    theory = ("5.5",)

    def check(self, ctx: Context) -> list[Finding]:
        out = []
        cfg = ctx.configs
        if cfg.height:
            err = cfg.filter(pl.col("value").str.contains(_VOCAB_ERR.pattern))
            for src in err["source"].unique(maintain_order=True).to_list():
                rows = err.filter(pl.col("source") == src)
                out.append(self.finding(
                    ctx, f"Draft/target vocabulary mismatch reported at startup in {label(src)}",
                    {"error": rows["value"][0], "lines": rows.height,
                     "definitions": {"error": "the engine's startup error line"}}, _REC, rows, score=1.0))
            for src in cfg["source"].unique(maintain_order=True).to_list():
                mine = {k: v for k, v in cfg.filter(pl.col("source") == src).select("key", "value").iter_rows()}
                t, d = mine.get("target_vocab_size"), mine.get("draft_vocab_size")
                if t is not None and d is not None and t != d:
                    rows = cfg.filter((pl.col("source") == src)
                                      & pl.col("key").is_in(["target_vocab_size", "draft_vocab_size"]))
                    out.append(self.finding(
                        ctx, f"Target vocabulary {t} != draft vocabulary {d} in {label(src)}",
                        {"target": {"vocab_size": t}, "draft": {"vocab_size": d},
                         "definitions": {"vocab_size": "vocabulary size declared by each model"}}, _REC, rows,
                        score=1.0))
        for src, h in ctx.headers.items():
            diff = _header_diff(h)
            if diff:
                out.append(self.finding(
                    ctx, f"Trace {label(src)}: target and draft declare different "
                         + ", ".join(sorted(diff["target"])),
                    {**diff, "definitions": {"target": "target model's declared vocab/tokenizer",
                                             "draft": "draft model's declared vocab/tokenizer"}},
                    _REC, [(src, 1)], score=1.0))
        return out


def _header_diff(h: dict[str, Any]) -> dict[str, Any] | None:
    models = h.get("models")
    if not isinstance(models, dict):
        return None
    t, d = models.get("target"), models.get("draft")
    if not isinstance(t, dict) or not isinstance(d, dict):
        return None
    diff_t, diff_d = {}, {}
    for key in _VOCAB_KEYS:
        if key in t and key in d and t[key] is not None and d[key] is not None and t[key] != d[key]:
            diff_t[key], diff_d[key] = t[key], d[key]
    return {"target": diff_t, "draft": diff_d} if diff_t else None


_REC = ("Use a drafter with the target's tokenizer (same model family); pad the draft embedding only for "
        "padding-only size differences; otherwise use a token-mapping (universal) drafting method.")
