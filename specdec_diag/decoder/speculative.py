"""The speculative step, on one screen, and the autoregressive baseline of the same loop.

Cache convention (as transformers' assisted decoding): with a sequence of length L, the target KV
cache holds L - 1 entries; the newest token is not cached yet and opens the next verify window.
One step:

1. draft: feed the draft every token it has not cached yet (1, or 2 after a bonus), then draft
   gamma tokens one forward each, sampling from q (processed exactly like p);
2. verify: ONE target forward over ``[last token, d_1..d_gamma]`` at positions ``L-1 .. L-1+gamma``;
3. accept: :func:`acceptance.verify` tests all drafted positions at once, n = leading run;
4. emit d_1..d_n + the verifier token (correction or bonus), trimmed at EOS / max_new_tokens;
5. crop both caches (``DynamicCache.crop(-k)``) back to new length - 1 (the draft cache may be one
   short after a full accept; the next step feeds it the missing token).

Baseline mode is the same loop with gamma = 0: one target forward per token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from specdec_diag.decoder.acceptance import (
    Rule,
    SamplingConfig,
    plain_probs,
    process_logits,
    sample_from,
    verify,
)
from specdec_diag.decoder.faults import Fault
from specdec_diag.decoder.models import ModelPair
from specdec_diag.decoder.policies import GammaPolicy
from specdec_diag.decoder.tracing import Timer, TraceWriter, clean, header_record, summarise, versions


@dataclass
class DecodeConfig:
    """Everything that decides a run (and is recorded in the trace header)."""

    gamma: int = 4
    rule: Rule = field(default_factory=Rule)
    policy: str = "constant"
    threshold: float = 0.4
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    max_new_tokens: int = 64
    seed: int = 0
    baseline: bool = False
    fault: Fault = field(default_factory=Fault)
    stop_at_eos: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.rule.stochastic and self.sampling.temperature <= 0:
            raise ValueError(f"rule {self.rule.name!r} samples: temperature must be > 0 (use --rule greedy)")


@dataclass
class GenerateResult:
    tokens: list[list[int]]
    texts: list[str]
    records: list[dict[str, Any]]

    @property
    def header(self) -> dict[str, Any]:
        return self.records[0]

    @property
    def steps(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["type"] == "step"]

    @property
    def summary(self) -> dict[str, Any]:
        return self.records[-1]


def _cache(model: Any):
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def _forward(model: Any, ids: torch.Tensor, pos0: int, cache: Any) -> torch.Tensor:
    """Logits [len(ids), V] for ``ids`` placed at explicit positions pos0.. (never inferred)."""
    pos = torch.arange(pos0, pos0 + ids.shape[0], device=ids.device).unsqueeze(0)
    out = model(input_ids=ids.unsqueeze(0), position_ids=pos, cache=cache, use_cache=True)
    return out.logits[0]


def encode_prompts(pair: ModelPair, prompts: Sequence[str | Sequence[int]]) -> list[list[int]]:
    ids = []
    for i, p in enumerate(prompts):
        toks = list(p) if not isinstance(p, str) else pair.tokenizer(p)["input_ids"]
        if not toks:
            raise ValueError(f"prompt {i} encodes to no tokens")
        ids.append([int(t) for t in toks])
    return ids


class _Run:
    """State shared by the requests of one generate() call."""

    def __init__(self, pair: ModelPair, cfg: DecodeConfig, writer: TraceWriter,
                 on_step: Callable[[int, int, int], None] | None):
        self.pair, self.cfg, self.writer, self.on_step = pair, cfg, writer, on_step
        self.dev = torch.device(pair.device)
        self.timer = Timer(pair.device)
        self.gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self.policy = GammaPolicy(cfg.policy, 0 if cfg.baseline else cfg.gamma, cfg.threshold)
        self.step_idx = 0
        self.eos = pair.eos_token_id if cfg.stop_at_eos else None
        self.vocab = pair.target.get_output_embeddings().weight.shape[0]
        self.trace_s = 0.0

    # -- phases ---------------------------------------------------------------------------------
    def draft(self, seq: torch.Tensor, dcache: Any, g: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Draft up to g tokens. Returns tokens [g'], q used by the verifier [g', V], forwards."""
        cfg, stochastic = self.cfg, self.cfg.rule.stochastic
        if g == 0:
            return (torch.empty(0, dtype=torch.long, device=self.dev),
                    torch.empty(0, self.vocab, device=self.dev), 0)
        u = torch.rand(g, generator=self.gen).to(self.dev)
        dlen = dcache.get_seq_length()
        feed, pos = seq[dlen:], dlen
        toks, qs = [], []
        for i in range(g):
            logits = _forward(self.pair.draft, feed, pos, dcache)[-1:]
            pos += feed.shape[0]
            if cfg.fault.nan_at(self.step_idx) and cfg.fault.params.get("draft_too"):
                logits = torch.full_like(logits, float("nan"))  # an EAGLE/MTP head fed NaN hidden states
            if stochastic:
                q = process_logits(logits, cfg.sampling)
                tok = sample_from(q, u[i : i + 1])
                # the bug: the ratio uses raw-logit probs, not the distribution the token came from
                q_used = plain_probs(logits) if cfg.fault.is_("raw-draft-probs") else q
            else:
                q = q_used = plain_probs(logits)
                tok = q.argmax(-1)
            toks.append(tok)
            qs.append(q_used)
            if self.policy.needs_draft_prob and self.policy.stops_draft(float(q[0, tok[0]])):
                break
            feed = tok
        return torch.cat(toks), torch.cat(qs), len(toks)

    def verify_forward(self, window: torch.Tensor, pos0: int, tcache: Any) -> tuple[torch.Tensor, int]:
        if self.cfg.fault.is_("sequential-verify"):
            outs = [_forward(self.pair.target, window[i : i + 1], pos0 + i, tcache) for i in range(window.shape[0])]
            return torch.cat(outs), len(outs)
        return _forward(self.pair.target, window, pos0, tcache), 1

    # -- one request ------------------------------------------------------------------------------
    def request(self, r: int, prompt: list[int]) -> tuple[list[int], dict[str, Any]]:
        cfg, fault, pair = self.cfg, self.cfg.fault, self.pair
        tcache, dcache = _cache(pair.target), _cache(pair.draft)
        self.policy.reset()
        seq = torch.tensor(prompt, dtype=torch.long, device=self.dev)
        t0 = self.timer.now()
        if seq.shape[0] > 1:
            _forward(pair.target, seq[:-1], 0, tcache)
            if not cfg.baseline:
                _forward(pair.draft, seq[:-1], 0, dcache)
        prefill_ms = (self.timer.now() - t0) * 1e3
        generated: list[int] = []
        finished_by = "max_length"
        while len(generated) < cfg.max_new_tokens:
            L = seq.shape[0]
            remaining = cfg.max_new_tokens - len(generated)
            g_req = self.policy.requested()
            g = min(g_req, remaining - 1)  # as transformers: never draft past the token budget
            tc_before, dc_before = tcache.get_seq_length(), dcache.get_seq_length()
            t_start = self.timer.now()
            drafts, q, dfw = self.draft(seq, dcache, g)
            g = drafts.shape[0]
            if fault.is_("slow-draft") and g:
                time.sleep((float(fault.params["factor"]) - 1) * (self.timer.now() - t_start))
            t_draft = self.timer.now()
            u = torch.rand(g + 1, generator=self.gen).to(self.dev) if cfg.rule.stochastic else None
            pos0 = L - 1 + (1 if fault.is_("position-shift") else 0)
            logits, tfw = self.verify_forward(torch.cat([seq[-1:], drafts]), pos0, tcache)
            if fault.nan_at(self.step_idx):
                logits = torch.full_like(logits, float("nan"))
            t_verify = self.timer.now()
            v = verify(logits, drafts, q, u, cfg.rule, cfg.sampling, force_accept_all=fault.is_("accept-all"))
            n = v.n
            drafts_l = drafts.tolist()
            emitted = drafts_l[:n] + [v.token]
            if fault.is_("drop-bonus") and v.kind == "bonus" and g > 0:
                emitted = emitted[:-1]
            trimmed = "none"
            if self.eos is not None and self.eos in emitted:
                cut = emitted.index(self.eos) + 1
                if cut < len(emitted):
                    trimmed = "eos"
                emitted = emitted[:cut]
                finished_by = "eos"
            if len(emitted) > remaining:
                emitted, trimmed = emitted[:remaining], "max_length"
            new_len = L + len(emitted)
            seq = torch.cat([seq, torch.tensor(emitted, dtype=torch.long, device=self.dev)])
            generated.extend(emitted)
            tc_mid = tcache.get_seq_length()
            if not fault.is_("no-rollback") and tc_mid > new_len - 1:
                tcache.crop(-(tc_mid - (new_len - 1)))
            dc_mid = dcache.get_seq_length()
            if dc_mid > new_len - 1:
                dcache.crop(-(dc_mid - (new_len - 1)))
            gamma_next = self.policy.update(g, n)
            t_rec = time.perf_counter()
            p = v.p
            min_pq = torch.minimum(p[:g], q).sum(-1) if g else p[:0, 0]
            rec = {
                "type": "step", "step": self.step_idx, "request": r, "context_len": L,
                "gamma_requested": g_req, "gamma_drafted": g, "draft_token_ids": drafts_l,
                "q": clean(v.q_tok.tolist()) if g else [], "p": clean(v.p_tok.tolist()) if g else [],
                "uniforms": u.tolist() if u is not None else None,
                "accept_flags": v.accept_flags.tolist(), "n_accepted": n, "emitted_token_ids": emitted,
                "last_token_kind": v.kind, "trimmed_by": trimmed,
                "target_forwards": tfw, "draft_forwards": dfw,
                "target_cache_before": tc_before, "target_cache_after": tcache.get_seq_length(),
                "draft_cache_before": dc_before, "draft_cache_after": dcache.get_seq_length(),
                "verify_pos_first": pos0, "verify_pos_last": pos0 + g,
                "min_pq": clean(min_pq.tolist()), "argmax_p": p.argmax(-1).tolist(),
                "gamma_next": gamma_next,
                "threshold": self.policy.threshold if self.policy.name == "confidence" else None,
            }
            t_end = self.timer.now()
            self.trace_s += t_end - t_rec
            rec["draft_ms"] = (t_draft - t_start) * 1e3
            rec["verify_ms"] = (t_verify - t_draft) * 1e3
            rec["overhead_ms"] = (t_end - t_verify) * 1e3
            self.writer.write(rec)
            self.trace_s += time.perf_counter() - t_end
            self.step_idx += 1
            if self.on_step is not None:
                self.on_step(r, len(generated), cfg.max_new_tokens)
            if finished_by == "eos":
                break
        return generated, {"prefill_ms": prefill_ms, "finished_by": finished_by}


def warm_up(pair: ModelPair) -> None:
    """One untimed forward per model: the first call pays lazy initialisation (kernels, allocator)
    that would otherwise be charged to the first step."""
    ids = torch.zeros(2, dtype=torch.long, device=pair.device)
    with torch.inference_mode():
        for m in (pair.target, pair.draft):
            _forward(m, ids, 0, _cache(m))


def generate(pair: ModelPair, prompts: Sequence[str | Sequence[int]], cfg: DecodeConfig | None = None,
             trace: str | None = None, on_step: Callable[[int, int, int], None] | None = None,
             warmup: bool = False) -> GenerateResult:
    """Decode each prompt in turn (batch 1) and trace every step. ``prompts`` are strings or token
    id lists. Returns the generated token ids, texts and the trace records (header, steps, summary);
    with ``trace`` set they are also written there as JSONL. ``warmup`` runs :func:`warm_up` first
    (use it when timing)."""
    cfg = cfg or DecodeConfig()
    prompt_ids = encode_prompts(pair, prompts)
    if warmup:
        warm_up(pair)
    writer = TraceWriter(trace)
    run = _Run(pair, cfg, writer, on_step)
    header = header_record(
        mode="baseline" if cfg.baseline else "speculative",
        rule=cfg.rule.as_dict(),
        gamma_policy={**run.policy.as_dict(), "gamma": 0 if cfg.baseline else cfg.gamma},
        sampling={**cfg.sampling.as_dict(), "do_sample": cfg.rule.stochastic},
        seed=cfg.seed, device=pair.device, dtype=pair.dtype, versions=versions(),
        models={"target": pair.info.get("target"), "draft": None if cfg.baseline else pair.info.get("draft")},
        tokenizer=pair.info.get("tokenizer"),
        prompts=[p if isinstance(p, str) else None for p in prompts], prompt_token_ids=prompt_ids,
        max_new_tokens=cfg.max_new_tokens, eos_token_id=run.eos,
        cache_convention="target cache length == sequence length - 1 after each step",
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **cfg.fault.header(),
    )
    tokens: list[list[int]] = []
    outputs = []
    try:
        writer.write(header)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for r, ids in enumerate(prompt_ids):
                out, info = run.request(r, ids)
                tokens.append(out)
                outputs.append({"request": r, "token_ids": out,
                                "text": pair.tokenizer.decode(out, skip_special_tokens=False), **info})
        wall = time.perf_counter() - t0
        steps = writer.records[1:]
        summary = summarise(steps, wall, outputs, {"trace_ms_total": run.trace_s * 1e3,
                                                   "prefill_ms_total": sum(o["prefill_ms"] for o in outputs)})
        writer.write(summary)
    finally:
        writer.close()
    return GenerateResult(tokens, [o["text"] for o in outputs], writer.records)
