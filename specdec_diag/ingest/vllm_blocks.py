"""vLLM's rare lines, parsed in Python: the startup lines naming the speculative configuration, and
the multi-line summaries of ``vllm bench serve`` and ``examples/offline_inference/spec_decode.py``
(docs/log-formats.md §1-2). The per-interval metric lines are in :mod:`specdec_diag.ingest.vllm`.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from specdec_diag.ingest._textparse import configs, counts_problem, malformed_rows, value_problem
from specdec_diag.schema import CONFIG_SCHEMA, MALFORMED_SCHEMA, WINDOW_SCHEMA

ENGINE = "vllm"
CONFIG_MARKERS = ("Configuring SpecDecodeWorker", "speculative_config", "acceptance_method",
                  "vLLM API server version", "LLM engine (v")
BLOCK_MARKERS = (
    # vllm bench serve summary
    "Serving Benchmark Result", "Speculative Decoding-", "Acceptance rate (%):", "Acceptance length:",
    "Drafts:", "Draft tokens:", "Accepted tokens:", "Per-position acceptance (%):", "Position ",
    "Output token throughput (tok/s):", "Mean TTFT (ms):", "Mean TPOT (ms):",
    # examples/offline_inference/spec_decode.py
    "total_num_output_tokens:", "num_drafts:", "num_draft_tokens:", "num_accepted_tokens:",
    "mean acceptance length:", "acceptance at token ",
)


# ---------------------------------------------------------------------------------------------
# startup configuration (rare lines: Python)
# ---------------------------------------------------------------------------------------------

_CLASS = re.compile(r"Configuring SpecDecodeWorker with (proposer|sampler)=<class '([\w.]+)'>")
_SPEC_KV = re.compile(
    r"['\"]?(method|model|draft_model|num_speculative_tokens|num_spec_tokens|acceptance_method|"
    r"spec_decoding_acceptance_method|draft_tensor_parallel_size|prompt_lookup_max|prompt_lookup_min)['\"]?"
    r"\s*[:=]\s*['\"]?([^'\",)}\s]+)"
)
_SAMPLER_METHOD = {"TypicalAcceptanceSampler": "typical_acceptance_sampler", "RejectionSampler": "rejection_sampler"}
_KEY_ALIASES = {"num_spec_tokens": "num_speculative_tokens", "spec_decoding_acceptance_method": "acceptance_method"}


def parse_configs(df: pl.DataFrame, source: str) -> pl.DataFrame:
    """Facts about the speculative setup. Keys (stable, used by the rules): proposer, sampler,
    acceptance_method, method, draft_model, num_speculative_tokens, prompt_lookup_min/max (the
    engine version, model and pid come from :mod:`specdec_diag.ingest.vllm_startup`)."""
    rows: list[tuple[int, str, str]] = []
    for line, text in df.select("line", "text").iter_rows():
        for kind, cls in _CLASS.findall(text):
            short = cls.rsplit(".", 1)[-1]
            rows.append((line, kind, short))
            if kind == "sampler" and short in _SAMPLER_METHOD:
                rows.append((line, "acceptance_method", _SAMPLER_METHOD[short]))
        spec = _speculative_part(text)
        if spec is None:
            continue
        seen: set[str] = set()
        for key, value in _SPEC_KV.findall(spec):
            key = _KEY_ALIASES.get(key, key)
            if key == "model":
                key = "draft_model"
            if key in seen or value in ("None", "null"):
                continue
            seen.add(key)
            rows.append((line, key, value))
    return configs(rows, source, ENGINE) if rows else pl.DataFrame(schema=CONFIG_SCHEMA)


def _speculative_part(text: str) -> str | None:
    """The speculative section of a config line (``speculative_config=SpeculativeConfig(...)``, a
    ``'speculative_config': {...}`` dict, or a bare ``--spec-decoding-acceptance-method`` value)."""
    i = text.find("speculative_config")
    if i < 0:
        return text if "acceptance_method" in text else None
    seg = text[i:]
    opens = [p for p in (seg.find("("), seg.find("{")) if p >= 0]
    if not opens:
        return None
    start = min(opens)
    depth = 0
    for j in range(start, len(seg)):
        ch = seg[j]
        if ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
            if depth == 0:
                return seg[start : j + 1]
    return seg[start:]


# ---------------------------------------------------------------------------------------------
# multi-line summaries: `vllm bench serve` and the offline spec_decode.py example (rare: Python)
# ---------------------------------------------------------------------------------------------

_KV_LINE = re.compile(r"^\s*(?P<key>[A-Za-z][^:]*?)\s*:\s*(?P<val>-?\d+(?:\.\d+)?|nan|inf)?\s*$")
_POS_LINE = re.compile(r"^\s*Position (\d+)\s*:\s*(\d+(?:\.\d+)?|nan)\s*$")
_ACC_AT = re.compile(r"^\s*acceptance at token (\d+)\s*:\s*(\d+(?:\.\d+)?|nan)\s*$")
_BENCH_SPEC_KEYS = {"Drafts", "Draft tokens", "Accepted tokens", "Acceptance length", "Acceptance rate (%)"}
_BLOCK_GAP = 12  # marker lines further apart than this belong to different summaries


def parse_blocks(df: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Summary blocks: marker lines at most ``_BLOCK_GAP`` apart form one block, one ``run`` row each."""
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str, str]] = []
    block: list[tuple[int, str]] = []
    for line, text in df.select("line", "text").iter_rows():
        if block and line - block[-1][0] > _BLOCK_GAP:
            _close_block(block, source, rows, bad)
            block = []
        block.append((line, text))
    if block:
        _close_block(block, source, rows, bad)
    w = pl.DataFrame(rows) if rows else pl.DataFrame(schema=WINDOW_SCHEMA)
    return w, malformed_rows(bad, source) if bad else pl.DataFrame(schema=MALFORMED_SCHEMA)


def _close_block(block: list[tuple[int, str]], source: str, rows: list[dict[str, Any]],
                 bad: list[tuple[int, str, str]]) -> None:
    vals: dict[str, float] = {}
    pos: dict[int, float] = {}
    at: dict[str, tuple[int, str]] = {}  # where each value was printed (a bad one is malformed there)
    first_spec: tuple[int, str] | None = None
    kind = None
    for line, text in block:
        if "Speculative Decoding-" in text:
            kind, first_spec = "bench", (line, text)
            continue
        if "total_num_output_tokens:" in text or ("num_drafts:" in text and kind is None):
            kind = kind or "offline"
            first_spec = first_spec or (line, text)
        m = _POS_LINE.match(text) or _ACC_AT.match(text)
        if m:
            try:
                pos[int(m[1])] = float(m[2])
                at[f"position {int(m[1])}"] = (line, text)
            except ValueError:
                pass
            continue
        m = _KV_LINE.match(text)
        if m and m["val"] is not None:
            vals[m["key"].strip()] = float(m["val"])
            at[m["key"].strip()] = (line, text)
            if first_spec is None and m["key"].strip() in ("Drafts", "Acceptance rate (%)"):
                first_spec = (line, text)
    if kind is None:
        if "Drafts" in vals or "Acceptance length" in vals:
            kind = "bench"  # the header line was cut off
        else:
            return  # generic words ("Position ", "Drafts:") outside a summary: not ours
    if kind == "bench":
        drafts, dtok, atok = vals.get("Drafts"), vals.get("Draft tokens"), vals.get("Accepted tokens")
        mal = vals.get("Acceptance length")
        scale = 100.0
        fmt = "vllm-bench-serve"
    else:
        drafts, dtok, atok = vals.get("num_drafts"), vals.get("num_draft_tokens"), vals.get("num_accepted_tokens")
        mal = vals.get("mean acceptance length")
        scale = 1.0
        fmt = "vllm-offline-spec-decode"
    line0, text0 = first_spec or block[0]
    if kind == "bench" and not pos and not vals.keys() & _BENCH_SPEC_KEYS:
        return  # the section header and nothing of it: the paste was cut there (vllm #51742), nothing to read
    if drafts is None or dtok is None or atok is None:
        bad.append((line0, f"{fmt} summary lacks drafts / draft tokens / accepted tokens", text0))
        return
    problem = _block_problem(vals, pos, at)
    if problem is not None:
        bad.append(problem)
        return
    if counts_problem(atok, dtok):
        bad.append((line0, f"{fmt} summary: accepted tokens exceed draft tokens", text0))
        return
    pp = [round(pos[i] / scale, 8) for i in sorted(pos)] if pos and sorted(pos) == list(range(len(pos))) else None
    k = len(pp) if pp else (round(dtok / drafts) if drafts else None)
    rows.append({
        "source": source, "line": line0, "engine": ENGINE, "format": fmt, "window": "run",
        "k": k, "num_drafts": int(drafts), "draft_tokens": int(dtok), "accepted_tokens": int(atok),
        "emitted_tokens": int(atok + drafts),
        "acceptance_rate": atok / dtok if dtok else None,
        "mean_acceptance_length": mal if mal is not None else (1 + atok / drafts if drafts else None),
        "per_position_acceptance": pp,
        "gen_tps": vals.get("Output token throughput (tok/s)"),
        "ttft_ms": vals.get("Mean TTFT (ms)"), "tpot_ms": vals.get("Mean TPOT (ms)"),
        "definition_note": ("bench serve numbers are deltas of the server's /metrics counters over the run "
                            "(include any other traffic on the server)") if kind == "bench" else None,
    })


def _block_problem(vals: dict[str, float], pos: dict[int, float],
                   at: dict[str, tuple[int, str]]) -> tuple[int, str, str] | None:
    """The first unusable value of a summary block (nan/inf/negative, a count not whole or beyond
    int64), as a malformed row at the line that printed it; a nan position never becomes 0."""
    for key, v in vals.items():
        why = value_problem(v, key, count=key in _COUNT_KEYS)
        if why:
            return at[key][0], why, at[key][1]
    for j, v in pos.items():
        why = value_problem(v, f"position {j}")
        if why:
            line, text = at[f"position {j}"]
            return line, why, text
    return None


_COUNT_KEYS = {"Drafts", "Draft tokens", "Accepted tokens", "num_drafts", "num_draft_tokens", "num_accepted_tokens"}
