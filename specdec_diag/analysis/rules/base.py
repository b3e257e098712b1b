"""The rule machinery: findings, the :class:`Rule` base class and the shared :class:`Context`.

A rule is a class with a stable ``code`` (docs/architecture.md §5), a default severity, the thresholds
it reads and the user problems it comes from; its docstring is its documentation page. It lives in
``rules/<family>/<code in snake case>.py``, and its family is that package. ``check(ctx)``
returns findings; a rule that cannot judge returns nothing or an info "not enough data" note made by
:func:`insufficient`, never a guess. Rules only read tables: they never import torch, and never read a
trace header's ``fault`` (that is the answer key of the sample traces).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal

import polars as pl

from specdec_diag.analysis.rules.thresholds import Thresholds
from specdec_diag.analysis.stats import Sample, sample_definitions
from specdec_diag.analysis.summary import round_floats
from specdec_diag.ingest.base import IngestResult
from specdec_diag.schema import jsonable, trace_is_baseline, trace_rule_name, trace_temperature

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[str, ...] = ("error", "warning", "info")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
_PACKAGE = __name__.rpartition(".")[0]  # specdec_diag.analysis.rules


@dataclass
class Finding:
    """One diagnosis. ``evidence`` maps names to numbers; ``evidence['definitions']`` says what each
    number means, so a reader never has to guess an engine's convention. ``score`` ranks findings of
    one severity by estimated impact (roughly: share of throughput or of records affected, 0..1+)."""

    code: str
    severity: Severity
    title: str
    evidence: dict[str, Any]
    recommendation: str
    locations: list[dict[str, Any]] = field(default_factory=list)
    score: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report-contract shape (docs/architecture.md §4) plus ``score``."""
        return {"code": self.code, "severity": self.severity, "title": self.title,
                "evidence": _jsonable(self.evidence), "recommendation": self.recommendation,
                "locations": list(self.locations), "score": round(float(self.score), 6)}

    @property
    def sources(self) -> set[str]:
        return {loc["path"] for loc in self.locations if loc.get("path")}


def _jsonable(v: Any) -> Any:
    """Evidence as JSON: the one converter (schema.jsonable), then floats rounded to 6 places."""
    return round_floats(jsonable(v))


class Rule:
    """Base class. Subclasses set the class attributes and implement :meth:`check`; the docstring is
    the rule's page (what it detects, why it matters, evidence, example, fix)."""

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity] = "warning"
    #: Threshold fields this rule reads (documented on its page).
    thresholds: ClassVar[tuple[str, ...]] = ()
    #: Numbers of the user problems (docs/problems.md, ``#p07`` = problem 7) the rule answers.
    problems: ClassVar[tuple[int, ...]] = ()
    #: Sections of docs/theory.md the rule's reasoning rests on (``"5.7"``).
    theory: ClassVar[tuple[str, ...]] = ()
    #: Codes that, when they fire on the same source as an error, explain this rule's symptom: the
    #: finding is then kept but demoted to info with ``evidence['explained_by']``.
    explained_by: ClassVar[tuple[str, ...]] = ()
    #: The evidence the rule needs before it judges, as ``Need(unit, minimum, what)``: the first is the
    #: default unit of its findings; ``minimum`` is a threshold name or a number. Documented on the
    #: rule's page; a finding whose sample is below the minimum of its unit is emitted as info.
    needs: ClassVar[tuple[Need, ...]] = ()

    @property
    def family(self) -> str:
        """The package the rule's module lives in (``rules/acceptance/low_acceptance.py``: acceptance),
        so a rule's family and its place on disk cannot disagree."""
        package = type(self).__module__.rpartition(".")[0]
        return package.removeprefix(_PACKAGE + ".") if package.startswith(_PACKAGE + ".") else ""

    @property
    def doc(self) -> str:
        return inspect.cleandoc(type(self).__doc__ or "")

    @property
    def summary(self) -> str:
        return self.doc.splitlines()[0] if self.doc else self.name

    def check(self, ctx: Context) -> list[Finding]:  # pragma: no cover - abstract
        raise NotImplementedError

    def minimum(self, unit: str, th: Thresholds) -> float:
        """The documented minimum of ``unit`` for this rule (0 when the rule declares none)."""
        for need in self.needs:
            if need.unit == unit:
                return need.value(th)
        return 0.0

    def sample(self, ctx: Context, unit: str, size: float | None, explicit: bool = False) -> Sample:
        """The evidence behind a finding: ``size`` of ``unit`` against this rule's minimum for it."""
        return Sample(unit, float(size or 0), self.minimum(unit, ctx.thresholds), explicit)

    def finding(self, ctx: Context, title: str, evidence: dict[str, Any], recommendation: str,
                rows: pl.DataFrame | Iterable[tuple[str, int]] | None = None, *,
                severity: Severity | None = None, score: float = 0.0, sample: Sample | None = None,
                interval: dict[str, Any] | None = None) -> Finding:
        """A finding of this rule, with locations taken from ``rows`` (a frame with source/line or
        (path, line) pairs), capped at ``thresholds.max_locations``.

        Every finding carries ``evidence['sample']`` (by default: the distinct locations, in the
        rule's first unit) and, when given, ``evidence['interval']``. A warning or error whose sample
        is below the rule's documented minimum is emitted as info "too little data", never as a
        verdict (issue 12: judgments that know their sample size)."""
        locs, more = locations(rows, ctx.thresholds.max_locations)
        sev = severity or self.severity
        if sample is None:
            unit = self.needs[0].unit if self.needs else "records"
            sample = self.sample(ctx, unit, len(locs) + more)
        evidence = {**evidence, "sample": sample.to_evidence()}
        if interval is not None:
            evidence["interval"] = interval
        evidence["definitions"] = {**evidence.get("definitions", {}), **sample_definitions()}
        if sev != "info" and not sample.enough:
            evidence["original_severity"] = sev
            sev, title = "info", f"too little data ({sample.unit}: {sample.size:g} < {sample.minimum:g}): {title}"
        if more:
            evidence = {**evidence, "more_locations": more}
        return Finding(self.code, sev, title, evidence, recommendation, locs, score)


@dataclass(frozen=True)
class Need:
    """How much evidence a rule needs: at least ``minimum`` (a threshold name, or a number) of
    ``unit``; ``what`` says what is counted (shown on the rule's page)."""

    unit: str
    minimum: str | float
    what: str

    def value(self, th: Thresholds) -> float:
        if not isinstance(self.minimum, str):
            return float(self.minimum)
        factor, _, name = self.minimum.rpartition("*")  # "2 * min_windows"
        return float(factor or 1) * float(getattr(th, name.strip()))

    def describe(self, th: Thresholds) -> str:
        src = f" (`{self.minimum}`)" if isinstance(self.minimum, str) else ""
        return f"at least {self.value(th):g} {self.unit}{src}: {self.what}"


def locations(rows: pl.DataFrame | Iterable[tuple[str, int]] | None, cap: int = 20
              ) -> tuple[list[dict[str, Any]], int]:
    """Unique ``{"path", "line"}`` in input order, at most ``cap``; also how many were left out."""
    if rows is None:
        return [], 0
    if isinstance(rows, pl.DataFrame):
        if rows.is_empty() or "source" not in rows.columns:
            return [], 0
        # distinct pairs in first-seen order, column-wise: a finding may cite 10^5 windows
        u = rows.select(pl.col("source").cast(pl.Utf8), pl.col("line").cast(pl.Int64)).filter(
            pl.col("source").is_not_null()).unique(maintain_order=True)
        return [{"path": p, "line": ln} for p, ln in u.head(cap).iter_rows()], max(0, u.height - cap)
    pairs = rows
    seen: dict[tuple[str, int | None], None] = {}
    for path, line in pairs:
        if path is None:
            continue
        seen.setdefault((str(path), None if line is None else int(line)), None)
    keys = list(seen)
    return [{"path": p, "line": ln} for p, ln in keys[:cap]], max(0, len(keys) - cap)


def insufficient(rule: Rule, ctx: Context, what: str, have: Any, need: Any,
                 rows: pl.DataFrame | None = None) -> Finding:
    """The info note a rule emits when the signal is present but too thin to judge."""
    return rule.finding(
        ctx, f"{rule.name}: not enough data to judge ({what}: {have} < {need})",
        {what: have, "needed": need, "definitions": {what: "amount of data the rule saw",
                                                     "needed": "minimum before it judges"}},
        "Collect a longer run (more drafts / windows / steps) before drawing conclusions.",
        rows, severity="info", score=0.0, sample=Sample(what, float(have or 0), float(need)))


# ---------------------------------------------------------------------------------------------
# Context: the ingest result plus derived tables every rule shares (computed once, lazily).
# ---------------------------------------------------------------------------------------------

@dataclass
class Context:
    """What a rule sees: the :class:`IngestResult`, the thresholds, and derived frames."""

    result: IngestResult
    thresholds: Thresholds = field(default_factory=Thresholds)
    #: per-run memo for derived numbers several rules share (acceptance per unit, ...)
    memo: dict[Any, Any] = field(default_factory=dict)

    def window_acceptance(self, key: tuple[str, str], frame: pl.DataFrame) -> Acceptance:
        """:func:`window_acceptance` of one spec-window group, computed once per run."""
        k = ("window_acceptance", key)
        if k not in self.memo:
            self.memo[k] = window_acceptance(frame)
        return self.memo[k]

    def step_acceptance(self, source: str, frame: pl.DataFrame) -> Acceptance:
        k = ("step_acceptance", source)
        if k not in self.memo:
            self.memo[k] = step_acceptance(frame)
        return self.memo[k]

    # --- windows from engine logs (trace-derived windows are judged through the steps instead) -----
    @cached_property
    def trace_sources(self) -> set[str]:
        srcs = set(self.result.steps["source"].unique().to_list()) if self.result.steps.height else set()
        return srcs | {str(h.get("source")) for h in self.result.headers if h.get("source")}

    @cached_property
    def windows(self) -> pl.DataFrame:
        w = self.result.windows
        if w.is_empty():
            return w
        if self.trace_sources:
            w = w.filter(~pl.col("source").is_in(list(self.trace_sources)))
        return w.with_columns(pl.col("engine_id").fill_null("")).sort(
            ["source", "engine_id", "time", "line"], nulls_last=True)

    @cached_property
    def spec_windows(self) -> pl.DataFrame:
        """Windows that carry speculative-decoding numbers, one window kind per source (interval rows,
        or the differences of cumulative counters; see ``metrics.aggregation_rows``) so no draft is
        counted twice. Keeps the ``_drafts`` column, so the metrics over it and over its slices (the
        window groups, timelines) take the rows as already aggregated instead of redoing it."""
        from specdec_diag.analysis import metrics

        w = self.windows
        if w.is_empty():
            return w
        return metrics.aggregation_rows(w)

    def engine_windows(self) -> list[tuple[tuple[str, str], pl.DataFrame]]:
        """All windows (throughput lines too) of each (source, engine_id) that speculates."""
        keys = {k for k, _ in self.window_groups()}
        return [(k, g) for k, g in self.window_groups(self.windows) if k in keys]

    def window_groups(self, df: pl.DataFrame | None = None) -> list[tuple[tuple[str, str], pl.DataFrame]]:
        """(source, engine_id) groups in stable order: one engine's timeline each (spec windows by
        default, computed once)."""
        if df is None:
            if "spec_groups" not in self.memo:
                self.memo["spec_groups"] = self.window_groups(self.spec_windows)
            return self.memo["spec_groups"]
        if df.is_empty():
            return []
        # the windows are sorted by (source, engine_id): groups are then runs, and slices of a run cost
        # nothing where group_by copies every column (lists too) of 10^6 rows
        runs = df.select(pl.struct("source", "engine_id").rle().alias("r")).unnest("r")
        keys = runs["value"].struct.unnest()
        if keys.n_unique() == runs.height:
            out, start = [], 0
            for n, src, eng in zip(runs["len"].to_list(), keys["source"].to_list(), keys["engine_id"].to_list(),
                                   strict=True):
                out.append(((str(src), str(eng or "")), df.slice(start, n)))
                start += n
            return out
        return [((str(key[0]), str(key[1] or "")), g)
                for key, g in df.group_by(["source", "engine_id"], maintain_order=True)]

    # --- trace steps ---------------------------------------------------------------------------------
    @cached_property
    def headers(self) -> dict[str, dict[str, Any]]:
        return {str(h.get("source")): h for h in self.result.headers if h.get("source")}

    @cached_property
    def steps(self) -> pl.DataFrame:
        """All trace steps, with ``request`` filled, the trace's temperature, rule name and mode."""
        s = self.result.steps
        if s.is_empty():
            return s.with_columns(pl.lit(None, pl.Float64).alias("temperature"),
                                  pl.lit(None, pl.Utf8).alias("rule_name"),
                                  pl.lit(None, pl.Boolean).alias("baseline"))
        meta = []
        for src in s["source"].unique().to_list():
            h = self.headers.get(src, {})
            meta.append({"source": src, "temperature": trace_temperature(h),
                         "rule_name": trace_rule_name(h), "baseline": trace_is_baseline(h)})
        m = pl.DataFrame(meta, schema={"source": pl.Utf8, "temperature": pl.Float64, "rule_name": pl.Utf8,
                                       "baseline": pl.Boolean})
        s = s.with_columns(pl.col("request").fill_null(0)).join(m, on="source", how="left")
        return s.sort(["source", "request", "step"])

    @cached_property
    def spec_steps(self) -> pl.DataFrame:
        """Steps of speculative traces that drafted at least one token."""
        s = self.steps
        if s.is_empty():
            return s
        return s.filter(~pl.col("baseline").fill_null(False) & (pl.col("gamma_drafted") > 0))

    @cached_property
    def baseline_steps(self) -> pl.DataFrame:
        s = self.steps
        if s.is_empty():
            return s
        return s.filter(pl.col("baseline").fill_null(False) | (pl.col("gamma_drafted") == 0))

    def step_groups(self) -> list[tuple[str, pl.DataFrame]]:
        """Speculative steps per trace file (computed once)."""
        if "step_groups" not in self.memo:
            s = self.spec_steps
            self.memo["step_groups"] = [] if s.is_empty() else [
                (str(k[0]), g) for k, g in s.group_by(["source"], maintain_order=True)]
        return self.memo["step_groups"]

    @cached_property
    def configs(self) -> pl.DataFrame:
        return self.result.configs


def label(source: str, engine_id: str = "") -> str:
    """Short name of a unit for titles: the file name (locations carry the full path) and the
    engine/rank key when there is one."""
    name = source.replace("\\", "/").rsplit("/", 1)[-1]
    return f"{name} [{engine_id}]" if engine_id else name


# ---------------------------------------------------------------------------------------------
# Shared statistics over windows and steps.
# ---------------------------------------------------------------------------------------------


@dataclass
class Acceptance:
    """Acceptance of a group of windows or steps. Every number comes from
    :mod:`specdec_diag.analysis.metrics` (one definition each, see docs/metrics.md):

    * ``drafts`` verify steps, ``draft_tokens`` drafted, ``accepted`` accepted drafts (bonus excluded);
    * ``rate`` = accepted / draft_tokens (vLLM-V1-style acceptance rate, prefix counting);
    * ``mal`` = 1 + accepted / drafts (mean acceptance length, bonus included);
    * ``k`` the most common draft length; ``per_position[j]`` share of drafts with position j+1
      accepted; ``alpha`` Leviathan's per-token acceptance probability, estimated (censored-geometric
      MLE when per-position counts or steps exist, else Eq. 1 inverted from MAL and k).
    """

    drafts: float | None
    draft_tokens: float | None
    accepted: float | None
    rate: float | None
    mal: float | None
    k: int | None
    per_position: list[float] | None
    alpha: float | None

    def evidence(self) -> dict[str, Any]:
        return {"drafts": self.drafts, "draft_tokens": self.draft_tokens, "accepted_tokens": self.accepted,
                "acceptance_rate": self.rate, "mean_acceptance_length": self.mal, "k": self.k,
                "alpha_estimate": self.alpha}


ACCEPTANCE_DEFINITIONS = {
    "drafts": "verify steps (draft sequences)",
    "draft_tokens": "draft tokens proposed",
    "accepted_tokens": "draft tokens accepted (prefix, bonus excluded)",
    "acceptance_rate": "accepted_tokens / draft_tokens (bonus excluded)",
    "mean_acceptance_length": "1 + accepted_tokens / drafts (tokens per verify step, bonus included)",
    "k": "draft length gamma (most common)",
    "alpha_estimate": "Leviathan alpha, per-token acceptance probability (censored-geometric MLE, else "
                      "Eq. 1 inverted from MAL and k)",
    "per_position_acceptance": "share of drafts whose position j was accepted (and all before it)",
}


#: ``window_acceptance``'s default for a value the caller did not compute already
_COMPUTE: Any = object()


def window_acceptance(df: pl.DataFrame, *, per_position: Any = _COMPUTE, alpha: Any = _COMPUTE,
                      aggregated: bool = False) -> Acceptance:
    """Acceptance over windows (one engine's, or any set), via the shared metric definitions.
    ``per_position`` / ``alpha``: values already computed for these rows (the grouped pass of
    :mod:`specdec_diag.analysis.unit_pass`); ``aggregated``: ``df`` is already aggregation rows."""
    from specdec_diag.analysis import metrics, theory

    if not aggregated:
        df = metrics.aggregation_rows(df)  # once: every metric below takes the aggregated rows as they are
    k = metrics.draft_length(df)
    mal = metrics.mean_acceptance_length(df)
    if alpha is _COMPUTE:
        alpha = metrics.alpha_mle(df)
    if alpha is None and mal is not None and k:
        alpha = theory.alpha_from_mal(mal, k)
    rate = metrics.acceptance_rate(df)
    if alpha is None and rate is not None and k:
        alpha = theory.alpha_from_acceptance_rate(rate, k)
    pp = metrics.per_position_acceptance(df) if per_position is _COMPUTE else per_position
    return Acceptance(metrics.num_drafts(df), metrics.draft_tokens(df), metrics.accepted_tokens(df), rate, mal,
                      k, pp, alpha)


def step_acceptance(steps: pl.DataFrame) -> Acceptance:
    """Acceptance over trace steps (same definitions as :func:`window_acceptance`)."""
    from specdec_diag.analysis import metrics

    return Acceptance(metrics.num_drafts(steps), metrics.draft_tokens(steps), metrics.accepted_tokens(steps),
                      metrics.acceptance_rate(steps), metrics.mean_acceptance_length(steps),
                      metrics.draft_length(steps), metrics.per_position_acceptance(steps),
                      metrics.alpha_mle(steps))


def timeline(df: pl.DataFrame) -> pl.DataFrame:
    """The rows of one engine's windows that partition its run (interval rows, or cumulative
    differences), in time order: the series change-point rules scan."""
    from specdec_diag.analysis import metrics

    rows = metrics.aggregation_rows(df)
    if rows.is_empty():
        return rows
    t, ln = pl.col("time"), pl.col("line")
    ordered = rows.select(t.is_not_null().all() & ln.is_not_null().all()
                          & ((t > t.shift()) | ((t == t.shift()) & (ln > ln.shift()))).slice(1).all()).item()
    if ordered:  # strictly increasing already (the Context sorts windows so): the sort would keep it
        return rows
    return rows.sort(["time", "line"], nulls_last=True)


def ranked(findings: list[Finding]) -> list[Finding]:
    """Errors before warnings before info; within a severity by score (impact), then code."""
    return sorted(findings, key=lambda f: (SEVERITY_RANK.get(f.severity, 9), -float(f.score or 0.0), f.code))
