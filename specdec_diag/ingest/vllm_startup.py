"""vLLM startup lines: the target model, the engine version and the process id of a run.

A vLLM server prints, before any metric line (docs/log-formats.md §1):

* ``(APIServer pid=1) INFO 08-21 07:50:10 [api_server.py:1805] vLLM API server version 0.10.1``
* ``(APIServer pid=1) INFO ... [utils.py:326] non-default args: {'model': 'Qwen/Qwen3-8B', ...,
  'speculative_config': {'method': 'eagle3', 'model': '...', 'num_speculative_tokens': 3}}``
* V1: ``(EngineCore_DP0 pid=143) INFO ... [core.py:93] Initializing a V1 LLM engine (v0.13.0) with config:
  model='neuralmagic/Qwen2.5-14B-Instruct-FP8-dynamic', speculative_config=None, ...``
* V0: ``INFO 10-17 ... llm_engine.py:237] Initializing an LLM engine (v0.6.3) with config: model='...', ...``
* older servers: ``args: Namespace(..., model='...', ...)``.

The speculative part of these lines (method, draft model, k) is read by
:func:`specdec_diag.ingest.vllm_blocks.parse_configs`; this module adds what identifies the run:
``model`` (the target; ``served_model_name`` too when given), ``version`` (the engine's own version
string, without a leading ``v``) and ``pid`` (from the ``(Name pid=N)`` prefix vLLM >= 0.10 prints).
Run segmentation (``analysis/runs.py``) reads them as startup facts.
"""

from __future__ import annotations

import re

import polars as pl

from specdec_diag.ingest._textparse import configs
from specdec_diag.schema import CONFIG_SCHEMA

ENGINE = "vllm"
#: literal markers of the startup lines (the scanner keeps only lines holding a marker)
STARTUP_MARKERS = ("vLLM API server version", "non-default args:", "LLM engine (v", "args: Namespace(")

_SERVER_VERSION = re.compile(r"vLLM API server version (\S+)")
_ENGINE_VERSION = re.compile(r"Initializing an? (?:V1 )?LLM engine \(v?([^)\s]+)\)")
_PID = re.compile(r"\(([A-Za-z][\w.\-]*) pid=(\d+)\)")
# 'model': '...' in a dict repr; model='...' in a config/Namespace repr; served_model_name=x (unquoted
# in the V1 config line) or 'served_model_name': ['x'] (a list in non-default args)
_MODEL = re.compile(r"""(?:['"]model['"]\s*:\s*|(?<![\w.])model=)['"]([^'"]+)['"]""")
_MODEL_TAG = re.compile(r"""['"]model_tag['"]\s*:\s*['"]([^'"]+)['"]""")  # `vllm serve MODEL` (>= 0.10)
_SERVED = re.compile(r"""(?:['"]served_model_name['"]\s*:\s*\[?|(?<![\w.])served_model_name=\[?)['"]?([^'",\])\s]+)""")


def _outside_speculative(text: str) -> str:
    """``text`` without its ``speculative_config`` section (whose ``model`` is the drafter)."""
    i = text.find("speculative_config")
    if i < 0:
        return text
    seg = text[i:]
    opens = [p for p in (seg.find("("), seg.find("{")) if p >= 0]
    nxt = seg.find(",")
    if not opens or (0 <= nxt < min(opens)):  # speculative_config=None, ...
        return text
    depth = 0
    for j in range(min(opens), len(seg)):
        if seg[j] in "({":
            depth += 1
        elif seg[j] in ")}":
            depth -= 1
            if depth == 0:
                return text[:i] + seg[j + 1:]
    return text[:i]


def startup_facts(text: str) -> list[tuple[str, str]]:
    """(key, value) facts of one startup line: model, served_model_name, version, pid."""
    out: list[tuple[str, str]] = []
    m = _SERVER_VERSION.search(text) or _ENGINE_VERSION.search(text)
    if m:
        out.append(("version", m.group(1).lstrip("v")))
    if "non-default args:" in text or "LLM engine (v" in text or "args: Namespace(" in text:
        rest = _outside_speculative(text)
        if (mm := _MODEL.search(rest) or _MODEL_TAG.search(rest)) is not None:
            out.append(("model", mm.group(1)))
        if (ms := _SERVED.search(rest)) is not None and ms.group(1) not in ("None", "null"):
            out.append(("served_model_name", ms.group(1)))
    if out and (mp := _PID.search(text)) is not None:
        out.append(("pid", mp.group(2)))
    return out


def parse_startup(lines: pl.DataFrame, source: str) -> pl.DataFrame:
    """Config rows (``CONFIG_SCHEMA``) of the startup lines among ``lines`` (columns line, text)."""
    if lines.height == 0:
        return pl.DataFrame(schema=CONFIG_SCHEMA)
    rx = "|".join(re.escape(m) for m in STARTUP_MARKERS)
    rows = [(ln, key, value) for ln, text in lines.filter(pl.col("text").str.contains(rx))
            .select("line", "text").iter_rows() for key, value in startup_facts(text[:200_000])]
    return configs(rows, source, ENGINE) if rows else pl.DataFrame(schema=CONFIG_SCHEMA)


__all__ = ["STARTUP_MARKERS", "startup_facts", "parse_startup"]
