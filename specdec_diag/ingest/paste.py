"""Excerpts as people paste them into issues and chats (issue 12, deliverable 2): the one place where
pasted text is normalised before the engine parsers read it.

A small file (the whole of it fits the scan's 64 KiB sample) that shows paste damage is taken whole by
this source; :func:`normalise` repairs it line by line and across lines, and every line source of the
registry then parses the repaired lines exactly as it parses a log (its own markers, its own parser,
its own ``finalize``). Big logs never come here: their lines go the ordinary way, where the parsers
already tolerate prefixes (Docker, Kubernetes) and colour codes.

Repairs, each reported (``pasted_excerpt`` config fact; the affected windows' ``definition_note``):

* decorations stripped: ANSI colours (also with the ESC byte lost: ``[32mINFO[0m``), Kubernetes CRI
  prefixes (``<RFC 3339> stdout F ``; a ``P`` partial line is joined to its continuation), Docker
  Compose prefixes (``vllm-1  | ``), Markdown quotes (``> ``), code fences, inline code and bold
  marks, line-number gutters (``  12 | ``, ``12: ``, only where numbers run consecutively or the rest
  is a log line);
* wrapped lines joined: a metric line cut at the terminal or issue width, a launch command over several
  lines (backslash continuations, or cut mid-word);
* a per-position vector on its own line joined to the SpecDecoding line before it;
* a marker the poster left out restored where the fields are unambiguous: SGLang ``accept len: ..,
  accept rate: ..`` without ``Decode batch``, vLLM ``Mean acceptance length: .., Accepted throughput:
  ..`` without ``SpecDecoding metrics:``, vLLM V0 fields without ``Speculative metrics:``. At least
  two of the format's own field labels must be present; a lone number is never read as a record.

Nothing is invented: a field absent from the text stays absent (null) in the record.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from specdec_diag.ingest._textparse import concat, configs, lines_from_texts, malformed_rows, split_lines
from specdec_diag.ingest.base import STEPS_SCHEMA, Parsed, ParseOptions, Source
from specdec_diag.ingest.launch import engine_of
from specdec_diag.ingest.paste_fields import fields_only, line_reading, restored_engine
from specdec_diag.ingest.paste_tables import aligned_tables, table_column, yaml_args
from specdec_diag.ingest.timestamps import anchor_from
from specdec_diag.schema import CONFIG_SCHEMA, MALFORMED_SCHEMA, open_text

FAMILY = "paste"
#: a file whose 64 KiB sample is shorter than this is known whole: only such files are taken
WHOLE_CHARS = 60_000

# --- per-line decorations -----------------------------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\[\d{1,3}(?:;\d{1,3})*m")
_CRI = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}) (?:stdout|stderr) ([FP]) ")
_COMPOSE = re.compile(r"^([A-Za-z0-9][\w.\-]*)\s+\|(?: |$)")
_QUOTE = re.compile(r"^\s{0,3}(?:>\s?)+")
_GUTTER = re.compile(r"^\s*(\d{1,6})(?:\s*[|│]\s?|:\s|\t)")
_FENCE = re.compile(r"^\s*(?:```|~~~)")
#: the start of a log record (what follows a container or gutter prefix)
LOG_START = re.compile(
    r"^\s*(?:\(\w+ pid=\d+\)|\[?\d{4}-\d{2}-\d{2}|(?:INFO|WARNING|WARN|ERROR|DEBUG|CRITICAL)\b|\d+\.\d{2}\.\d{3}\.\d{3} "
    r"|(?:slot|srv|main|common_\w+|llama_\w+|print_\w+)\b|\[[\w.\-]+\]|SpecDecoding|Speculative metrics|Decode batch)")

# --- records whose marker a poster may leave out ---------------------------------------------------
_SGL_FIELDS = ("accept len:", "accept rate:", "#running-req:", "#token:", "token usage:", "cuda graph:",
               "gen throughput (token/s):", "#queue-req:")
_V1_FIELDS = ("Draft acceptance rate:", "Mean acceptance length:", "Accepted throughput:", "Drafted throughput:",
              "Accepted:", "Drafted:", "Per-position acceptance rate:", "Avg Draft acceptance rate:")
_V0_FIELDS = ("Draft acceptance rate:", "System efficiency:", "Number of speculative tokens:",
              "Number of accepted tokens:", "Number of draft tokens:", "Number of emitted tokens:")
_RESTORE = (  # (marker, fields, a field that must be present, what the record is read as)
    ("Decode batch, ", _SGL_FIELDS, "accept len:", "an SGLang decode window"),
    ("SpecDecoding metrics: ", _V1_FIELDS, "Mean acceptance length:", "a vLLM V1 SpecDecoding window"),
    ("SpecDecoding metrics: ", _V1_FIELDS, "Drafted:", "a vLLM V1 SpecDecoding window"),
    ("Speculative metrics: ", _V0_FIELDS, "System efficiency:", "a vLLM V0 speculative-metrics window"),
)
_ACCEPT_COLLAPSED = re.compile(r"^\s*accept(?: {0,3}| {5,})=\s*(?=\d)")
#: lines that carry one record each (a wrapped piece is joined to them)
RECORD_MARKERS = ("SpecDecoding metrics:", "Speculative metrics:", "Avg prompt throughput:", "Decode batch",
                  "draft acceptance", "#calls(b,g,a)")
_VECTOR = re.compile(r"^\s*(?:Per-position acceptance rate:\s*)?\(?((?:\d\.\d+|nan)(?:,\s*(?:\d\.\d+|nan))+),?\)?\s*$")
_VALUE_START = re.compile(r"^\s*(?:[-+(\[]?\.?\d|(?:nan|inf|True|False|None)\b|['\"])", re.IGNORECASE)
_LABEL_NUMBER = re.compile(r"^\s*[A-Za-z#][\w #()/.%-]*[:=]\s*-?\d")
#: an indented "label = number" line (llama.cpp's "      total time =  580.00 ms"): a line of its own
_ALIGNED_LABEL = re.compile(r"^\s{2,}[A-Za-z#][\w #()/.%-]*[:=]\s*-?\d")
_NEW_COMMAND = re.compile(r"^\s*(?:\$\s|#|>>>|python|vllm\b|sglang\b|llama-|\./|CUDA_|export\b|curl\b|cd\b|docker\b)")
#: how a complete record line ends (vLLM "... 9.1%" / "Drafted: 975 tokens" / "Waiting: 0 reqs",
#: SGLang's trailing ", ", llama.cpp's ")" or "ms")
_COMPLETE = ("%", "tokens", "reqs", ")", "ms", "]")
_RULE = re.compile(r"^\s*(?:={3,}|-{3,})")  # a benchmark block's header or rule line
_PROSE = re.compile(r"\b[A-Za-z]+ [a-z]+ [a-z]+ [a-z]+ [a-z]+\b")
_WRAP_WIDTH = 60  # a piece shorter than this ends its line unless it ends mid-list (',' / ':')


@dataclass
class Repairs:
    """What :func:`normalise` did: kinds of decoration stripped, and per repaired line what was assumed."""

    stripped: set[str] = field(default_factory=set)
    notes: dict[int, list[str]] = field(default_factory=dict)
    #: line -> the RFC 3339 time of a stripped Kubernetes prefix (a record without its own time gets it)
    times: dict[int, str] = field(default_factory=dict)

    def note(self, line: int, what: str) -> None:
        self.notes.setdefault(line, []).append(what)

    @property
    def any(self) -> bool:
        return bool(self.stripped or self.notes)


# ---------------------------------------------------------------------------------------------
# per-line cleaning
# ---------------------------------------------------------------------------------------------

def _consecutive_gutters(texts: list[str]) -> set[int]:
    """Indices of lines whose leading number continues the previous line's (a real line-number gutter)."""
    nums = [int(m.group(1)) if (m := _GUTTER.match(t)) else None for t in texts]
    out: set[int] = set()
    for i in range(1, len(nums)):
        if nums[i] is not None and nums[i - 1] is not None and nums[i] == nums[i - 1] + 1:
            out |= {i - 1, i}
    return out


def _strip(text: str, i: int, gutters: set[int], rep: Repairs) -> str:
    """One line without the decorations around its log text."""
    if "\x1b" in text or "[0m" in text:
        new = _ANSI.sub("", text)
        if new != text:
            rep.stripped.add("ANSI colour codes")
            text = new
    for _ in range(3):  # prefixes nest: a quoted gutter, a quoted container line
        before = text
        if (m := _QUOTE.match(text)) and m.end() > 0:
            text = text[m.end():]
            rep.stripped.add("Markdown quote markers")
        if m := _CRI.match(text):
            rep.times.setdefault(i + 1, text[:text.index(" ")])
            text = text[m.end():]
            rep.stripped.add("Kubernetes CRI prefixes")
        if (m := _GUTTER.match(text)) and (i in gutters or LOG_START.match(text[m.end():])):
            text = text[m.end():]
            rep.stripped.add("line-number gutter")
        if (m := _COMPOSE.match(text)) and LOG_START.match(text[m.end():]):
            text = text[m.end():]
            rep.stripped.add("Docker Compose prefixes")
        if text == before:
            break
    if _FENCE.match(text):
        rep.stripped.add("code fences")
        return ""
    if "`" in text or "**" in text:
        text = text.replace("**", "").replace("`", "")
        rep.stripped.add("inline code / bold marks")
    return text


def _restore(text: str, line: int, rep: Repairs, summary: bool = False) -> str:
    """Put back the marker of a record whose fields were pasted without it (see module doc); note an
    SGLang decode line whose poster left fields out (no ``#running-req``), read from what it states."""
    if summary and (m := _ACCEPT_COLLAPSED.match(text)):  # llama-speculative's summary, spaces collapsed
        rep.note(line, "whitespace collapsed: read as llama.cpp's 'accept    =' summary line")
        return "accept    = " + text[m.end():]
    if "Decode batch" in text and "accept len:" in text and "#running-req:" not in text:
        rep.note(line, "SGLang decode line with fields left out (no #running-req / throughput): read as an "
                       "SGLang decode window from the fields it states")
        return text
    for marker, fields, required, what in _RESTORE:
        if marker.rstrip(", :") in text or required not in text:
            continue
        at = [text.find(f) for f in fields if f in text]
        if len(at) < 2:
            continue
        first = min(at)
        rep.note(line, f"fields pasted without their '{marker.rstrip(', :')}' marker: read as {what}")
        return text[:first] + marker + text[first:]
    return text


# ---------------------------------------------------------------------------------------------
# joining across lines
# ---------------------------------------------------------------------------------------------

def _is_record(text: str) -> bool:
    return any(m in text for m in RECORD_MARKERS)


def _restorable(text: str) -> bool:
    """Fields of a record pasted without its marker (what :func:`_restore` would restore)."""
    for marker, fields, required, _ in _RESTORE:
        if marker.rstrip(", :") not in text and required in text and sum(f in text for f in fields) >= 2:
            return True
    return False


def _continues_record(prev: str, nxt: str) -> bool:
    """``nxt`` is the rest of the record line ``prev`` wrapped at the terminal or page width: ``prev``
    stops where no record ends (inside a word, a number, after a label's ':' or a list's ',') and
    ``nxt`` is field text, not prose, a log line or a record of its own."""
    if nxt.strip() and _VECTOR.match(nxt) and prev.rstrip().endswith((":", "=")):
        return True  # a label whose vector went to the next line
    if not nxt.strip() or _is_record(nxt) or LOG_START.match(nxt) or _VECTOR.match(nxt) or _RULE.match(nxt):
        return False
    if not re.search(r"\d", nxt) or _PROSE.search(nxt) or _FENCE.match(nxt) or _ALIGNED_LABEL.match(nxt):
        return False
    tail = prev.rstrip()
    if tail.endswith((":", "=")) and not _VALUE_START.match(nxt):
        return False  # a label's value, not another label, is what a wrap after the label carries
    if tail.endswith(":") or (tail.endswith(",") and not prev.endswith(" ")):
        return True
    if tail.endswith(","):  # ", " ends an SGLang decode line (its trailing separator) only after its queue
        return not ("Decode batch" in prev and "#queue-req:" in prev)
    return len(prev) >= _WRAP_WIDTH and not tail.endswith(_COMPLETE)


def _cut_before_marker(cur: str, nxt: str) -> bool:
    """A log line wrapped before its record marker: the prefix on one line, the record on the next."""
    return (len(cur) >= _WRAP_WIDTH and not _is_record(cur) and bool(LOG_START.match(cur)) and _is_record(cur + nxt)
            and not LOG_START.match(nxt.lstrip(_CONTROL)) and not nxt[:1].isspace()
            and not cur.rstrip().endswith(_COMPLETE))


@functools.lru_cache(maxsize=4096)
def _reading(text: str) -> tuple[int, int]:
    return line_reading(_restore(text, 0, Repairs()), _line_sources())


def _reads_better(pieces: list[str], joined: str) -> bool:
    """The joined line reads at least as well as its pieces apart: no new malformed row and more of the
    record's fields, or nothing readable either way and no later piece a line of its own (with a
    marker). Junk glued onto a complete record breaks it or adds nothing, so it stays on its line."""
    apart = [_reading(p) for p in pieces]
    bad, cells = _reading(joined)
    before = sum(c for _, c in apart)
    if bad > sum(b for b, _ in apart):
        return False
    return cells > before or before == 0 and not any(_has_marker(p) for p in pieces[1:])


#: control bytes a damaged line may start with: a log line behind them is still a line of its own
_CONTROL = "".join(map(chr, range(32)))


def _continues_command(prev: str, nxt: str) -> bool:
    """``nxt`` carries on the launch command ``prev`` (a backslash continuation or a wrapped line)."""
    if not nxt.strip() or prev.rstrip().endswith("\\"):
        return bool(nxt.strip())
    if _NEW_COMMAND.match(nxt) or LOG_START.match(nxt) or _LABEL_NUMBER.match(nxt) or _has_marker(nxt):
        return False
    if re.match(r"\s*-[^\s-]|\s*--\S", nxt):  # a flag (a Markdown bullet "- " is not one)
        return True
    return len(prev) >= _WRAP_WIDTH and not _PROSE.search(nxt) and not nxt.lstrip().startswith(("- ", "* "))


def _has_marker(text: str) -> bool:
    """A line some source reads on its own (a record, a benchmark block line): never a wrapped piece."""
    return _marker_rx().search(text) is not None


@functools.lru_cache(maxsize=1)
def _marker_rx() -> re.Pattern[str]:
    from specdec_diag.ingest.launch import MARKERS as LAUNCH

    return re.compile("|".join(re.escape(m) for s in _line_sources() for m in s.markers if m not in LAUNCH))


def _glue(prev: str, nxt: str, command: bool) -> str:
    """Join a wrapped piece: a backslash or a break before a flag is a space; a cut inside a word or
    number is nothing; a break after ',' or ':' keeps one space."""
    if command and prev.rstrip().endswith("\\"):
        return prev.rstrip()[:-1].rstrip() + " " + nxt.strip()
    if nxt[:1].isspace() or (command and nxt.startswith("--") and not prev.endswith("-")):
        return prev.rstrip() + " " + nxt.strip()
    if prev.rstrip().endswith((",", ":")) and not prev.endswith(" "):
        return prev + " " + nxt
    return prev + nxt


def _wrapped_run(out: list[str], i: int) -> tuple[list[str], str | None]:
    """Line ``i`` joined with 0, 1, 2 ... of the lines after it that continue it (a wrapped record or
    launch command), and which of the two it is (None: neither, nothing follows)."""
    joined = [out[i]]
    if _cut_before_marker(out[i], out[i + 1] if i + 1 < len(out) else ""):
        joined.append(out[i] + out[i + 1])
    record = _is_record(joined[-1]) or _restorable(joined[-1])
    command = not record and engine_of(joined[-1]) is not None
    if not (record or command):
        return joined[:1], None
    j = i + len(joined)
    while j < len(out) and j - i <= 40:
        if not (_continues_command if command else _continues_record)(joined[-1], out[j]):
            break
        joined.append(_glue(joined[-1], out[j], command))
        j += 1
    return joined, "command" if command else "record"


def _join(texts: list[str], rep: Repairs) -> list[str]:
    """Wrapped records and commands joined onto their first line (the joined lines become empty, so
    every line keeps its number); a lone per-position vector joined to the SpecDecoding line above.
    A record takes the longest run of pieces whose join reads at least as well as the pieces apart, so
    junk after a complete record line stays junk on its own line."""
    out = list(texts)
    i = 0
    while i < len(out):
        joined, kind = _wrapped_run(out, i)
        n = len(joined) - 1
        if kind == "record":
            n = next((k for k in range(n, 0, -1) if _reads_better(out[i:i + k + 1], joined[k])), 0)
        for k in range(1, n + 1):
            rep.note(i + 1, f"line {i + k + 1} joined to it (a wrapped {kind if kind == 'command' else 'line'})")
        out[i], out[i + 1:i + n + 1] = joined[n], [""] * n
        j = i + n + 1
        if kind == "record" and "Mean acceptance length:" in out[i] and "Per-position" not in out[i] and j < len(out):
            if m := _VECTOR.match(out[j]):
                out[i] = _with_vector(out[i], m.group(1))
                out[j] = ""
                rep.note(i + 1, f"per-position vector of line {j + 1} read as this window's")
                j += 1
        i = j
    return out


def _with_vector(text: str, vec: str) -> str:
    """The SpecDecoding line with its per-position vector where vLLM prints it (before the average)."""
    field_ = ", Per-position acceptance rate: " + ", ".join(v.strip() for v in vec.split(","))
    k = text.find(", Avg Draft acceptance rate")
    base = text.rstrip().rstrip(",")
    return base + field_ if k < 0 else text[:k] + field_ + text[k:]


def normalise(texts: list[str]) -> tuple[list[str], Repairs]:
    """The pasted lines repaired (same count: line numbers stay those of the file) and what was done."""
    rep = Repairs()
    if (column := table_column(texts)) is not None:
        texts = column
        rep.stripped.add("table-column pipes")
    texts, recut = aligned_tables(texts)
    for i in recut:
        rep.note(i + 1, "whitespace-aligned table row read as columns")
    gutters = _consecutive_gutters(texts)
    clean: list[str] = []
    partial = ""
    for i, t in enumerate(texts):
        if (m := _CRI.match(t)) and m.group(1) == "P":  # a CRI partial line: its rest is on the next line
            partial += t[m.end():]
            clean.append("")
            rep.stripped.add("Kubernetes CRI prefixes")
            continue
        s = _strip(t, i, gutters, rep)
        clean.append(partial + s)
        partial = ""
    clean, commands = yaml_args(clean)
    for i, j in commands:
        rep.note(i + 1, f"YAML list of lines {i + 1}-{j} read as one command line")
    joined = _join(clean, rep)
    summary = any("n_accept" in t or "n_drafted" in t for t in joined)
    return [_restore(t, i + 1, rep, summary) for i, t in enumerate(joined)], rep


# ---------------------------------------------------------------------------------------------
# the source: small pasted files, normalised, then read by every line source
# ---------------------------------------------------------------------------------------------

def _line_sources() -> list[Source]:
    from specdec_diag.ingest.registry import SOURCES  # (the registry lists this module too)

    return [s for s in SOURCES if s.reads_lines and s.family != FAMILY]


def _other_whole_file(sample: str) -> bool:
    from specdec_diag.ingest.registry import SOURCES

    for s in SOURCES:
        if s.family == FAMILY or s.parse_file is None:
            continue
        try:
            if s.detect(sample):
                return True
        except Exception:  # noqa: BLE001 - a broken detector is the scan's business, not ours
            continue
    return False


def _repairs_matter(texts: list[str], fixed: list[str], rep: Repairs) -> bool:
    """Repairs that change what a parser reads: a restored marker, a joined line, or decorations
    stripped from a line that carries some source's marker or a launch command."""
    if rep.notes or any(_is_record(t) and _untimed(t) for t in fixed):
        return True
    if not rep.stripped:
        return False
    markers = {m for s in _line_sources() for m in s.markers}
    return any(a != b and any(m in b for m in markers) for a, b in zip(texts, fixed, strict=True))


def detect(sample: str) -> bool:
    """A small file (known whole from its sample) with paste damage that changes what is parsed."""
    if len(sample) >= WHOLE_CHARS or not sample.strip():
        return False
    texts = split_lines(sample.replace("\r\n", "\n"))
    fixed, rep = normalise(texts)
    return _repairs_matter(texts, fixed, rep) and not _other_whole_file(sample)


#: timestamps at the head of a line in styles the engine parsers do not read (log shippers, Python
#: ``logging`` with a custom format): ISO with 'T' or offset, slashes
_HEAD_TIME = r"^\s*\[?(\d{4}[-/]\d{2}[-/]\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?)"


_VLLM_RECORDS = ("SpecDecoding metrics:", "Speculative metrics:", "Avg prompt throughput:")
#: a log shipper's or custom logging format's time (slashes, ISO 'T') where no engine prints one
_SHIPPER_TIME = re.compile(r"^\s*\[?(?:\d{4}/\d{2}/\d{2} |\d{4}-\d{2}-\d{2}T)")


def _untimed(text: str) -> bool:
    """A record line whose time is in a style its engine's parser does not read (vLLM reads an ISO
    head itself; SGLang and llama.cpp only their own prefixes; nobody reads slashes)."""
    m = _SHIPPER_TIME.match(text)
    return bool(m) and ("/" in m.group(0) or not any(k in text for k in _VLLM_RECORDS))


def _fill_times(windows: pl.DataFrame, lines: pl.DataFrame, rep: Repairs) -> pl.DataFrame:
    """Records without a time take the one their line starts with (or its stripped Kubernetes prefix)."""
    if windows.is_empty() or windows["time"].null_count() == 0:
        return windows
    head = lines.select("line", pl.col("text").str.extract(_HEAD_TIME, 1).alias("_t"))
    if rep.times:
        cri = pl.DataFrame({"line": list(rep.times), "_c": list(rep.times.values())},
                           schema={"line": pl.Int64, "_c": pl.Utf8})
        head = head.join(cri, on="line", how="left").select("line", pl.coalesce("_t", "_c").alias("_t"))
    t = (pl.col("_t").str.replace_all("/", "-").str.replace(",", ".").str.replace("T", " ").str.slice(0, 26)
         .str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False).dt.replace_time_zone("UTC"))
    got = windows.join(head.with_columns(t.alias("_t")), on="line", how="left")
    return got.with_columns(pl.coalesce("time", "_t").alias("time")).drop("_t")


def _annotate(p: Parsed, rep: Repairs, source: str) -> Parsed:
    """Say what was assumed: each repaired record's ``definition_note`` names the repair, and one
    ``pasted_excerpt`` config fact lists the decorations stripped."""
    if rep.notes and p.windows.height:
        notes = pl.DataFrame({"line": list(rep.notes), "_paste": ["pasted excerpt: " + "; ".join(v)
                                                                  for v in rep.notes.values()]},
                             schema={"line": pl.Int64, "_paste": pl.Utf8})
        w = p.windows.join(notes, on="line", how="left")
        note = pl.when(pl.col("_paste").is_null()).then(pl.col("definition_note")).when(
            pl.col("definition_note").is_null() | (pl.col("definition_note") == "")).then(pl.col("_paste")).otherwise(
            pl.col("definition_note") + pl.lit("; ") + pl.col("_paste"))
        p.windows = w.with_columns(note.alias("definition_note")).drop("_paste")
    if rep.stripped:
        fact = configs([(1, "pasted_excerpt", "stripped " + ", ".join(sorted(rep.stripped)))], source, "paste")
        p.configs = concat([p.configs, fact], CONFIG_SCHEMA)
    return p


def parse_file(path: Path, source: str) -> Parsed:
    """Normalise the excerpt, then let every line source parse its own marker lines of it."""
    with open_text(path) as fh:
        raw = fh.read()
    texts = split_lines(raw)
    fixed, rep = normalise(texts)
    lines = lines_from_texts(fixed)
    options = ParseOptions(year_anchor=anchor_from(raw[:65536], path.stat().st_mtime))
    parts: list[Parsed] = []
    bad: list[tuple[int, str, str]] = []
    for src in _line_sources():
        mine = lines.filter(pl.col("text").str.contains("|".join(re.escape(m) for m in src.markers)))
        if not mine.height:
            continue
        assert src.parse is not None
        try:
            got = src.parse(mine, source, options)
            if src.finalize is not None and got.windows.height:
                got.windows = src.finalize(got.windows)
        except Exception as exc:  # noqa: BLE001 - a parser bug becomes a malformed row, not a failed scan
            bad.append((int(mine["line"][0]), f"internal error in the {src.family} parser: "
                                              f"{type(exc).__name__}: {exc}", ""))
            continue
        parts.append(got)
    out = Parsed(
        windows=pl.concat([p.windows for p in parts if p.windows.height], how="diagonal_relaxed")
        if any(p.windows.height for p in parts) else Parsed().windows,
        malformed=concat([p.malformed for p in parts] + [malformed_rows(bad, source)], MALFORMED_SCHEMA),
        configs=concat([p.configs for p in parts], CONFIG_SCHEMA),
        steps=concat([p.steps for p in parts], STEPS_SCHEMA),
    )
    out.windows = _fill_times(out.windows, lines, rep)
    restored = {ln: eng for ln, notes in rep.notes.items() for n in notes if (eng := restored_engine(n))}
    if restored:
        out.windows, out.malformed = fields_only(lines, restored, out.windows, out.malformed, out.configs, source)
    return _annotate(out, rep, source)


SOURCE = Source(family=FAMILY, markers=(), detect=detect, parse_file=parse_file)
