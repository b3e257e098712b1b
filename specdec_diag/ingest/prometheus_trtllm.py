"""trtllm-serve's Prometheus metrics (docs/log-formats.md §6), from ``MetricsCollector`` in
``tensorrt_llm/metrics/collector.py``: what :mod:`specdec_diag.ingest.prometheus` reads of them.

* Counters ``trtllm_spec_decode_num_draft_tokens_total`` / ``..._num_accepted_tokens_total`` (sums of
  the iterations' ``specDecodingStats``) and, per finished request, ``trtllm_spec_decode_drafted_tokens_total``
  / ``..._accepted_tokens_total`` labelled ``token_position``. Position 0 is drafted once per draft, so
  its drafted count is the number of drafts, and accepted[j] / drafted[0] is vLLM's per-position rate.
* Gauges of the last iteration: ``trtllm_spec_decode_acceptance_length``, ``..._draft_overhead`` (draft
  latency / iteration latency) and ``trtllm_iteration_latency_seconds``; with the queue and KV gauges.

Counters make one ``cumulative`` row per scrape (differenced like vLLM's); the gauges one ``interval``
row per scrape: the last iteration's draft and verify time (DRAFT_TOO_EXPENSIVE evidence) and, when the
counters cannot give drafts, the stated acceptance length.
"""

from __future__ import annotations

from typing import Any

from specdec_diag.ingest._textparse import ratio

FORMAT = "prometheus-trtllm"
GAUGE_FORMAT = "prometheus-trtllm-gauges"
#: metric (without _total) -> aggregate column
METRICS = {
    "trtllm_spec_decode_num_draft_tokens": "trt_draft",
    "trtllm_spec_decode_num_accepted_tokens": "trt_acc",
    "trtllm_spec_decode_acceptance_length": "trt_al",
    "trtllm_spec_decode_draft_overhead": "trt_overhead",
    "trtllm_iteration_latency_seconds": "trt_iter_s",
    "trtllm_num_requests_running": "running",
    "trtllm_num_requests_waiting": "waiting",
    "trtllm_kv_cache_utilization": "kv",
}
PER_POS_ACCEPTED = "trtllm_spec_decode_accepted_tokens"
PER_POS_DRAFTED = "trtllm_spec_decode_drafted_tokens"


def present(r: dict[str, Any]) -> bool:
    return any(r.get(c) is not None for c in ("trt_draft", "trt_acc", "trt_al", "trt_overhead")) or bool(
        r.get("trt_pp_drafted"))


def _by_position(values: list[float] | None, positions: list[int | None] | None) -> list[float]:
    """Per-position sums (series of several workers add up); positions 0..max, unobserved ones 0, as the
    collector creates a position's series only when it first counts something there."""
    sums: dict[int, float] = {}
    for v, p in zip(values or [], positions or [], strict=False):
        if p is not None and 0 <= p < 1024 and v is not None:
            sums[p] = sums.get(p, 0.0) + v
    return [sums.get(j, 0.0) for j in range(max(sums) + 1)] if sums else []


def rows(r: dict[str, Any], base: dict[str, Any], as_int: Any) -> list[dict[str, Any]]:
    """The cumulative counter row and the last-iteration gauge row of one scrape of one engine."""
    out = []
    drafted = _by_position(r.get("trt_pp_drafted"), r.get("trt_pos_drafted"))
    accepted = _by_position(r.get("trt_pp_accepted"), r.get("trt_pos_accepted"))
    drafts = as_int(drafted[0]) if drafted else None
    draft, acc = as_int(r.get("trt_draft")), as_int(r.get("trt_acc"))
    if draft is None and acc is None and drafted:  # only the per-position counters: their sums
        draft, acc = as_int(sum(drafted)), as_int(sum(accepted))
    if draft is not None or acc is not None or drafts:
        accepted += [0.0] * (len(drafted) - len(accepted))
        pp = [min(1.0, a / drafts) for a in accepted] if drafts and len(accepted) == len(drafted) else None
        out.append({
            **base, "engine": "trtllm", "format": FORMAT, "window": "cumulative",
            "k": len(drafted) or None, "num_drafts": drafts, "draft_tokens": draft, "accepted_tokens": acc,
            "acceptance_rate": ratio(acc, draft),
            "mean_acceptance_length": None if ratio(acc, drafts) is None else 1 + acc / drafts,
            "per_position_acceptance": pp,
            "definition_note": "trtllm-serve counters since server start; drafts = drafted tokens at "
                               "token_position 0; per position = accepted[j] / drafts; tokens from the "
                               "num_*_tokens counters, else the per-position sums",
        })
    overhead, iter_s, al = r.get("trt_overhead"), r.get("trt_iter_s"), r.get("trt_al")
    timed = overhead is not None and iter_s is not None and 0 <= overhead <= 1 and iter_s > 0
    gauge_al = al if al is not None and al >= 1 and not drafts else None
    if timed or gauge_al is not None:
        out.append({
            **base, "engine": "trtllm", "format": GAUGE_FORMAT, "window": "interval",
            "mean_acceptance_length": gauge_al,
            "draft_ms": 1000 * iter_s * overhead if timed else None,
            "verify_ms": 1000 * iter_s * (1 - overhead) if timed else None,
            "definition_note": "trtllm-serve gauges of the last iteration before the scrape: draft_ms = "
                               "draft_overhead x iteration latency, verify_ms = the rest; acceptance length "
                               "= (accepted + requests) / requests of that iteration",
        })
    return out
