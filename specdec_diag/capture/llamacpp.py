"""The llama.cpp build `make llamacpp` caches, and a bounded llama-server process around it.

Used by the real-engine tests and by ``scripts/make_llamacpp_samples.py``: start ``llama-server`` on
127.0.0.1 with a free port, wait for ``/health``, and always stop it (SIGTERM, then SIGKILL) so a
failed test never leaves a server behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from specdec_diag.capture.client import http

VERSION = "0.3.36"


def cache_dir() -> Path:
    return Path(os.environ.get("SPECDEC_CACHE") or Path.home() / ".cache" / "specdec-diag") / f"llamacpp-{VERSION}"


def build_problem() -> str | None:
    """Why the build cannot exist here (missing tools), or None when it can be built."""
    missing = [t for t in ("cmake", "cc", "c++") if shutil.which(t) is None]
    return f"cannot build llama.cpp here: missing {', '.join(missing)}" if missing else None


def pair_key(pair: Path | None = None) -> str:
    """Which bundled pair the build's GGUF files were converted from: the key
    ``scripts/build_llamacpp.sh`` writes into its stamp (sha256 over ``sha256sum`` lines of the pair's
    model and tokenizer files, sorted by path; 16 hex digits)."""
    import hashlib

    pair = pair or Path(__file__).resolve().parents[1] / "assets" / "pair"
    files = sorted((f.relative_to(pair).as_posix(), f) for d in ("target", "draft") for f in (pair / d).rglob("*")
                   if f.is_file() and f.suffix in (".safetensors", ".json"))
    lines = "".join(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {rel}\n" for rel, f in files)
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def built() -> bool:
    """A finished build whose GGUF files are of the bundled pair as it is now (a retrained pair is
    converted again by ``make llamacpp``)."""
    stamp = cache_dir() / "BUILD_OK"
    return stamp.is_file() and f"pair={pair_key()}" in stamp.read_text().splitlines()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """``with LlamaServer(args, log) as srv: srv.url`` - one llama-server, killed on exit.

    ``args`` are llama-server arguments after the binary (``-m``, ``-md``, ``--spec-*``); host, port
    and ``--metrics`` are added. stdout+stderr go to ``log`` (the server log a report reads)."""

    #: one thread: llama.cpp's workers spin-wait, and on a shared 2-core machine two of them ran 100x
    #: slower than one (measured: 2-3 tokens/s at -t 2 vs 200 at -t 1 for the bundled pair)
    def __init__(self, args: list[str], log: Path, *, threads: int = 1, startup_s: float = 90.0):
        self.args, self.log, self.threads, self.startup_s = list(args), Path(log), threads, startup_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LlamaServer:
        exe = cache_dir() / "bin" / "llama-server"
        cmd = [str(exe), "--host", "127.0.0.1", "--port", str(self.port), "--metrics", "-t", str(self.threads),
               "--no-webui", *self.args]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self) -> None:
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.proc.returncode}; log: {self.tail()}")
            try:
                status, _ = http(self.url + "/health", timeout=2.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"llama-server not healthy after {self.startup_s:.0f} s; log: {self.tail()}")

    def tail(self, n: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        if getattr(self, "_fh", None) is not None:
            self._fh.close()
            self._fh = None

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def pair_args(target: str = "target.gguf", draft: str | None = "draft.gguf", k: int = 4,
              spec_type: str = "draft-simple", extra: list[str] | None = None) -> list[str]:
    """Arguments serving the converted bundled pair (``pair/<target>`` and ``pair/<draft>``)."""
    pair = cache_dir() / "pair"
    args = ["-m", str(pair / target), "--spec-type", spec_type, "--spec-draft-n-max", str(k)]
    if draft is not None:
        args += ["-md", str(pair / draft)]
    return args + list(extra or [])
