"""Helpers shared by the ingest tests: the frame the scan hands to ``parse()`` and the list of committed
engine samples, kept in one place so every parser is tested on the same input shape and file set."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl

from specdec_diag.ingest._textparse import lines_from_texts

REPO = Path(__file__).resolve().parents[1]
SAMPLES = Path(__file__).parents[1] / "sample_logs" / "engines"


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` as a module (scripts/ is not a package), to test its functions."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def marker_lines(path: Path, markers: Iterable[str]) -> pl.DataFrame:
    """The frame the scan hands to parse(): 1-based line numbers, only lines with a marker."""
    df = lines_from_texts(path.read_text().splitlines())
    return df.filter(pl.col("text").str.contains_any(list(markers)))


def sample_files(engine: str) -> list[Path]:
    """The committed sample logs of one engine (sample_logs/engines/<engine>), without READMEs or dotfiles."""
    d = SAMPLES / engine
    return sorted(x for x in d.iterdir() if x.is_file() and x.suffix != ".md" and not x.name.startswith("."))


def parse_samples(source: Any, engine: str) -> dict[str, pl.DataFrame]:
    """File stem -> windows of every committed sample of ``engine``, each detected by ``source`` and
    parsed by its ``parse_file`` without a malformed line."""
    got = {}
    for f in sample_files(engine):
        assert source.detect(f.read_text()), f
        p = source.parse_file(f, str(f))
        assert p.malformed.height == 0, f
        got[f.stem] = p.windows
    return got


def same_tables(a: Any, b: Any) -> None:
    """Two ingest results hold equal tables (windows, steps, inputs, malformed, configs), in order."""
    from polars.testing import assert_frame_equal

    for t in ("windows", "steps", "inputs", "malformed", "configs"):
        try:
            assert_frame_equal(getattr(a, t), getattr(b, t))
        except AssertionError as exc:
            raise AssertionError(f"{t}: {exc}") from None
