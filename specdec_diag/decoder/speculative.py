"""The speculative step, on one screen (:meth:`_Run.step`), and the autoregressive baseline of the same loop.

Cache convention (as transformers' assisted decoding): with a sequence of length L, the target KV
cache holds L - 1 entries; the newest token is not cached yet and opens the next verify window.
One step, as gpt-fast's ``speculative_decode``:

1. draft: feed the draft every token it has not cached yet (1, or 2 after a bonus), then draft
   gamma tokens one forward each, sampling from q (processed exactly like p);
2. verify: ONE target forward over ``[last token, d_1..d_gamma]`` at positions ``L-1 .. L-1+gamma``;
3. accept: :func:`verification.verify` tests all drafted positions at once, n = leading run;
4. emit d_1..d_n + the verifier token (correction or bonus), trimmed at EOS / max_new_tokens;
5. crop both caches (``DynamicCache.crop(-k)``) back to new length - 1 (the draft cache may be one
   short after a full accept; the next step feeds it the missing token).

An injected fault (:mod:`faults`) is a set of hooks around the forwards, the acceptance test, the
emission and the target rollback; the healthy hooks are plain calls. Baseline mode is the same loop
with gamma = 0: one target forward per token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from specdec_diag.decoder.faults import Fault
from specdec_diag.decoder.models import ModelPair
from specdec_diag.decoder.policies import GammaPolicy
from specdec_diag.decoder.tracing import Timer, TraceWriter, clean, header_record, summarise, versions
from specdec_diag.decoder.verification import (
    AcceptanceRule,
    SamplingConfig,
    Verdict,
    accept_flags,
    draft_probs,
    sample_from,
    verify,
)


@dataclass
class DecodeConfig:
    """Everything that decides a run (and is recorded in the trace header)."""

    gamma: int = 4
    rule: AcceptanceRule = field(default_factory=AcceptanceRule)
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


def trim(tokens: list[int], eos: int | None, remaining: int) -> tuple[list[int], str, bool]:
    """Cut a step's tokens after the first EOS and at the token budget. Returns the tokens, what
    trimmed them (``none`` | ``eos`` | ``max_length``) and whether EOS ends the request."""
    trimmed, hit_eos = "none", False
    if eos is not None and eos in tokens:
        cut = tokens.index(eos) + 1
        if cut < len(tokens):
            trimmed = "eos"
        tokens, hit_eos = tokens[:cut], True
    if len(tokens) > remaining:
        tokens, trimmed = tokens[:remaining], "max_length"
    return tokens, trimmed, hit_eos


def rollback(cache: Any, keep: int) -> None:
    """Crop ``cache`` to ``keep`` entries (``DynamicCache.crop(-k)`` removes k); never grows it."""
    extra = cache.get_seq_length() - keep
    if extra > 0:
        cache.crop(-extra)


@dataclass
class StepOutcome:
    """What one step did, for its trace record (tensors until the record converts them)."""

    context_len: int
    gamma_requested: int
    drafts: list[int]
    q: torch.Tensor  # [g, V] the q the verifier was given
    uniforms: torch.Tensor | None
    verdict: Verdict
    emitted: list[int]
    trimmed: str
    hit_eos: bool
    target_forwards: int
    draft_forwards: int
    pos0: int
    caches_before: tuple[int, int]
    times: tuple[float, float, float]  # start, draft done, verify done

    @property
    def gamma(self) -> int:
        return len(self.drafts)


class _Run:
    """State shared by the requests of one generate() call. The active fault's hooks sit at fixed
    points of :meth:`step`; the step itself has no fault branch."""

    def __init__(self, pair: ModelPair, cfg: DecodeConfig, writer: TraceWriter,
                 on_step: Callable[[int, int, int], None] | None):
        self.pair, self.cfg, self.writer, self.on_step = pair, cfg, writer, on_step
        self.dev = torch.device(pair.device)
        self.timer = Timer(pair.device)
        self.gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self.policy = GammaPolicy(cfg.policy, 0 if cfg.baseline else cfg.gamma, cfg.threshold)
        self.hooks = cfg.fault.hooks()
        self.accept = self.hooks.accept(accept_flags)
        self.step_idx = 0
        self.eos = pair.eos_token_id if cfg.stop_at_eos else None
        self.vocab = pair.target.get_output_embeddings().weight.shape[0]
        self.trace_s = 0.0

    def draft(self, seq: torch.Tensor, dcache: Any, g: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Draft up to g tokens, one forward each at explicit positions (the first feeds every token
        the draft has not cached). Returns tokens [g'], the q given to the verifier [g', V], forwards."""
        rule, sampling = self.cfg.rule, self.cfg.sampling
        if g == 0:
            return (torch.empty(0, dtype=torch.long, device=self.dev),
                    torch.empty(0, self.vocab, device=self.dev), 0)
        u = torch.rand(g, generator=self.gen).to(self.dev)
        forward = partial(_forward, self.pair.draft, cache=dcache)
        pos = dcache.get_seq_length()
        feed = seq[pos:]
        toks, qs = [], []
        for i in range(g):
            logits = self.hooks.draft_forward(forward, feed, pos, self.step_idx)[-1:]
            pos += feed.shape[0]
            q = draft_probs(logits, rule, sampling)
            tok = sample_from(q, u[i : i + 1]) if rule.stochastic else q.argmax(-1)
            toks.append(tok)
            qs.append(self.hooks.draft_q(q, logits))
            if self.policy.needs_draft_prob and self.policy.stops_draft(float(q[0, tok[0]])):
                break
            feed = tok
        return torch.cat(toks), torch.cat(qs), len(toks)

    def step(self, seq: torch.Tensor, tcache: Any, dcache: Any, g_req: int, remaining: int) -> StepOutcome:
        """One speculative step: draft gamma, ONE verify forward, accept, emit, roll back."""
        L = seq.shape[0]
        before = (tcache.get_seq_length(), dcache.get_seq_length())
        t_start = self.timer.now()
        drafts, q, dfw = self.draft(seq, dcache, min(g_req, remaining - 1))  # never draft past the budget
        g = drafts.shape[0]
        self.hooks.after_draft(g, self.timer.now() - t_start)
        t_draft = self.timer.now()
        u = torch.rand(g + 1, generator=self.gen).to(self.dev) if self.cfg.rule.stochastic else None
        pos0 = self.hooks.verify_position(L - 1)
        target = partial(_forward, self.pair.target, cache=tcache)
        logits, tfw = self.hooks.verify_forward(target, torch.cat([seq[-1:], drafts]), pos0, self.step_idx)
        t_verify = self.timer.now()
        v = verify(logits, drafts, q, u, self.cfg.rule, self.cfg.sampling, accept=self.accept)
        drafts_l = drafts.tolist()
        tokens = self.hooks.emit(drafts_l[: v.n] + [v.token], v.kind, g)
        emitted, trimmed, hit_eos = trim(tokens, self.eos, remaining)
        keep = L + len(emitted) - 1  # the cache convention: sequence length - 1
        self.hooks.rollback_target(rollback, tcache, keep)
        rollback(dcache, keep)
        return StepOutcome(L, g_req, drafts_l, q, u, v, emitted, trimmed, hit_eos, tfw, dfw, pos0, before,
                           (t_start, t_draft, t_verify))

    def record(self, r: int, s: StepOutcome, tcache: Any, dcache: Any, gamma_next: int) -> dict[str, Any]:
        """The step's trace record (timings are added by the caller, once the record is built)."""
        g, v = s.gamma, s.verdict
        p = v.p
        min_pq = torch.minimum(p[:g], s.q).sum(-1) if g else p[:0, 0]
        return {
            "type": "step", "step": self.step_idx, "request": r, "context_len": s.context_len,
            "gamma_requested": s.gamma_requested, "gamma_drafted": g, "draft_token_ids": s.drafts,
            "q": clean(v.q_tok.tolist()) if g else [], "p": clean(v.p_tok.tolist()) if g else [],
            "uniforms": s.uniforms.tolist() if s.uniforms is not None else None,
            "accept_flags": v.accept_flags.tolist(), "n_accepted": v.n, "emitted_token_ids": s.emitted,
            "last_token_kind": v.kind, "trimmed_by": s.trimmed,
            "target_forwards": s.target_forwards, "draft_forwards": s.draft_forwards,
            "target_cache_before": s.caches_before[0], "target_cache_after": tcache.get_seq_length(),
            "draft_cache_before": s.caches_before[1], "draft_cache_after": dcache.get_seq_length(),
            "verify_pos_first": s.pos0, "verify_pos_last": s.pos0 + g,
            "min_pq": clean(min_pq.tolist()), "argmax_p": p.argmax(-1).tolist(),
            "gamma_next": gamma_next,
            "threshold": self.policy.threshold if self.policy.name == "confidence" else None,
        }

    def prefill(self, seq: torch.Tensor, tcache: Any, dcache: Any) -> float:
        """Cache ``prompt[:-1]`` in both models (the last token opens the first window); ms taken."""
        t0 = self.timer.now()
        if seq.shape[0] > 1:
            _forward(self.pair.target, seq[:-1], 0, tcache)
            if not self.cfg.baseline:
                _forward(self.pair.draft, seq[:-1], 0, dcache)
        return (self.timer.now() - t0) * 1e3

    def request(self, r: int, prompt: list[int]) -> tuple[list[int], dict[str, Any]]:
        cfg = self.cfg
        tcache, dcache = _cache(self.pair.target), _cache(self.pair.draft)
        self.policy.reset()
        seq = torch.tensor(prompt, dtype=torch.long, device=self.dev)
        prefill_ms = self.prefill(seq, tcache, dcache)
        generated: list[int] = []
        finished_by = "max_length"
        while len(generated) < cfg.max_new_tokens:
            s = self.step(seq, tcache, dcache, self.policy.requested(), cfg.max_new_tokens - len(generated))
            seq = torch.cat([seq, torch.tensor(s.emitted, dtype=torch.long, device=self.dev)])
            generated.extend(s.emitted)
            gamma_next = self.policy.update(s.gamma, s.verdict.n)
            t_rec = time.perf_counter()
            rec = self.record(r, s, tcache, dcache, gamma_next)
            t_end = self.timer.now()
            self.trace_s += t_end - t_rec
            t_start, t_draft, t_verify = s.times
            rec["draft_ms"] = (t_draft - t_start) * 1e3
            rec["verify_ms"] = (t_verify - t_draft) * 1e3
            rec["overhead_ms"] = (t_end - t_verify) * 1e3
            self.writer.write(rec)
            self.trace_s += time.perf_counter() - t_end
            self.step_idx += 1
            if self.on_step is not None:
                self.on_step(r, len(generated), cfg.max_new_tokens)
            if s.hit_eos:
                finished_by = "eos"
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
