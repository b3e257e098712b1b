"""The acceptance of every (run, file, engine) unit of a fleet in one grouped polars pass.

The rules judge each run's windows per (source, engine_id) unit (``rules.base.window_acceptance``).
On a fleet of 500 runs that is a few thousand small frames, and the two per-position metrics
(``metrics.per_position_acceptance`` and ``metrics.alpha_mle``) cost most of it: a dozen expressions
each, collected once per unit. Here they are aggregated for all units at once (``group_by`` run,
source, engine) with the same row-order sums (``cum_sum().last()``), over the rows the run's own
``Context`` would aggregate in the same order, so every number is bit-identical to the per-run path
(``tests/test_unit_pass.py`` compares the report JSON). The results seed each run's rule context
(:func:`seeds`), which then skips those computations.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from specdec_diag.analysis import metrics
from specdec_diag.analysis.aggregation import WINDOW_PRECEDENCE, _has_spec, _ordered_sum, _with_drafts
from specdec_diag.analysis.rules.base import Acceptance, window_acceptance
from specdec_diag.analysis.runs import Runs
from specdec_diag.schema import SPEC_COLUMNS

RUN = "_run"
UNIT = [RUN, "source", "engine_id"]


def fleet_rows(runs: Runs, only: list[str] | None = None) -> pl.DataFrame:
    """Every run's aggregated spec-window rows with its run id (``_run``): per run what
    ``Context.spec_windows`` holds (trace windows left out, engine ids filled, sorted by source,
    engine, time, line; one window kind per source, the cumulative total per engine); ``only``: of
    these run ids."""
    r = runs.result
    w = r.windows
    if w.is_empty() or not any(c in w.columns for c in SPEC_COLUMNS):
        return _with_drafts(w.head(0)).with_columns(pl.lit(None, pl.Utf8).alias(RUN))
    traces = set(r.steps["source"].unique().to_list()) if r.steps.height else set()
    traces |= {str(h.get("source")) for h in r.headers if h.get("source")}
    w = w.with_columns(runs.window_run.alias(RUN))
    if only is not None:
        w = w.filter(pl.col(RUN).is_in(only))
    if traces:
        w = w.filter(~pl.col("source").is_in(list(traces)))
    w = w.with_columns(pl.col("engine_id").fill_null("")).sort([RUN, "source", "engine_id", "time", "line"],
                                                                nulls_last=True)
    w = w.filter(_has_spec(w)).with_columns(pl.col("window").fill_null("interval"), pl.col("source").fill_null(""))
    rank = pl.col("window").replace_strict({k: i for i, k in enumerate(WINDOW_PRECEDENCE)},
                                           default=len(WINDOW_PRECEDENCE), return_dtype=pl.Int32)
    w = w.filter(rank == rank.min().over([RUN, "source"]))  # unknown labels only: all kept, as they are
    cumulative = pl.col("window") == "cumulative"
    if w.select(cumulative.any()).item():  # the total: the last row by line of each engine
        last = pl.int_range(pl.len()).sort_by("line", nulls_last=False).last().over(UNIT)
        w = w.filter(~cumulative | (pl.int_range(pl.len()).over(UNIT) == last))
    return _with_drafts(w)


def per_position_by_unit(rows: pl.DataFrame) -> dict[tuple[str, str, str], list[float | None] | None]:
    """``metrics.per_position_acceptance`` of each unit's rows, all units in one aggregation."""
    pp = pl.col("per_position_acceptance")
    rows = rows.filter(pp.is_not_null() & (pp.list.len() > 0))
    if rows.height == 0:
        return {}
    # a unit with a window without weight takes the plain mean of its windows (as the per-unit metric)
    w = pl.when(pl.col("_drafts").is_null().any().over(UNIT)).then(pl.lit(1.0, pl.Float64)).otherwise(pl.col("_drafts"))
    rows = rows.with_columns(w.alias("_w"))
    kmax = int(rows.select(pp.list.len().max()).item())
    exprs = [pp.list.len().max().alias("_k")]
    for j in range(kmax):
        x = pp.list.get(j, null_on_oob=True)
        valid = x.is_not_null() & x.is_not_nan()
        beyond = pp.list.len() <= j
        exprs += [_ordered_sum((pl.col("_w") * x).filter(valid)).alias(f"n{j}"),
                  _ordered_sum(pl.col("_w").filter(valid | beyond)).alias(f"d{j}")]
    out: dict[tuple[str, str, str], list[float | None] | None] = {}
    for row in rows.group_by(UNIT).agg(exprs).iter_rows():
        vals: list[float | None] = []
        for j in range(int(row[3])):
            num, den = row[4 + 2 * j], row[5 + 2 * j]
            vals.append(num / den if den > 0 else None)
        while vals and vals[-1] is None:
            vals.pop()
        out[(row[0], row[1], row[2])] = vals or None
    return out


def alpha_by_unit(rows: pl.DataFrame) -> dict[tuple[str, str, str], float | None]:
    """``metrics.alpha_mle`` of each unit's rows, all units in one aggregation."""
    pp, d = pl.col("per_position_acceptance"), pl.col("_drafts")
    rows = rows.filter(pp.is_not_null() & d.is_not_null())
    if rows.height == 0:
        return {}
    kmax = int(rows.select(pp.list.len().max()).item() or 0)
    total = pl.lit(0.0)  # + 0.0 for positions beyond a unit's longest list: the same float
    for j in range(kmax):
        total = total + pp.list.get(j, null_on_oob=True).fill_null(0.0)
    bad = pp.list.eval(pl.element().is_null() | pl.element().is_nan()).list.any()
    ok = (pp.list.len() > 0) & ~bad.fill_null(True)
    acc_t = pl.when(pl.col("accepted_tokens").is_not_null()).then(pl.col("accepted_tokens").cast(pl.Float64)) \
        .otherwise(d * total)
    rej_t = d * (1.0 - pp.list.last())
    agg = rows.group_by(UNIT).agg(_ordered_sum(acc_t.filter(ok)).alias("a"), _ordered_sum(rej_t.filter(ok)).alias("r"))
    return {(u, s, e): (metrics.alpha_mle_counts(a, rj) if a + rj > 0 else None) for u, s, e, a, rj in agg.iter_rows()}


def unit_acceptance(runs: Runs, only: list[str] | None = None) -> dict[str, dict[tuple[str, str], Acceptance]]:
    """run id -> {(source, engine_id): Acceptance}, equal to ``rules.base.window_acceptance`` of each
    of the run's spec-window groups; the counts and rates come from the same metric functions on the
    unit's rows, the per-position rates and alpha from the grouped pass. ``only``: these runs."""
    rows = fleet_rows(runs, only)
    if rows.height == 0:
        return {}
    pps, alphas = per_position_by_unit(rows), alpha_by_unit(rows)
    out: dict[str, dict[tuple[str, str], Acceptance]] = {}
    for key, g in rows.partition_by(UNIT, as_dict=True, maintain_order=True).items():
        run, src, eng = (str(key[0]), str(key[1]), str(key[2] or ""))
        out.setdefault(run, {})[(src, eng)] = _acceptance(g.drop(RUN), pps.get(key), alphas.get(key))
    return out


def _acceptance(df: pl.DataFrame, pp: list[float | None] | None, alpha: float | None) -> Acceptance:
    """``rules.base.window_acceptance`` with the per-position rates and alpha given."""
    return window_acceptance(df, per_position=pp, alpha=alpha, aggregated=True)


def seeds(units: dict[tuple[str, str], Acceptance] | None) -> dict[Any, Any]:
    """A run's unit acceptances as rule-context memo entries (``Context.window_acceptance``)."""
    return {("window_acceptance", key): acc for key, acc in (units or {}).items()}


__all__ = ["fleet_rows", "per_position_by_unit", "alpha_by_unit", "unit_acceptance", "seeds"]
