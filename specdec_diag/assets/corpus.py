"""The training corpus of the bundled pair beyond the standard library: permissively licensed, pure-Python
packages installed next to this one, read offline from their installed files.

Why: stdlib source alone (10.6 M characters) is one house style; real code completion sees third-party
code. Every package is named here (nothing is picked up by accident), its licence is read from its own
metadata and checked against a permissive allow-list at collection time, and a second list of packages
is HELD OUT - never seen by the tokenizer or either model - so evaluation prompts come from code the
pair has never trained on. Vendored copies (``_vendor/``) are skipped so a held-out package cannot leak
in through another one. Pure Python: no torch import here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import re
from dataclasses import dataclass
from pathlib import Path

# Trained on: general-purpose libraries with ordinary hand-written code (no generated tables).
TRAIN_PACKAGES = (
    "anyio", "filelock", "fsspec", "httpcore2", "httpx2", "huggingface_hub", "jinja2", "jsonschema",
    "markdown-it-py", "networkx", "packaging", "pip", "pluggy", "pydantic", "pytest", "python-dateutil",
    "referencing", "requests", "rich", "setuptools", "starlette", "trio", "typer", "urllib3", "uvicorn",
    "watchdog", "websockets", "wsproto",
)
# Never trained on: the evaluation prompts of benchmarks/decoder.py come from these.
HELD_OUT_PACKAGES = ("attrs", "click", "h11", "itsdangerous", "sortedcontainers")

PERMISSIVE = re.compile(r"\b(MIT|BSD|Apache|ISC|PSF|Python Software Foundation)\b", re.IGNORECASE)
SKIP_PARTS = frozenset({"test", "tests", "testing", "_vendor", "vendor", "_vendored", "__pycache__"})
MAX_FILE_CHARS = 300_000  # larger .py files are generated tables, not code


class CorpusError(RuntimeError):
    """A named package is missing, or its licence is not on the permissive allow-list."""


@dataclass(frozen=True)
class SourceFile:
    package: str  # distribution name, or "stdlib"
    license: str
    rel: str  # path inside site-packages (or the stdlib)
    path: Path


def license_of(dist: md.Distribution) -> str:
    """The licence a distribution declares: License-Expression, else the License field's first line,
    else its 'License ::' trove classifiers."""
    meta = dist.metadata
    expr = (meta.get("License-Expression") or "").strip()
    if expr:
        return expr
    first = (meta.get("License") or "").strip().splitlines()
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if first and PERMISSIVE.search(first[0]):
        return first[0][:80]
    return "; ".join(classifiers) or (first[0][:80] if first else "")


def package_files(name: str) -> list[SourceFile]:
    """The .py files a distribution installed (tests, vendored code, huge generated files skipped),
    sorted by path; raises CorpusError if it is absent or not permissively licensed."""
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError as exc:
        raise CorpusError(f"package {name!r} is not installed (needed for the pair's corpus)") from exc
    lic = license_of(dist)
    if not PERMISSIVE.search(lic):
        raise CorpusError(f"package {name!r}: licence {lic!r} is not on the permissive allow-list")
    out = []
    for f in dist.files or []:
        parts = Path(str(f)).parts
        if not str(f).endswith(".py") or SKIP_PARTS & set(parts) or parts[-1].startswith("test_"):
            continue
        if parts[0].endswith((".dist-info", ".data")) or parts[-1] == "conftest.py":
            continue
        p = Path(str(dist.locate_file(f)))
        if p.is_file() and p.stat().st_size <= MAX_FILE_CHARS:
            out.append(SourceFile(dist.metadata["Name"], lic, str(f), p))
    return sorted(out, key=lambda s: s.rel)


def packages_files(names: tuple[str, ...]) -> list[SourceFile]:
    return [s for n in names for s in package_files(n)]


def heldout_package_texts() -> list[str]:
    """One text per held-out package file, sorted by package then path (files under 200 chars skipped)."""
    texts = [s.path.read_text(encoding="utf-8", errors="replace") for s in packages_files(HELD_OUT_PACKAGES)]
    return [t for t in texts if len(t) >= 200]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(files: list[SourceFile]) -> dict:
    """What train_meta.json records about a file set: per package its licence and file count, and every
    file with its sha256 (so a later run can tell whether it trained on the same text)."""
    pkgs: dict[str, dict] = {}
    for s in files:
        e = pkgs.setdefault(s.package, {"license": s.license, "files": 0, "chars": 0})
        e["files"] += 1
        e["chars"] += s.path.stat().st_size
    return {"packages": pkgs, "files": [[s.package, s.rel, sha256(s.path)] for s in files]}
