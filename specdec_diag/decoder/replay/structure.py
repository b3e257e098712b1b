"""Structure checks: what one recorded step must satisfy whatever the models say (pure Python).

Counts and bookkeeping against the cache convention of :mod:`specdec_diag.decoder.speculative`:
context length = prompt + tokens emitted so far, n = leading run of the flags, n + 1 tokens emitted
unless trimmed, the target cache at sequence length - 1, the verify window at positions L-1 .. L-1+gamma.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from specdec_diag.decoder.replay.result import Divergence


@dataclass
class RecordedStep:
    """One recorded step with the context replay rebuilt for it; collects the step's divergences."""

    rec: dict[str, Any]
    context: list[int]
    generated: int  # tokens this request had generated before the step
    line: int | None
    prev: dict[str, Any] | None  # the request's previous step
    divs: list[Divergence] = field(default_factory=list)

    def __post_init__(self) -> None:
        r = self.rec
        self.idx, self.req = r["step"], r.get("request") or 0
        self.g, self.n = r["gamma_drafted"], r["n_accepted"]
        self.drafts, self.emitted = list(r["draft_token_ids"]), list(r["emitted_token_ids"])
        self.flags = list(r["accept_flags"])
        self.trimmed = r.get("trimmed_by") or "none"
        self.L = len(self.context)

    def add(self, kind: str, message: str, position: int | None = None, recorded: Any = None,
            reference: Any = None) -> None:
        self.divs.append(Divergence(kind, message, self.idx, self.req, position, recorded, reference, self.line))


def check_structure(s: RecordedStep, eos: int | None, max_new: int | None) -> None:
    """Every structure check of one step (adds to ``s.divs``)."""
    check_counts(s)
    if s.trimmed == "none":
        check_emission(s)
    else:
        check_trim(s, eos, max_new)
    check_bookkeeping(s)


def check_counts(s: RecordedStep) -> None:
    """Context length, gamma vs its schedule, n vs the flags, emitted prefix vs the drafts."""
    rec, n = s.rec, s.n
    if rec["context_len"] != s.L:
        s.add("context_len", f"context_len {rec['context_len']} but prompt + emitted so far = {s.L}",
              None, rec["context_len"], s.L)
    if s.g > rec["gamma_requested"]:
        s.add("gamma", f"drafted {s.g} > requested {rec['gamma_requested']}", None, s.g, rec["gamma_requested"])
    prev_next = s.prev.get("gamma_next") if s.prev is not None else None
    if prev_next is not None and rec["gamma_requested"] != prev_next:
        s.add("gamma_schedule", f"gamma_requested {rec['gamma_requested']} but the previous step's "
              f"gamma_next was {prev_next}", None, rec["gamma_requested"], prev_next)
    lead = leading_true(s.flags)
    if s.trimmed == "none" and lead != n:
        s.add("flags_vs_n", f"n_accepted={n} but accept_flags lead with {lead} true", None, n, lead)
    k = min(n, len(s.emitted))
    if s.emitted[:k] != s.drafts[:k]:
        s.add("emitted_prefix", "emitted tokens are not the accepted drafts followed by one verifier token",
              None, s.emitted[:n], s.drafts[:n])


def check_emission(s: RecordedStep) -> None:
    """An untrimmed step emits n + 1 tokens, the last a bonus iff n = gamma."""
    g, n, emitted = s.g, s.n, s.emitted
    if len(emitted) != n + 1:
        if g > 0 and n == g and len(emitted) == g:
            s.add("bonus_dropped", f"all {g} drafts accepted but only {g} tokens emitted (no bonus)",
                  g, len(emitted), g + 1)
        else:
            s.add("emitted_count", f"{len(emitted)} tokens emitted, expected n+1 = {n + 1}", None, len(emitted), n + 1)
    want_kind = "bonus" if n == g else "correction"
    kind = s.rec["last_token_kind"]
    if kind != want_kind and len(emitted) == n + 1:
        s.add("last_token_kind", f"last_token_kind {kind!r} with n={n}, gamma={g}", None, kind, want_kind)


def check_trim(s: RecordedStep, eos: int | None, max_new: int | None) -> None:
    """A trimmed step emits at most n + 1 tokens and ends at EOS or at the token budget."""
    n, emitted = s.n, s.emitted
    if len(emitted) > n + 1:
        s.add("emitted_count", f"{len(emitted)} tokens emitted, at most n+1 = {n + 1} when trimmed",
              None, len(emitted), n + 1)
    if s.trimmed == "eos" and (eos is None or not emitted or emitted[-1] != eos):
        s.add("trim", f"trimmed_by eos but the last emitted token is not eos ({eos})", None, emitted[-1:] or None, eos)
    total = s.generated + len(emitted)
    if s.trimmed == "max_length" and max_new is not None and total != max_new:
        s.add("trim", f"trimmed_by max_length but {total} tokens generated, max_new_tokens={max_new}",
              None, total, max_new)


def check_bookkeeping(s: RecordedStep) -> None:
    """One target forward; target cache at sequence length - 1; verify positions L-1 .. L-1+gamma."""
    rec, L = s.rec, s.L
    tf = rec["target_forwards"]
    if tf != 1:
        s.add("target_forwards", f"{tf} target forwards in one step (one batched verify expected)", None, tf, 1)
    seq_after = L + len(s.emitted)
    for fld, want in (("target_cache_before", L - 1), ("target_cache_after", seq_after - 1)):
        if rec.get(fld) is not None and rec[fld] != want:
            s.add("kv_cache", f"{fld}={rec[fld]}, expected sequence length - 1 = {want}", None, rec[fld], want)
    for fld, want in (("verify_pos_first", L - 1), ("verify_pos_last", L - 1 + s.g)):
        if rec.get(fld) is not None and rec[fld] != want:
            s.add("positions", f"{fld}={rec[fld]}, expected {want}", None, rec[fld], want)


def leading_true(flags: list[Any]) -> int:
    """Length of the leading run of truthy values (the accepted count the flags imply)."""
    lead = 0
    while lead < len(flags) and flags[lead]:
        lead += 1
    return lead
