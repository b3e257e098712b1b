"""Load a target/draft pair from local Hugging Face directories (never from the network).

Speculative decoding indexes q and p by the same token ids, so the pair must share a tokenizer:
``check_vocab`` refuses pairs whose vocabularies differ in size or content (the Qwen 151936 vs
152064 class of bug) with a one-line message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ASSETS_PAIR = Path(__file__).resolve().parent.parent / "assets" / "pair"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
DTYPES = ("float32", "float16", "bfloat16")


class ModelLoadError(ValueError):
    """A pair that cannot be used; ``str()`` is one line naming the directory and the problem."""


@dataclass
class ModelPair:
    """The two models, their shared tokenizer and the facts the trace header records."""

    target: Any
    draft: Any
    tokenizer: Any
    device: str = "cpu"
    dtype: str = "float32"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def eos_token_id(self) -> int | None:
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if eos is None:
            eos = getattr(self.target.generation_config, "eos_token_id", None)
        if isinstance(eos, list):
            eos = eos[0] if eos else None
        return eos


def default_pair_dirs() -> tuple[Path, Path]:
    return ASSETS_PAIR / "target", ASSETS_PAIR / "draft"


def weights_sha256(path: str | Path) -> str | None:
    """sha256 over the weight files of a model dir (sorted by name, name and bytes hashed)."""
    path = Path(path)
    files = sorted(f for f in path.iterdir() if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _vocab_list(tokenizer: Any) -> list[str]:
    vocab = tokenizer.get_vocab()
    inv = [""] * (max(vocab.values()) + 1 if vocab else 0)
    for tok, idx in vocab.items():
        inv[idx] = tok
    return inv


def check_vocab(target_tok: Any, draft_tok: Any, target_model: Any = None, draft_model: Any = None,
                where: str = "") -> None:
    """Raise :class:`ModelLoadError` unless both tokenizers (and the models' output dims) agree."""
    pre = f"{where}: " if where else ""
    tv, dv = _vocab_list(target_tok), _vocab_list(draft_tok)
    if len(tv) != len(dv):
        raise ModelLoadError(f"{pre}VOCAB mismatch: target tokenizer has {len(tv)} tokens, draft has {len(dv)}")
    for i, (a, b) in enumerate(zip(tv, dv, strict=True)):
        if a != b:
            raise ModelLoadError(f"{pre}VOCAB mismatch: first differing token id {i}: target {a!r}, draft {b!r}")
    if target_model is not None and draft_model is not None:
        ts = target_model.get_output_embeddings().weight.shape[0]
        ds = draft_model.get_output_embeddings().weight.shape[0]
        if ts != ds:
            raise ModelLoadError(f"{pre}VOCAB mismatch: target lm_head has {ts} rows, draft has {ds}")
        if ts < len(tv):
            raise ModelLoadError(f"{pre}VOCAB mismatch: lm_head has {ts} rows but the tokenizer {len(tv)} tokens")


def _check_dir(path: Path, role: str) -> None:
    if not path.is_dir():
        raise ModelLoadError(f"{path}: {role} model directory does not exist")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path}: no config.json, not a Hugging Face model directory ({role})")


def _torch_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise ModelLoadError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def param_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def load_pair(target: str | Path | None = None, draft: str | Path | None = None, *, device: str = "cpu",
              dtype: str = "float32") -> ModelPair:
    """Load the pair (default: the bundled one), check the vocabularies, move to ``device``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if target is None or draft is None:
        dt, dd = default_pair_dirs()
        target = target if target is not None else dt
        draft = draft if draft is not None else dd
        if not Path(target).is_dir() or not Path(draft).is_dir():
            raise ModelLoadError(f"{ASSETS_PAIR}: bundled model pair not found (build it with "
                                 "scripts/train_pair.py) - pass --target DIR --draft DIR")
    tpath, dpath = Path(target), Path(draft)
    _check_dir(tpath, "target")
    _check_dir(dpath, "draft")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} requested but CUDA is not available")
    tdt = _torch_dtype(dtype)
    toks = []
    for p in (tpath, dpath):
        try:
            toks.append(AutoTokenizer.from_pretrained(p, local_files_only=True))
        except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; report in one line
            raise ModelLoadError(f"{p}: cannot load tokenizer: {str(exc).splitlines()[0]}") from None
    models = []
    for p in (tpath, dpath):
        try:
            m = AutoModelForCausalLM.from_pretrained(p, local_files_only=True, dtype=tdt)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"{p}: cannot load model: {str(exc).splitlines()[0]}") from None
        models.append(m.to(device).eval())
    check_vocab(toks[0], toks[1], models[0], models[1], where=f"{tpath} vs {dpath}")
    return make_pair(models[0], models[1], toks[0], device=device, dtype=dtype, target_path=tpath,
                     draft_path=dpath)


def make_pair(target_model: Any, draft_model: Any, tokenizer: Any, *, device: str = "cpu",
              dtype: str = "float32", target_path: Path | None = None, draft_path: Path | None = None) -> ModelPair:
    """Wrap in-memory models (tests, benchmarks) with the same header facts as :func:`load_pair`."""

    def facts(model: Any, path: Path | None) -> dict[str, Any]:
        return {"path": str(path) if path else None, "sha256": weights_sha256(path) if path else None,
                "params": param_count(model), "architecture": type(model).__name__,
                "layers": getattr(model.config, "num_hidden_layers", None),
                "hidden": getattr(model.config, "hidden_size", None)}

    info = {
        "target": facts(target_model, target_path),
        "draft": facts(draft_model, draft_path),
        "tokenizer": {"class": type(tokenizer).__name__, "vocab_size": len(tokenizer.get_vocab()),
                      "name_or_path": str(getattr(tokenizer, "name_or_path", "") or "")},
    }
    return ModelPair(target_model.eval(), draft_model.eval(), tokenizer, device=device, dtype=dtype, info=info)
