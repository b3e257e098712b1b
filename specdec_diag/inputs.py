"""The one input layer: every command opens paths here (plain files, ``.gz``, directories), so every
failure reads the same, as one line ``path[:line]: message`` (:class:`InputError`).

Standard library only, so the torch side (replay) can use it without polars.

What it guarantees, whatever the bytes:

* gzip is read with a salvaging decompressor: every complete line before damage is delivered, then
  :class:`Damage` says where it broke (``gzip data truncated after line N`` / ``corrupt gzip data
  after line N``); a ``.gz`` that is not gzip at all is ``not gzip data``.
* text is UTF-8; a UTF-8 BOM is dropped, UTF-16/32 (BOM, or UTF-16 recognised by its NUL bytes) is
  transcoded; an encoding we cannot decode is ``encoding not supported (…)``; invalid UTF-8 is left
  for the reader to replace, so the valid lines around it survive.
* a file whose lines end in a bare CR (old Mac, some terminal captures) is read as lines.
* a line longer than :data:`MAX_LINE_BYTES` (1 MiB) is never held in memory: it becomes an
  :class:`Overlong` piece (its length, and whether it contained a marker), read in bounded blocks.

Library API: :func:`open_text_lines` (lines of one file as str) and :class:`InputFile` (the byte
pieces the ingest scan reads). See docs/ingest.md "Reading".
"""

from __future__ import annotations

import codecs
import errno
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: lines longer than this are cut: reported (a malformed row when they carry a marker), never parsed.
MAX_LINE_BYTES = 1 << 20
SAMPLE_BYTES = 64 * 1024
_GZ_BLOCK = 64 * 1024   # compressed bytes fed to zlib per call (damage loses at most this much output)
_OVERLAP = 4096         # bytes kept between blocks when searching an overlong line for a marker

#: BOMs we transcode, longest first (UTF-32 LE starts like UTF-16 LE).
_BOMS: tuple[tuple[bytes, str | None, str], ...] = (
    (b"\xff\xfe\x00\x00", "utf-32-le", "UTF-32 LE"),
    (b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32 BE"),
    (b"\xef\xbb\xbf", "utf-8", "UTF-8 BOM"),
    (b"\xff\xfe", "utf-16-le", "UTF-16 LE"),
    (b"\xfe\xff", "utf-16-be", "UTF-16 BE"),
    (b"+/v", None, "UTF-7"),
    (b"\xdd\x73\x66\x73", None, "UTF-EBCDIC"),
    (b"\x0e\xfe\xff", None, "SCSU"),
    (b"\xfb\xee\x28", None, "BOCU-1"),
)


class InputError(Exception):
    """An input that cannot be read (at all, or from ``line`` on). ``str()`` is the one line users
    see: ``path: message`` or ``path:line: message``."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        super().__init__(message)
        self.path, self.message, self.line = str(path), message, line

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


class Damage(Exception):
    """A compressed stream broke after delivering its good bytes. ``kind``: ``truncated`` or
    ``corrupt``; ``fragment``: the incomplete line it cut (dropped); ``marked``: whether that
    fragment contained a marker (so a lost record is counted)."""

    def __init__(self, kind: str, fragment: bytes = b"", marked: bool = False):
        super().__init__(kind)
        self.kind, self.fragment, self.marked = kind, fragment, marked

    def message(self, lines: int) -> str:
        """The wording every command uses, given the number of complete lines kept."""
        if self.kind == "truncated":
            return f"gzip data truncated after line {lines}"
        return f"corrupt gzip data after line {lines}"


@dataclass(frozen=True)
class Overlong:
    """A line longer than :data:`MAX_LINE_BYTES`, skipped without being held: its length in bytes
    (without the newline) and whether a marker occurred in it."""

    nbytes: int
    marked: bool


def reason(exc: BaseException) -> str:
    """The message part of an OS error, lower case, without the path."""
    if isinstance(exc, InputError):
        return exc.message
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "no such file or directory"
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def is_gzip_name(path: str | Path) -> bool:
    return str(path).lower().endswith(".gz")


# ---------------------------------------------------------------------------------------------
# byte streams
# ---------------------------------------------------------------------------------------------


class GzipSalvage:
    """Decompress a gzip file (several members allowed) and deliver every byte that decompresses;
    the read after the last good byte raises :class:`Damage`. ``gzip.GzipFile`` instead loses
    whatever its failing ``read`` had decompressed (up to a whole 8 MB piece)."""

    def __init__(self, raw):
        self.raw = raw
        self._d = zlib.decompressobj(31)
        self._pending: Damage | None = None
        self._done = False
        self._left = b""  # decompressed beyond what the last read asked for

    def close(self) -> None:
        self.raw.close()

    def read(self, n: int) -> bytes:
        out: list[bytes] = [self._left] if self._left else []
        size = len(self._left)
        while size < n and not self._done and self._pending is None:
            data = self._step()
            out.append(data)
            size += len(data)
        if size == 0 and self._pending is not None:
            damage, self._pending = self._pending, None
            self._done = True
            raise damage
        data = b"".join(out)
        self._left = data[n:] if size > n else b""
        return data[:n] if size > n else data

    def _step(self) -> bytes:
        block = self.raw.read(_GZ_BLOCK)
        if not block:
            if self._d.eof:
                self._done = True
                return b""
            self._pending = Damage("truncated")
            try:
                return self._d.flush()
            except zlib.error:
                return b""
        before = self._d.copy()
        try:
            data = self._d.decompress(block)
        except zlib.error:
            self._d = before
            data = self._salvage(block)
            self._pending = Damage("corrupt")
            return data
        if self._d.eof:
            data += self._next_member(self._d.unused_data)
        return data

    def _salvage(self, block: bytes) -> bytes:
        """Re-feed a block that failed in small steps, keeping what decompresses before the error."""
        good: list[bytes] = []
        for i in range(0, len(block), 256):
            try:
                good.append(self._d.decompress(block[i : i + 256]))
            except zlib.error:
                break
        return b"".join(good)

    def _next_member(self, rest: bytes) -> bytes:
        """After one member ends: another member, zero padding, or trailing garbage (corrupt)."""
        more = self.raw.read(_GZ_BLOCK) if len(rest) < 2 else b""
        rest += more
        if not rest:
            return b""
        if rest[:2] == b"\x1f\x8b":
            self._d = zlib.decompressobj(31)
            try:
                data = self._d.decompress(rest)
            except zlib.error:
                self._pending = Damage("corrupt")
                return b""
            return data + (self._next_member(self._d.unused_data) if self._d.eof else b"")
        if not rest.strip(b"\0"):
            rest = self.raw.read(_GZ_BLOCK)
            while rest and not rest.strip(b"\0"):
                rest = self.raw.read(_GZ_BLOCK)
            if not rest:
                self._done = True
                return b""
        self._pending = Damage("corrupt")
        return b""


class _Recode:
    """A readable that turns another encoding into UTF-8 and/or bare CRs into newlines."""

    def __init__(self, inner, encoding: str | None, cr: bool):
        self.inner = inner
        self._dec = codecs.getincrementaldecoder(encoding)("replace") if encoding else None
        self._cr = cr
        self._held_cr = False

    def close(self) -> None:
        self.inner.close()

    def read(self, n: int) -> bytes:
        while True:
            raw = self.inner.read(n)
            data = raw
            if self._dec is not None:
                data = self._dec.decode(raw, final=not raw).encode("utf-8", "replace")
            if self._cr:
                data = self._crlf(data, final=not raw)
            if data or not raw:
                return data

    def _crlf(self, data: bytes, final: bool) -> bytes:
        if self._held_cr:
            data = b"\r" + data
            self._held_cr = False
        if data.endswith(b"\r") and not final:
            data, self._held_cr = data[:-1], True
        return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _sniff_encoding(head: bytes) -> tuple[str | None, int, str]:
    """``(codec to transcode from or None, BOM bytes to skip, name)`` for a file's first bytes.
    Raises ValueError naming an encoding we recognise but cannot decode."""
    for bom, codec, name in _BOMS:
        if head.startswith(bom) and _plausible(head[len(bom) :], codec):
            if codec is None:
                raise ValueError(f"encoding not supported ({name})")
            if codec == "utf-8":
                return None, len(bom), name
            return codec, len(bom), name
    probe = head[:4096]
    if len(probe) >= 16:  # UTF-16 without a BOM: ASCII text has a NUL in every other byte
        even, odd = probe[0::2].count(0), probe[1::2].count(0)
        half = len(probe) // 2
        if odd > 0.4 * half and even < 0.05 * half:
            return "utf-16-le", 0, "UTF-16 LE (no BOM)"
        if even > 0.4 * half and odd < 0.05 * half:
            return "utf-16-be", 0, "UTF-16 BE (no BOM)"
    return None, 0, "UTF-8"


def _plausible(body: bytes, codec: str | None) -> bool:
    """A UTF-16/32 BOM is believed only when the text after it looks like that encoding: log text is
    mostly ASCII, so at least a tenth of the high bytes are NUL (a UTF-8 log that happens to start
    with the bytes FF FE stays UTF-8)."""
    if codec is None or codec == "utf-8" or not body:
        return True
    probe = body[:4096]
    if codec.startswith("utf-32"):
        return probe.count(0) > len(probe) // 4
    high = probe[1::2] if codec.endswith("le") else probe[0::2]
    return high.count(0) >= max(1, len(high) // 10)


def _bare_cr(text: bytes) -> bool:
    """True when the sample's lines end in bare CRs rather than newlines."""
    cr = text.count(b"\r") - text.count(b"\r\n")
    return cr > 0 and cr > text.count(b"\n")


class InputFile:
    """One input file as UTF-8 byte pieces cut on line boundaries.

    ``sniff()`` reads the head once (encoding, line endings, the decoded sample); ``pieces()`` then
    streams the file. Opening problems raise :class:`InputError`; gzip damage raises
    :class:`Damage` after every complete line before it was delivered."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.gz = is_gzip_name(self.path)
        self.encoding: str | None = None   # codec transcoded from; None = UTF-8 as stored
        self.encoding_name = "UTF-8"
        self.skip = 0                      # BOM bytes at the start
        self.cr = False                    # bare-CR line endings
        self.sample_bytes = b""

    # -- opening -------------------------------------------------------------------------------

    def _open_raw(self):
        try:
            if self.path.is_dir():
                raise InputError(self.path, "is a directory")
            raw = open(self.path, "rb", buffering=0 if not self.gz else -1)  # noqa: SIM115 - closed by callers
        except OSError as exc:
            raise InputError(self.path, reason(exc)) from None
        if not self.gz:
            return raw
        magic = raw.read(2)
        raw.seek(0)
        if magic and magic != b"\x1f\x8b":
            raw.close()
            raise InputError(self.path, "not gzip data")
        return GzipSalvage(raw) if magic else raw

    def sniff(self, n: int = SAMPLE_BYTES, head: bytes | None = None) -> str:
        """Decide encoding and line endings from the head; return the head as text (what source
        detectors and year anchors look at). ``head``: the stored bytes when the caller already read
        them (plain files only). Damage inside the head is left for :meth:`pieces`."""
        if head is None:
            fh = self._open_raw()
            try:
                head = _read_upto(fh, n)
            finally:
                fh.close()
        else:
            head = head[:n]
        try:
            self.encoding, self.skip, self.encoding_name = _sniff_encoding(head)
        except ValueError as exc:
            raise InputError(self.path, str(exc)) from None
        body = self.decode(head, sniffing=True)
        self.sample_bytes = body
        return body.decode("utf-8", errors="replace")

    def decode(self, raw: bytes, sniffing: bool = False) -> bytes:
        """A whole (small, plain) file's stored bytes as the UTF-8 the pieces would deliver."""
        body = raw[self.skip :]
        if self.encoding:
            body = codecs.decode(body, self.encoding, "replace").encode("utf-8", "replace")
        if sniffing:
            self.cr = _bare_cr(body)
        if self.cr:
            body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return body

    def _open_text(self):
        fh = self._open_raw()
        if self.skip:
            fh.read(self.skip)
        if self.encoding or self.cr:
            return _Recode(fh, self.encoding, self.cr), False
        return fh, not self.gz

    # -- streaming -----------------------------------------------------------------------------

    def pieces(self, chunk_bytes: int, has_marker: Callable[[bytes], bool] | None = None,
               max_line: int = MAX_LINE_BYTES, views: bool = False) -> Iterator[bytes | memoryview | Overlong]:
        """UTF-8 bytes in pieces ending on a newline (the last may lack it), with an
        :class:`Overlong` in place of each line longer than ``max_line`` that spans pieces. A plain
        file is re-read from its last newline with a seek rather than copying the remainder; with
        ``views`` its pieces are views of the block read, not copies (the copy was a third of the
        read cost of the marker search). A file that shrinks while read ends early; one that grows
        is read as far as it reaches."""
        fh, seekable = self._open_text()
        marked = has_marker or (lambda _b: False)
        try:
            pos, carry = self.skip, b""
            while True:
                if seekable and not carry:
                    fh.seek(pos)
                try:
                    block = fh.read(chunk_bytes)
                except Damage as dmg:
                    dmg.fragment, dmg.marked = carry, bool(carry) and marked(carry)
                    raise
                if not block:
                    if carry:
                        yield carry
                    return
                buf = carry + block if carry else block
                carry = b""
                cut = buf.rfind(b"\n")
                if cut < 0:
                    if len(buf) <= max_line:
                        carry = buf
                        continue
                    over, rest = _skip_line(fh, buf, marked, chunk_bytes)
                    yield over
                    pos += over.nbytes + 1
                    carry = b"" if seekable else rest
                    continue
                piece = buf if cut == len(buf) - 1 else (memoryview(buf) if views and seekable else buf)[: cut + 1]
                if seekable:
                    pos += len(piece)
                else:
                    carry = buf[cut + 1 :]
                del buf
                yield piece
        finally:
            fh.close()


def _read_upto(fh, n: int) -> bytes:
    out: list[bytes] = []
    size = 0
    while size < n:
        try:
            b = fh.read(n - size)
        except Damage:
            break
        if not b:
            break
        out.append(b)
        size += len(b)
    return b"".join(out)


def _skip_line(fh, buf: bytes, marked: Callable[[bytes], bool], chunk: int) -> tuple[Overlong, bytes]:
    """Read past the rest of an overlong line in bounded blocks; return it as :class:`Overlong` and
    the bytes after its newline. Damage inside it is raised as such (nothing of it is kept)."""
    found = marked(buf)
    total, tail = len(buf), buf[-_OVERLAP:]
    del buf
    while True:
        block = fh.read(chunk)
        if not block:
            return Overlong(total, found), b""
        cut = block.find(b"\n")
        part = block if cut < 0 else block[:cut]
        found = found or marked(tail + part)
        total += len(part)
        if cut >= 0:
            return Overlong(total, found), block[cut + 1 :]
        tail = block[-_OVERLAP:]


# ---------------------------------------------------------------------------------------------
# lines for other commands
# ---------------------------------------------------------------------------------------------


def open_text_lines(path: str | Path, *, long_lines: str = "error",
                    chunk_bytes: int = 1 << 20) -> Iterator[str]:
    """The lines of one file (plain or ``.gz``, any supported encoding, any line ending) as str
    without their newline (nor a CR before it), undecodable bytes replaced. Raises :class:`InputError` (one line, with the
    line number where known) when the path cannot be read, when gzip data breaks (after yielding
    every complete line before it), or at a line over 1 MiB (``long_lines="skip"``: yield "")."""
    f = InputFile(path)
    f.sniff()
    n = 0
    try:
        for piece in f.pieces(chunk_bytes):
            if isinstance(piece, Overlong):
                n += 1
                if long_lines != "skip":
                    raise InputError(path, f"line longer than 1 MiB ({piece.nbytes} bytes)", n)
                yield ""
                continue
            text = piece.decode("utf-8", errors="replace")
            parts = text.split("\n")
            if text.endswith("\n"):
                parts.pop()
            for line in parts:
                n += 1
                yield line[:-1] if line.endswith("\r") else line
    except Damage as dmg:
        raise InputError(path, dmg.message(n)) from None
    except OSError as exc:
        raise InputError(path, reason(exc)) from None


def check_readable(path: str | Path) -> None:
    """Raise :class:`InputError` unless ``path`` is a readable regular file (or ``.gz`` of one)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise InputError(p, reason(exc)) from None
    if not os.path.isfile(p):
        raise InputError(p, "is a directory" if p.is_dir() else f"not a regular file (mode {st.st_mode:o})")
    InputFile(p).sniff(16)
