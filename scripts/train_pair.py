"""Train the bundled target/draft pair from a seed, on CPU, offline - one resumable command.

Why this exists: the reference decoder must run out of the box on a pair that behaves like a real
deployment - a target clearly more expensive per forward than its draft, a draft that agrees with it
often - and that writes code rather than loops. Nothing may be downloaded, so the corpus is the Python
standard library plus the permissively licensed pure-Python packages named in specdec_diag/assets/corpus.py
(read from the installed files; licences checked from each package's metadata); the held-out stdlib
files and the held-out packages are never seen by the tokenizer or either model.

Stages (each resumable; all state lives in --ckpt-dir): corpus -> byte-level BPE tokenizer -> encoded
stream (cached) -> TARGET (deep, narrow Llama; next-token loss) -> UNLIKELIHOOD stage (the target's own
greedy loops pushed down, next-token loss kept; docs/model-pair.md) -> DRAFT (one layer) distilled from the
float16 target -> ON-POLICY stage (the target's greedy continuations of training prompts, draft
fine-tuned on forward KL to the target) -> float16 safetensors in --out + held-out evaluation +
train_meta.json (file list with licences and sha256). Checkpoints (model, optimiser, step, data RNG,
global RNGs) every --ckpt-minutes; when --time-budget seconds are spent the current stage checkpoints
and the command exits with status 3: rerun THE SAME command to continue.

    nice -n 19 .venv/bin/python scripts/train_pair.py --time-budget 3000      # resumes automatically
    # when it exits 0, the pair is in ~/.cache/specdec-diag/train-pair/pair: measure it with
    .venv/bin/python benchmarks/decoder.py --target DIR/target --draft DIR/draft
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_pair_lib import (  # noqa: E402
    SPECIALS,
    Budget,
    BudgetSpent,
    acceptance,
    distinct_ngram_ratio,
    encode_corpus,
    greedy,
    heldout_ce,
    heldout_windows,
    llama,
    log,
    onpolicy_sequences,
    teacher_logprobs,
    train_lm,
    train_onpolicy,
    train_tokenizer,
    train_unlikelihood,
)

from specdec_diag.assets import HELD_OUT, corpus_files, heldout_prompts, read  # noqa: E402
from specdec_diag.assets.corpus import (  # noqa: E402
    HELD_OUT_PACKAGES,
    TRAIN_PACKAGES,
    CorpusError,
    SourceFile,
    manifest,
    packages_files,
    sha256,
)

__all__ = ["llama", "onpolicy_sequences", "teacher_logprobs", "train_onpolicy", "distinct_ngram_ratio"]
DEFAULT_CKPT = Path.home() / ".cache" / "specdec-diag" / "train-pair"
# Arguments that define what is trained: a resumed run must use the same values.
RUN_KEYS = ("seed", "vocab", "tokenizer_chars", "target_layers", "target_hidden", "target_heads", "target_inter",
            "draft_layers", "draft_hidden", "draft_heads", "draft_inter", "block", "batch", "target_steps",
            "draft_steps", "target_lr", "draft_lr", "warmup", "temperature", "hard_weight", "onpolicy_steps",
            "onpolicy_seqs", "onpolicy_lr", "onpolicy_prompt_weight", "prompt_tokens", "new_tokens",
            "ul_steps", "ul_lr", "ul_batch", "ul_prompt_tokens", "ul_new_tokens", "ul_weight", "draft_init")
#: keys added after checkpoints existed: a run.json without one was made with this value
LATER_KEYS = {"draft_init": "scratch"}


def collect_corpus() -> tuple[list[SourceFile], list[SourceFile]]:
    """(training files, held-out package files): stdlib (PSF) minus its held-out files, plus TRAIN_PACKAGES."""
    root, train_std, _ = corpus_files()
    std = [SourceFile("stdlib", "PSF-2.0", f.relative_to(root).as_posix(), f) for f in train_std]
    return std + packages_files(TRAIN_PACKAGES), packages_files(HELD_OUT_PACKAGES)


def check_run(ckpt_dir: Path, args) -> None:
    """Record the run's defining arguments; refuse to resume a checkpoint made with different ones."""
    want = {k: getattr(args, k) for k in RUN_KEYS}
    f = ckpt_dir / "run.json"
    if f.exists():
        have = json.loads(f.read_text())
        old = {k: have.get(k, LATER_KEYS.get(k)) for k in want}
        diff = {k: (old[k], v) for k, v in want.items() if old[k] != v}
        if diff:
            sys.exit(f"{f}: checkpoint made with other arguments {diff} (old, new); use another --ckpt-dir")
    else:
        f.write_text(json.dumps(want, indent=1) + "\n")


def check_corpus(ckpt_dir: Path, files: list[SourceFile]) -> str:
    """sha256 over every training file's path and content hash, recorded in run.json on the first sitting;
    a later sitting on a machine whose installed packages differ is refused (its stream would differ)."""
    h = hashlib.sha256()
    for s in files:
        h.update(f"{s.package}/{s.rel}:{sha256(s.path)}\n".encode())
    digest, f = h.hexdigest(), ckpt_dir / "run.json"
    run = json.loads(f.read_text())
    if run.setdefault("corpus_sha256", digest) != digest:
        sys.exit(f"{f}: the training corpus differs from the one this checkpoint was trained on "
                 "(other package versions installed?); use another --ckpt-dir")
    f.write_text(json.dumps(run, indent=1) + "\n")
    return digest


def tokenizer_and_data(ckpt_dir: Path, args, texts: list[str], held: list[str]):
    """The tokenizer (trained on at most --tokenizer-chars of the training text, every k-th file) and the
    encoded training / held-out streams, cached in ckpt_dir."""
    from transformers import PreTrainedTokenizerFast

    tok_dir = ckpt_dir / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():
        tok = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    else:
        k = max(1, -(-sum(map(len, texts)) // args.tokenizer_chars))
        tok = train_tokenizer(texts[::k], args.vocab, tok_dir)
    f = ckpt_dir / "data.pt"
    if f.exists():
        data = torch.load(f)
    else:
        data = {"train": encode_corpus(tok, texts).to(torch.int16 if len(tok) < 2**15 else torch.int32),
                "heldout": encode_corpus(tok, held)}
        data["heldout_chars_per_token"] = sum(map(len, held)) / (data["heldout"].numel() - 2 * len(held))
        torch.save(data, f)
    return tok, data["train"].long(), data["heldout"], data["heldout_chars_per_token"]


class HeldoutProbe:
    """Held-out figures logged at each checkpoint: CE in nats/token and nats/char (= CE / held-out chars
    per token); every ``greedy_every``-th call also the mean distinct 4-gram ratio of 96-token greedy
    continuations (loops score low), which costs more than the CE on a loaded CPU."""

    def __init__(self, model, windows, cpt: float, prompts, pad: int, greedy_every: int):
        self.model, self.windows, self.cpt, self.prompts, self.pad = model, windows, cpt, prompts, pad
        self.greedy_every, self.calls = greedy_every, 0

    def __call__(self) -> dict:
        ce = heldout_ce(self.model, self.windows)
        out = {"heldout_ce": round(ce, 4), "heldout_nats_per_char": round(ce / self.cpt, 4)}
        if self.calls % self.greedy_every == 0:
            d = [distinct_ngram_ratio(greedy(self.model, p, 96, self.pad)) for p in self.prompts]
            out["distinct4_greedy"] = round(sum(d) / len(d), 4)
        self.calls += 1
        return out


def make_draft(ckpt_dir: Path, args, tok, target, data, budget: Budget):
    torch.manual_seed(args.seed + 1)
    draft = llama(len(tok), args.draft_layers, args.draft_hidden, args.draft_heads, args.draft_inter, tok,
                  1024).to(args.device)
    if args.draft_init == "target":
        init_from_target(draft, target)
    hist = train_lm("draft", draft, data, args, args.draft_steps, args.draft_lr, ckpt_dir / "draft.pt", budget,
                    teacher=target, seed=args.seed + 20)
    if args.onpolicy_steps <= 0:
        return draft, hist, None
    seq_file = ckpt_dir / "onpolicy_seqs.pt"
    t0 = time.perf_counter()
    if seq_file.exists():
        seqs = torch.load(seq_file)
    else:
        seqs = onpolicy_sequences(target, tok, data, args, args.seed + 30, ckpt_dir / "onpolicy_seqs.partial.pt",
                                  budget)
        torch.save(seqs, seq_file)
    t_logp = teacher_logprobs(target, seqs, cache=ckpt_dir / "onpolicy_teacher_logp.npy")
    log(f"onpolicy: {tuple(seqs.shape)} sequences + teacher log-probs in {time.perf_counter() - t0:.0f} s")
    draft.to(torch.float16).to(torch.float32)  # start from float16-rounded weights, as shipped
    hist_o = train_onpolicy(draft, seqs, t_logp, args, ckpt_dir / "onpolicy.pt", args.seed + 40, budget)
    onpolicy = {"method": "DistillSpec-style: forward KL(target || draft) on target-greedy continuations",
                "prompts_from": "training stream only (random windows, no bos/eos)", "seqs": args.onpolicy_seqs,
                "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "steps": args.onpolicy_steps,
                "lr": args.onpolicy_lr, "prompt_weight": args.onpolicy_prompt_weight, "history": hist_o}
    return draft, hist, onpolicy


def init_from_target(draft, target) -> None:
    """Start the draft as the target's first layers under its embedding (tied to the output layer) and
    final norm (a layer-skip draft), then distil as usual: measured, a 2-layer draft so started
    reached greedy acceptance 0.52 after 2 400 + 2 400 steps where one from random weights reached
    0.45 (docs/model-pair.md). Needs the target's width, heads and MLP size."""
    t, d = target.config, draft.config
    same = ("hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size", "vocab_size")
    if any(getattr(t, k) != getattr(d, k) for k in same) or d.num_hidden_layers > t.num_hidden_layers:
        sys.exit(f"--draft-init target needs the target's {', '.join(same)} and at most its layers")
    with torch.no_grad():
        draft.model.embed_tokens.load_state_dict(target.model.embed_tokens.state_dict())
        draft.model.norm.load_state_dict(target.model.norm.state_dict())
        for mine, theirs in zip(draft.model.layers, target.model.layers, strict=False):
            mine.load_state_dict(theirs.state_dict())


def save_fp16(model, tok, out: Path) -> None:
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    dev = model.device
    model.to("cpu", torch.float16).save_pretrained(out, safe_serialization=True)
    model.to(dev, torch.float32)
    tok.save_pretrained(out)


def final_eval(target, draft, tok, windows, cpt: float, args) -> dict:
    """Held-out (packages never trained on) CE of both models, teacher-forced agreement, and greedy
    acceptance / distinct-4 on --eval-prompts target-greedy continuations."""
    with torch.inference_mode():
        w = windows[:, :-1].to(target.device)
        tl, dl = target(input_ids=w).logits, draft(input_ids=w).logits
    t_ce, d_ce = heldout_ce(target, windows), heldout_ce(draft, windows)
    from specdec_diag.assets.corpus import heldout_package_texts

    prompts = heldout_prompts(tok, args.eval_prompts, args.prompt_tokens, texts=heldout_package_texts())
    return {"heldout": f"packages never trained on: {', '.join(HELD_OUT_PACKAGES)}",
            "heldout_tokens": int(windows[:, 1:].numel()), "heldout_chars_per_token": round(cpt, 4),
            "target_ce": round(t_ce, 4), "draft_ce": round(d_ce, 4),
            "target_nats_per_char": round(t_ce / cpt, 4), "target_bits_per_char": round(t_ce / cpt / 0.6931, 4),
            "top1_agreement_heldout_text": round((tl.argmax(-1) == dl.argmax(-1)).float().mean().item(), 4),
            **acceptance(target, draft, prompts, args.eval_gamma, args.new_tokens, tok.pad_token_id)}


def stages(args, ckpt_dir: Path, budget: Budget) -> dict:
    train_files, held_files = collect_corpus()
    digest = check_corpus(ckpt_dir, train_files)
    texts = [read(s.path) for s in train_files]
    held = [read(s.path) for s in held_files]
    log(f"corpus: {len(train_files)} files, {sum(map(len, texts)) / 1e6:.1f} M chars, sha256 {digest[:12]}; held out: "
        f"stdlib {', '.join(HELD_OUT)} and packages {', '.join(HELD_OUT_PACKAGES)}")
    tok, data, held_ids, cpt = tokenizer_and_data(ckpt_dir, args, texts, held)
    log(f"tokenizer {len(tok)}; train {data.numel() / 1e6:.2f} M tokens "
        f"({sum(map(len, texts)) / data.numel():.2f} chars/token); held-out {cpt:.2f} chars/token")
    windows = heldout_windows(held_ids, args.block, 16)
    from specdec_diag.assets.corpus import heldout_package_texts

    probe = heldout_prompts(tok, 4, 64, texts=heldout_package_texts())
    torch.manual_seed(args.seed)
    target = llama(len(tok), args.target_layers, args.target_hidden, args.target_heads, args.target_inter, tok,
                   1024).to(args.device)
    hist_t = train_lm("target", target, data, args, args.target_steps, args.target_lr, ckpt_dir / "target.pt",
                      budget, seed=args.seed + 10,
                      on_ckpt=HeldoutProbe(target, windows, cpt, probe, tok.pad_token_id, args.greedy_probe_every))
    if args.stop_after == "target":
        return {}
    hist_u = []
    if args.ul_steps > 0:
        hist_u = train_unlikelihood(target, tok, data, args, ckpt_dir / "target_ul.pt", budget, args.seed + 50,
                                    on_ckpt=HeldoutProbe(target, windows, cpt, probe, tok.pad_token_id, 1))
    for p in target.parameters():
        p.requires_grad_(False)
    target.to(torch.float16).to(torch.float32)  # distil against the weights that ship
    draft, hist_d, onpolicy = make_draft(ckpt_dir, args, tok, target, data, budget)
    out = args.out or ckpt_dir / "pair"
    save_fp16(target, tok, out / "target")
    save_fp16(draft, tok, out / "draft")
    draft.to(torch.float16).to(torch.float32)
    ev = final_eval(target, draft, tok, windows, cpt, args)
    log(f"eval {ev}")
    return {"out": out, "tok": tok, "data": data, "texts": texts, "train_files": train_files, "held_files": held_files,
            "target": target, "draft": draft, "hist_t": hist_t, "hist_u": hist_u, "hist_d": hist_d, "onpolicy": onpolicy, "eval": ev}


def write_meta(r: dict, args, argv: list[str], seconds: float) -> dict:
    """train_meta.json: command, corpus (every file with package, licence, sha256), shapes, histories, eval."""
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    a = args
    meta = {
        "seed": a.seed, "command": "python scripts/train_pair.py " + " ".join(argv),
        "corpus": {"source": "Python standard library (PSF-2.0) + permissively licensed pure-Python packages",
                   "python": sys.version.split()[0], "files": len(r["train_files"]), "held_out": list(HELD_OUT),
                   "held_out_packages": list(HELD_OUT_PACKAGES), "chars": sum(map(len, r["texts"])),
                   "tokens": int(r["data"].numel()), "train": manifest(r["train_files"]),
                   "heldout": manifest(r["held_files"])},
        "tokenizer": {"type": "byte-level BPE (tokenizers), GPT-2 ByteLevel pre-tokenizer", "vocab_size": len(r["tok"]),
                      "specials": SPECIALS, "trained_on_chars_max": a.tokenizer_chars},
        "target": {"arch": "LlamaForCausalLM", "layers": a.target_layers, "hidden": a.target_hidden,
                   "heads": a.target_heads, "intermediate": a.target_inter, "params": n(r["target"]),
                   "steps": a.target_steps, "lr": a.target_lr, "history": r["hist_t"],
                   "unlikelihood": {"method": "sequence-level unlikelihood on greedy continuations of training "
                                    "prompts, repeated 4-grams as negatives, plus next-token loss (Welleck et al. 2019)",
                                    "steps": a.ul_steps, "lr": a.ul_lr, "batch": a.ul_batch,
                                    "prompt_tokens": a.ul_prompt_tokens, "new_tokens": a.ul_new_tokens,
                                    "weight": a.ul_weight, "history": r["hist_u"]}},
        "draft": {"arch": "LlamaForCausalLM", "layers": a.draft_layers, "hidden": a.draft_hidden,
                  "heads": a.draft_heads, "intermediate": a.draft_inter, "params": n(r["draft"]),
                  "steps": a.draft_steps, "lr": a.draft_lr, "history": r["hist_d"],
                  "distillation": {"temperature": a.temperature, "hard_weight": a.hard_weight},
                  "onpolicy": r["onpolicy"]},
        "training": {"block": a.block, "batch": a.batch, "warmup": a.warmup, "optimizer": "AdamW",
                     "threads": a.threads, "torch": torch.__version__, "weights_dtype": "float16"},
        "eval": r["eval"], "last_sitting_seconds": round(seconds, 1),
    }
    (r["out"] / "train_meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    t, d, ev = meta["target"], meta["draft"], meta["eval"]
    (r["out"] / "README.md").write_text(
        f"# Bundled target/draft pair\n\nTrained from scratch by `scripts/train_pair.py` (seed {a.seed}) on the "
        f"Python {meta['corpus']['python']} standard library and {len(TRAIN_PACKAGES)} permissively licensed packages "
        f"({meta['corpus']['files']} files, {meta['corpus']['tokens']} tokens; list, licences and sha256 in "
        f"train_meta.json); see docs/model-pair.md.\n\n"
        f"| | layers x hidden | params | steps |\n|---|---|---:|---:|\n"
        f"| target/ | {t['layers']} x {t['hidden']} | {t['params']} | {t['steps']} |\n"
        f"| draft/ (distilled, then on-policy) | {d['layers']} x {d['hidden']} | {d['params']} | "
        f"{d['steps']} + {a.onpolicy_steps} |\n\n"
        f"Held out: {ev['heldout']}. Target CE {ev['target_ce']} nats/token ({ev['target_nats_per_char']} nats/char), "
        f"draft {ev['draft_ce']}; greedy acceptance at gamma = {ev['gamma']}: {ev['greedy_acceptance_rate']}; "
        f"distinct-4 of greedy continuations {ev['distinct4_greedy']}.\n")
    return meta


def parse_args(argv: list[str]):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = ap.add_argument
    add("--seed", type=int, default=0)
    add("--ckpt-dir", type=Path, default=DEFAULT_CKPT, help="all resumable state; rerun with the same one")
    add("--out", type=Path, default=None, help="where the finished pair goes (default CKPT_DIR/pair)")
    add("--time-budget", type=float, default=0, help="seconds for this sitting (0 = no limit); exit 3 when spent")
    add("--ckpt-minutes", type=float, default=4.0)
    add("--greedy-probe-every", type=int, default=4, help="distinct-4 probe at every N-th checkpoint")
    add("--stop-after", choices=("target", "all"), default="all", help="'target': the sweep's short runs")
    add("--vocab", type=int, default=2048)
    add("--tokenizer-chars", type=int, default=8_000_000, help="BPE is trained on at most this much text")
    for role, (layers, hidden, heads, inter) in (("target", (16, 128, 4, 352)), ("draft", (2, 128, 4, 352))):
        add(f"--{role}-layers", type=int, default=layers)
        add(f"--{role}-hidden", type=int, default=hidden)
        add(f"--{role}-heads", type=int, default=heads)
        add(f"--{role}-inter", type=int, default=inter)
    add("--draft-init", choices=("scratch", "target"), default="target",
        help="'target': the draft starts as the target's first --draft-layers layers (same width)")
    add("--block", type=int, default=256, help="training window in tokens")
    add("--batch", type=int, default=8)
    add("--target-steps", type=int, default=4000)
    add("--draft-steps", type=int, default=2400)
    add("--target-lr", type=float, default=2e-3)
    add("--draft-lr", type=float, default=4e-3)
    add("--warmup", type=int, default=200)
    add("--ul-steps", type=int, default=300, help="target unlikelihood fine-tuning steps against greedy loops (0 = off)")
    add("--ul-lr", type=float, default=3e-4)
    add("--ul-batch", type=int, default=8, help="greedy continuations per unlikelihood step")
    add("--ul-prompt-tokens", type=int, default=64)
    add("--ul-new-tokens", type=int, default=64)
    add("--ul-weight", type=float, default=1.0)
    add("--temperature", type=float, default=1.0, help="distillation softening temperature")
    add("--hard-weight", type=float, default=0.1, help="weight of the hard-label loss for the draft")
    add("--onpolicy-steps", type=int, default=6000, help="draft steps on target-greedy continuations (0 = off)")
    add("--onpolicy-seqs", type=int, default=16384)
    add("--onpolicy-lr", type=float, default=2e-3)
    add("--onpolicy-prompt-weight", type=float, default=0.25)
    add("--onpolicy-gen-batch", type=int, default=32)
    add("--threads", type=int, default=1, help="1: on a loaded shared CPU two OpenMP threads stall (10x slower)")
    add("--device", default="cpu", help="torch device, e.g. cuda (checkpoints load on either)")
    add("--log-every", type=int, default=25)
    add("--eval-gamma", type=int, default=4)
    add("--eval-prompts", type=int, default=12)
    add("--prompt-tokens", type=int, default=96)
    add("--new-tokens", type=int, default=96)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    ckpt_dir: Path = args.ckpt_dir.expanduser()
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    check_run(ckpt_dir, args)
    budget = Budget(args.time_budget, args.ckpt_minutes * 60)
    try:
        r = stages(args, ckpt_dir, budget)
    except BudgetSpent as exc:
        log(f"time budget spent at {exc}; checkpoint in {ckpt_dir} - rerun the same command to resume")
        return 3
    except CorpusError as exc:
        sys.exit(f"error: {exc}")
    if not r:
        log(f"stopped after the target (--stop-after target); checkpoint in {ckpt_dir}")
        return 0
    write_meta(r, args, argv, time.monotonic() - budget.t0)
    log(f"done -> {r['out']} (checkpoints kept in {ckpt_dir}; delete it to start over)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
