"""Root confinement: the one place that decides whether a path may be read.

The dashboard serves one directory (its *root*) and must never show a byte from outside it, whatever
names it is handed: a symbolic link in the directory, a location in a (possibly edited) cached report,
a tokenizer path in a trace header, or text typed into the Log directory box. Every such name goes
through :func:`confine` (or :func:`outside`), which compares *real* paths (all links resolved), so a
link pointing out is refused even though its own name lies inside. See docs/security.md.

Pure functions on paths (no Streamlit, no polars), so ingest can use :func:`outside` in its walk too.
Every error is a :class:`Refused` whose ``str()`` is one line, fit for a page or a terminal.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path

#: how much of an offending name a message repeats (a 300-character name must stay one short line)
SHOWN_CHARS = 60


class Refused(ValueError):
    """A path that may not be read; ``str()`` is a one-line message naming it and why."""


def shown(text: str | os.PathLike[str]) -> str:
    """``text`` as one printable line: control characters escaped, long names cut in the middle."""
    s = str(text)
    if not s.isprintable():
        s = ascii(s)[1:-1]
    if len(s) > SHOWN_CHARS:
        half = SHOWN_CHARS // 2
        s = f"{s[:half]}…{s[-half:]} ({len(str(text))} characters)"
    return s


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENAMETOOLONG:
        return "name too long"
    return exc.strerror or type(exc).__name__


def real(path: str | os.PathLike[str], name: str | None = None) -> Path:
    """The real path of ``path`` (every link resolved; a missing tail kept as written). Refused for a
    NUL byte, a name too long for the OS, or a symbolic link loop, which ``realpath`` would leave
    half-resolved (and ``Path.resolve`` reports as RuntimeError). ``name``: how messages call it."""
    s = os.fspath(path)
    name = shown(s if name is None else name)
    if "\0" in s:
        raise Refused(f"{name}: contains a NUL byte")
    try:
        r = os.path.realpath(s)
    except OSError as exc:
        raise Refused(f"{name}: {_reason(exc)}") from None
    try:
        os.stat(r)
    except (FileNotFoundError, NotADirectoryError):
        pass  # not there (yet): the lexical real path is still the right one to compare
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENAMETOOLONG):
            raise Refused(f"{name}: {_reason(exc)}") from None
    return Path(r)


def within(path: Path, root: Path) -> bool:
    """Whether the real path ``path`` is ``root`` or below it (both already real)."""
    return path == root or path.is_relative_to(root)


def confine(path: str | os.PathLike[str], root: str | os.PathLike[str], name: str | None = None) -> Path:
    """The real path of ``path`` (a relative one taken against ``root``) when it lies inside the real
    path of ``root``; Refused otherwise. Use the returned path to open the file."""
    r = real(root)
    label = os.fspath(path) if name is None else name
    p = Path(path)
    p = real(p if p.is_absolute() else r / p, label)
    if not within(p, r):
        raise Refused(f"{shown(label)}: outside the directory {r} (its real path is {shown(p)})")
    return p


def outside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str | None:
    """None when ``path`` may be read under ``root``, else the one-line reason. This is the check a
    directory walk makes per file (ingest's walk lists links to files without following them)."""
    try:
        confine(path, root)
    except Refused as exc:
        return str(exc)
    return None


class Confiner:
    """:func:`outside` for the many files of one walk, at about one ``lstat`` per file: the root's and
    each directory's real path are resolved once, and a file that is not itself a link has the real
    path of its directory plus its name (a full :func:`outside` check for links and anything odd)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = real(root)
        self._dirs: dict[str, bool] = {}

    def outside(self, path: str | os.PathLike[str]) -> str | None:
        s = os.fspath(path)  # strings, not Path objects: this runs per file on every dashboard rerun
        head, name = os.path.split(s)
        if os.path.isabs(s) and name not in ("", ".", ".."):
            try:
                link = stat.S_ISLNK(os.lstat(s).st_mode)
            except (OSError, ValueError):
                link = True  # missing or odd: the full check below says why
            if not link:
                ok = self._dirs.get(head)
                if ok is None:
                    ok = self._dirs[head] = outside(head, self.root) is None
                if ok:
                    return None
        return outside(s, self.root)


def partition(files: Iterable[Path], root: str | os.PathLike[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(files whose real path lies in ``root``, [(file, reason)] for the others), order kept."""
    kept: list[Path] = []
    refused: list[tuple[Path, str]] = []
    check = Confiner(root)
    for f in files:
        why = check.outside(f)
        if why is None:
            kept.append(f)
        else:
            refused.append((f, why))
    return kept, refused


def user_path(root: str | os.PathLike[str], text: str) -> Path:
    """What a user typed (relative to ``root``, absolute, or ``~user/...``) as an existing real path
    inside ``root``. Refused, with one line, for anything else: a NUL byte, a name too long, a link
    loop, an unknown ``~user``, a path that leaves the root or does not exist."""
    text = (text or "").strip() or "."
    if "\0" in text:
        raise Refused(f"{shown(text)}: contains a NUL byte")
    cand = Path(text)
    if text.startswith("~"):
        try:
            cand = cand.expanduser()
        except (RuntimeError, KeyError, OSError):
            raise Refused(f"{shown(text)}: no such user (cannot expand {shown(text.split('/')[0])})") from None
    p = confine(cand, root, text)
    try:
        os.stat(p)
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            raise Refused(f"{shown(text)}: no such directory or file under {real(root)}") from None
        raise Refused(f"{shown(text)}: {_reason(exc)}") from None
    return p
