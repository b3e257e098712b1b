"""Compiled byte-level kernels for the scan's hot loops, through numba when it is installed.

Why: a few loops over raw bytes (numbering lines between marker hits, splitting the fields of the
dominant metric lines) cost microseconds per line in polars expressions or Python and tens of
nanoseconds compiled. numba compiles them from plain Python functions, with no C toolchain at
install time; the compiled code is cached on disk (``cache=True``), so a process pays the compile
once per machine and ~0.3 s to import numba, which is why callers use a kernel only for inputs big
enough to repay that (see each caller's threshold) and keep an equivalent numpy/polars path.

``SPECDEC_JIT=off`` switches every kernel off (tests compare both paths); without numba (a platform
without its wheel) :func:`available` is False and the other path runs.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from typing import Any

#: environment switch: ``off`` (or ``0``/``no``) disables the compiled kernels
ENV = "SPECDEC_JIT"
_lock = threading.Lock()


def available() -> bool:
    """numba is installed and the kernels are not switched off (checked without importing numba)."""
    if os.environ.get(ENV, "").lower() in ("off", "0", "no"):
        return False
    return importlib.util.find_spec("numba") is not None


def kernel(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled in nopython mode on its first call (numba imported then, not at import time:
    small scans never pay for it). Call only when :func:`available` is True."""
    compiled: list[Callable[..., Any]] = []

    def call(*args: Any) -> Any:
        if not compiled:
            with _lock:
                if not compiled:
                    compiled.append(compile_now(fn))
        return compiled[0](*args)

    call.__name__ = fn.__name__
    call.__doc__ = fn.__doc__
    call.py_func = fn  # the plain Python function: tests run it directly against the compiled one
    return call


def compile_now(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled by numba in nopython mode (imports numba), its machine code cached on disk next
    to its module; without a place for the cache (a function with no file), compiled uncached."""
    import numba

    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:
        return numba.njit(nogil=True)(fn)
