"""KV_ROLLBACK: Rejected positions left in the KV cache, or verify positions not contiguous."""

from __future__ import annotations

from specdec_diag.analysis.rules.base import Context, Finding, Need, Rule
from specdec_diag.analysis.rules.correctness._helpers import by_request


class KvRollback(Rule):
    """Rejected positions left in the KV cache, or verify positions not contiguous.

    **What it detects.** Trace steps whose target cache length after the step is not
    ``sequence length - 1`` (rejected drafts' keys/values kept, or too much cropped), whose next step
    does not start from the cache this step left, whose verify window does not start at position
    ``context_len - 1``, or whose window positions are not contiguous (``last - first != gamma``).

    **Why it matters.** Keys/values of rejected drafts make every later token attend to text that was
    never emitted; a shifted position id mis-rotates RoPE keys. Both silently change the model's output
    and usually make acceptance decay over the generation (transformers #30312, #30042/#30068,
    jundot/omlx #2363, vllm #54498).

    **Evidence.** ``violations``, ``steps``, ``by_reason`` (cache_after, cache_continuity,
    verify_start, verify_span), ``excess_cache_entries`` (max cache length above sequence - 1),
    ``first`` (first bad step).

    **Example.** ``target_cache_after=131, expected 127 (sequence 128 - 1)`` growing by the number of
    rejected drafts every step.

    **Fix.** Crop the target (and draft) cache to the accepted length after verification
    (``crop(seq_len - 1)`` / ``num_computed_tokens -= rejected``) and start the next verify window at
    position ``L - 1``; assert ``cache_len == seq_len - 1`` after every step.
    """

    code = "KV_ROLLBACK"
    name = "KV cache not rolled back"
    severity = "error"
    needs = (Need("steps", 1, "steps whose cache or positions break the invariant (explicit evidence)"),)
    problems = (10,)
    theory = ("5.1", "5.2")

    def check(self, ctx: Context) -> list[Finding]:
        out = []
        for src, steps in ctx.step_groups():
            reasons: dict[str, int] = {}
            bad: list[tuple[str, int]] = []
            first = None
            excess = 0
            checked = 0
            for rows in by_request(steps):
                prev_after = None
                for r in rows:
                    seq = r["context_len"] + len(r["emitted_token_ids"] or [])
                    probs = []
                    after, before = r.get("target_cache_after"), r.get("target_cache_before")
                    vf, vl = r.get("verify_pos_first"), r.get("verify_pos_last")
                    if after is None and vf is None:
                        prev_after = None
                        continue
                    checked += 1
                    if after is not None and after != seq - 1:
                        probs.append(("cache_after", f"target_cache_after={after}, expected sequence-1={seq - 1}"))
                        excess = max(excess, after - (seq - 1))
                    if before is not None and prev_after is not None and before != prev_after:
                        probs.append(("cache_continuity",
                                      f"target_cache_before={before} but the previous step left {prev_after}"))
                    if vf is not None and vf != r["context_len"] - 1:
                        probs.append(("verify_start",
                                      f"verify_pos_first={vf}, expected context_len-1={r['context_len'] - 1}"))
                    if vf is not None and vl is not None and vl - vf != r["gamma_drafted"]:
                        probs.append(("verify_span",
                                      f"verify window spans {vl - vf + 1} positions, expected gamma+1="
                                      f"{r['gamma_drafted'] + 1}"))
                    prev_after = after
                    if probs:
                        for key, _ in probs:
                            reasons[key] = reasons.get(key, 0) + 1
                        bad.append((src, r["line"]))
                        if first is None:
                            first = {"line": r["line"], "step": r["step"], "request": r["request"],
                                     "problem": probs[0][1]}
            if not bad:
                continue
            out.append(self.finding(
                ctx, f"KV cache / positions inconsistent with the accepted sequence on {len(bad)} of "
                     f"{checked} steps",
                {"violations": len(bad), "steps": checked, "by_reason": reasons,
                 "excess_cache_entries": excess, "first": first,
                 "definitions": {
                     "cache_after": "target_cache_after != context_len + emitted - 1",
                     "cache_continuity": "target_cache_before != previous step's target_cache_after",
                     "verify_start": "verify_pos_first != context_len - 1",
                     "verify_span": "verify_pos_last - verify_pos_first != gamma_drafted",
                     "excess_cache_entries": "largest number of cache entries beyond sequence - 1"}},
                "Crop the KV cache to the accepted length after each verification and feed the verify "
                "window consecutive positions starting at context_len - 1; assert cache_len == seq_len - 1.",
                bad, score=len(bad) / max(checked, 1)))
        return out
