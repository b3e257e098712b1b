"""Train the bundled target/draft pair (specdec_diag/assets/pair) from a seed, on CPU, offline.

Why this exists: the reference decoder must run out of the box on a pair that behaves like a real
deployment - a target that is clearly more expensive per forward than its draft, and a draft that agrees
with the target often enough for speculation to pay. Nothing may be downloaded, so the corpus is the
Python standard library's own source (present on every machine with this Python, PSF-licensed, real code).

Steps: collect the corpus (sorted, tests / site-packages / codec tables excluded, a fixed list of files held
out) -> byte-level BPE tokenizer -> TARGET (deep and narrow Llama) trained on next-token loss -> DRAFT
(one narrow layer) distilled from the target (KL to the target's softened distribution + a little hard-label
loss) -> optional ON-POLICY stage (--onpolicy-steps > 0): the target's own greedy continuations of prompts
from the training files, the draft fine-tuned on them with forward KL to the target at every position ->
weights saved as float16 safetensors -> held-out agreement / greedy acceptance measured and written to
train_meta.json. Checkpoints are written every --ckpt-every steps; rerunning with the same --out resumes.

    .venv/bin/python scripts/train_pair.py --seed 0 --out specdec_diag/assets/pair --onpolicy-steps 400
    # only the on-policy stage, on top of a shipped pair (target and draft reused, written to OUT):
    .venv/bin/python scripts/train_pair.py --seed 0 --out OUT --target-from specdec_diag/assets/pair/target \
        --draft-from specdec_diag/assets/pair/draft --onpolicy-steps 400
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from specdec_diag.assets import EXCLUDE_PARTS, HELD_OUT, corpus_files, heldout_prompts, read

SPECIALS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_tokenizer(texts: list[str], vocab_size: int, out: Path):
    """Byte-level BPE saved as a PreTrainedTokenizerFast (AutoTokenizer loads it with no network)."""
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


def batches(data: torch.Tensor, block: int, bsz: int, seed: int):
    """Endless stream of random windows; deterministic from the seed (and the step, for resuming)."""
    g = torch.Generator().manual_seed(seed)
    while True:
        starts = torch.randint(0, data.numel() - block - 1, (bsz,), generator=g)
        x = torch.stack([data[s : s + block + 1] for s in starts.tolist()])
        yield x[:, :-1], x[:, 1:]


def save_checkpoint(ckpt: Path, model, opt, step: int, history: list) -> None:
    """Write a resumable checkpoint atomically (temp file + rename), so a crash never leaves half a file."""
    tmp = ckpt.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "history": history}, tmp)
    tmp.replace(ckpt)


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def train(name: str, model, data: torch.Tensor, args, steps: int, lr: float, ckpt: Path, teacher=None,
          seed: int = 0) -> list[dict]:
    """Train ``model`` for ``steps``; with ``teacher`` the loss is distillation, else next-token CE.
    Resumes from ``ckpt`` (model + optimiser + step + the data stream position)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    start, history = 0, []
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start, history = state["step"], state["history"]
        log(f"{name}: resumed at step {start}")
    stream = batches(data, args.block, args.batch, seed)
    for _ in range(start):  # replay the stream so a resumed run sees exactly the same batches
        next(stream)
    model.train()
    t0, run_loss = time.perf_counter(), 0.0
    for step in range(start, steps):
        x, y = next(stream)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, args.warmup)
        logits = model(input_ids=x).logits
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        if teacher is None:
            loss = ce
        else:
            with torch.no_grad():
                t_logits = teacher(input_ids=x).logits
            T = args.temperature
            kl = F.kl_div(F.log_softmax(logits / T, -1).reshape(-1, logits.shape[-1]),
                          F.log_softmax(t_logits / T, -1).reshape(-1, logits.shape[-1]),
                          log_target=True, reduction="batchmean") * T * T
            loss = (1 - args.hard_weight) * kl + args.hard_weight * ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run_loss += ce.item()
        if (step + 1) % args.log_every == 0 or step + 1 == steps:
            n = (step % args.log_every) + 1
            rec = {"step": step + 1, "ce": round(run_loss / n, 4), "loss": round(loss.item(), 4),
                   "s": round(time.perf_counter() - t0, 1)}
            history.append(rec)
            log(f"{name} {rec}")
            run_loss = 0.0
        if (step + 1) % args.ckpt_every == 0 or step + 1 == steps:
            save_checkpoint(ckpt, model, opt, step + 1, history)
    model.eval()
    return history


@torch.inference_mode()
def onpolicy_sequences(target, tok, data: torch.Tensor, args, seed: int) -> torch.Tensor:
    """The target's greedy continuations (what the draft must predict at decode time, repetitive loops
    included) of --onpolicy-seqs prompts: random --prompt-tokens windows of the TRAINING stream (the
    held-out files are not in ``data``), windows spanning a file boundary (bos/eos) skipped. Batched,
    equal-length prompts (no padding), KV cache; returns [seqs, prompt + new] token ids."""
    g = torch.Generator().manual_seed(seed)
    P, N, specials = args.prompt_tokens, args.new_tokens, {tok.bos_token_id, tok.eos_token_id}
    prompts: list[torch.Tensor] = []
    while len(prompts) < args.onpolicy_seqs:
        s = int(torch.randint(0, data.numel() - P, (1,), generator=g))
        w = data[s : s + P]
        if not specials & set(w.tolist()):
            prompts.append(w)
    x = torch.stack(prompts)
    out = []
    for i in range(0, len(x), args.onpolicy_gen_batch):
        b = x[i : i + args.onpolicy_gen_batch]
        out.append(target.generate(b, attention_mask=torch.ones_like(b), do_sample=False, max_new_tokens=N,
                                   min_new_tokens=N, pad_token_id=tok.pad_token_id))
        log(f"onpolicy: generated {min(i + len(b), len(x))}/{len(x)} target-greedy continuations")
    return torch.cat(out)


@torch.inference_mode()
def teacher_logprobs(target, seqs: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """Target log-probabilities at every position of ``seqs`` (float16 to halve the memory)."""
    return torch.cat([F.log_softmax(target(input_ids=seqs[i : i + chunk, :-1]).logits, -1).to(torch.float16)
                      for i in range(0, len(seqs), chunk)])


def train_onpolicy(draft, seqs: torch.Tensor, t_logp: torch.Tensor, args, ckpt: Path, seed: int) -> list[dict]:
    """Fine-tune the draft on the on-policy sequences: forward KL(target || draft) at every position, the
    generated part weighted 1 and the prompt part (corpus text, which guards against forgetting)
    --onpolicy-prompt-weight. Resumable like train(): the batch order is replayed from the seed."""
    opt = torch.optim.AdamW(draft.parameters(), lr=args.onpolicy_lr, betas=(0.9, 0.95), weight_decay=0.1)
    start, history = 0, []
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        draft.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start, history = state["step"], state["history"]
        log(f"onpolicy: resumed at step {start}")
    g = torch.Generator().manual_seed(seed)
    order = [torch.randint(0, len(seqs), (args.batch,), generator=g) for _ in range(args.onpolicy_steps)]
    P, steps = args.prompt_tokens, args.onpolicy_steps
    w = torch.ones(seqs.shape[1] - 1)
    w[: P - 1] = args.onpolicy_prompt_weight  # positions < P-1 predict prompt tokens
    gen_pos = slice(P - 1, None)
    draft.train()
    t0, run_kl, run_acc = time.perf_counter(), 0.0, 0.0
    for step in range(start, steps):
        idx = order[step]
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, args.onpolicy_lr, min(args.warmup, steps // 10 + 1))
        lp = F.log_softmax(draft(input_ids=seqs[idx, :-1]).logits, -1)
        tl = t_logp[idx].float()
        kl = (tl.exp() * (tl - lp)).sum(-1)  # [batch, positions]
        loss = (kl * w).sum() / (w.sum() * len(idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(draft.parameters(), 1.0)
        opt.step()
        run_kl += kl[:, gen_pos].mean().item()
        run_acc += (lp[:, gen_pos].argmax(-1) == tl[:, gen_pos].argmax(-1)).float().mean().item()
        if (step + 1) % args.log_every == 0 or step + 1 == steps:
            n = (step % args.log_every) + 1
            rec = {"step": step + 1, "kl_generated": round(run_kl / n, 4), "top1_generated": round(run_acc / n, 4),
                   "loss": round(loss.item(), 4), "s": round(time.perf_counter() - t0, 1)}
            history.append(rec)
            log(f"onpolicy {rec}")
            run_kl = run_acc = 0.0
        if (step + 1) % args.ckpt_every == 0 or step + 1 == steps:
            save_checkpoint(ckpt, draft, opt, step + 1, history)
    draft.eval()
    return history


@torch.inference_mode()
def evaluate(target, draft, tok, held_texts: list[str], args) -> dict:
    """Held-out figures: cross-entropy of both models, teacher-forced top-1 agreement on held-out text,
    and the greedy acceptance rate at gamma = --eval-gamma on target-greedy continuations of held-out
    prompts. For greedy verification, a step's accepted count is the leading run of positions where the
    draft's argmax equals the target's greedy token (while they agree, the draft sees the target's own
    prefix), so one draft forward over the target's continuation gives the acceptance exactly."""
    data = encode_corpus(tok, held_texts)
    x = data[: (data.numel() - 1) // args.block * args.block + 1]
    inp, lab = x[:-1].view(-1, args.block)[:16], x[1:].view(-1, args.block)[:16]
    tl, dl = target(input_ids=inp).logits, draft(input_ids=inp).logits
    out = {
        "heldout_tokens": int(lab.numel()),
        "target_ce": round(F.cross_entropy(tl.reshape(-1, tl.shape[-1]), lab.reshape(-1)).item(), 4),
        "draft_ce": round(F.cross_entropy(dl.reshape(-1, dl.shape[-1]), lab.reshape(-1)).item(), 4),
        "top1_agreement_heldout_text": round((tl.argmax(-1) == dl.argmax(-1)).float().mean().item(), 4),
    }
    g = args.eval_gamma
    drafted = accepted = steps = emitted = 0
    for p in heldout_prompts(tok, args.eval_prompts, args.prompt_tokens, texts=held_texts):
        seq = target.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                              do_sample=False, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
        gen = seq[0, len(p):]
        dpred = draft(input_ids=seq).logits[0, len(p) - 1 : -1].argmax(-1)
        match = (dpred == gen).tolist()
        i = 0
        while i < len(match):
            k = min(g, len(match) - i - 1)  # never draft past the budget (as the decoder does)
            n = 0
            while n < k and match[i + n]:
                n += 1
            drafted, accepted, steps, emitted = drafted + k, accepted + n, steps + 1, emitted + n + 1
            i += n + 1
    out.update({"gamma": g, "prompts": args.eval_prompts, "new_tokens": args.new_tokens,
                "greedy_acceptance_rate": round(accepted / max(1, drafted), 4),
                "mean_acceptance_length": round(emitted / max(1, steps), 4)})
    return out


def save_fp16(model, tok, out: Path) -> None:
    model.to(torch.float16).save_pretrained(out, safe_serialization=True)
    model.to(torch.float32)
    tok.save_pretrained(out)


def write_readme(out: Path, meta: dict) -> None:
    """pair/README.md: what the two directories are and the figures from train_meta.json."""
    t, d, ev = meta["target"], meta["draft"], meta["eval"]
    o = d.get("onpolicy")
    onpolicy_row = "" if not o else (
        f"| draft/, then on-policy | {d['layers']} x {d['hidden']} | {d['params']} | +{o['steps']} | "
        f"KL {o['history'][-1]['kl_generated']} |\n")
    before = meta.get("eval_before_onpolicy")
    onpolicy_note = "" if not o else (
        f"\nOn-policy stage: the draft was fine-tuned for {o['steps']} steps on {o['seqs']} target-greedy "
        f"continuations ({o['new_tokens']} tokens after {o['prompt_tokens']}-token prompts from the training files), "
        f"forward KL to the target at every position"
        + (f"; greedy acceptance before it: {before['greedy_acceptance_rate']}." if before else ".") + "\n")
    (out / "README.md").write_text(f"""# Bundled target/draft pair

Trained from scratch by `scripts/train_pair.py` (seed {meta['seed']}) on the Python {meta['corpus']['python']}
standard library source ({meta['corpus']['files']} files, {meta['corpus']['tokens']} tokens); see
docs/model-pair.md. Loaded by default by `specdec-diag decode` (specdec_diag/decoder/models.py).

| | layers x hidden | params | steps | final train CE (on-policy: KL) |
|---|---|---:|---:|---:|
| target/ | {t['layers']} x {t['hidden']} | {t['params']} | {t['steps']} | {t['history'][-1]['ce']} |
| draft/ (distilled) | {d['layers']} x {d['hidden']} | {d['params']} | {d['steps']} | {d['history'][-1]['ce']} |
{onpolicy_row}
Tokenizer: byte-level BPE, {meta['tokenizer']['vocab_size']} tokens, identical in both directories.
Weights: float16 safetensors. Held-out files: {', '.join(meta['corpus']['held_out'])}.
Held-out CE target {ev['target_ce']} / draft {ev['draft_ce']}; teacher-forced top-1 agreement
{ev['top1_agreement_heldout_text']}; greedy acceptance at gamma = {ev['gamma']} on {ev['prompts']} held-out
prompts x {ev['new_tokens']} tokens: {ev['greedy_acceptance_rate']} (mean acceptance length
{ev['mean_acceptance_length']}). Full record: train_meta.json.
{onpolicy_note}""")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("specdec_diag/assets/pair"))
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--target-layers", type=int, default=16)
    ap.add_argument("--target-hidden", type=int, default=128)
    ap.add_argument("--target-heads", type=int, default=4)
    ap.add_argument("--target-inter", type=int, default=352)
    ap.add_argument("--draft-layers", type=int, default=1)
    ap.add_argument("--draft-hidden", type=int, default=128)
    ap.add_argument("--draft-heads", type=int, default=2)
    ap.add_argument("--draft-inter", type=int, default=352)
    ap.add_argument("--block", type=int, default=128, help="training window in tokens")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--target-steps", type=int, default=350)
    ap.add_argument("--draft-steps", type=int, default=600)
    ap.add_argument("--target-lr", type=float, default=3e-3)
    ap.add_argument("--draft-lr", type=float, default=5e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--temperature", type=float, default=1.0, help="distillation softening temperature")
    ap.add_argument("--hard-weight", type=float, default=0.1, help="weight of the hard-label loss for the draft")
    ap.add_argument("--target-from", type=Path, default=None,
                    help="reuse the target dir of an earlier run with the same seed/target knobs; train only the draft")
    ap.add_argument("--draft-from", type=Path, default=None,
                    help="start from the draft dir of an earlier run (skips the off-policy draft distillation)")
    ap.add_argument("--onpolicy-steps", type=int, default=0,
                    help="on-policy stage: draft fine-tuning steps on target-greedy continuations (0 = off)")
    ap.add_argument("--onpolicy-seqs", type=int, default=384,
                    help="on-policy stage: target-greedy continuations (prompts from the training files)")
    ap.add_argument("--onpolicy-lr", type=float, default=2e-3)
    ap.add_argument("--onpolicy-prompt-weight", type=float, default=0.25,
                    help="KL weight of the prompt (corpus) positions relative to the generated ones")
    ap.add_argument("--onpolicy-gen-batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1,
                    help="1 is fastest on a shared 2-core machine (2 OpenMP threads stall when descheduled)")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--eval-gamma", type=int, default=4)
    ap.add_argument("--eval-prompts", type=int, default=12)
    ap.add_argument("--prompt-tokens", type=int, default=96)
    ap.add_argument("--new-tokens", type=int, default=128)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    t_all = time.perf_counter()
    out: Path = args.out
    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)

    try:
        root, train_files, held_files = corpus_files()
    except FileNotFoundError as exc:
        sys.exit(str(exc))
    texts = [read(f) for f in train_files]
    held_texts = [read(f) for f in held_files]
    log(f"corpus: {len(train_files)} files, {sum(map(len, texts)) / 1e6:.1f} M chars from {root}; "
        f"held out: {', '.join(HELD_OUT)}")

    tok_dir = work / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():
        from transformers import PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    elif args.target_from is not None:
        # the earlier run's tokenizer: BPE training is deterministic, so this is what retraining would give
        from transformers import PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast.from_pretrained(args.target_from)
        for k in ("is_local", "local_files_only"):  # load-time flags; keep tokenizer_config.json byte-identical
            tok.init_kwargs.pop(k, None)
    else:
        tok = train_tokenizer(texts, args.vocab, tok_dir)
    data = encode_corpus(tok, texts)
    log(f"tokenizer: {len(tok)} tokens; corpus {data.numel() / 1e6:.2f} M tokens "
        f"({sum(map(len, texts)) / data.numel():.2f} chars/token)")

    torch.manual_seed(args.seed)
    target = llama(len(tok), args.target_layers, args.target_hidden, args.target_heads, args.target_inter,
                   tok, 1024)
    torch.manual_seed(args.seed + 1)
    draft = llama(len(tok), args.draft_layers, args.draft_hidden, args.draft_heads, args.draft_inter, tok, 1024)
    n_t = sum(p.numel() for p in target.parameters())
    n_d = sum(p.numel() for p in draft.parameters())
    log(f"target {args.target_layers}x{args.target_hidden}: {n_t / 1e6:.2f} M params; "
        f"draft {args.draft_layers}x{args.draft_hidden}: {n_d / 1e6:.2f} M params")

    t0 = time.perf_counter()
    if args.target_from is not None:
        # The shipped target of an earlier run with the same seed and target knobs: loading its float16
        # weights gives exactly the frozen teacher that run distilled from (step 3 rounds to float16).
        from transformers import AutoModelForCausalLM

        prev = json.loads((args.target_from.parent / "train_meta.json").read_text())
        target = AutoModelForCausalLM.from_pretrained(args.target_from, local_files_only=True,
                                                      dtype=torch.float32)
        hist_t, t_target = prev["target"]["history"], prev["target"]["train_seconds"]
        log(f"target loaded from {args.target_from} (trained {prev['target']['steps']} steps, seed {prev['seed']})")
    else:
        hist_t = train("target", target, data, args, args.target_steps, args.target_lr, work / "target.pt",
                       seed=args.seed + 10)
        t_target = time.perf_counter() - t0
    for p in target.parameters():
        p.requires_grad_(False)
    # Distil against the weights that ship (float16-rounded), so the draft matches what the decoder loads.
    target.to(torch.float16).to(torch.float32)
    t0 = time.perf_counter()
    prev_d = None
    if args.draft_from is not None:
        from transformers import AutoModelForCausalLM

        prev_d = json.loads((args.draft_from.parent / "train_meta.json").read_text())
        draft = AutoModelForCausalLM.from_pretrained(args.draft_from, local_files_only=True, dtype=torch.float32)
        for k, v in (("layers", draft.config.num_hidden_layers), ("hidden", draft.config.hidden_size)):
            if prev_d["draft"][k] != v:
                sys.exit(f"{args.draft_from}: draft {k} {v} disagrees with its train_meta.json")
        hist_d, t_draft = prev_d["draft"]["history"], prev_d["draft"]["train_seconds"]
        args.draft_steps, args.draft_lr = prev_d["draft"]["steps"], prev_d["draft"]["lr"]
        args.draft_layers, args.draft_hidden = prev_d["draft"]["layers"], prev_d["draft"]["hidden"]
        args.draft_heads, args.draft_inter = prev_d["draft"]["heads"], prev_d["draft"]["intermediate"]
        args.temperature, args.hard_weight = (prev_d["draft"]["distillation"][k] for k in ("temperature", "hard_weight"))
        n_d = sum(p.numel() for p in draft.parameters())
        log(f"draft loaded from {args.draft_from} ({prev_d['draft']['steps']} off-policy steps)")
    else:
        hist_d = train("draft", draft, data, args, args.draft_steps, args.draft_lr, work / "draft.pt",
                       teacher=target, seed=args.seed + 20)
        t_draft = time.perf_counter() - t0
    onpolicy = None
    if args.onpolicy_steps > 0:
        t0 = time.perf_counter()
        seq_file = work / "onpolicy_seqs.pt"
        if seq_file.exists():
            seqs = torch.load(seq_file)
        else:
            seqs = onpolicy_sequences(target, tok, data, args, seed=args.seed + 30)
            torch.save(seqs, seq_file)
        t_gen = time.perf_counter() - t0
        t_logp = teacher_logprobs(target, seqs)
        t_teacher = time.perf_counter() - t0 - t_gen
        log(f"onpolicy: {tuple(seqs.shape)} sequences in {t_gen:.0f} s, teacher log-probs in {t_teacher:.0f} s")
        draft.to(torch.float16).to(torch.float32)  # start from the weights that shipped
        hist_o = train_onpolicy(draft, seqs, t_logp, args, work / "onpolicy.pt", seed=args.seed + 40)
        del t_logp
        onpolicy = {"method": "DistillSpec-style: forward KL(target || draft) on target-greedy continuations",
                    "prompts_from": "training files only (random windows of the training stream, no bos/eos)",
                    "seqs": args.onpolicy_seqs, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
                    "steps": args.onpolicy_steps, "batch": args.batch, "lr": args.onpolicy_lr,
                    "prompt_weight": args.onpolicy_prompt_weight, "history": hist_o,
                    "generate_seconds": round(t_gen, 1), "teacher_seconds": round(t_teacher, 1),
                    "train_seconds": round(time.perf_counter() - t0, 1)}

    for role, model in (("target", target), ("draft", draft)):
        model.generation_config.pad_token_id = tok.pad_token_id
        model.generation_config.bos_token_id = tok.bos_token_id
        model.generation_config.eos_token_id = tok.eos_token_id
        save_fp16(model, tok, out / role)
    draft.to(torch.float16).to(torch.float32)
    log("saved; evaluating on held-out files")
    ev = evaluate(target, draft, tok, held_texts, args)
    log(f"eval {ev}")
    meta = {
        "seed": args.seed,
        "command": "python scripts/train_pair.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "corpus": {"source": "Python standard library source (sysconfig stdlib, *.py)",
                   "python": sys.version.split()[0], "files": len(train_files),
                   "excluded_parts": sorted(EXCLUDE_PARTS), "excluded_prefix": "test_",
                   "held_out": list(HELD_OUT), "chars": sum(map(len, texts)), "tokens": int(data.numel())},
        "tokenizer": {"type": "byte-level BPE (tokenizers)", "vocab_size": len(tok), "specials": SPECIALS},
        "target": {"arch": "LlamaForCausalLM", "layers": args.target_layers, "hidden": args.target_hidden,
                   "heads": args.target_heads, "intermediate": args.target_inter, "params": n_t,
                   "steps": args.target_steps, "lr": args.target_lr, "history": hist_t,
                   "train_seconds": round(t_target, 1)},
        "draft": {"arch": "LlamaForCausalLM", "layers": args.draft_layers, "hidden": args.draft_hidden,
                  "heads": args.draft_heads, "intermediate": args.draft_inter, "params": n_d,
                  "steps": args.draft_steps, "lr": args.draft_lr, "history": hist_d,
                  "distillation": {"temperature": args.temperature, "hard_weight": args.hard_weight},
                  "train_seconds": round(t_draft, 1), "onpolicy": onpolicy},
        "training": {"block": args.block, "batch": args.batch, "warmup": args.warmup, "optimizer": "AdamW",
                     "threads": args.threads, "torch": torch.__version__, "weights_dtype": "float16"},
        "eval": ev,
        "total_seconds": round(time.perf_counter() - t_all, 1),
    }
    if prev_d is not None:  # keep the record of the runs this one builds on
        meta["eval_before_onpolicy"] = prev_d.get("eval_before_onpolicy", prev_d["eval"])
        meta["produced_by"] = prev_d.get("produced_by", [])
        meta["produced_by"].append({"command": meta["command"], "total_seconds": meta["total_seconds"],
                                    "note": "reused the target and draft of the runs above (--target-from, --draft-from); "
                                            "on-policy stage only"})
        meta["total_seconds_note"] = "this run only: the on-policy stage on top of the pair of the runs above"
    (out / "train_meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    write_readme(out, meta)
    shutil.rmtree(work)
    log(f"done in {meta['total_seconds']} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
