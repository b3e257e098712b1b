"""What a benchmark's words mean: whether a label names a run with or without speculation (and its k),
which speed a key or column header names, and the numbers as people print them (``10-11 tokens/s``,
``0.54 s``, ``1.51x``). Shared by the benchmark line and table parsers (:mod:`specdec_diag.ingest.bench`,
:mod:`specdec_diag.ingest.bench_tables`); pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

#: run status of a label
SPEC, BASE = "speculative", "baseline"

# words that name speculation (a drafting method or the technique itself)
_SPEC_WORD = (r"spec(?:ulative|ulation|ulate|[_ -]?decod\w*|[_ -]?dec)?|(?<=[+-])sd|sd(?=\s*=)|(?<=[#-])sp|sp(?=\s*=)|eagle[\w.-]*|mtp\w*|medusa\w*|n-?gram\w*"
              r"|draft(?:ed|er|ing|[_ -]?model)?|dflash\w*|lookahead|pld|hydra|assisted|prompt[_ -]lookup|suffix")
_SPEC = re.compile(rf"(?<![A-Za-z])(?:{_SPEC_WORD})(?![A-Za-z])", re.I)
# a spec word negated before it ("no draft", "w/o spec", "-SD", "non-sp") or switched off after it
_NEG_BEFORE = re.compile(rf"(?:\b(?:no|non|not|without|disabled?)[ _-]*|w/o\s*|(?<![\w+-])-)(?:{_SPEC_WORD})(?![A-Za-z])",
                         re.I)
_OFF_AFTER = re.compile(rf"(?<![A-Za-z])(?:{_SPEC_WORD})\s*[=:]?\s*(?:off|false|disabled?|none|0)\b", re.I)
_BASE = re.compile(r"(?<![A-Za-z])base_|\b(?:vanilla|baseline|base[ _-]?(?:model|line)|plain|autoregressive|normal decoding|target[ _-]only"
                   r"|no[ _-]?spec\w*|nospec)\b|\(none\)", re.I)
_K = re.compile(
    r"(?:(?<![A-Za-z_])(?:k|gamma|γ|sp|n[_-]?draft|num[_-]?spec(?:ulative)?[_-]?tokens|num[_-]?draft(?:[_-]tokens)?"
    r"|draft[_-]?(?:max|tokens|n|len(?:gth)?)|spec[_-]?(?:draft[_-]n[_-]max|tokens)|num[_-]?steps)\s*[=:]\s*|"
    r"--(?:num[_-]speculative[_-]tokens|draft[_-]max|draft[_-]tokens|spec[_-]draft[_-]n[_-]max|draft)\s+)(\d{1,3})\b",
    re.I)


@dataclass(frozen=True)
class Status:
    """What a label says about its run: ``kind`` SPEC / BASE / None (unknown) and k where it names one."""

    kind: str | None
    k: int | None = None


def classify(label: str) -> Status:
    """Speculative, baseline or unknown, from the words of a label (a heading, a key, a table cell).
    A k of 0 (``num_speculative_tokens=0``) is a baseline."""
    if not label:
        return Status(None)
    km = _K.search(label)
    k = int(km.group(1)) if km else None
    if k == 0 or _BASE.search(label) or _NEG_BEFORE.search(label) or _OFF_AFTER.search(label):
        return Status(BASE, 0)
    if k is not None or _SPEC.search(label):
        return Status(SPEC, k)
    return Status(None)


# ---------------------------------------------------------------------------------------------
# metrics named by keys and headers
# ---------------------------------------------------------------------------------------------

#: metric ids a benchmark record may carry, with the definition each stands for
METRICS = {
    "out_tps": "output (generated) tokens per second as the benchmark prints it",
    "tpot_ms": "mean time per output token (ms), excluding the first where the tool says so",
    "ttft_ms": "mean time to first token (ms)",
    "req_ps": "completed requests per second",
    "duration_s": "wall time of the whole benchmark (s)",
    "mal": "mean acceptance length (tokens per verify step, bonus included)",
    "load": "requests in flight: configured max concurrency, else batch size",
    "value": "a speed printed without a unit (assumed tokens/s; compared only with other unit-less speeds)",
}

_NOT_OUTPUT = re.compile(r"input|prompt|prefill|total token|peak|last gen|latency|\btime\b|accepted|drafted|speedup|speed-up|ratio|\bvs\b|%|"
                         r"retokeni", re.I)
_MAL_KEY = re.compile(r"accept(?:ance|ed)?[ _-]*len(?:gth)?|acc(?:pt|ept)?\.?[ _-]*len|mean accepted tokens|"
                      r"^\s*#?\s*(?:al|τ|tau|mat|mean[ _-]?len(?:gth)?)\s*$", re.I)
_LOAD_KEY = re.compile(r"^(?:bs|batch(?:[ _-]?size)?|max(?:imum)?[ _-]*(?:request[ _-]*)?concurrency|concurrency|"
                       r"max_concurrency|num[_ ]?clients|parallel|np)\b", re.I)


def metric_of(key: str, unit: str = "") -> str | None:
    """The metric a ``key: value unit`` pair (or a table header) names, None when it is not one of ours."""
    k, u = key.strip(), unit.lower()
    if _MAL_KEY.search(k):
        return "mal"
    if re.search(r"\bTTFT\b|time to first token|first token", k, re.I):
        return None if re.search(r"median|p\d\d|max|std", k, re.I) else "ttft_ms"
    if re.search(r"\bTPOT\b|\bITL\b|latency per output token|time per output token|inter-token", k, re.I):
        return None if re.search(r"median|p\d\d|max|std", k, re.I) else "tpot_ms"
    if re.search(r"req(?:uest)?s?/s|requests?/s", u + " " + k, re.I):
        return "req_ps"
    if re.search(r"tok(?:en)?s?/s|tokens?/sec|tokens per second|\btps\b|t/s", u + " " + k, re.I) or re.search(
            r"throughput|speed|decode", k, re.I):
        return None if _NOT_OUTPUT.search(k) else "out_tps"
    if re.search(r"total time|benchmark duration|duration \(s\)|elapsed", k, re.I):
        return "duration_s"
    if _LOAD_KEY.search(k):
        return "load"
    return None


# ---------------------------------------------------------------------------------------------
# numbers as printed
# ---------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"^\s*[~≈]?\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?:\s*[-–~]\s*(\d+(?:\.\d+)?))?\s*(.*?)\s*$")


def number(cell: str) -> tuple[float | None, str, bool]:
    """``(value, unit, is_range)`` of a printed number: ``10-11 tokens/s`` is the range's midpoint; bold
    and backticks are ignored; ``-``, ``N/A`` and words give None."""
    text = cell.strip().strip("*`_").strip()
    m = _NUMBER.match(text)
    if not m:
        return None, "", False
    lo = float(m.group(1))
    hi = float(m.group(2)) if m.group(2) is not None else lo
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None, "", False  # 1e999 is no measurement
    if m.group(2) is not None:
        return (lo + hi) / 2.0, m.group(3), True
    return lo, m.group(3), False


def to_metric_value(metric: str, value: float, unit: str, key: str = "") -> float | None:
    """``value`` in the metric's own unit: latencies to ms (``0.54 s`` per output token is 540 ms);
    a speed in tokens per minute or ms per token is not a tokens/s speed."""
    u = (unit or key).lower()
    if metric in ("tpot_ms", "ttft_ms"):
        if re.search(r"\(ms\)|\bms\b", key.lower() + " " + unit.lower()):
            return value
        if re.search(r"\bs\b|sec|\(s\)", u):
            return value * 1000.0
        return value
    if metric == "out_tps" and re.search(r"ms/tok|/min", u):
        return None
    return value


# ---------------------------------------------------------------------------------------------
# two speeds compared in one phrase
# ---------------------------------------------------------------------------------------------

_SPEED_UNIT = r"(?:tok(?:en)?s?/s(?:ec)?|t/s|tokens per second)"
_VS = re.compile(rf"(?P<a>\d+(?:\.\d+)?)\s*(?P<ua>{_SPEED_UNIT})?\s*(?P<la>(?:with|w/|using)\s+[\w.-]+|[A-Za-z][\w.-]*)?"
                 rf"\s+vs\.?\s+(?P<b>\d+(?:\.\d+)?)\s*(?P<ub>{_SPEED_UNIT})\s*"
                 rf"(?P<lb>(?:with|w/|without|w/o)\s+[\w.-]+|[A-Za-z][\w.-]*)?", re.I)


def vs_speeds(text: str, header: str = "") -> tuple[tuple[str, float], tuple[str, float]] | None:
    """``(speculative (label, speed), baseline (label, speed))`` of a phrase comparing two speeds:
    ``5.1 t/s with MTP vs 21.4 t/s no-spec`` (each side labelled), or ``61 vs 90 tok/s`` under a
    header ``decode vs baseline`` (the header says which side is the baseline). None otherwise."""
    m = _VS.search(text)
    if not m:
        return None
    a, b = float(m.group("a")), float(m.group("b"))
    la, lb = (m.group("la") or "").strip(), (m.group("lb") or "").strip()
    ka, kb = classify(la).kind, classify(lb).kind
    if {ka, kb} == {SPEC, BASE}:
        return ((la, a), (lb, b)) if ka == SPEC else ((lb, b), (la, a))
    if not la and not lb and re.search(r"\bvs\.?\s+(?:baseline|plain|no[ _-]?spec\w*|none|non[ _-]?spec\w*|"
                                       r"autoregressive|ar\b|base\b|target[ _-]only)", header, re.I):
        return ("", a), ("baseline", b)
    return None


__all__ = ["BASE", "METRICS", "SPEC", "Status", "classify", "metric_of", "number", "to_metric_value", "vs_speeds"]
