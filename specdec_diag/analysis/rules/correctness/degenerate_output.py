"""DEGENERATE_OUTPUT: The logged generated text loops: one token or character repeated, or a short
phrase over and over."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from specdec_diag.analysis.rules.acceptance._helpers import change_point, units
from specdec_diag.analysis.rules.acceptance.acceptance_collapse import series
from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule
from specdec_diag.ingest.generated_text import texts

#: characters of one text examined (a runaway generation can be megabytes; a loop shows early)
MAX_CHARS = 4096
#: characters whose long runs are layout (rules, underlines, dot leaders), not a stuck decoder
_LAYOUT = set("-=_*#~.·─━═ \t")
_WORDS = re.compile(r"\S+")


@dataclass
class Loop:
    """The longest periodic stretch of a sequence: ``period`` items repeated ``repeats`` times."""

    unit: str  # "token" | "word" | "character"
    period: int
    repeats: float
    start: int
    length: int
    snippet: str

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "period": self.period, "repeats": round(self.repeats, 1),
                "length": self.length, "snippet": self.snippet}


def longest_loop(seq: list[Any] | str, max_period: int) -> tuple[int, int, int] | None:
    """(period, start, length) of the longest stretch where ``seq[i] == seq[i + period]`` holds for
    every i, over periods 1..max_period; length counts the whole stretch (first period included).
    Vectorised (numpy compares whole shifted copies), so a long log of responses stays cheap."""
    import numpy as np

    if isinstance(seq, str):
        codes = np.frombuffer(seq.encode("utf-32-le"), dtype=np.uint32)
    else:
        index: dict[Any, int] = {}
        codes = np.fromiter((index.setdefault(x, len(index)) for x in seq), dtype=np.int64, count=len(seq))
    best: tuple[int, int, int] | None = None
    n = len(codes)
    for p in range(1, min(max_period, n // 2) + 1):
        eq = np.concatenate(([0], (codes[:-p] == codes[p:]).astype(np.int8), [0]))
        edges = np.diff(eq)
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        if not starts.size:
            continue
        i = int(np.argmax(ends - starts))
        run = int(ends[i] - starts[i])
        if best is None or run + p > best[2]:
            best = (p, int(starts[i]), run + p)
    return best


def find_loop(text: str, token_ids: list[int] | None, th: Any) -> Loop | None:
    """The strongest loop of one text: in token ids when the log lists them, else in words, and in
    characters (scripts without spaces, runs of '!'); None when nothing repeats enough."""
    found: list[Loop] = []
    text = text[:MAX_CHARS]
    token_ids = token_ids[:MAX_CHARS] if token_ids else None
    seqs: list[tuple[str, list[Any] | str]] = [("token", token_ids)] if token_ids else []
    words = _WORDS.findall(text)
    seqs += [("word", words), ("character", text)]
    for unit, seq in seqs:
        hit = longest_loop(seq, th.degenerate_max_period if unit != "character" else 2 * th.degenerate_max_period)
        if hit is None:
            continue
        p, start, length = hit
        piece = seq[start:start + p]
        if unit == "character" and set(piece) <= _LAYOUT:
            continue
        need = th.degenerate_repeats if unit != "character" else max(th.degenerate_repeats, th.degenerate_char_run / p)
        if length / p < need:
            continue
        shown = "".join(piece) if unit == "character" else " ".join(str(x) for x in piece)
        found.append(Loop(unit, p, length / p, start, length, shown[:60]))
    return found[0] if found else None  # the most informative unit: token ids, then words, then characters


def speculation_state(ctx: Context) -> dict[str, Any] | None:
    """Whether the same input speculated, and whether its acceptance is pinned (about 0 or about
    100 %: a verifier that rejects or accepts everything) or collapsed (a sustained drop)."""
    th = ctx.thresholds
    state: dict[str, Any] | None = None
    for u in units(ctx):
        a = u.acc
        if not a.drafts and not a.draft_tokens and a.mal is None:
            continue
        state = state or {"units": 0, "acceptance_pinned": False, "acceptance_collapsed": False}
        state["units"] += 1
        high = (a.rate is not None and a.rate >= th.suspicious_acceptance) or (
            a.mal is not None and a.k and a.mal >= a.k + 1 - 0.01)
        low = (a.rate is not None and a.rate < th.broken_acceptance_rate) or (a.mal is not None and a.mal < th.broken_mal)
        state["acceptance_pinned"] |= bool(high or low)
        ser = series(u, ctx)
        cp = change_point(ser[0], ser[1], th.min_windows) if ser else None
        if cp and cp[1] - cp[2] >= th.collapse_absolute_drop and cp[2] <= cp[1] * (1 - th.collapse_relative_drop):
            state["acceptance_collapsed"] = True
    return state


class DegenerateOutput(Rule):
    """The logged generated text loops: one token or character repeated, or a short phrase over and over.

    **What it detects.** Generated text the logs print - vLLM offline examples (``Generated text:
    '...'``), vLLM request logging (``Generated response ...: output: '...', output_token_ids: [...]``),
    JSON responses (``"generated_text": "..."``; ingest: ``specdec_diag/ingest/generated_text.py``) -
    containing a loop: one token, word or n-gram of up to ``degenerate_max_period`` items repeated at
    least ``degenerate_repeats`` times in a row (in token ids where the log lists them, else in words),
    or a run of one character (or a short character pattern, up to twice that period) at least
    ``degenerate_char_run`` characters long. Runs of layout characters (``-``, ``=``, ``_``, ``*``,
    ``#``, ``~``, ``.``) are ignored. Each looping text is explicit evidence: one is enough.

    **Why it matters.** Speculative decoding must not change the output; garbage output is the one
    symptom users see directly (problem 10 in docs/problems.md#p10: "!!!!" output, TensorRT-LLM PR
    #5146; garbage token loops in long agentic conversations). Greedy decoding of a weak model can
    also loop by itself, so on its own this is a warning. With speculation on and acceptance pinned
    (about 0 or about 100 %) or collapsing in the same input, the two together point at the verifier:
    a verifier that accepts everything passes the drafter's loop through, and NaN logits give one
    repeated token with acceptance stuck - then it is an error.

    **Evidence.** ``texts``, ``degenerate_texts``, ``examples`` (line, unit, period, repeats, snippet),
    ``speculation`` (``acceptance_pinned``, ``acceptance_collapsed``), ``verifier_suspect``.

    **Example.** ``Generated text: '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'`` next to SpecDecoding lines
    with ``Mean acceptance length: 5.00`` at k = 4.

    **Fix.** Rerun the same prompts with speculation off (same seed, T = 0): if the loop goes away,
    debug the verifier (NaN/inf in logits, the acceptance test, KV positions of the verify window; run
    ``specdec-diag replay`` on a trace). If it stays, it is the model or the sampling settings
    (repetition penalty, temperature), not speculation.
    """

    code = "DEGENERATE_OUTPUT"
    name = "degenerate output"
    severity = "warning"
    thresholds = ("degenerate_repeats", "degenerate_max_period", "degenerate_char_run", "suspicious_acceptance",
                  "broken_acceptance_rate", "broken_mal", "collapse_absolute_drop", "collapse_relative_drop")
    needs = (Need("texts", 1, "logged generated texts with a loop (each one is explicit evidence)"),)
    problems = (10,)
    theory = ("5",)

    def check(self, ctx: Context) -> list[Finding]:
        th = ctx.thresholds
        t = texts(ctx.configs)
        if t.is_empty():
            return []
        bad: list[tuple[str, int, Loop]] = []
        for src, line, text, ids in t.iter_rows():
            loop = find_loop(text or "", ids, th)
            if loop is not None:
                bad.append((src, line, loop))
        if not bad:
            return []
        spec = speculation_state(ctx)
        suspect = bool(spec and (spec["acceptance_pinned"] or spec["acceptance_collapsed"]))
        examples = [{"path": s, "line": ln, **lp.to_dict()} for s, ln, lp in bad[:3]]
        ev = {"texts": t.height, "degenerate_texts": len(bad), "examples": examples,
              "speculation": spec, "verifier_suspect": suspect,
              "definitions": {"degenerate_texts": "logged texts containing a loop (see examples)",
                              "examples": "unit looped (token id, word, character), period in units, repeats",
                              "speculation": "speculative units in the same input; acceptance pinned (about 0 or "
                                             "100 %) or collapsed (sustained drop)",
                              "verifier_suspect": "loops together with pinned or collapsing acceptance"}}
        first = bad[0][2]
        title = (f"{len(bad)} of {t.height} logged outputs loop (e.g. {first.unit} {first.snippet!r} "
                 f"x{first.repeats:.0f})")
        if suspect:
            title += ": with acceptance pinned or collapsing, this points at the verifier"
        rec = ("Rerun the prompts with speculation off (same seed, T=0): if the loop disappears, debug the "
               "verifier (NaN/inf logits, acceptance test, verify-window KV positions; specdec-diag replay); if "
               "it stays, it is the model or sampling (repetition penalty, temperature).")
        return [self.finding(ctx, title, ev, rec, [(s, ln) for s, ln, _ in bad],
                             severity="error" if suspect else "warning", score=len(bad) / t.height,
                             sample=self.sample(ctx, "texts", len(bad), explicit=True))]

