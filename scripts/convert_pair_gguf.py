"""Convert one model of the bundled pair to an f32 GGUF with llama.cpp's vendored converter.

Usage: convert_pair_gguf.py LLAMA_CPP_SRC HF_DIR OUT.gguf   (PYTHONPATH must hold SRC and SRC/gguf-py)

Why a wrapper: the converter recognises BPE pre-tokenizers by hashing the tokenization of a probe
string, and our tokenizer (ByteLevel, GPT-2 split regex) is not in its table. llama.cpp's name for
that pre-tokenizer is ``gpt-2`` (``gpt2`` is refused at load time). We name it here, at conversion
time, instead of editing the vendored converter or our assets — after checking that the tokenizer
really uses the GPT-2 regex, so a different tokenizer fails loudly instead of being mislabelled.
No sentencepiece is needed (see the note in :func:`main`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def _is_gpt2_bytelevel(hf_dir: Path) -> bool:
    """True when tokenizer.json pre-tokenizes as GPT-2 does (ByteLevel with the GPT-2 regex)."""
    tok = json.loads((hf_dir / "tokenizer.json").read_text())
    pre = tok.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre])
    for step in steps:
        if step.get("type") == "ByteLevel" and step.get("use_regex", True):
            return True
        if step.get("type") == "Split" and (step.get("pattern") or {}).get("Regex") == GPT2_REGEX:
            return True
    return False


def main(argv: list[str]) -> None:
    src, hf_dir, out = Path(argv[0]), Path(argv[1]), Path(argv[2])
    if not _is_gpt2_bytelevel(hf_dir):
        raise SystemExit(f"{hf_dir}: tokenizer is not ByteLevel/GPT-2; refusing to label it gpt-2")
    sys.path[:0] = [str(src), str(src / "gguf-py")]
    import convert_hf_to_gguf as convert  # noqa: PLC0415 (vendored, only importable after the path edit)
    from conversion.base import TextModel  # noqa: PLC0415

    TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
    # The Llama converter tries a SentencePiece vocab first and falls back to BPE on FileNotFoundError
    # (no tokenizer.model), but it imports sentencepiece before looking; without that package the
    # import error ends the conversion. Take the path the converter takes when sentencepiece is there.
    sp_vocab = TextModel._create_vocab_sentencepiece

    def _sentencepiece_or_missing(self):
        if not (self.dir_model / "tokenizer.model").is_file():
            raise FileNotFoundError(f"File not found: {self.dir_model / 'tokenizer.model'}")
        return sp_vocab(self)

    TextModel._create_vocab_sentencepiece = _sentencepiece_or_missing
    sys.argv = ["convert_hf_to_gguf.py", str(hf_dir), "--outtype", "f32", "--outfile", str(out)]
    convert.main()


if __name__ == "__main__":
    main(sys.argv[1:])
