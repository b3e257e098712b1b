"""STRUCTURE_VIOLATION: A step's output is not "context + accepted prefix + one verifier token"."""

from __future__ import annotations

from typing import Any

from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule
from specdec_diag.analysis.rules.correctness._helpers import by_request


class StructureViolation(Rule):
    """A step's output is not "context + accepted prefix + one verifier token".

    **What it detects.** Trace steps that break the shape of a speculative step: the accepted count
    ``n`` is not the leading run of true accept flags; the emitted tokens are not the first ``n``
    drafts followed by exactly one verifier token (unless trimmed by EOS / max length); the last token
    is called a ``bonus`` although a draft was rejected (or a ``correction`` although all were
    accepted); or the next step's context length does not continue from this one.

    **Why it matters.** Speculative decoding is only lossless when every step appends exactly the
    accepted prefix plus one target token. Any other shape means tokens were skipped, duplicated or
    taken from the draft without verification (mlx-lm #846: "1 3 5 6 8 ..."); outputs are then wrong
    no matter how good acceptance looks.

    **Evidence.** ``violations`` (steps broken), ``steps`` (steps checked), ``by_reason`` (count per
    broken invariant), ``first`` (the first bad step with its numbers).

    **Example.** ``n_accepted=3 but the leading run of accept_flags is 1`` on 40 of 200 steps.

    **Fix.** Make the accept/emit path follow the reference: ``n`` = leading run of accepted
    positions, emit ``drafts[:n] + [verifier token]``, advance the context by ``n + 1``. Re-run the
    traced reference decoder (``specdec-diag decode``) on the same prompts and diff the traces.
    """

    code = "STRUCTURE_VIOLATION"
    name = "step structure violated"
    severity = "error"
    needs = (Need("steps", 1, "steps whose output breaks the invariant (explicit evidence)"),)
    problems = (10,)
    theory = ("6",)

    def check(self, ctx: Context) -> list[Finding]:
        out = []
        for src, steps in ctx.step_groups():
            reasons: dict[str, int] = {}
            bad_rows: list[tuple[str, int]] = []
            first: dict[str, Any] | None = None
            for rows in by_request(steps):
                for i, r in enumerate(rows):
                    why = _structure_problem(r, rows[i + 1] if i + 1 < len(rows) else None)
                    if why:
                        reasons[why[0]] = reasons.get(why[0], 0) + 1
                        bad_rows.append((src, r["line"]))
                        if first is None:
                            first = {"line": r["line"], "step": r["step"], "request": r["request"],
                                     "problem": why[1]}
            if not bad_rows:
                continue
            share = len(bad_rows) / steps.height
            out.append(self.finding(
                ctx, f"{len(bad_rows)} of {steps.height} steps do not have the shape "
                     "context + accepted prefix + one verifier token",
                {"violations": len(bad_rows), "steps": steps.height, "by_reason": reasons, "first": first,
                 "definitions": {"violations": "steps breaking at least one structural invariant",
                                 "by_reason": "count of steps per broken invariant"}},
                "Fix the accept/emit path: n must be the leading run of accepted positions and each step "
                "must emit drafts[:n] plus one verifier token; compare against `specdec-diag decode`.",
                bad_rows, score=share))
        return out


def _structure_problem(r: dict[str, Any], nxt: dict[str, Any] | None) -> tuple[str, str] | None:
    n, g = r["n_accepted"], r["gamma_drafted"]
    flags = r["accept_flags"] or []
    emitted = r["emitted_token_ids"] or []
    drafts = r["draft_token_ids"] or []
    lead = _leading_run(flags)
    if lead != n:
        return "n_not_leading_run", f"n_accepted={n} but the leading run of accept_flags is {lead}"
    full_drop = n == g and g > 0 and len(emitted) == g and not _trimmed(r)
    if not full_drop:  # a dropped bonus is BONUS_DROPPED's finding, not a structure error
        if not _trimmed(r) and len(emitted) != n + 1:
            return "emitted_count", f"emitted {len(emitted)} tokens, expected n+1 = {n + 1}"
        if _trimmed(r) and len(emitted) > n + 1:
            return "emitted_count", f"emitted {len(emitted)} tokens, more than n+1 = {n + 1}"
        if not _trimmed(r):
            kind = "bonus" if n == g else "correction"
            if r["last_token_kind"] != kind:
                return "last_token_kind", f"last_token_kind={r['last_token_kind']!r} but n={n}, gamma={g}"
    m = min(n, len(emitted))
    if list(emitted[:m]) != list(drafts[:m]):
        return "prefix_not_drafts", "emitted tokens do not start with the accepted drafts"
    if nxt is not None and nxt["context_len"] != r["context_len"] + len(emitted):
        return ("context_discontinuity",
                f"next step's context_len={nxt['context_len']}, expected {r['context_len'] + len(emitted)}")
    return None


def _trimmed(row: dict[str, Any]) -> bool:
    return row.get("trimmed_by") not in (None, "none")


def _leading_run(flags: list[Any]) -> int:
    n = 0
    for f in flags:
        if not f:
            break
        n += 1
    return n
