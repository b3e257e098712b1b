"""The bundled target/draft pair (``pair/target``, ``pair/draft``) and the corpus it was trained on.

The corpus is the Python standard library's own source, so the held-out evaluation prompts can be
rebuilt on any machine with the same Python without shipping text: the training script, the benchmark
and the tests all take them from :func:`heldout_prompts`. The retraining corpus of issue 14 adds
permissively licensed packages and holds out whole packages (``corpus.py``; ``heldout_prompts(...,
texts=corpus.heldout_package_texts())``). Pure Python: no torch import here.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path
from typing import Any

PAIR_DIR = Path(__file__).resolve().parent / "pair"

# Files never trained on (not even by the tokenizer): the evaluation prompts come from these.
HELD_OUT = ("textwrap.py", "fractions.py", "shlex.py", "csv.py", "calendar.py", "string.py")
# Test suites, generated codec tables and third-party code are not the kind of text we want.
EXCLUDE_PARTS = frozenset({"test", "tests", "idle_test", "site-packages", "encodings", "__pycache__"})


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_files() -> tuple[Path, list[Path], list[Path]]:
    """(stdlib root, training files, held-out files), sorted by path relative to the root."""
    root = stdlib_root()
    files = sorted(
        (f for f in root.rglob("*.py")
         if not (EXCLUDE_PARTS & set(f.relative_to(root).parts)) and not f.name.startswith("test_")),
        key=lambda f: f.relative_to(root).as_posix(),
    )
    held = [f for f in files if f.relative_to(root).as_posix() in HELD_OUT]
    train = [f for f in files if f not in held]
    if len(held) != len(HELD_OUT):
        raise FileNotFoundError(f"{root}: expected held-out files {HELD_OUT}, found {[f.name for f in held]}")
    return root, train, held


def read(f: Path) -> str:
    return f.read_text(encoding="utf-8", errors="replace")


def heldout_texts() -> list[str]:
    """The held-out files' text, sorted by name as corpus_files() lists them (read directly, no walk)."""
    root = stdlib_root()
    missing = [n for n in HELD_OUT if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: held-out files missing: {', '.join(missing)}")
    return [read(root / n) for n in sorted(HELD_OUT)]


def heldout_prompts(tokenizer: Any, n: int = 12, length: int = 96, texts: list[str] | None = None) -> list[list[int]]:
    """``n`` prompts of ``length`` token ids, spread evenly over the held-out files (deterministic)."""
    texts = heldout_texts() if texts is None else texts
    ids: dict[int, list[int]] = {}
    prompts = []
    for i in range(n):
        j = i % len(texts)
        if j not in ids:
            ids[j] = tokenizer(texts[j], add_special_tokens=False, verbose=False)["input_ids"]
        f = ids[j]
        k = i // len(texts)
        start = min(len(f) - length, (k + 1) * len(f) // (n // len(texts) + 2))
        prompts.append(f[start : start + length])
    return prompts
