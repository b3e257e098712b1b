"""Request bodies and response readers for the servers `capture` talks to.

Three wire APIs: llama.cpp's native ``/completion``, the OpenAI-compatible ``/v1/completions`` (vLLM,
SGLang, TensorRT-LLM, llama.cpp too) and SGLang's native ``/generate`` (the only SGLang endpoint whose
response carries ``meta_info`` with the ``spec_*`` counters). Each reader returns the engine's own
speculative statistics untouched (``engine_stats``) plus the same numbers under our names (``spec``,
see ``format.SPEC_FIELDS``), so ingest never has to know the wire shapes. Pure functions on dicts:
the tests feed them recorded JSON in the shapes the engines document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ENDPOINTS = {"llamacpp": "/completion", "openai": "/v1/completions", "sglang": "/generate"}


@dataclass(frozen=True)
class Sampling:
    """What every request asks for. ``top_p=1, top_k=0, min_p=0`` so a sampled request draws from the
    plain temperature-scaled distribution (llama.cpp's defaults truncate it), which replay checks."""

    n_predict: int = 64
    temperature: float = 0.0
    seed: int | None = 0
    ignore_eos: bool = False
    n_probs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"n_predict": self.n_predict, "temperature": self.temperature, "seed": self.seed,
                "ignore_eos": self.ignore_eos, "top_p": 1.0, "top_k": 0, "min_p": 0.0}


def build_body(api: str, prompt: str | list[int], s: Sampling, model: str | None = None,
               seed: int | None = None) -> dict[str, Any]:
    """The JSON body of one request (``seed`` overrides the sampling's, per request)."""
    seed = s.seed if seed is None else seed
    if api == "llamacpp":
        body: dict[str, Any] = {"prompt": prompt, "n_predict": s.n_predict, "temperature": s.temperature,
                                "top_k": 0, "top_p": 1.0, "min_p": 0.0, "return_tokens": True,
                                "cache_prompt": False, "ignore_eos": s.ignore_eos}
        if seed is not None:
            body["seed"] = seed
        if s.n_probs:
            body["n_probs"] = s.n_probs
        return body
    if api == "sglang":
        sp = {"max_new_tokens": s.n_predict, "temperature": s.temperature, "top_p": 1.0, "top_k": -1,
              "min_p": 0.0, "ignore_eos": s.ignore_eos}
        if seed is not None:
            sp["sampling_seed"] = seed
        key = "text" if isinstance(prompt, str) else "input_ids"
        return {key: prompt, "sampling_params": sp, "return_logprob": bool(s.n_probs)}
    body = {"prompt": prompt, "max_tokens": s.n_predict, "temperature": s.temperature, "top_p": 1.0,
            "return_token_ids": True, "ignore_eos": s.ignore_eos, "stream": False}
    if model:
        body["model"] = model
    if seed is not None:
        body["seed"] = seed
    if s.n_probs:
        body["logprobs"] = s.n_probs
    return body


def _int(x: Any) -> int | None:
    return int(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _spec(num_drafts: Any = None, draft: Any = None, accepted: Any = None, k: Any = None,
          per_pos: list[int] | None = None, source: str | None = None) -> dict[str, Any] | None:
    out = {"num_drafts": _int(num_drafts), "draft_tokens": _int(draft), "accepted_tokens": _int(accepted),
           "k": _int(k), "accepted_per_pos": per_pos, "source": source}
    return out if any(out[f] is not None for f in ("num_drafts", "draft_tokens", "accepted_tokens")) else None


def per_pos_from_histogram(hist: list[Any]) -> list[int] | None:
    """vLLM's ``acceptance_histogram`` (index j: steps accepting exactly j drafts) -> steps whose j-th
    draft token was accepted, j = 0..k-1 (the shape of the per-position Prometheus counter)."""
    if not isinstance(hist, list) or len(hist) < 2 or not all(_int(h) is not None for h in hist):
        return None
    return [int(sum(hist[j + 1:])) for j in range(len(hist) - 1)]


def spec_llamacpp(timings: dict[str, Any] | None) -> dict[str, Any] | None:
    """llama-server ``timings.draft_n`` / ``draft_n_accepted`` (present only when it drafted)."""
    t = timings or {}
    return _spec(draft=t.get("draft_n"), accepted=t.get("draft_n_accepted"), source="timings")


def spec_vllm(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """vLLM ``metrics.speculative_decoding`` (``--per-request-spec-decode-metrics summary|detailed``)."""
    sd = (metrics or {}).get("speculative_decoding") or {}
    return _spec(sd.get("num_spec_steps"), sd.get("num_draft_tokens"), sd.get("num_accepted_draft_tokens"),
                 sd.get("num_spec_tokens"), per_pos_from_histogram(sd.get("acceptance_histogram")),
                 "metrics.speculative_decoding")


def spec_sglang(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """SGLang ``meta_info``: ``spec_verify_ct`` verify steps; accepted/proposed drafts where this
    version reports them, else accepted = completion_tokens - spec_verify_ct (SGLang's own accept
    length is completion_tokens / spec_verify_ct)."""
    m = meta or {}
    steps = _int(m.get("spec_verify_ct"))
    if not steps:
        return None
    acc = next((_int(m[f]) for f in ("spec_accepted_drafts", "spec_num_correct_drafts",
                                     "spec_accept_token_num") if _int(m.get(f)) is not None), None)
    if acc is None and _int(m.get("completion_tokens")) is not None:
        acc = max(0, int(m["completion_tokens"]) - steps)
    draft = next((_int(m[f]) for f in ("spec_proposed_drafts", "spec_num_proposed_drafts",
                                       "spec_draft_token_num") if _int(m.get(f)) is not None), None)
    return _spec(steps, draft, acc, None, None, "meta_info")


def spec_trtllm(perf: dict[str, Any] | None) -> dict[str, Any] | None:
    """TensorRT-LLM ``/perf_metrics`` item's ``perf_metrics.speculative_decoding``."""
    sd = ((perf or {}).get("perf_metrics") or {}).get("speculative_decoding") or {}
    return _spec(draft=sd.get("total_draft_tokens"), accepted=sd.get("total_accepted_draft_tokens"),
                 source="perf_metrics.speculative_decoding")


def _finish(reason: Any) -> str | None:
    if isinstance(reason, dict):
        reason = reason.get("type")
    return None if reason is None else str(reason)


def read_llamacpp(resp: dict[str, Any]) -> dict[str, Any]:
    t = resp.get("timings") or {}
    probs = resp.get("completion_probabilities")
    stop = resp.get("stop_type") or ("eos" if resp.get("stopped_eos") else
                                     "limit" if resp.get("stopped_limit") else None)
    return {
        "id": resp.get("id_slot"), "slot": resp.get("id_slot"), "model": resp.get("model"),
        "output_text": resp.get("content"), "output_token_ids": resp.get("tokens") or None,
        "finish_reason": stop, "n_output": _int(resp.get("tokens_predicted")),
        "n_prompt": _int(resp.get("tokens_evaluated")),
        "ttft_ms": t.get("prompt_ms"), "tpot_ms": t.get("predicted_per_token_ms"),
        "gen_tps": t.get("predicted_per_second"), "prompt_tps": t.get("prompt_per_second"),
        "output_probs": probs, "engine_stats": {"timings": t} if t else None, "spec": spec_llamacpp(t),
    }


def read_openai(resp: dict[str, Any], engine: str) -> dict[str, Any]:
    """A ``/v1/completions`` response from vLLM, SGLang, TRT-LLM or llama.cpp."""
    ch = (resp.get("choices") or [{}])[0]
    usage = resp.get("usage") or {}
    metrics = resp.get("metrics")
    out = {
        "id": resp.get("id"), "model": resp.get("model"), "output_text": ch.get("text"),
        "output_token_ids": ch.get("token_ids"), "prompt_token_ids": ch.get("prompt_token_ids"),
        "finish_reason": _finish(ch.get("finish_reason")), "n_output": _int(usage.get("completion_tokens")),
        "n_prompt": _int(usage.get("prompt_tokens")), "output_probs": ch.get("logprobs"),
        "engine_stats": None, "spec": None,
    }
    if isinstance(metrics, dict):  # vLLM per-request metrics
        out["engine_stats"] = {"metrics": metrics}
        out["spec"] = spec_vllm(metrics)
        if metrics.get("time_to_first_token_ms") is not None:
            out["ttft_ms"] = metrics["time_to_first_token_ms"]
        if metrics.get("mean_itl_ms") is not None:
            out["tpot_ms"] = metrics["mean_itl_ms"]
        if metrics.get("tokens_per_second") is not None:
            out["gen_tps"] = metrics["tokens_per_second"]
    elif isinstance(resp.get("timings"), dict):  # llama-server's OpenAI endpoint
        out["engine_stats"] = {"timings": resp["timings"]}
        out["spec"] = spec_llamacpp(resp["timings"])
    elif isinstance(ch.get("meta_info"), dict):  # SGLang with meta info requested
        out["engine_stats"] = {"meta_info": ch["meta_info"]}
        out["spec"] = spec_sglang(ch["meta_info"])
    return out


def read_sglang(resp: dict[str, Any]) -> dict[str, Any]:
    """SGLang ``/generate``: ``text``, ``output_ids`` and ``meta_info``."""
    m = resp.get("meta_info") or {}
    spec_stats = {k: v for k, v in m.items() if k.startswith("spec_")}
    return {
        "id": m.get("id"), "model": None, "output_text": resp.get("text"),
        "output_token_ids": resp.get("output_ids"), "finish_reason": _finish(m.get("finish_reason")),
        "n_output": _int(m.get("completion_tokens")), "n_prompt": _int(m.get("prompt_tokens")),
        "output_probs": m.get("output_token_logprobs"),
        "engine_stats": {"meta_info": {**spec_stats, "completion_tokens": m.get("completion_tokens"),
                                       "e2e_latency": m.get("e2e_latency")}} if spec_stats else None,
        "spec": spec_sglang(m),
    }


def read_response(api: str, engine: str, resp: dict[str, Any]) -> dict[str, Any]:
    if api == "llamacpp":
        return read_llamacpp(resp)
    if api == "sglang":
        return read_sglang(resp)
    return read_openai(resp, engine)


def attach_trtllm_perf(records: list[dict[str, Any]], perf: list[dict[str, Any]]) -> int:
    """Give each TRT-LLM record its ``/perf_metrics`` item (matched on the request id the response
    names, ``cmpl-<id>``); returns how many matched. Unmatched items stay in perf_metrics.json."""
    by_id = {str(p.get("request_id")): p for p in perf if isinstance(p, dict)}
    n = 0
    for r in records:
        rid = str(r.get("id") or "")
        key = rid.rsplit("-", 1)[-1] if rid else ""
        p = by_id.get(rid) or by_id.get(key)
        if p is not None:
            r["engine_stats"] = {"perf_metrics": p.get("perf_metrics")}
            r["spec"] = spec_trtllm(p)
            n += 1
    return n
