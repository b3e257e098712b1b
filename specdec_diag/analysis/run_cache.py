"""The per-run result cache: each run's summary and rule findings on disk, keyed by a digest of the run's
own rows, so a fleet whose files mostly did not change is judged again only where they did.

A log directory grows: new rotated files, one replica restarted. The whole-report cache (keyed by every
input's fingerprint) misses as soon as one file changes, and judging 500 runs again costs tens of
seconds. The key here is one run's content: its window rows, trace steps, configuration rows, malformed
rows and trace headers (hashed column-wise by polars), the facts measured against other runs that its
rules read, the thresholds, and a hash of the analysis code and the polars version (an edited rule never
serves stale findings). An entry that does not read back as the expected shape is ignored (recomputed),
and the locations of its findings must name the run's own files.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.analysis.rules.base import SEVERITIES, Finding
from specdec_diag.analysis.rules.registry import RULES
from specdec_diag.analysis.rules.thresholds import Thresholds
from specdec_diag.ingest.base import IngestResult
from specdec_diag.schema import json_default, write_atomic

#: the cache's folder under the ingest cache directory
DIRNAME = "runs"
_FINDING_FIELDS = ("code", "severity", "title", "evidence", "recommendation", "locations", "score")


@functools.lru_cache(maxsize=1)
def analysis_version() -> str:
    """Size and mtime of every analysis source file, and the polars version (row hashes and float
    kernels): an entry is reused only while the code that produced it is unchanged."""
    import specdec_diag.analysis as analysis

    h = hashlib.blake2b(digest_size=8)
    h.update(pl.__version__.encode())
    for f in sorted(Path(analysis.__file__).parent.rglob("*.py")):
        st = f.stat()
        h.update(f"{f.relative_to(Path(analysis.__file__).parent)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def _frame_digest(df: pl.DataFrame) -> str:
    """Order-sensitive digest of every value of ``df`` (one polars pass; no rows -> its columns only)."""
    if df.height == 0:
        return "0:" + ",".join(df.columns)
    value = df.select(pl.struct(pl.all()).hash(7).implode().hash(11)).item()
    return f"{df.height}:{value}"


def run_key(run_id: str, sub: IngestResult, thresholds: Thresholds, facts: dict[str, Any] | None) -> str:
    """The cache key of one run: its id, its rows (every ingest table), the facts from other runs its
    rules read, the thresholds and the analysis version."""
    h = hashlib.blake2b(digest_size=16)
    parts = [analysis_version(), run_id, json.dumps(asdict(thresholds), sort_keys=True, default=str),
             json.dumps(facts or {}, sort_keys=True, default=json_default),
             json.dumps(sub.headers, sort_keys=True, default=json_default)]
    parts += [_frame_digest(df) for df in (sub.windows, sub.steps, sub.configs, sub.malformed, sub.inputs)]
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


def run_sources(sub: IngestResult) -> set[str]:
    """Every file a run's rows come from: the only paths its findings may name."""
    out: set[str] = set(sub.inputs["path"].to_list()) if sub.inputs.height else set()
    for df in (sub.windows, sub.steps, sub.configs, sub.malformed):
        if df.height and "source" in df.columns:
            out.update(str(s) for s in df["source"].unique().to_list() if s is not None)
    return out


def entry_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / DIRNAME / f"{key}.json"


def load(cache_dir: Path | None, key: str, sources: set[str]) -> tuple[dict[str, Any], list[Finding]] | None:
    """The cached (summary, findings) of a run, or None when absent or not of the expected shape."""
    if cache_dir is None:
        return None
    try:
        data = json.loads(entry_path(cache_dir, key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("summary"), dict) or not isinstance(
            data.get("findings"), list):
        return None
    found = []
    for d in data["findings"]:
        f = _finding(d, sources)
        if f is None:
            return None
        found.append(f)
    return data["summary"], found


def _finding(d: Any, sources: set[str]) -> Finding | None:
    """A cached finding back as a :class:`Finding`, if every field has the right type and its
    locations name the run's files."""
    if not isinstance(d, dict) or set(d) != set(_FINDING_FIELDS) or d["code"] not in RULES:
        return None
    if d["severity"] not in SEVERITIES or not isinstance(d["title"], str) or not isinstance(d["evidence"], dict):
        return None
    if not isinstance(d["recommendation"], str) or not isinstance(d["score"], (int, float)):
        return None
    locs = d["locations"]
    if not isinstance(locs, list) or not all(isinstance(loc, dict) and loc.get("path") in sources for loc in locs):
        return None
    return Finding(d["code"], d["severity"], d["title"], d["evidence"], d["recommendation"], locs, d["score"])


def store(cache_dir: Path | None, key: str, summary: dict[str, Any], found: list[Finding]) -> None:
    """Write one run's entry atomically; a read-only cache directory only costs the speed-up."""
    if cache_dir is None:
        return
    findings = [{**f.to_dict(), "score": float(f.score)} for f in found]
    target = entry_path(cache_dir, key)
    write_atomic(target, json.dumps({"summary": summary, "findings": findings}, default=json_default))


__all__ = ["DIRNAME", "analysis_version", "run_key", "run_sources", "load", "store", "entry_path"]
