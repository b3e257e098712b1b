"""Benchmark outputs: what people run to ask "is speculation faster?", and paste.

* serving-benchmark summaries - ``vllm bench serve`` / ``benchmark_serving.py`` and SGLang
  ``bench_serving`` (``============ Serving Benchmark Result ============``, request and output token
  throughput, TTFT / TPOT / ITL, SGLang's ``Accept length:``), SGLang ``bench_offline_throughput``;
  a summary whose vLLM speculative section names drafts and accepted tokens is left to the vLLM source
  (:mod:`specdec_diag.ingest.vllm_blocks`), which reads the same block;
* labelled speed lines - ExLlamaV2 ``examples/inference_speculative.py`` (``speed, -SD: 11.65
  tokens/second`` / ``speed, +SD: ...``), Spec-Bench ``evaluation/speed.py`` (``#Mean accepted tokens``,
  ``Tokens per second``, ``Tokens per second for the baseline``), SGLang's ``Throughput: 378.57
  token/s, Acceptance length: 5.39``, vLLM's offline tqdm tail (``est. speed input: ... toks/s, output:
  ... toks/s``), old client summaries (``Throughput: 2.98 requests/s``, ``Average latency per output
  token: 0.54 s``), a user's ``decode speed: 69.8 token/s`` - each labelled by the line itself or by
  the heading just above it (``#non-sp``, ``spec 7b``, ``K=2``, ``EAGLE-3 (num_steps=8):``);
* tables - see :mod:`specdec_diag.ingest.bench_tables`.

Each run becomes one window row (``window = run``): ``k`` the draft length (0 = a run without
speculation), ``gen_tps`` its speed, ``tpot_ms`` / ``ttft_ms``, ``mean_acceptance_length`` where the
benchmark prints one, ``running_reqs`` its load (max concurrency, else batch size), ``engine_id`` the
run's label and ``definition_note`` which printed number ``gen_tps`` is. A run whose status no word
states is kept only as a serving summary (its TTFT/TPOT still tell queueing), or - the one unlabelled
run next to speculative ones measuring the same thing - as the assumed baseline, which the note says.
Ingest never compares: :func:`specdec_diag.analysis.comparisons.benchmark_speedups` does.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import polars as pl

from specdec_diag.ingest._textparse import norm_lines
from specdec_diag.ingest.base import LINE_STRIDE, Parsed, ParseOptions, Source
from specdec_diag.ingest.bench_labels import (
    BASE,
    SPEC,
    Status,
    classify,
    metric_of,
    number,
    to_metric_value,
    vs_speeds,
)
from specdec_diag.ingest.bench_tables import split_row, table_records
from specdec_diag.schema import WINDOW_SCHEMA

FAMILY = "bench"
MARKERS: tuple[str, ...] = (
    # speeds and their units
    "tok/s", "toks/s", "tokens/s", "token/s", "tokens/second", "tokens per second", "Tokens per second",
    "throughput", "Throughput", "requests/s",
    # serving summaries
    "Benchmark Result", "Mean TTFT", "Mean TPOT", "Mean ITL", "Accept length", "accept length", "Acceptance length",
    "acc len", "Mean accepted tokens", "latency", "Latency", "Total time:", "Benchmark duration",
    "Max request concurrency", "Maximum request concurrency", "Successful requests", "Total input tokens",
    "Total generated tokens", "Request rate", "Backend:",
    # labels of runs with and without speculation
    "spec", "Spec", "SPEC", "SD:", "sp=", "non-sp", "EAGLE", "Eagle", "eagle", "MTP", "Medusa", "medusa", "ngram",
    "N-gram", "n-gram", "draft", "Draft", "vanilla", "Vanilla", "baseline", "Baseline", "base model", "Base model",
    "K=", "k=", "num_steps", "Normal decoding", "decoding:", "Response generated",
    # section rules (a rule ends a run: Spec-Bench prints one per task)
    "=====", "-----",
    # tables, saved result lines
    " | ", "\t", '"output_throughput"', '"acc_length"', "speed=",
    # SpecForge / SGLang benchmark result JSON (pretty-printed: one key a line); SGLang test/send_one.py
    '"accept_length"', "acc_length=",
)
#: lines other sources own (engine metric lines, llama.cpp slots): never a benchmark's, dropped first
_OWNED = re.compile(
    r"SpecDecoding metrics|Speculative metrics|Avg prompt throughput|Decode batch|Prefill batch|print_timing|"
    r"\bslot\s|^\s*srv\s|llama_perf|draft acceptance|speculative_config|SpeculativeConfig|\[TensorRT-LLM\]|"
    r"^\s*(?:INFO|WARNING|DEBUG|ERROR)\b|^\s*\[?\d{4}-\d\d-\d\d[ T]\d\d:|^\s*\(\w+ pid=\d+\)")
_KV = re.compile(r":\s*(?P<num>[~≈]?-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?:\s*[-–]\s*\d+(?:\.\d+)?)?)"
                 r"(?:\s*(?P<unit>[A-Za-z%/µ]+(?:/[A-Za-z]+)?))?")
_SEND_ONE = re.compile(r"^\s*(acc_length|speed)=(\d+(?:\.\d+)?)(?:\s*(token/s|tokens/s|tok/s))?\s*$")
_TRAILING_OUTPUT = re.compile(r",\s*(\d+(?:\.\d+)?)\s+(?:output\s+)?tok(?:en)?s/s(?:ec(?:ond)?)?\b")
_CLEAN = re.compile(r"^\s*(?:>\s*)*(?:[*+-]\s+|\d+\.\s+)?")
_BLOCK = re.compile(r"Benchmark Result")
_SEPARATOR_ROW = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_END = re.compile(r"^\s*={10,}\s*$")
#: the sections of a serving summary: a stored copy may start at one of them
_SECTION = re.compile(r"Speculative Decoding|Time to First Token|Time per Output Token|Inter-?token Latency|"
                      r"End-to-End Latency|Request Latency", re.I)
#: a section rule inside a summary (``-----Speculative Decoding-----``); a bare rule of another width than
#: the title's (a stray or cut line) is one too: it ends nothing
_RULE = re.compile(r"^\s*(?:[-=]{3,}.*[-=]{3,}|[-=]{3,})\s*$")
_BACKEND = re.compile(r"^\s*Backend:\s*([A-Za-z][\w.-]*)")
#: keys of vLLM's speculative section: that block is the vLLM source's record
_VLLM_SPEC_KEYS = re.compile(r"^\s*(?:Drafts|Draft tokens|Accepted tokens|Acceptance rate \(%\)):")
#: keys that name a count or a rate, never a run's speed, even next to a label word
_NOT_A_SPEED = re.compile(r"[\"'_:\[<]|speed-?up|token|rate|accept|step|draft(?:s|ed)\b|len|time|count|num|%|ratio", re.I)
_A_SPEED = re.compile(r"\d\s*(?:tok(?:en)?s?/s|tokens per second|tokens/sec)", re.I)
_SPEED_WORDS = re.compile(r"speed|throughput|tok(?:en)?s?/s|tokens per second", re.I)
#: more requests in flight than this is not a load a benchmark ran at
MAX_LOAD = 10_000_000
#: a heading more lines above a run than this is not its label
HEADING_REACH = 6
#: ... unless it is a title ending in a colon (exllamav2 prints the generated text between the two)
TITLE_REACH = 40
#: lines a record may skip (blank lines, section rules) and still continue
RECORD_GAP = 3
BLOCK_GAP = 6


def detect(sample: str) -> bool:
    return "Benchmark Result" in sample


def clean(text: str) -> str:
    """A pasted line without quote markers, list bullets, bold and code marks."""
    text = _CLEAN.sub("", text.replace("**", "").replace("`", "")).rstrip()
    return text[:-1].rstrip() if text.endswith(" |") and text.count("|") == 1 else text


def kv_items(text: str) -> list[tuple[str, float, str, str | None]]:
    """``(key, value, unit, metric)`` for every ``key: number unit`` in a line; metric None when the key
    is not a speed, latency, acceptance length or load (``#questions: 80``)."""
    out = []
    prev = 0
    head = text.split(":", 1)[0]
    for m in _KV.finditer(text):
        key_full = text[prev:m.start()]
        prev = m.end()
        key = key_full.split(",")[-1].strip(" *[(#") or key_full.strip(" *[(#")
        value, unit, _ = number(m.group("num"))
        unit = m.group("unit") or ""
        if value is None:
            continue
        metric = metric_of(key, unit) or metric_of(key_full.strip(" ,"), unit)
        if metric == "out_tps" and re.search(r"prefill|input|prompt|^\s*total\b", head, re.I) and "output" not in key:
            metric = None
        if metric is None and not unit and classify(key).kind is not None and not _NOT_A_SPEED.search(key):
            metric = "value"  # ``vanilla (...): 133``, ``K=2: 201.69``: a speed without its unit
        if metric is not None:
            mv = to_metric_value(metric, value, unit, key)
            if mv is None or mv < 0:  # a negative speed or latency is no measurement
                continue
            value = mv
        out.append((key_full.strip(" ,*"), value, unit, metric))
    # vLLM benchmark_throughput / ``vllm bench throughput``: "Throughput: 3.08 requests/s, 1234.56 total
    # tokens/s, 567.89 output tokens/s" - the output speed follows a comma, without a key of its own
    # exllamav2 examples/speculative.py: "Response generated in 5.12 seconds, 250 tokens, 48.83 tokens/second"
    if not re.match(r"\s*(?:prompt|prefill|input)", text, re.I):
        out.extend(("output tokens/s", float(m.group(1)), "tokens/s", "out_tps") for m in _TRAILING_OUTPUT.finditer(text))
    eq = _SEND_ONE.match(text) if not out else None
    if eq:  # SGLang send_one.py prints ``acc_length=2.20`` and ``speed=125.59 token/s`` on lines of their own
        metric = "mal" if eq.group(1) == "acc_length" else metric_of("speed", eq.group(3) or "")
        value = float(eq.group(2))
        if metric is not None and value > 0:
            out.append((eq.group(1), value, eq.group(3) or "", metric))
    return out


def _new(line: int, origin: str, fmt: str) -> dict[str, Any]:
    return {"line": line, "last": line, "label": "", "kind": None, "k": None, "metrics": {}, "origin": origin,
            "format": fmt, "ranged": False, "heading": "", "vllm_spec": False, "engine": None, "own": Status(None),
            "text": ""}


class _Records:
    """The records of one file's benchmark lines, built line by line (see :func:`parse`)."""

    def __init__(self) -> None:
        self.done: list[dict[str, Any]] = []
        self.cur: dict[str, Any] | None = None
        self.headings: list[tuple[int, str, int]] = []  # (line, text, reach in lines)
        self.table: list[tuple[int, list[str]]] = []

    def close(self) -> None:
        if self.cur is not None and (self.cur["metrics"] or self.cur["origin"] == "block"):
            self.done.append(self.cur)
        self.cur = None

    def heading_for(self, line: int) -> str:
        after = self.done[-1].get("last", self.done[-1]["line"]) if self.done else 0
        near = [t for ln, t, reach in self.headings if after < ln < line and line - ln <= reach]
        return near[-1] if near else ""

    def add_line(self, line: int, text: str) -> None:
        if not text.strip() or (self.table and _SEPARATOR_ROW.match(text)):
            return  # a blank line (a tab-only one is let in by the tab marker), or the rule under a header
        if text.lstrip().startswith("{") and ('"output_throughput"' in text or '"acc_length"' in text):
            self.close()
            self.flush_table()
            rec = json_record(line, text)
            if rec is not None:
                self.done.append(rec)
            return
        cells = split_row(text) if (" | " in text or "\t" in text or text.lstrip().startswith("|")) else None
        if cells is not None:
            self.close()
            if self.table and line - self.table[-1][0] > RECORD_GAP:
                self.flush_table()
            self.table.append((line, cells))
            return
        self.flush_table()
        in_block = self.cur is not None and self.cur["origin"] == "block"
        if _BLOCK.search(text) or (not in_block and _RULE.match(text) and _SECTION.search(text)):
            self.close()
            self.cur = _new(line, "block", "bench-summary")
            self.cur["heading"] = self.heading_for(line)
            self.cur["width"] = len(text.strip()) if _BLOCK.search(text) and _RULE.match(text) else None
            return
        if self.cur is not None and self.cur["origin"] == "block":
            if _END.match(text) and self.cur.get("width") in (None, len(text.strip())):
                self.close()  # the closing rule of a summary: as wide as its title rule
                return
            if line - self.cur["last"] <= BLOCK_GAP and (_RULE.match(text) or ":" in text):
                self._block_line(line, text)
                return
            self.close()
        sweep = sweep_record(line, text)
        if sweep is not None:
            self.close()
            self.done.append(sweep)
            return
        vs = vs_speeds(text)
        if vs is not None:  # "5.1 t/s with MTP vs 21.4 t/s no-spec": two runs in one phrase
            self.close()
            for (lab, speed), kind in zip(vs, (SPEC, BASE), strict=True):
                self.done.append({**_new(line, "line", "bench-line"), "label": lab, "kind": kind, "text": text,
                                  "k": 0 if kind == BASE else None, "metrics": {"out_tps": (speed, lab)}})
            return
        items = kv_items(text)
        if not items:
            self.close()
            if len(text) <= 200 and not _A_SPEED.search(text):  # a speed line of another kind is no title
                # "Normal decoding:" above a streamed generation reaches further than a stray line
                reach = TITLE_REACH if text.rstrip().endswith(":") and len(text) <= 80 else HEADING_REACH
                self.headings.append((line, text.strip(" :#=-"), reach))
            return
        self._kv_line(line, text, items)

    def _block_line(self, line: int, text: str) -> None:
        cur = self.cur
        assert cur is not None
        cur["last"] = line
        if _VLLM_SPEC_KEYS.match(text):
            cur["vllm_spec"] = True
        backend = _BACKEND.match(text)
        if backend:
            cur["engine"] = backend.group(1)
        for _key, value, _unit, metric in kv_items(text):
            if metric is not None and metric != "value" and metric not in cur["metrics"]:
                cur["metrics"][metric] = (value, _key)

    def _kv_line(self, line: int, text: str, items: list[tuple[str, float, str, str | None]]) -> None:
        if self._two_runs_on_a_line(line, text, items):
            return
        own = classify(" ".join(k for k, _, _, _ in items) + " " + text.split(":", 1)[0])
        metrics = {m: (v, k) for k, v, _, m in items if m is not None}
        cur = self.cur
        if cur is not None and (line - cur["last"] > RECORD_GAP or any(m in cur["metrics"] for m in metrics)
                                or (own.kind is not None and cur["metrics"] and own != cur["own"])):
            self.close()
            cur = None
        if cur is None:
            cur = self.cur = _new(line, "line", "bench-line")
            cur["heading"] = self.heading_for(line)
            cur["own"] = own
        elif cur["own"].kind is None and own.kind is not None:
            cur["own"] = own
        cur["last"] = line
        cur["text"] += " " + text
        for m, vk in metrics.items():
            cur["metrics"].setdefault(m, vk)
        cur["label"] = cur["label"] or re.sub(r",?\s*\[.*$", "", text.split(":", 1)[0]).strip(" *#")

    def _two_runs_on_a_line(self, line: int, text: str, items: list[tuple[str, float, str, str | None]]) -> bool:
        """``MTP off: 82.7 tok/s, MTP on: 151.5 tok/s``: one speed twice on a line, each under a key that
        names its run, is two runs."""
        speeds = [(k, v, m) for k, v, _, m in items if m in ("out_tps", "value", "tpot_ms")]
        kinds = [classify(k) for k, _, _ in speeds]
        if len(speeds) < 2 or len({m for _, _, m in speeds}) != 1 or any(st.kind is None for st in kinds) \
                or len({st.kind for st in kinds}) < 2:
            return False
        self.close()
        for (key, value, metric), st in zip(speeds, kinds, strict=True):
            rec = _new(line, "line", "bench-line")
            rec.update(own=st, label=key.strip(" *#"), text=text, heading=self.heading_for(line))
            rec["metrics"][metric] = (value, key)
            self.done.append(rec)
        return True

    def flush_table(self) -> None:
        if not self.table:
            return
        (first, header), body = self.table[0], self.table[1:]
        self.done.extend(table_records(header, body, self.heading_for(first), first))
        self.headings.append((self.table[-1][0], "", HEADING_REACH))  # a table ends the reach of the heading above it
        self.table = []


#: result-file keys (vLLM ``--save-result`` JSON, SGLang ``bench_serving`` JSONL) -> record metric
_JSON_KEYS = {"output_throughput": "out_tps", "mean_ttft_ms": "ttft_ms", "mean_tpot_ms": "tpot_ms",
              "max_concurrency": "load", "spec_decode_acceptance_length": "mal", "accept_length": "mal"}
_JSON_COUNTS = {"spec_decode_num_drafts": "num_drafts", "spec_decode_draft_tokens": "draft_tokens",
                "spec_decode_accepted_tokens": "accepted_tokens"}


def json_record(line: int, text: str) -> dict[str, Any] | None:
    """One benchmark result saved as a JSON line: its speed, latencies, concurrency and - vLLM since
    2025 - its speculative counts. Not a JSON object, or no usable speed: None (never malformed: a
    log may print other JSON)."""
    if len(text) > 1_000_000:
        return None
    try:
        obj = json.loads(text.strip().rstrip(","))
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    rec = _new(line, "block", "bench-json")
    for key, metric in _JSON_KEYS.items():
        v = obj.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0:
            rec["metrics"].setdefault(metric, (float(v), key))
    counts = {col: obj[k] for k, col in _JSON_COUNTS.items()
              if isinstance(obj.get(k), int) and not isinstance(obj[k], bool) and 0 <= obj[k] < 2 ** 62}
    if len(counts) == 3 and counts["accepted_tokens"] <= counts["draft_tokens"]:
        rec["counts"] = counts
        rec["kind"] = SPEC
    if "speed" in obj and "steps" in obj:  # SGLang scripts/playground/bench_speculative.py records
        _sweep_point(rec, {k: obj.get(k) for k in ("batch_size", "steps", "topk", "num_draft_tokens", "speed",
                                                   "acc_length")})
        return rec if "out_tps" in rec["metrics"] else None
    rec["engine"] = str(obj.get("backend") or "") or None
    rec["label"] = str(obj.get("tag") or obj.get("model_id") or "")[:80]
    rec["own"] = classify(str(obj.get("tag") or ""))
    return rec if "out_tps" in rec["metrics"] else None


_EQ = re.compile(r"\b(batch_size|steps|topk|num_draft_tokens|speed|acc_length)=(\d+(?:\.\d+)?)")


def sweep_record(line: int, text: str) -> dict[str, Any] | None:
    """SGLang ``bench_speculative.py``: ``Finish i=3: batch_size=1, steps=3, topk=1, num_draft_tokens=4,
    speed=159.78 token/s, step_time=6.26 ms`` (steps=0: the run without speculation)."""
    if "speed=" not in text or "steps=" not in text:
        return None
    rec = _new(line, "block", "bench-line")
    _sweep_point(rec, {k: float(v) for k, v in _EQ.findall(text)})
    return rec if "out_tps" in rec["metrics"] else None


def _sweep_point(rec: dict[str, Any], v: dict[str, Any]) -> None:
    """One configuration of an EAGLE sweep: k is num_draft_tokens (the verified tokens), steps and topk
    label the configuration, the batch size is the load; steps 0 is the baseline."""
    def num(key: str) -> float | None:
        x = v.get(key)
        return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None

    speed, steps = num("speed"), num("steps")
    if speed is None or speed <= 0 or steps is None:
        return
    rec["metrics"]["out_tps"] = (speed, "speed")
    if num("batch_size"):
        rec["metrics"]["load"] = (num("batch_size"), "batch_size")
    if steps == 0:
        rec["kind"], rec["k"] = BASE, 0
    else:
        nd = num("num_draft_tokens")
        rec["kind"], rec["k"] = SPEC, int(nd) if nd and nd < 1000 else None
        if num("acc_length"):
            rec["metrics"]["mal"] = (num("acc_length"), "acc_length")
    rec["format"] = "bench-table"  # one row of a sweep: steps/topk are its configuration
    rec["label"] = f"steps={steps:g}, topk={num('topk') or 0:g}"
    rec["engine"] = "sglang"


def _status(rec: dict[str, Any]) -> None:
    """Fill ``kind``/``k`` of a line or block record from its own words, else its heading, else its
    acceptance length (a run that prints one speculates)."""
    if rec["origin"] == "table" or rec["kind"] is not None:
        return
    for st in (rec["own"], classify(rec["heading"])):
        if st.kind is not None:
            rec["kind"], rec["k"] = st.kind, st.k
            break
    if rec["kind"] is None and rec["metrics"].get("mal", (0.0, ""))[0] > 1.0:
        rec["kind"] = SPEC
    if rec["heading"] and not rec["label"].strip():
        rec["label"] = rec["heading"]
    elif rec["heading"]:
        rec["label"] = f"{rec['heading']}: {rec['label']}"


def _implicit_baseline(recs: list[dict[str, Any]]) -> None:
    """The one unlabelled run next to speculative runs that measured the same speed is their baseline
    (vllm #8439: ``7b:`` and ``spec 7b``; a ``bench serve`` summary next to one with a speculative
    section); said in the run's definition note."""
    for origin in ("line", "block"):
        for metric in ("out_tps", "value", "tpot_ms"):
            has = [r for r in recs if r["origin"] == origin and (metric in r["metrics"] or r.get("vllm_spec"))]
            unknown = [r for r in has if r["kind"] is None and not r.get("vllm_spec")]
            spec = any(r["kind"] == SPEC or r.get("vllm_spec") for r in has)
            if len(unknown) == 1 and spec and not any(r["kind"] == BASE for r in has):
                unknown[0].update(kind=BASE, k=0, assumed=True)


def _unitless_needs_speed_words(recs: list[dict[str, Any]]) -> None:
    """A number without a unit (``K=2: 201.69``) is a speed only where the lines that print such numbers
    speak of speed (``speedup``, ``throughput``, ``tok/s``); ``k=2: 0.8, k=4: 0.6`` under "acceptance
    by k" is not one, and is dropped."""
    unitless = [r for r in recs if "value" in r["metrics"] and "out_tps" not in r["metrics"]]
    if unitless and not any(_SPEED_WORDS.search(r["text"] + " " + r["heading"]) for r in unitless):
        for r in unitless:
            del r["metrics"]["value"]


def _counts(rec: dict[str, Any]) -> dict[str, Any]:
    """Speculative counts a saved result carries (vLLM ``spec_decode_*``), with the rate they give; a
    table cell's ``accepted/drafted`` pair gives the two token counts."""
    c = rec.get("counts")
    if not c and rec.get("pair"):
        a, d = rec["pair"]
        return {"accepted_tokens": a, "draft_tokens": d, "acceptance_rate": a / d if d else None}
    if not c:
        return {}
    rate = c["accepted_tokens"] / c["draft_tokens"] if c["draft_tokens"] else None
    return {**c, "acceptance_rate": rate,
            "emitted_tokens": c["accepted_tokens"] + c["num_drafts"]}


def _row(rec: dict[str, Any], source: str) -> dict[str, Any]:
    m = rec["metrics"]
    speed = m.get("out_tps") or m.get("value")
    notes = []
    if speed is not None:
        unit = "unit not printed (compared only with other unit-less speeds)" if "out_tps" not in m else "tokens/s"
        notes.append(f"gen_tps = {speed[1]!r} as the benchmark printed it ({unit})")
    if rec.get("ranged"):
        notes.append("a printed range is taken at its midpoint")
    if "tpot_ms" in m:
        notes.append(f"tpot_ms = {m['tpot_ms'][1]!r}")
    if "mal" in m and rec.get("format") == "bench-context-table":
        notes.append(f"mean_acceptance_length = {m['mal'][1]!r} as printed (tokens per verify step)")
    if rec.get("pair"):
        notes.append("accepted_tokens / draft_tokens = the table cell's 'accepted/drafted' pair")
    if "acc" in m:
        notes.append(f"acceptance_rate = {m['acc'][1]!r} as printed (accepted / drafted; a percentage as a fraction)")
    if rec.get("assumed"):
        notes.append("assumed baseline: the only unlabelled run next to speculative runs")
    load = m.get("load")
    engine = rec.get("engine")
    engine = next((e for e in ("vllm", "sglang", "trtllm", "tgi", "lmdeploy") if engine and e in engine.lower()),
                  "benchmark")  # the tool that printed it when no engine is named
    kind = rec["kind"]
    return {
        "source": source, "line": rec["line"], "engine": engine, "format": rec["format"], "window": "run",
        "engine_id": (f"bench[{kind or 'unknown'}]: " + (rec["label"] or f"line {rec['line'] % LINE_STRIDE}"))[:120],
        "k": 0 if kind == BASE else (rec["k"] if kind == SPEC else None),
        "gen_tps": speed[0] if speed else None,
        "tpot_ms": m["tpot_ms"][0] if "tpot_ms" in m else None,
        "ttft_ms": m["ttft_ms"][0] if "ttft_ms" in m else None,
        "mean_acceptance_length": m["mal"][0] if "mal" in m and kind != BASE else None,
        "acceptance_rate": m["acc"][0] if "acc" in m and kind != BASE else None,
        "context_len": rec.get("ctx"),
        **_counts(rec),
        "running_reqs": int(round(load[0])) if load and 1 <= load[0] <= MAX_LOAD else None,
        "definition_note": "benchmark run; " + "; ".join(notes),
    }


def records(lines: pl.DataFrame) -> list[dict[str, Any]]:
    """The benchmark runs in a file's marker lines (already cleaned of other sources' lines)."""
    acc = _Records()
    for line, text in lines.select("line", "text").iter_rows():
        acc.add_line(int(line), clean(text))
    acc.close()
    acc.flush_table()
    _unitless_needs_speed_words(acc.done)
    for r in acc.done:
        _status(r)
    _implicit_baseline(acc.done)
    recs = [r for r in acc.done if not r.get("vllm_spec")]  # the vLLM source's rows (vllm_blocks)
    keep = ("out_tps", "value", "tpot_ms", "ttft_ms", "mal", "acc")
    return [r for r in recs if (any(x in r["metrics"] for x in keep) or r.get("pair")) and (r["kind"] is not None or r["origin"] == "block")]


def parse(lines: pl.DataFrame, source: str, options: ParseOptions) -> Parsed:
    df = norm_lines(lines)
    df = df.filter(~pl.col("text").str.contains(_OWNED.pattern))
    if df.height == 0:
        return Parsed()
    # a batch of small files (batchable): each file's lines are read on their own, in line order
    files = df.with_columns((pl.col("line") // LINE_STRIDE).alias("_file")).partition_by("_file", maintain_order=True)
    rows = [_row(r, source) for f in files for r in records(f.drop("_file").sort("line"))]
    if not rows:
        return Parsed()
    return Parsed(windows=pl.from_dicts(rows, schema=WINDOW_SCHEMA))


SOURCE = Source(family=FAMILY, markers=MARKERS, detect=detect, parse=parse, batchable=True)

__all__ = ["FAMILY", "MARKERS", "SOURCE", "clean", "detect", "kv_items", "parse", "records"]
