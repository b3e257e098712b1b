"""The bundled pair (specdec_diag/assets/pair) loads offline, is small, shares one tokenizer, and the
draft really agrees with the target on text neither was trained on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from _helpers import load_script

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from specdec_diag.assets import HELD_OUT, PAIR_DIR, corpus_files, heldout_prompts, heldout_texts  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MAX_BYTES = 25 * 1024 * 1024
TARGET, DRAFT = PAIR_DIR / "target", PAIR_DIR / "draft"


@pytest.fixture(scope="module")
def offline():
    """Any attempt to reach the Hub fails loudly instead of silently downloading."""
    old = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def pair(offline):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    out = {}
    for role, d in (("target", TARGET), ("draft", DRAFT)):
        tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(d, local_files_only=True, dtype=torch.float32).eval()
        out[role] = (model, tok)
    return out


@pytest.fixture(scope="module")
def snippet(pair):
    """~320 held-out tokens (three chunks of different held-out files)."""
    tok = pair["target"][1]
    return [t for p in heldout_prompts(tok, n=3, length=107) for t in p]


def test_assets_complete_and_small():
    for d in (TARGET, DRAFT):
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
            assert (d / name).is_file(), f"{d / name} missing"
    assert (PAIR_DIR / "README.md").is_file() and (PAIR_DIR / "train_meta.json").is_file()
    total = sum(f.stat().st_size for f in PAIR_DIR.parent.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
    assert total <= MAX_BYTES, f"assets are {total / 2**20:.1f} MiB > 25 MiB"
    assert not (PAIR_DIR / ".work").exists(), "training checkpoints left in the package"


def test_loads_offline_and_tokenizers_identical(pair):
    (target, ttok), (draft, dtok) = pair["target"], pair["draft"]
    assert (TARGET / "tokenizer.json").read_bytes() == (DRAFT / "tokenizer.json").read_bytes()
    assert ttok.get_vocab() == dtok.get_vocab()
    assert ttok.bos_token is not None and ttok.eos_token is not None
    assert ttok.eos_token_id == target.config.eos_token_id == draft.config.eos_token_id
    n = len(ttok)
    assert target.get_output_embeddings().weight.shape[0] == draft.get_output_embeddings().weight.shape[0] == n
    # byte-level BPE is lossless on code, including indentation and non-ASCII
    text = heldout_texts()[0][:2000] + "\n\tdéjà vu → λ\n"
    assert ttok.decode(ttok(text, add_special_tokens=False)["input_ids"]) == text


def test_decoder_loader_accepts_the_pair(offline):
    """H1's loader (the decoder's default) loads the bundled pair and its vocabulary check passes."""
    models = pytest.importorskip("specdec_diag.decoder.models")
    p = models.load_pair()
    assert p.info["target"]["sha256"] and p.info["draft"]["sha256"]
    assert p.info["target"]["layers"] > p.info["draft"]["layers"]


def test_shapes_make_the_draft_cheap(pair):
    """Per-token cost on CPU follows depth (per-layer overhead), so the target must be much deeper."""
    t, d = pair["target"][0].config, pair["draft"][0].config
    assert t.num_hidden_layers >= 8 * d.num_hidden_layers
    meta = json.loads((PAIR_DIR / "train_meta.json").read_text())
    assert meta["target"]["layers"] == t.num_hidden_layers and meta["draft"]["layers"] == d.num_hidden_layers
    assert meta["target"]["hidden"] == t.hidden_size and meta["draft"]["hidden"] == d.hidden_size
    assert meta["corpus"]["held_out"] == list(HELD_OUT)
    # the figure the training run measured on the held-out packages' prompts (issue 14's bar; docs/model-pair.md)
    assert meta["eval"]["greedy_acceptance_rate"] >= 0.55


def _agreement(target, draft, ids: list[int]) -> float:
    x = torch.tensor([ids])
    with torch.inference_mode():
        return (target(input_ids=x).logits.argmax(-1) == draft(input_ids=x).logits.argmax(-1)).float().mean().item()


def test_draft_agrees_with_target_on_heldout_text(pair, snippet):
    target, draft = pair["target"][0], pair["draft"][0]
    assert len(snippet) >= 300
    agree = _agreement(target, draft, snippet)
    assert agree >= 0.5, f"draft agrees with the target's greedy token at only {agree:.2f} of positions"
    # Control: the same draft architecture with fresh random weights must NOT agree, so the check above
    # measures the distillation, not something every model of this shape would do.
    torch.manual_seed(0)
    random_draft = type(draft)(draft.config).eval()
    assert _agreement(target, random_draft, snippet) < 0.1


def test_greedy_acceptance_on_heldout_prompts(pair):
    """A floor against regressions: greedy acceptance >= 0.5 at gamma = 4 on the held-out stdlib files
    (one prompt per file, 64 target-greedy tokens each); issue 14's bar (0.55 on the held-out
    packages' prompts) is what benchmarks/decoder.py and the training run's eval measure. Greedy
    verification accepts the leading run of draft tokens equal to the target's greedy ones, so one
    draft forward over the target's path gives it."""
    (target, tok), draft = pair["target"], pair["draft"][0]
    gamma, new = 4, 64
    drafted = accepted = 0
    for p in heldout_prompts(tok, n=len(HELD_OUT), length=96):
        ids = list(p)
        with torch.inference_mode():
            seq = target.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                  do_sample=False, max_new_tokens=new, min_new_tokens=new,
                                  pad_token_id=tok.pad_token_id)
            guess = draft(input_ids=seq).logits[0, len(ids) - 1 : -1].argmax(-1)
        match = (guess == seq[0, len(ids):]).tolist()
        i = 0
        while i < new:
            k = min(gamma, new - i - 1)
            n = next((j for j in range(k) if not match[i + j]), k)
            drafted, accepted, i = drafted + k, accepted + n, i + n + 1
    rate = accepted / drafted
    assert rate >= 0.5, f"greedy acceptance at gamma = 4 is {rate:.3f} < 0.5 (the pair regressed)"


def test_both_models_learned_heldout_code(pair, snippet):
    """Cross-entropy on text neither saw: both far below uniform (ln 2048 = 7.62 nats), and the distilled
    draft close to its teacher (the target is small and briefly trained, so it is not much better)."""
    x = torch.tensor([snippet])

    def ce(model):
        with torch.inference_mode():
            logits = model(input_ids=x).logits[0, :-1]
        return torch.nn.functional.cross_entropy(logits, x[0, 1:]).item()

    t, d = ce(pair["target"][0]), ce(pair["draft"][0])
    assert t < 6.5 and d < 6.5, (t, d)
    assert abs(t - d) < 0.5, (t, d)


def test_heldout_files_not_in_training_set():
    _, train, held = corpus_files()
    assert sorted(f.name for f in held) == sorted(HELD_OUT)
    assert not {f.resolve() for f in held} & {f.resolve() for f in train}
    assert all("test" not in f.parts and "site-packages" not in f.parts for f in train)


def test_wheel_ships_the_assets():
    """hatch packages specdec_diag/ whole (minus git-ignored files): the weights must not be ignored."""
    tomllib = pytest.importorskip("tomllib")
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "specdec_diag" in cfg["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("no git checkout")
    files = [str(p.relative_to(REPO)) for p in PAIR_DIR.rglob("*") if p.is_file()]
    r = subprocess.run(["git", "check-ignore", *files], cwd=REPO, capture_output=True, text=True)
    assert r.stdout.strip() == "", f"git-ignored (so left out of the wheel): {r.stdout}"


def test_onpolicy_stage_on_tiny_models():
    """The on-policy stage of scripts/train_pair.py: prompts are windows of the given (training) stream
    that avoid file boundaries, continuations are exactly the target's greedy ones (checked against an
    independent batch-1 greedy loop), and fine-tuning lowers the draft's KL to the target on them."""
    from types import SimpleNamespace

    tp = load_script("train_pair")
    torch.manual_seed(0)
    tok = SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    target = tp.llama(64, 2, 32, 2, 64, tok, 128).eval()
    draft = tp.llama(64, 1, 32, 2, 64, tok, 128).eval()
    g = torch.Generator().manual_seed(1)
    data = torch.randint(4, 64, (2000,), generator=g)
    data[::50] = 1  # file boundaries that prompts must not span
    args = SimpleNamespace(onpolicy_seqs=6, prompt_tokens=8, new_tokens=6, onpolicy_gen_batch=4, batch=4,
                           onpolicy_steps=30, onpolicy_lr=1e-2, warmup=3, onpolicy_prompt_weight=0.25,
                           log_every=10, ckpt_every=1000)
    seqs = tp.onpolicy_sequences(target, tok, data, args, seed=0)
    assert seqs.shape == (6, 14)
    stream = data.tolist()
    for s in seqs:
        p = s[:8].tolist()
        assert 1 not in p and 2 not in p
        assert any(stream[i : i + 8] == p for i in range(len(stream) - 8))
        ids = p[:]
        with torch.inference_mode():
            for _ in range(6):  # plain greedy, no cache, batch 1: the reference
                ids.append(int(target(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
        assert s.tolist() == ids
    assert torch.equal(tp.onpolicy_sequences(target, tok, data, args, seed=0), seqs)  # seeded
    # split over sittings (a spent budget stops after each batch of 4), the same sequences come out
    import tempfile

    lib = load_script("train_pair_lib")
    with tempfile.TemporaryDirectory() as d:
        part = Path(d) / "part.pt"
        with pytest.raises(lib.BudgetSpent):
            lib.onpolicy_sequences(target, tok, data, args, 0, part, lib.Budget(1e-9, 1e9))
        assert torch.equal(lib.onpolicy_sequences(target, tok, data, args, 0, part, lib.Budget(1e-9, 1e9)), seqs)

    t_logp = tp.teacher_logprobs(target, seqs, chunk=4)
    with tempfile.TemporaryDirectory() as d:  # the memory-mapped form: same values, read back by a later sitting
        mapped = tp.teacher_logprobs(target, seqs, chunk=4, cache=Path(d) / "t.npy")
        assert torch.equal(mapped, t_logp) and not list(Path(d).glob("*.tmp*"))
        assert torch.equal(tp.teacher_logprobs(None, seqs, cache=Path(d) / "t.npy"), t_logp)

    def kl():
        with torch.inference_mode():
            lp = torch.log_softmax(draft(input_ids=seqs[:, :-1]).logits, -1)
        tl = t_logp.float()
        return (tl.exp() * (tl - lp)).sum(-1)[:, 7:].mean().item()

    before = kl()
    with tempfile.TemporaryDirectory() as d:
        hist = tp.train_onpolicy(draft, seqs, t_logp, args, Path(d) / "op.pt", seed=0)
    assert len(hist) == 3 and not draft.training
    assert kl() < 0.5 * before, (before, kl())


def _tiny_lm(tp, seed: int):
    from types import SimpleNamespace

    tok = SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    return tp.llama(64, 2, 32, 2, 64, tok, 128)


def test_draft_initialised_from_the_target_is_its_first_layers():
    """--draft-init target: a draft of the target's first layer computes exactly what the target's
    first layer followed by its final norm and head computes (a layer-skip draft), before training."""
    from types import SimpleNamespace

    tp, lib = load_script("train_pair"), load_script("train_pair_lib")
    target = _tiny_lm(lib, 0).eval()
    draft = lib.llama(64, 1, 32, 2, 64, SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=0), 128).eval()
    tp.init_from_target(draft, target)
    x = torch.randint(4, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        h = target.model(input_ids=x, output_hidden_states=True).hidden_states[1]  # after the first layer
        want = target.lm_head(target.model.norm(h))
        assert torch.allclose(draft(input_ids=x).logits, want, atol=1e-5)
    with pytest.raises(SystemExit, match="draft-init target"):
        wide = lib.llama(64, 1, 48, 2, 64, SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=0), 128)
        tp.init_from_target(wide, target)


def test_training_resumes_exactly_after_the_time_budget(tmp_path):
    """A sitting stopped by --time-budget checkpoints (model, optimiser, step, data RNG) and a rerun
    continues to the very weights an uninterrupted run reaches - the property that lets training span
    several sittings."""
    from types import SimpleNamespace

    tp = load_script("train_pair_lib")
    data = torch.randint(4, 64, (3000,), generator=torch.Generator().manual_seed(3))
    args = SimpleNamespace(block=16, batch=4, warmup=2, log_every=5, temperature=1.0, hard_weight=0.1)
    straight = _tiny_lm(tp, 0)
    tp.train_lm("t", straight, data, args, 12, 1e-2, tmp_path / "a.pt", tp.Budget(0, 1e9), seed=7)

    resumed, ckpt, sittings = _tiny_lm(tp, 0), tmp_path / "b.pt", 0
    while True:
        sittings += 1
        try:  # a budget already spent: every sitting stops after one step
            tp.train_lm("t", resumed, data, args, 12, 1e-2, ckpt, tp.Budget(1e-9, 1e9), seed=7)
            break
        except tp.BudgetSpent:
            resumed = _tiny_lm(tp, 0)  # a fresh process: nothing survives but the checkpoint
    assert sittings == 12
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    fresh = _tiny_lm(tp, 0)
    assert not all(torch.equal(a, b) for a, b in zip(fresh.parameters(), resumed.parameters(), strict=True))


def test_distinct_ngram_ratio_scores_loops_low():
    tp = load_script("train_pair_lib")
    assert tp.distinct_ngram_ratio(list(range(100))) == 1.0
    loop = [5, 6, 7] * 32  # "self, self, self" style
    assert tp.distinct_ngram_ratio(loop) < 0.05


def test_corpus_packages_are_permissive_and_heldout_disjoint():
    """Every named package is installed with a permissive licence in its metadata, no file is both
    trained on and held out, and vendored copies (pip/_vendor, setuptools/_vendor) are skipped."""
    corpus = pytest.importorskip("specdec_diag.assets.corpus")
    try:
        train = corpus.packages_files(corpus.TRAIN_PACKAGES)
        held = corpus.packages_files(corpus.HELD_OUT_PACKAGES)
    except corpus.CorpusError as exc:
        pytest.skip(str(exc))
    assert not set(corpus.TRAIN_PACKAGES) & set(corpus.HELD_OUT_PACKAGES)
    assert all(corpus.PERMISSIVE.search(s.license) for s in train + held)
    assert not {s.path.resolve() for s in train} & {s.path.resolve() for s in held}
    assert not any("_vendor" in s.path.parts for s in train)
    assert {s.package.lower() for s in held} == {p.lower() for p in corpus.HELD_OUT_PACKAGES}


def test_repeat_mask_marks_repeated_ngrams_after_the_prompt():
    """Sequence-level unlikelihood's negatives: every token of a continuation 4-gram seen before in the
    same sequence (prompt included), and nothing inside the prompt."""
    lib = load_script("train_pair_lib")
    seq = torch.tensor([[5, 6, 7, 8, 9, 5, 6, 7, 8, 3, 4, 10, 11]])
    m = lib.repeat_mask(seq, start=5)[0].tolist()
    # 5 6 7 8 at positions 5-8 repeats the prompt's 5 6 7 8; nothing else repeats
    assert m == [False] * 5 + [True] * 4 + [False] * 4
    loop = torch.tensor([[1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4]])
    assert lib.repeat_mask(loop, start=4)[0].tolist() == [False] * 4 + [True] * 8
    assert not lib.repeat_mask(torch.arange(20)[None], start=4).any()


def test_unlikelihood_stage_breaks_a_greedy_loop(tmp_path):
    """A tiny model that learned to loop (its stream repeats one 4-token phrase four times between
    random stretches) loops less after the unlikelihood stage than after the same steps of the
    next-token loss alone: the share of its greedy continuations inside repeated 4-grams falls; the
    stage logs that share (rep4) and checkpoints like the others."""
    import copy
    from types import SimpleNamespace

    lib = load_script("train_pair_lib")
    tok = SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    g = torch.Generator().manual_seed(5)
    data = torch.cat([torch.cat([torch.tensor([10, 11, 12, 13] * 4), torch.randint(14, 64, (16,), generator=g)])
                      for _ in range(150)])
    args = SimpleNamespace(block=16, batch=8, warmup=2, log_every=5, temperature=1.0, hard_weight=0.1,
                           ul_lr=1e-2, ul_steps=30, ul_batch=8, ul_prompt_tokens=8, ul_new_tokens=8, ul_weight=3.0)
    base = _tiny_lm(lib, 0)
    lib.train_lm("t", base, data, args, 60, 1e-2, tmp_path / "t.pt", lib.Budget(0, 1e9), seed=1)

    starts = torch.randint(0, len(data) - 8, (16,), generator=torch.Generator().manual_seed(9)).tolist()
    prompts = torch.stack([data[i : i + 8] for i in starts])

    def rep(model) -> float:
        """Share of greedy continuation tokens (16 prompts x 16 tokens) inside a repeated 4-gram."""
        with torch.no_grad():
            seq = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                                 max_new_tokens=16, min_new_tokens=16, pad_token_id=0)
        return lib.repeat_mask(seq, 8)[:, 8:].float().mean().item()

    assert rep(base) >= 0.8  # it loops
    runs = {}
    for name, weight in (("ul", 3.0), ("mle", 0.0)):
        model = copy.deepcopy(base)
        hist = lib.train_unlikelihood(model, tok, data, SimpleNamespace(**{**vars(args), "ul_weight": weight}),
                                      tmp_path / f"{name}.pt", lib.Budget(0, 1e9), seed=2)
        runs[name] = rep(model)
        assert [h["step"] for h in hist] == [5, 10, 15, 20, 25, 30] and (tmp_path / f"{name}.pt").exists()
    assert runs["ul"] < runs["mle"] - 0.05, runs  # measured: 0.70 vs 0.82
