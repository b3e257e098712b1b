"""Prompt files for `capture`: JSON Lines or plain text.

JSONL: each line is a string (text), a list of ints (token ids), or an object with ``prompt`` (text
or ids) or ``prompt_token_ids`` / ``input_ids``. Plain text: one prompt per non-empty line, ``\\n``
escapes allowed. Token ids are sent as ids, so the server's tokenizer cannot change the input;
``--tokenizer`` turns text into ids on the client with the served model's ``tokenizer.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Prompt:
    prompt: str | tuple[int, ...]  # what is sent
    text: str | None = None        # the text it came from, when known


def _from_json(obj: object, where: str) -> Prompt:
    if isinstance(obj, str):
        return Prompt(obj, obj)
    if isinstance(obj, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in obj):
        return Prompt(tuple(obj))
    if isinstance(obj, dict):
        for key in ("prompt_token_ids", "input_ids", "prompt"):
            if key in obj:
                p = _from_json(obj[key], where)
                text = obj.get("text") if isinstance(obj.get("text"), str) else p.text
                return Prompt(p.prompt, text)
    raise ValueError(f"{where}: expected a string, a list of token ids, or an object with 'prompt'")


def load_prompts(path: str | Path) -> list[Prompt]:
    """Read a prompt file; raises ValueError naming the bad line."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    out: list[Prompt] = []
    as_json = path.suffix in (".jsonl", ".json")
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if as_json:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{no}: not JSON ({exc.msg})") from None
            out.append(_from_json(obj, f"{path}:{no}"))
        else:
            s = line.replace("\\n", "\n")
            out.append(Prompt(s, s))
    if not out:
        raise ValueError(f"{path}: no prompts")
    return out


def tokenize(prompts: list[Prompt], tokenizer_dir: str | Path) -> list[Prompt]:
    """Text prompts -> token ids with ``tokenizer_dir/tokenizer.json`` (no special tokens added)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    return [Prompt(tuple(tok.encode(p.prompt, add_special_tokens=False).ids), p.prompt)
            if isinstance(p.prompt, str) else p for p in prompts]
