"""Launch commands as people paste them: ``python -m sglang.launch_server ... --disable-cuda-graph``,
``vllm serve M --speculative-config '{...}' --enforce-eager``, ``llama-server -m M -md D --draft-max 16``,
``text-generation-launcher --speculate 3``. Each command becomes configuration facts under the keys the
engines' own startup dumps use (SGLang ``ServerArgs`` names, vLLM ``speculative_config`` fields,
llama.cpp ``draft_max``), so the rules read a pasted command and a logged startup line alike:
``disable_cuda_graph=True`` / ``enforce_eager=True`` are NO_CUDA_GRAPH evidence, ``method``,
``num_speculative_tokens`` / ``speculative_num_steps`` / ``draft_max`` say speculation was configured
and its k.

Only flags are read, never guessed: an unknown flag is skipped, a flag without its value (a command cut
mid-way) gives nothing. Abbreviated flags (argparse accepts any unique prefix: ``--speculative-algo``)
are expanded against the engine's known flags. A command wrapped over several lines is joined by
:mod:`specdec_diag.ingest.paste` before it gets here; in a plain log each marker line is read alone and
the engine comes from the command or, for a continuation line, from flags only one engine has.
"""

from __future__ import annotations

import json
import re
import shlex

import polars as pl

from specdec_diag.ingest._textparse import configs, norm_lines
from specdec_diag.ingest.base import NO_OPTIONS, Parsed, ParseOptions, Source
from specdec_diag.schema import CONFIG_SCHEMA

FAMILY = "launch"

#: plain substrings of a launch command line (the scan keeps lines containing any of them)
MARKERS: tuple[str, ...] = (
    "sglang.launch_server", "vllm serve", "vllm.entrypoints", "llama-server", "llama-speculative",
    "text-generation-launcher", "--disable-cuda-graph", "--enforce-eager", "--enforce_eager",
    "--speculative", "--num-speculative-tokens", "--num_speculative_tokens", "--draft-max", "--model-draft",
    "--spec-draft", "--speculate ", "vllm/vllm-openai", "lmsysorg/sglang", "llama.cpp:server",
    "text-generation-inference:",
)

#: the program that names the engine, as it appears in a command
_PROGRAMS: tuple[tuple[str, str], ...] = (
    (r"sglang\.launch_server|\bsglang\s+serve\b", "sglang"),
    (r"\bvllm\s+serve\b|vllm\.entrypoints\.(?:openai\.api_server|api_server)|vllm/vllm-openai\S*\s+--", "vllm"),
    (r"llama-(?:server|speculative(?:-simple)?|cli)\b|llama\.cpp:server\S*\s+-", "llama.cpp"),
    (r"text-generation-launcher|text-generation-inference:\S*\s+--", "tgi"),
    (r"trtllm-serve", "trtllm"),
)

#: per engine: flag (dashes, no leading --) -> config key; ``None`` value = boolean flag
_SGLANG = {
    "model-path": "model_path", "model": "model_path", "speculative-algorithm": "speculative_algorithm",
    "speculative-draft-model-path": "speculative_draft_model_path",
    "speculative-num-steps": "speculative_num_steps", "speculative-eagle-topk": "speculative_eagle_topk",
    "speculative-num-draft-tokens": "speculative_num_draft_tokens", "cuda-graph-max-bs": "cuda_graph_max_bs",
    "tp-size": "tp_size", "tp": "tp_size", "tensor-parallel-size": "tp_size", "dp-size": "dp_size", "attention-backend": "attention_backend",
    "decode-log-interval": "decode_log_interval", "max-running-requests": "max_running_requests",
}
_SGLANG_BOOL = {"disable-cuda-graph": "disable_cuda_graph"}
_VLLM = {
    "model": "target_model", "speculative-model": "draft_model", "num-speculative-tokens": "num_speculative_tokens",
    "tensor-parallel-size": "tensor_parallel_size", "tp": "tensor_parallel_size", "max-num-seqs": "max_num_seqs",
    "ngram-prompt-lookup-max": "prompt_lookup_max", "ngram-prompt-lookup-min": "prompt_lookup_min",
    "spec-decoding-acceptance-method": "acceptance_method",
}
_VLLM_BOOL = {"enforce-eager": "enforce_eager"}
_VLLM_JSON = ("speculative-config", "sc", "compilation-config", "O")
_LLAMA = {
    "m": "target_model", "model": "target_model", "hf": "target_model", "hf-repo": "target_model",
    "md": "draft_model", "model-draft": "draft_model", "spec-draft-model": "draft_model", "hfd": "draft_model",
    "hf-repo-draft": "draft_model", "spec-draft-p-min": "draft_p_min",
    "draft-max": "draft_max", "draft": "draft_max", "draft-n": "draft_max", "spec-draft-n-max": "draft_max",
    "draft-min": "draft_min", "spec-draft-n-min": "draft_min", "draft-p-min": "draft_p_min",
    "np": "n_parallel", "parallel": "n_parallel", "spec-type": "spec_type",
}
_TGI = {"model-id": "target_model", "speculate": "num_speculative_tokens"}
_FLAGS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "sglang": (_SGLANG, _SGLANG_BOOL), "vllm": (_VLLM, _VLLM_BOOL), "llama.cpp": (_LLAMA, {}),
    "tgi": (_TGI, {}), "trtllm": ({}, {}),
}
#: flags only one engine has: they name the engine of a continuation line
_OWN_FLAGS = (("--disable-cuda-graph", "sglang"), ("--speculative-algorithm", "sglang"),
              ("--speculative-num-steps", "sglang"), ("--enforce-eager", "vllm"), ("--enforce_eager", "vllm"),
              ("--speculative-config", "vllm"), ("--num-speculative-tokens", "vllm"),
              ("--num_speculative_tokens", "vllm"), ("--draft-max", "llama.cpp"), ("--model-draft", "llama.cpp"),
              ("--spec-draft-n-max", "llama.cpp"))
#: speculative_config fields kept (vLLM names; ``model`` is the draft)
_SPEC_FIELDS = {"method": "method", "model": "draft_model", "num_speculative_tokens": "num_speculative_tokens",
                "draft_tensor_parallel_size": "draft_tensor_parallel_size", "prompt_lookup_max": "prompt_lookup_max",
                "prompt_lookup_min": "prompt_lookup_min"}


_PROGRAM_RX = [(re.compile(p), e) for p, e in _PROGRAMS]
_OWN_RX = [(re.compile(re.escape(flag) + r"(?:[\s=]|$)"), e) for flag, e in _OWN_FLAGS]


def _launcher(text: str) -> tuple[str, int] | None:
    """``(engine, where its program starts)``, else the engine of a flag only it has (from 0)."""
    if not any(m in text for m in MARKERS) and "llama-cli" not in text and "trtllm-serve" not in text:
        return None
    for rx, engine in _PROGRAM_RX:
        if m := rx.search(text):
            return engine, m.start()
    if not _flag_line(text):
        return None  # a flag named in prose ("I also tried --enforce-eager") launches nothing
    for rx, engine in _OWN_RX:
        if rx.search(text):
            return engine, 0
    return None


def _flag_line(text: str) -> bool:
    """A line of flags (a continuation, an ``args`` list, ``command: --model ...``): at least a third
    of its shell words are options."""
    toks = [t for t in _tokens(text) if t not in ("-", "--", "\\", "*")]
    return bool(toks) and 3 * sum(t.startswith("-") for t in toks) >= len(toks)


def engine_of(text: str) -> str | None:
    """The engine a command line launches: its program, else a flag only that engine has."""
    got = _launcher(text)
    return got[0] if got else None


def _tokens(text: str) -> list[str]:
    """Shell words of a command; an unbalanced quote (a cut paste) falls back to whitespace words."""
    try:
        return shlex.split(text, comments=False, posix=True)
    except ValueError:
        return text.split()


def _expand(flag: str, known: list[str]) -> str | None:
    """argparse's abbreviations: an exact flag, else the one known flag it is a unique prefix of."""
    if flag in known:
        return flag
    hits = [k for k in known if k.startswith(flag)]
    return hits[0] if len(hits) == 1 and len(flag) >= 4 else None


def _json_facts(raw: str, flag: str) -> list[tuple[str, str]]:
    """Facts from a JSON flag value: ``--speculative-config '{"method": ...}'`` or a compilation config."""
    try:
        obj = json.loads(raw)
    except (ValueError, TypeError):
        return []
    if not isinstance(obj, dict):
        return []
    if flag in ("speculative-config", "sc"):
        return [(_SPEC_FIELDS[k], str(v)) for k, v in obj.items() if k in _SPEC_FIELDS and v is not None]
    mode = obj.get("cudagraph_mode")
    return [("cudagraph_mode", str(mode).upper())] if mode is not None else []


def parse_command(text: str) -> tuple[str | None, list[tuple[str, str]]]:
    """``(engine, [(key, value), ...])`` of one launch command line (the facts in flag order)."""
    got = _launcher(text)
    if got is None:
        return None, []
    engine, start = got
    text = text[start:]  # what comes before the program (env, docker's own flags) is not the engine's
    valued, booleans = _FLAGS[engine]
    known = list(valued) + list(booleans) + (list(_VLLM_JSON) if engine == "vllm" else [])
    toks = _tokens(text)
    facts: list[tuple[str, str]] = []
    for i, tok in enumerate(toks):
        if engine == "vllm" and tok == "serve" and i > 0 and toks[i - 1].endswith("vllm"):
            if i + 1 < len(toks) and not toks[i + 1].startswith("-"):
                facts.append(("target_model", toks[i + 1]))
            continue
        if not tok.startswith("-") or tok in ("-", "--"):
            continue
        name, eq, inline = tok.lstrip("-").partition("=")
        name = name.replace("_", "-") if engine in ("vllm", "sglang") else name
        facts.extend(_flag_facts(engine, name, eq, inline, toks[i + 1] if i + 1 < len(toks) else None, known))
    return engine, facts


def _flag_facts(engine: str, name: str, eq: str, inline: str, nxt: str | None,
                known: list[str]) -> list[tuple[str, str]]:
    valued, booleans = _FLAGS[engine]
    if engine == "vllm" and name.startswith("speculative-config."):  # --speculative-config.method eagle
        field = name.split(".", 1)[1].replace("-", "_")
        value = inline if eq else nxt
        return [(_SPEC_FIELDS[field], value)] if field in _SPEC_FIELDS and value and not value.startswith("-") else []
    full = _expand(name, known) if engine in ("sglang", "vllm") else (name if name in known else None)
    if full is None:
        return []
    if full in booleans:
        return [(booleans[full], "True")]
    value = inline if eq else nxt
    if value is None or (not eq and value.startswith("-")):
        return []  # a flag cut before its value: nothing is known
    if engine == "vllm" and full in _VLLM_JSON:
        return _json_facts(value, full)
    key = valued[full]
    if key == "draft_model" and engine == "vllm" and value.strip("[]") in ("ngram", "gram"):
        return [("method", "ngram")]  # V0's --speculative_model [ngram]
    return [(key, value)]


#: the flags the SGLang source already reads from a pasted command (``sglang._CLI``): not repeated here
_SGLANG_READS = re.compile(
    r"--(speculative-[\w-]+|cuda-graph-max-bs|tp-size|tp|dp-size|dp|model-path|"
    r"disaggregation-mode|decode-log-interval)[ =]")


def _not_read_by_sglang(text: str, facts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Facts of an SGLang command less those the SGLang source emits for the same line itself."""
    if not (("--speculative-" in text or "--cuda-graph-max-bs" in text) and ("sglang" in text or "sgl_jax" in text)):
        return facts
    theirs = {m.replace("-", "_") for m in _SGLANG_READS.findall(text)}
    theirs |= {{"tp": "tp_size", "dp": "dp_size"}.get(k, k) for k in theirs}
    return [(k, v) for k, v in facts if k not in theirs]


def parse(lines: pl.DataFrame, source: str, options: ParseOptions = NO_OPTIONS) -> Parsed:
    """Config facts of every launch command among the marker lines (one line = one command)."""
    lines = norm_lines(lines)
    rows: dict[str, list[tuple[int, str, str]]] = {}
    for ln, text in lines.select("line", "text").iter_rows():
        engine, facts = parse_command(text[:20_000])
        if engine == "sglang":
            facts = _not_read_by_sglang(text, facts)
        elif engine == "vllm" and "speculative_config" in text:  # the vLLM source reads that dict itself
            facts = [(k, v) for k, v in facts if k not in _SPEC_FIELDS.values()]
        if engine is None or not facts:
            continue
        rows.setdefault(engine, []).extend((ln, k, v) for k, v in facts)
    frames = [configs(r, source, eng) for eng, r in rows.items()]
    return Parsed(configs=pl.concat(frames) if frames else pl.DataFrame(schema=CONFIG_SCHEMA))


def detect(sample: str) -> bool:
    """Never takes a file: launch lines are read wherever the scan finds their markers."""
    return False


SOURCE = Source(family=FAMILY, markers=MARKERS, detect=detect, parse=parse)
