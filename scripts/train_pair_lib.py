"""Building blocks of scripts/train_pair.py: tokenizer, models, resumable training loops, on-policy stage,
held-out measurements. Every loop checkpoints model + optimiser + step + data-RNG state, so a run stopped
by its time budget (or killed) resumes exactly where it was.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SPECIALS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class BudgetSpent(Exception):
    """Raised after the checkpoint is written when --time-budget is used up; rerun to resume."""


class Budget:
    """Wall-clock budget of one sitting, and the checkpoint cadence (every --ckpt-minutes)."""

    def __init__(self, seconds: float, ckpt_seconds: float):
        self.t0 = time.monotonic()
        self.deadline = self.t0 + seconds if seconds > 0 else math.inf
        self.ckpt_seconds, self.last_ckpt = ckpt_seconds, self.t0

    def spent(self) -> bool:
        return time.monotonic() >= self.deadline

    def ckpt_due(self) -> bool:
        return time.monotonic() - self.last_ckpt >= self.ckpt_seconds

    def saved(self) -> None:
        self.last_ckpt = time.monotonic()


def train_tokenizer(texts: list[str], vocab_size: int, out: Path):
    """Byte-level BPE (GPT-2 pre-tokenizer: llama.cpp converts it as `gpt-2`) saved as a
    PreTrainedTokenizerFast, which AutoTokenizer loads with no network."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", bos_token="<|bos|>",
                                   eos_token="<|eos|>", unk_token="<|unk|>", model_max_length=1024)
    fast.save_pretrained(out)
    return fast


def encode_corpus(tok, texts: list[str]) -> torch.Tensor:
    """One long id stream: each file is bos + its tokens + eos."""
    ids: list[int] = []
    for enc in tok(texts, add_special_tokens=False)["input_ids"]:
        ids.append(tok.bos_token_id)
        ids.extend(enc)
        ids.append(tok.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def llama(vocab: int, layers: int, hidden: int, heads: int, inter: int, tok, ctx: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=ctx,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, rope_theta=10000.0)
    return LlamaForCausalLM(cfg)


def next_batch(data: torch.Tensor, block: int, bsz: int, g: torch.Generator):
    """Random windows of the stream, drawn from ``g`` (whose state the checkpoint saves)."""
    starts = torch.randint(0, data.numel() - block - 1, (bsz,), generator=g)
    x = torch.stack([data[s : s + block + 1] for s in starts.tolist()])
    return x[:, :-1], x[:, 1:]


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine to 10 % of the peak at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def save_checkpoint(ckpt: Path, model, opt, step: int, history: list, g: torch.Generator | None) -> None:
    """Model, optimiser, step, history, data RNG and global RNGs, written atomically (temp + rename)."""
    tmp = ckpt.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "history": history,
                "data_rng": None if g is None else g.get_state(), "torch_rng": torch.get_rng_state(),
                "py_rng": random.getstate()}, tmp)
    tmp.replace(ckpt)


def load_checkpoint(ckpt: Path, model, opt, g: torch.Generator | None) -> tuple[int, list]:
    if not ckpt.exists():
        return 0, []
    state = torch.load(ckpt, weights_only=False, map_location="cpu")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    if g is not None and state.get("data_rng") is not None:
        g.set_state(state["data_rng"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["py_rng"])
    return state["step"], state["history"]


def _loss(model, x, y, teacher, args):
    logits = model(input_ids=x).logits
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    if teacher is None:
        return ce, ce
    with torch.no_grad():
        t_logits = teacher(input_ids=x).logits
    T = args.temperature
    kl = F.kl_div(F.log_softmax(logits / T, -1).reshape(-1, logits.shape[-1]),
                  F.log_softmax(t_logits / T, -1).reshape(-1, logits.shape[-1]),
                  log_target=True, reduction="batchmean") * T * T
    return (1 - args.hard_weight) * kl + args.hard_weight * ce, ce


def train_lm(name: str, model, data: torch.Tensor, args, steps: int, lr: float, ckpt: Path, budget: Budget,
             teacher=None, seed: int = 0, on_ckpt=None) -> list[dict]:
    """Train ``model`` for ``steps`` (next-token CE, or distillation from ``teacher``); resumes from
    ``ckpt``; checkpoints every --ckpt-minutes (``on_ckpt(step)`` may add held-out figures to the
    history) and raises BudgetSpent, after checkpointing, when the sitting's budget is used up."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    g = torch.Generator().manual_seed(seed)
    start, history = load_checkpoint(ckpt, model, opt, g)
    if start:
        log(f"{name}: resumed at step {start}/{steps}")
    model.train()
    dev = next(model.parameters()).device
    t0, run_loss, n = time.perf_counter(), 0.0, 0
    for step in range(start, steps):
        x, y = (t.to(dev) for t in next_batch(data, args.block, args.batch, g))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, args.warmup)
        loss, ce = _loss(model, x, y, teacher, args)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run_loss, n = run_loss + ce.item(), n + 1
        last = step + 1 == steps
        if (step + 1) % args.log_every == 0 or last:
            rec = {"step": step + 1, "ce": round(run_loss / n, 4), "loss": round(loss.item(), 4),
                   "s": round(time.perf_counter() - t0, 1)}
            history.append(rec)
            log(f"{name} {rec}")
            run_loss, n = 0.0, 0
        checkpoint_if_due(name, model, opt, step + 1, steps, history, g, ckpt, budget, on_ckpt)
    model.eval()
    return history


def checkpoint_if_due(name: str, model, opt, done: int, steps: int, history: list, g, ckpt: Path, budget: Budget,
                      on_ckpt=None) -> None:
    """After step ``done`` of ``steps``: at the last step, when the sitting's budget is spent, or every
    --ckpt-minutes, add ``on_ckpt()``'s held-out figures to the history and checkpoint; then raise
    BudgetSpent if the budget is spent before the stage's end."""
    last, stop = done == steps, budget.spent()
    if not (last or stop or budget.ckpt_due()):
        return
    if on_ckpt is not None:
        model.eval()
        history.append({"step": done, **on_ckpt()})
        log(f"{name} held-out {history[-1]}")
        model.train()
    save_checkpoint(ckpt, model, opt, done, history, g)
    budget.saved()
    if stop and not last:
        raise BudgetSpent(f"{name}: step {done}/{steps}")


@torch.inference_mode()
def onpolicy_sequences(target, tok, data: torch.Tensor, args, seed: int, partial: Path | None = None,
                       budget: Budget | None = None) -> torch.Tensor:
    """The target's greedy continuations of --onpolicy-seqs prompts: random --prompt-tokens windows of the
    TRAINING stream, windows spanning a file boundary (bos/eos) skipped. Batched, equal-length prompts
    (no padding), KV cache; returns [seqs, prompt + new] token ids. With ``partial`` the finished batches
    are saved after each one (and reused), and a spent ``budget`` stops between batches."""
    g = torch.Generator().manual_seed(seed)
    P, N, specials = args.prompt_tokens, args.new_tokens, {tok.bos_token_id, tok.eos_token_id}
    prompts: list[torch.Tensor] = []
    while len(prompts) < args.onpolicy_seqs:
        s = int(torch.randint(0, data.numel() - P, (1,), generator=g))
        w = data[s : s + P]
        if not specials & set(w.tolist()):
            prompts.append(w)
    x = torch.stack(prompts)
    out = torch.load(partial) if partial is not None and partial.exists() else []
    for i in range(len(out) * args.onpolicy_gen_batch, len(x), args.onpolicy_gen_batch):
        b = x[i : i + args.onpolicy_gen_batch]
        b = b.to(target.device)
        out.append(target.generate(b, attention_mask=torch.ones_like(b), do_sample=False, max_new_tokens=N,
                                   min_new_tokens=N, pad_token_id=tok.pad_token_id).cpu())
        if partial is not None:
            torch.save(out, partial)
        if budget is not None and budget.spent() and i + len(b) < len(x):  # after a batch: progress each sitting
            raise BudgetSpent(f"onpolicy generation: {i + len(b)}/{len(x)} sequences")
        log(f"onpolicy: generated {min(i + len(b), len(x))}/{len(x)} target-greedy continuations")
    return torch.cat(out)


@torch.inference_mode()
def teacher_logprobs(target, seqs: torch.Tensor, chunk: int = 16, cache: Path | None = None) -> torch.Tensor:
    """Target log-probabilities at every position of ``seqs``, float16, filled into one preallocated
    tensor (no list + cat: that doubled the peak, and 8 192 sequences of 192 tokens at a vocabulary of
    2 048 are 6.4 GB). With ``cache`` (a ``.npy`` path) the tensor is a memory-mapped file there,
    written once (atomically) and mapped again by a later sitting, so a larger on-policy set does not
    need the memory."""
    if cache is not None and cache.exists():
        return torch.from_numpy(np.load(cache, mmap_mode="r+"))
    shape = (len(seqs), seqs.shape[1] - 1, target.config.vocab_size)
    tmp = None if cache is None else cache.with_name(cache.name + ".tmp.npy")
    out = (torch.empty(shape, dtype=torch.float16) if tmp is None
           else torch.from_numpy(np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)))
    for i in range(0, len(seqs), chunk):
        logits = target(input_ids=seqs[i : i + chunk, :-1].to(target.device)).logits
        out[i : i + chunk] = F.log_softmax(logits, -1).to(torch.float16).cpu()
    if tmp is None:
        return out
    del out
    tmp.replace(cache)
    return torch.from_numpy(np.load(cache, mmap_mode="r+"))


def train_onpolicy(draft, seqs: torch.Tensor, t_logp: torch.Tensor, args, ckpt: Path, seed: int,
                   budget: Budget | None = None) -> list[dict]:
    """Fine-tune the draft on the on-policy sequences: forward KL(target || draft) at every position, the
    generated part weighted 1 and the prompt part (corpus text, which guards against forgetting)
    --onpolicy-prompt-weight. Resumable like train_lm (batch order drawn from a checkpointed RNG)."""
    budget = budget or Budget(0, math.inf)
    opt = torch.optim.AdamW(draft.parameters(), lr=args.onpolicy_lr, betas=(0.9, 0.95), weight_decay=0.1)
    g = torch.Generator().manual_seed(seed)
    start, history = load_checkpoint(ckpt, draft, opt, g)
    P, steps = args.prompt_tokens, args.onpolicy_steps
    w = torch.ones(seqs.shape[1] - 1)
    w[: P - 1] = args.onpolicy_prompt_weight  # positions < P-1 predict prompt tokens
    gen_pos = slice(P - 1, None)
    dev = next(draft.parameters()).device
    w = w.to(dev)
    draft.train()
    t0, run_kl, run_acc, n = time.perf_counter(), 0.0, 0.0, 0
    for step in range(start, steps):
        idx = torch.randint(0, len(seqs), (args.batch,), generator=g)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, args.onpolicy_lr, min(args.warmup, steps // 10 + 1))
        lp = F.log_softmax(draft(input_ids=seqs[idx, :-1].to(dev)).logits, -1)
        tl = t_logp[idx].float().to(dev)
        kl = (tl.exp() * (tl - lp)).sum(-1)  # [batch, positions]
        loss = (kl * w).sum() / (w.sum() * len(idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(draft.parameters(), 1.0)
        opt.step()
        run_kl += kl[:, gen_pos].mean().item()
        run_acc += (lp[:, gen_pos].argmax(-1) == tl[:, gen_pos].argmax(-1)).float().mean().item()
        n += 1
        last = step + 1 == steps
        if (step + 1) % args.log_every == 0 or last:
            rec = {"step": step + 1, "kl_generated": round(run_kl / n, 4), "top1_generated": round(run_acc / n, 4),
                   "loss": round(loss.item(), 4), "s": round(time.perf_counter() - t0, 1)}
            history.append(rec)
            log(f"onpolicy {rec}")
            run_kl = run_acc = 0.0
            n = 0
        checkpoint_if_due("onpolicy", draft, opt, step + 1, steps, history, g, ckpt, budget)
    draft.eval()
    return history


def distinct_ngram_ratio(ids: list[int], n: int = 4) -> float:
    """Distinct n-grams / n-grams in one sequence: 1.0 never repeats, a loop of period p tends to p / len."""
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) / max(1, len(grams))


@torch.inference_mode()
def heldout_ce(model, windows: torch.Tensor) -> float:
    """Mean next-token cross-entropy (nats/token) over [n, block + 1] held-out windows."""
    windows = windows.to(model.device)
    logits = model(input_ids=windows[:, :-1]).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1)).item()


def heldout_windows(data: torch.Tensor, block: int, n: int) -> torch.Tensor:
    """``n`` windows of block + 1 tokens spread evenly over the held-out stream (deterministic)."""
    step = (data.numel() - block - 1) // n
    return torch.stack([data[i * step : i * step + block + 1] for i in range(n)])


@torch.inference_mode()
def greedy(model, prompt: list[int], new: int, pad: int) -> list[int]:
    seq = model.generate(torch.tensor([prompt], device=model.device),
                         attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=model.device), do_sample=False, max_new_tokens=new, min_new_tokens=new, pad_token_id=pad)
    return seq[0, len(prompt):].tolist()


@torch.inference_mode()
def acceptance(target, draft, prompts: list[list[int]], gamma: int, new: int, pad: int) -> dict:
    """Greedy acceptance at ``gamma`` along the target's greedy path: a step accepts the leading run of
    positions where the draft's argmax equals the target's token (while they agree the draft sees the
    target's own prefix), so one draft forward over the target's continuation gives it exactly."""
    drafted = accepted = steps = emitted = 0
    distinct = []
    for p in prompts:
        gen = greedy(target, p, new, pad)
        distinct.append(distinct_ngram_ratio(gen))
        seq = torch.tensor([p + gen], device=draft.device)
        match = (draft(input_ids=seq).logits[0, len(p) - 1 : -1].argmax(-1) == seq[0, len(p):]).tolist()
        i = 0
        while i < len(match):
            k = min(gamma, len(match) - i - 1)  # never draft past the budget (as the decoder does)
            n = next((j for j in range(k) if not match[i + j]), k)
            drafted, accepted, steps, emitted = drafted + k, accepted + n, steps + 1, emitted + n + 1
            i += n + 1
    return {"gamma": gamma, "prompts": len(prompts), "new_tokens": new,
            "greedy_acceptance_rate": round(accepted / max(1, drafted), 4),
            "mean_acceptance_length": round(emitted / max(1, steps), 4),
            "distinct4_greedy": round(sum(distinct) / max(1, len(distinct)), 4)}


def repeat_mask(seq: torch.Tensor, start: int, n: int = 4) -> torch.Tensor:
    """[B, L] bool: the tokens at positions >= ``start`` of every n-gram that repeats an n-gram seen
    earlier in the same sequence (prompt included): the negative candidates of sequence-level
    unlikelihood training (Welleck et al. 2019, "Neural Text Generation with Unlikelihood Training")."""
    mask = torch.zeros(seq.shape, dtype=torch.bool)
    for b, s in enumerate(seq.tolist()):
        seen: set[tuple[int, ...]] = set()
        for i in range(len(s) - n + 1):
            gram = tuple(s[i : i + n])
            if i + n - 1 >= start and gram in seen:
                mask[b, max(i, start) : i + n] = True
            seen.add(gram)
    return mask


def train_unlikelihood(model, tok, data: torch.Tensor, args, ckpt: Path, budget: Budget, seed: int,
                       on_ckpt=None) -> list[dict]:
    """Sequence-level unlikelihood fine-tuning of the target against greedy loops (Welleck et al. 2019,
    section 5.2): each step the model continues --ul-batch training-stream prompts greedily, and every
    token of a continuation n-gram that repeats an earlier one is pushed down with -log(1 - p); the
    same step also takes the ordinary next-token loss on a training batch, which keeps the language
    model (the paper alternates the two). Resumable like train_lm. Logged: ``rep4``, the share of
    continuation tokens inside a repeated 4-gram (the paper's seq-rep-4, on TRAINING prompts)."""
    opt = torch.optim.AdamW(model.parameters(), lr=args.ul_lr, betas=(0.9, 0.95), weight_decay=0.1)
    g = torch.Generator().manual_seed(seed)
    start, history = load_checkpoint(ckpt, model, opt, g)
    P, N, steps = args.ul_prompt_tokens, args.ul_new_tokens, args.ul_steps
    specials = {tok.bos_token_id, tok.eos_token_id}
    dev = next(model.parameters()).device
    t0, run, n = time.perf_counter(), {"ce": 0.0, "ul": 0.0, "rep4": 0.0}, 0
    for step in range(start, steps):
        prompts: list[torch.Tensor] = []
        while len(prompts) < args.ul_batch:
            s = int(torch.randint(0, data.numel() - P, (1,), generator=g))
            if not specials & set(data[s : s + P].tolist()):
                prompts.append(data[s : s + P])
        x = torch.stack(prompts).to(dev)
        model.eval()
        with torch.no_grad():
            seq = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=N,
                                 min_new_tokens=N, pad_token_id=tok.pad_token_id)
        model.train()
        neg = repeat_mask(seq.cpu(), P)[:, 1:].to(dev)  # targets of positions 0..L-2
        for group in opt.param_groups:
            group["lr"] = args.ul_lr * min(1.0, (step + 1) / 20)
        p = F.softmax(model(input_ids=seq[:, :-1]).logits.float(), -1).gather(-1, seq[:, 1:, None])[..., 0]
        ul = -(torch.log((1 - p).clamp(min=1e-5)) * neg).sum() / (len(seq) * N)
        bx, by = (t.to(dev) for t in next_batch(data, args.block, args.batch, g))
        ce, _ = _loss(model, bx, by, None, args)
        loss = ce + args.ul_weight * ul
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run["ce"] += ce.item()
        run["ul"] += ul.item()
        run["rep4"] += neg[:, P - 1 :].float().mean().item()
        n += 1
        last = step + 1 == steps
        if (step + 1) % args.log_every == 0 or last:
            rec = {"step": step + 1, **{k: round(v / n, 4) for k, v in run.items()}, "s": round(time.perf_counter() - t0, 1)}
            history.append(rec)
            log(f"unlikelihood {rec}")
            run, n = dict.fromkeys(run, 0.0), 0
        checkpoint_if_due("unlikelihood", model, opt, step + 1, steps, history, g, ckpt, budget, on_ckpt)
    model.eval()
    return history
