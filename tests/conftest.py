"""Shared fixtures: tiny random models and a tiny tokenizer, built in-process (no network).

* ``tiny_tokenizer_dir``: a WordLevel ``PreTrainedTokenizerFast`` (96 tokens, ``<eos>`` = 1) saved to disk.
* ``tiny_pair_dirs`` / ``tiny_pair``: a 2-layer Llama target (hidden 32) and a 1-layer draft made from
  the target's first layer plus noise, so the draft agrees often but not always (accepts AND rejects).
* ``tiny_gpt2_pair``: the same idea with GPT-2 (absolute positions), in memory.
* ``make_pair_dirs(root, ...)``: the builder itself, for tests that need a variant on disk.
* hypothesis: under ``CI=true`` the property tests draw the same (derandomized) examples every run.

torch/transformers are imported inside the builders so analysis-only test runs never load them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI (``CI=true``, as `.ci/run` is called) replays the same examples every run: a red build must mean a
# change broke something, not that this run drew a new example. Locally the examples are random, and
# SPECDEC_JUNK_EXAMPLES / SPECDEC_FUZZ_EXAMPLES run deeper searches.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")

VOCAB = 96
EOS_ID = 1
WORDS = [f"w{i}" for i in range(VOCAB - 3)]


def build_tokenizer(out: Path, words: list[str] | None = None):
    """A WordLevel tokenizer over ``<unk> <eos> <pad> w0..w92`` (whitespace split), saved to ``out``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<eos>": EOS_ID, "<pad>": 2}
    for i, w in enumerate(words or WORDS):
        vocab[w] = i + 3
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", eos_token="<eos>", pad_token="<pad>")
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return fast


def build_llama(layers: int = 2, hidden: int = 32, seed: int = 0, vocab: int = VOCAB, init: float = 0.3):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      initializer_range=init, tie_word_embeddings=False, eos_token_id=EOS_ID, pad_token_id=2,
                      bos_token_id=None)
    return LlamaForCausalLM(cfg).eval()


def build_gpt2(layers: int = 2, hidden: int = 32, seed: int = 0, vocab: int = VOCAB, init: float = 0.3):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=4, n_positions=512,
                     initializer_range=init, eos_token_id=EOS_ID, pad_token_id=2, bos_token_id=EOS_ID)
    return GPT2LMHeadModel(cfg).eval()


def damp_upper_layers(target, keep: int = 1, factor: float = 0.3):
    """Scale the output projections of layers >= ``keep`` so a ``keep``-layer draft agrees often."""
    import torch

    with torch.no_grad():
        for name, p in target.named_parameters():
            parts = name.split(".")
            idx = next((int(x) for x in parts if x.isdigit()), None)
            if idx is not None and idx >= keep and any(k in name for k in ("o_proj", "down_proj", "c_proj")):
                p.mul_(factor)
    return target


def derive_draft(target, layers: int = 1, noise: float = 0.05, seed: int = 1):
    """A smaller draft: the target's first ``layers`` layers, embeddings and head, plus noise."""
    import copy

    import torch

    cfg = copy.deepcopy(target.config)
    if hasattr(cfg, "n_layer"):
        cfg.n_layer = layers
    cfg.num_hidden_layers = layers
    draft = type(target)(cfg).eval()
    sd = {k: v for k, v in target.state_dict().items() if k in draft.state_dict()}
    draft.load_state_dict(sd, strict=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(noise * p.std().clamp(min=1e-3) * torch.randn(p.shape, generator=g))
    return draft


def make_pair_dirs(root: Path, arch: str = "llama", target_layers: int = 2, draft_layers: int = 1,
                   noise: float = 0.05, draft_words: list[str] | None = None) -> tuple[Path, Path]:
    """Save a target/draft pair with tokenizers to ``root/target`` and ``root/draft``."""
    build = build_llama if arch == "llama" else build_gpt2
    target = damp_upper_layers(build(layers=target_layers), keep=draft_layers)
    draft = derive_draft(target, layers=draft_layers, noise=noise)
    tdir, ddir = root / "target", root / "draft"
    target.save_pretrained(tdir)
    draft.save_pretrained(ddir)
    build_tokenizer(tdir)
    build_tokenizer(ddir, draft_words)
    return tdir, ddir


def random_prompts(n: int, seed: int = 0, min_len: int = 1, max_len: int = 12) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(min_len, max_len))) for _ in range(n)]


@pytest.fixture(scope="session")
def tiny_pair_dirs(tmp_path_factory) -> tuple[Path, Path]:
    return make_pair_dirs(tmp_path_factory.mktemp("pair"))


@pytest.fixture(scope="session")
def tiny_pair(tiny_pair_dirs):
    import torch

    from specdec_diag.decoder.models import load_pair

    torch.set_num_threads(1)
    return load_pair(*tiny_pair_dirs)


@pytest.fixture(scope="session")
def tiny_gpt2_pair(tmp_path_factory):
    from specdec_diag.decoder.models import make_pair

    target = damp_upper_layers(build_gpt2())
    draft = derive_draft(target)
    return make_pair(target, draft, build_tokenizer(tmp_path_factory.mktemp("tok")))


def trace_invariant_violations(records: list[dict], faults_ok: bool = False) -> list[str]:
    """Every structural invariant of docs/theory.md §6, checked independently of the decoder:
    returns one message per violated (step, rule)."""
    from specdec_diag.schema import validate_step

    bad: list[str] = []
    steps = [r for r in records if r["type"] == "step"]
    prev: dict[int, dict] = {}
    for s in steps:
        i, g, n, em = s["step"], s["gamma_drafted"], s["n_accepted"], s["emitted_token_ids"]
        L = s["context_len"]
        why = validate_step(s)
        if why:
            bad.append(f"step {i}: {why}")
        if not 0 <= n <= g:
            bad.append(f"step {i}: n={n} outside 0..{g}")
        if s["trimmed_by"] == "none" and len(em) != n + 1:
            bad.append(f"step {i}: emitted {len(em)} != n+1 = {n + 1} without trimming")
        if s["trimmed_by"] != "none" and len(em) > n + 1:
            bad.append(f"step {i}: trimmed step emitted {len(em)} > n+1")
        if em[: min(n, len(em))] != s["draft_token_ids"][: min(n, len(em))]:
            bad.append(f"step {i}: emitted tokens are not the accepted draft prefix")
        if s["accept_flags"][:n] != [True] * n or (n < g and s["accept_flags"][n]):
            bad.append(f"step {i}: n is not the leading run of accept_flags")
        if s["last_token_kind"] != ("bonus" if n == g else "correction"):
            bad.append(f"step {i}: last_token_kind {s['last_token_kind']} with n={n}, gamma={g}")
        if s["target_cache_after"] != L + len(em) - 1:
            bad.append(f"step {i}: target cache {s['target_cache_after']} != seq-1 = {L + len(em) - 1}")
        if s["target_cache_before"] != L - 1:
            bad.append(f"step {i}: target cache before {s['target_cache_before']} != L-1 = {L - 1}")
        if s["verify_pos_first"] != L - 1 or s["verify_pos_last"] != L - 1 + g:
            bad.append(f"step {i}: verify positions {s['verify_pos_first']}..{s['verify_pos_last']} "
                       f"!= {L - 1}..{L - 1 + g}")
        if s["target_forwards"] != 1:
            bad.append(f"step {i}: {s['target_forwards']} target forwards")
        if s["draft_forwards"] != g:
            bad.append(f"step {i}: {s['draft_forwards']} draft forwards for {g} drafts")
        for f in ("min_pq",):
            if len(s[f]) != g:
                bad.append(f"step {i}: {f} has {len(s[f])} entries")
        if len(s["argmax_p"]) != g + 1:
            bad.append(f"step {i}: argmax_p has {len(s['argmax_p'])} entries, want {g + 1}")
        if s["uniforms"] is not None and len(s["uniforms"]) != g + 1:
            bad.append(f"step {i}: {len(s['uniforms'])} uniforms, want {g + 1}")
        p = prev.get(s["request"])
        if p is not None and L != p["context_len"] + len(p["emitted_token_ids"]):
            bad.append(f"step {i}: context_len {L} does not continue the previous step")
        prev[s["request"]] = s
    return bad


@pytest.fixture
def invariants():
    return trace_invariant_violations
