"""Exit status of every command, defined once. Part of the contract (docs/architecture.md §4): CI
scripts branch on it. Standard library only, so the CLI can import it at start-up without loading
polars (the shared table schemas in :mod:`specdec_diag.schema` need it)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    """a check failed: the CI gate, or a replayed trace diverged"""
    USAGE = 2
    """bad arguments or config, missing or unreadable input"""
    NO_DATA = 3
    """not enough speculative-decoding data to judge"""


__all__ = ["ExitCode"]
