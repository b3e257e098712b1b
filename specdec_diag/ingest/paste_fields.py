"""Records pasted as bare fields: the part of :mod:`specdec_diag.ingest.paste` that reads a restored
record the engine's own parser rejects because the paste left out fields the log line always has
(SGLang ``accept len: 1.00, accept rate: 0.00`` quoted without ``#running-req`` or the throughput;
vLLM ``Mean acceptance length: 1.00, Accepted throughput: ...`` without the ``Accepted``/``Drafted``
counts). Such a record keeps exactly the fields the text states; every other column stays null.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import polars as pl

from specdec_diag.ingest._textparse import NUM, concat, lines_from_texts, reject_windows
from specdec_diag.ingest.base import NO_OPTIONS, Source
from specdec_diag.schema import CONFIG_SCHEMA, MALFORMED_SCHEMA, WINDOW_SCHEMA, conform_windows

#: vLLM V1 fields a pasted SpecDecoding fragment may carry (value pattern, column)
_V1: tuple[tuple[str, str], ...] = (
    (r"Mean acceptance length: " + NUM, "mean_acceptance_length"),
    (r"Accepted throughput: " + NUM + " tokens/s", "accepted_tps"),
    (r"Drafted throughput: " + NUM + " tokens/s", "drafted_tps"),
    (r"Accepted: (\d+) tokens", "accepted_tokens"),
    (r"Drafted: (\d+) tokens", "draft_tokens"),
)
_V1_RATE = r"(?:Avg )?Draft acceptance rate: " + NUM + "%"
_V1_PP = r"Per-position acceptance rate: ((?:\d\.\d+|nan)(?:, (?:\d\.\d+|nan))*)"
V1_NOTE = ("mean acceptance length = tokens per verify step incl. the bonus token (vLLM's definition since "
           "mid-2025; the version is not in the excerpt); acceptance_rate = accepted / drafted")


def _vllm_windows(lines: pl.DataFrame, source: str) -> pl.DataFrame:
    """vLLM V1 SpecDecoding fragments: the fields they state, nothing else."""
    text = pl.col("text")
    cols = [text.str.extract(pat, 1).cast(pl.Float64, strict=False).alias(col) for pat, col in _V1]
    df = lines.with_columns(
        *cols,
        (text.str.extract(_V1_RATE, 1).cast(pl.Float64, strict=False) / 100).alias("_rate"),
        text.str.extract(_V1_PP, 1).str.split(", ").cast(pl.List(pl.Float64), strict=False)
        .alias("per_position_acceptance"),
    )
    rate = pl.when(pl.col("draft_tokens") > 0).then(pl.col("accepted_tokens") / pl.col("draft_tokens")).otherwise(
        pl.col("_rate"))
    return df.with_columns(
        rate.alias("acceptance_rate"),
        pl.col("accepted_tokens").cast(pl.Int64), pl.col("draft_tokens").cast(pl.Int64),
        pl.lit("vllm-v1-specdecoding-fields").alias("format"), pl.lit("vllm").alias("engine"),
        pl.lit("interval").alias("window"), pl.lit(V1_NOTE).alias("definition_note"),
        pl.lit(source).alias("source"),
    ).filter(pl.col("mean_acceptance_length").is_not_null() | pl.col("acceptance_rate").is_not_null())


def _sglang_windows(lines: pl.DataFrame, source: str, cfg: pl.DataFrame) -> pl.DataFrame:
    """SGLang decode fields: read by the SGLang source's own field and conversion code, so accept len
    and accept rate mean what they mean in a full decode line."""
    from specdec_diag.ingest import sglang

    dec = sglang._decode_rows(sglang._fields(lines), cfg if cfg.height else pl.DataFrame(schema=CONFIG_SCHEMA))
    return dec.with_columns(pl.lit(source).alias("source"), pl.lit(sglang.ENGINE).alias("engine"))


def fields_only(lines: pl.DataFrame, restored: dict[int, str], windows: pl.DataFrame, malformed: pl.DataFrame,
                configs: pl.DataFrame, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(windows, malformed)`` with every restored record the engine parser rejected read from its
    fields (``restored``: line -> 'sglang' | 'vllm'); the parser's complaint about it is dropped."""
    have = set(windows["line"].to_list()) if windows.height else set()
    todo = {ln: eng for ln, eng in restored.items() if ln not in have}
    if not todo:
        return windows, malformed
    got: list[pl.DataFrame] = []
    for engine, build in (("vllm", _vllm_windows), ("sglang", _sglang_windows)):
        mine = lines.filter(pl.col("line").is_in([ln for ln, e in todo.items() if e == engine]))
        if mine.height:
            part = build(mine, source) if engine == "vllm" else build(mine, source, configs)
            got.append(conform_windows(part))
    new = concat(got, WINDOW_SCHEMA)
    new, bad = reject_windows(new, source, lines)
    done = set(new["line"].to_list())
    if malformed.height:
        malformed = malformed.filter(~pl.col("line").is_in(list(done)))
    out = pl.concat([windows, new], how="diagonal_relaxed") if windows.height else new
    return out, concat([malformed, bad], MALFORMED_SCHEMA)


def restored_engine(note: str) -> str | None:
    """Which engine a restore note of :mod:`paste` read the record as."""
    if re.search(r"SGLang", note):
        return "sglang"
    if re.search(r"vLLM V1", note):
        return "vllm"
    return None


def line_reading(text: str, sources: Sequence[Source]) -> tuple[int, int]:
    """``(malformed rows, non-null window cells)`` that ``text`` alone gives the line sources whose
    markers it carries: how well a line reads, so that a join of wrapped pieces can be checked to read
    at least as well as the pieces apart (a junk line glued onto a record breaks it)."""
    bad = cells = 0
    lines = lines_from_texts([text])
    for src in sources:
        if src.parse is None or not any(m in text for m in src.markers):
            continue
        try:
            got = src.parse(lines, "", NO_OPTIONS)
        except Exception:  # noqa: BLE001 - a parser that fails on the line has not read it
            bad += 1
            continue
        w = got.windows
        bad += got.malformed.height
        cells += w.height * w.width - sum(w.null_count().row(0)) if w.height else 0
    return bad, cells
