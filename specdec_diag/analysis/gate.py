"""The CI gate: absolute floors (acceptance rate, MAL), a noise-aware comparison against a baseline
report, and a fail-on-findings policy. Exit codes (:class:`specdec_diag.exit_codes.ExitCode`): 0 pass,
1 failed, 2 usage/unreadable, 3 not enough data to judge. How a verdict is shown (terminal, JUnit,
GitHub annotations) lives in :mod:`specdec_diag.render`.

Acceptance is a ratio of counts whose window-to-window spread comes from the workload mix, not from
token-level coin flips, so the baseline comparison treats *windows* as the unit: the pooled
(draft-weighted) acceptance of each side, a seeded cluster-bootstrap confidence interval of the
difference, and median/MAD of per-window rates for the human reader. A build fails only when the drop
is both larger than ``max_drop`` and statistically clear (the interval's upper end is below zero), so
run-to-run noise passes and a real regression does not.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import polars as pl

from specdec_diag.analysis import baseline as _baseline
from specdec_diag.analysis.report import build_report, has_data
from specdec_diag.analysis.rules import Thresholds
from specdec_diag.analysis.rules.thresholds import read_toml
from specdec_diag.analysis.runs import segment
from specdec_diag.analysis.stats import (
    acceptance_units,
    bootstrap_diff,
    bootstrap_rate,
    median_mad,
    pooled_rate,
)
from specdec_diag.exit_codes import ExitCode
from specdec_diag.ingest.base import IngestResult
from specdec_diag.schema import conform_windows

#: finding severities that fail the build under each ``fail_on`` policy
FAIL_SEVERITIES: dict[str, tuple[str, ...]] = {"error": ("error",), "warning": ("error", "warning"), "never": ()}
FAIL_ON = tuple(FAIL_SEVERITIES)


class GateError(ValueError):
    """A usage or input problem (exit 2); ``str()`` is one line naming the file (and line)."""


@dataclass
class GateConfig:
    """Gate settings; the ``[check]`` table of specdec-check.toml has the same keys."""

    min_acceptance: float | None = None
    """Fail when the draft acceptance rate (accepted/drafted, bonus excluded) is below this fraction."""
    min_mal: float | None = None
    """Fail when the mean acceptance length (1 + accepted/drafts, bonus included) is below this."""
    baseline: str | None = None
    """A previous report JSON (``report --windows --format json`` or ``check --write-report``) to compare
    acceptance against, run by run: each current run meets the baseline runs of its engine, method and k."""
    max_drop: float = 0.03
    """Largest tolerated drop of the acceptance rate against the baseline, in absolute fraction points."""
    fail_on: str = "error"
    """Fail on findings of this severity or worse: error | warning | never."""
    junit: str | None = None
    """Write a JUnit XML file here (one test per gate check and per rule code)."""
    min_drafts: int = 500
    """Draft tokens needed before the absolute floors are judged."""
    min_windows: int = 5
    """Windows with drafts needed on each side before the baseline comparison is judged."""
    confidence: float = 0.95
    """Two-sided confidence of the bootstrap interval of the acceptance difference."""
    bootstrap: int = 2000
    """Bootstrap resamples."""
    seed: int = 0
    """Bootstrap seed: the gate is deterministic for the same inputs."""

    def validate(self, where: str = "check") -> GateConfig:
        for name in ("min_acceptance", "max_drop"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise GateError(f"{where}: {name} must be a fraction in [0, 1] (0.5 for 50 %), got {v}")
        if self.min_mal is not None and self.min_mal < 1.0:
            raise GateError(f"{where}: min_mal must be >= 1 (MAL includes the bonus token), got {self.min_mal}")
        if self.fail_on not in FAIL_ON:
            raise GateError(f"{where}: fail_on must be one of {', '.join(FAIL_ON)}, got {self.fail_on!r}")
        if not 0.5 <= self.confidence < 1.0:
            raise GateError(f"{where}: confidence must be in [0.5, 1), got {self.confidence}")
        if self.bootstrap < 100 or self.min_windows < 2 or self.min_drafts < 0:
            raise GateError(f"{where}: need bootstrap >= 100, min_windows >= 2, min_drafts >= 0")
        return self


def load_config(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read specdec-check.toml: the ``[check]`` values (type-checked, paths made relative to the
    file) and the raw ``[thresholds]`` table for the rules."""
    path = Path(path)
    data = read_toml(path, GateError)
    check = data.get("check", {})
    if not isinstance(check, dict):
        raise GateError(f"{path}: [check] must be a table")
    known = {f.name: f for f in fields(GateConfig)}
    out: dict[str, Any] = {}
    for key, value in check.items():
        name = key.replace("-", "_")
        if name not in known:
            raise GateError(f"{path}: unknown key {key!r} in [check] (known: {', '.join(known)})")
        default = getattr(GateConfig(), name)
        if name in ("baseline", "junit", "fail_on"):
            if not isinstance(value, str):
                raise GateError(f"{path}: [check] {key} must be a string, got {value!r}")
            if name != "fail_on" and not Path(value).is_absolute():
                value = str(path.parent / value)
        elif isinstance(default, int) and not isinstance(default, bool):
            if not isinstance(value, int) or isinstance(value, bool):
                raise GateError(f"{path}: [check] {key} must be an integer, got {value!r}")
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            raise GateError(f"{path}: [check] {key} must be a number, got {value!r}")
        out[name] = value
    thresholds = data.get("thresholds", {})
    if not isinstance(thresholds, dict):
        raise GateError(f"{path}: [thresholds] must be a table")
    return out, thresholds


def load_baseline(path: str | Path) -> dict[str, Any]:
    """A previous report JSON, every field the comparison reads checked (:mod:`.baseline`)."""
    try:
        return _baseline.load_baseline(path)
    except _baseline.BaselineError as exc:
        raise GateError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------


@dataclass
class Check:
    """One gate check: status pass | fail | insufficient, a one-line message and its numbers."""

    name: str
    status: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    run: str | None = None
    """The run judged (set when the gate judged more than one run)."""


@dataclass
class GateResult:
    """The checks of one gate run and the report they judged."""

    checks: list[Check]
    report: dict[str, Any]

    @property
    def exit_code(self) -> ExitCode:
        if any(c.status == "fail" for c in self.checks):
            return ExitCode.FAILED
        if any(c.status == "insufficient" for c in self.checks):
            return ExitCode.NO_DATA
        return ExitCode.OK

    @property
    def passed(self) -> bool:
        return self.exit_code == ExitCode.OK


def _floor_check(name: str, value: float | None, floor: float, summary: dict[str, Any], cfg: GateConfig,
                 units: pl.DataFrame, label: str) -> Check:
    drafted = summary.get("draft_tokens")
    enough = drafted >= cfg.min_drafts if drafted is not None else units.height >= cfg.min_windows
    ev: dict[str, Any] = {name: value, "threshold": floor, "draft_tokens": drafted, "windows": units.height,
                          "needed_draft_tokens": cfg.min_drafts}
    if value is None or not enough:
        have = f"{drafted} draft tokens" if drafted is not None else f"{units.height} windows"
        need = f"{cfg.min_drafts} draft tokens" if drafted is not None else f"{cfg.min_windows} windows"
        return Check(name, "insufficient", f"{label}: not enough data to judge ({have}; need at least {need})", ev)
    if name == "acceptance_rate":
        ci = bootstrap_rate(units, seed=cfg.seed, confidence=cfg.confidence)
        if ci:
            ev["ci"] = list(ci)
    ok = value >= floor
    return Check(name, "pass" if ok else "fail",
                 f"{label} {value:.4f} {'>=' if ok else '<'} minimum {floor:.4f}", ev)


def baseline_check(cur_units: pl.DataFrame, baseline: dict[str, Any], cfg: GateConfig, where: str,
                   base_windows: pl.DataFrame | None = None) -> Check:
    """Noise-aware comparison of acceptance against a baseline's windows (``base_windows``: the
    matched baseline runs' windows; default: the ``windows`` of ``baseline``)."""
    if base_windows is None:
        rows = [{k: v for k, v in w.items() if k != "time"} for w in baseline["windows"] if isinstance(w, dict)]
        base_windows = (conform_windows(pl.DataFrame(rows, infer_schema_length=None)) if rows
                        else conform_windows(pl.DataFrame()))
    base_units = acceptance_units(base_windows)
    ev: dict[str, Any] = {"baseline": where, "current_windows": cur_units.height, "baseline_windows": base_units.height,
                          "needed_windows": cfg.min_windows, "max_drop": cfg.max_drop}
    if cur_units.height < cfg.min_windows or base_units.height < cfg.min_windows:
        return Check("baseline_acceptance", "insufficient",
                     f"baseline comparison: not enough windows to judge (current {cur_units.height}, baseline "
                     f"{base_units.height}; need at least {cfg.min_windows} windows with drafts on each side)", ev)
    rc, rb = pooled_rate(cur_units), pooled_rate(base_units)
    lo, hi = bootstrap_diff(cur_units, base_units, cfg.bootstrap, cfg.seed, cfg.confidence)
    (mc, madc), (mb, madb) = median_mad(cur_units), median_mad(base_units)
    diff = rc - rb
    ev.update({"current_rate": rc, "baseline_rate": rb, "difference": diff, "ci_low": lo, "ci_high": hi,
               "confidence": cfg.confidence, "current_median": mc, "current_mad": madc,
               "baseline_median": mb, "baseline_mad": madb})
    clear = hi < 0.0
    if diff < -cfg.max_drop and clear:
        return Check("baseline_acceptance", "fail",
                     f"acceptance dropped {rb:.4f} -> {rc:.4f} ({diff:+.4f}, {int(cfg.confidence * 100)} % CI "
                     f"[{lo:+.4f}, {hi:+.4f}]) beyond the tolerated {cfg.max_drop:.4f}", ev)
    why = "within the tolerated drop" if diff >= -cfg.max_drop else "not distinguishable from noise"
    return Check("baseline_acceptance", "pass",
                 f"acceptance {rb:.4f} -> {rc:.4f} ({diff:+.4f}, CI [{lo:+.4f}, {hi:+.4f}]): {why}", ev)


def findings_check(report: dict[str, Any], fail_on: str) -> Check:
    """Fail on findings at or above ``fail_on``; the message names the runs they belong to."""
    sev = FAIL_SEVERITIES[fail_on]
    hits = [f for f in report["findings"] if f["severity"] in sev]
    counts = {s: sum(f["severity"] == s for f in report["findings"]) for s in ("error", "warning", "info")}
    ev: dict[str, Any] = {**counts, "fail_on": fail_on, "codes": sorted({f["code"] for f in hits}),
                          "runs": sorted({f["run"] for f in hits if f.get("run")})}
    if hits:
        where = "; ".join(f"{f['code']} in {f['run']}" if f.get("run") else f["code"] for f in hits[:5])
        more = f" (+{len(hits) - 5} more)" if len(hits) > 5 else ""
        return Check("findings", "fail", f"{len(hits)} finding(s) at or above {fail_on}: {where}{more}", ev)
    return Check("findings", "pass", f"no findings at or above {fail_on}" if fail_on != "never"
                 else "findings do not fail the build (fail_on = never)", ev)


def select_runs(report: dict[str, Any], select: str | None) -> dict[str, Any]:
    """The report restricted to the runs whose id matches the glob ``select`` (all when None)."""
    if not select:
        return report
    runs = [r for r in report["runs"] if fnmatch.fnmatchcase(r["id"], select)]
    if not runs:
        ids = ", ".join(r["id"] for r in report["runs"][:5])
        raise GateError(f"--select {select!r} matches no run (runs: {ids}{', ...' if len(report['runs']) > 5 else ''})")
    keep = {r["id"] for r in runs}
    return {**report, "runs": runs, "findings": [f for f in report["findings"] if f.get("run") in keep]}


def run_gate(result: IngestResult, cfg: GateConfig, thresholds: Thresholds | None = None,
             baseline: dict[str, Any] | None = None, report: dict[str, Any] | None = None,
             select: str | None = None, windows: bool = False) -> GateResult:
    """All checks, run by run. ``baseline`` is a loaded report (:func:`load_baseline`); ``select`` a
    glob over run ids; ``windows`` keeps each run's windows in the report (for ``--write-report``)."""
    cfg.validate()
    runs = segment(result)
    report = select_runs(report or build_report(result, thresholds, windows=windows, runs=runs), select)
    parts = runs.split()
    judged = [r for r in report["runs"] if (r["summary"].get("windows_used") or r["summary"].get("steps"))]
    checks: list[Check] = []
    if not has_data(report):
        checks.append(Check("data", "insufficient",
                            "no speculative-decoding records found (need metrics lines with drafts, or trace steps)",
                            {"runs": len(report["runs"]), "inputs": len(report["inputs"])}))
    many = len(judged) > 1
    for run in judged:
        checks += _run_checks(run, parts[run["id"]], cfg, baseline, many)
    checks = _settle_insufficient(checks, many)
    checks.append(findings_check(report, cfg.fail_on))
    return GateResult(checks, report)


def _run_checks(run: dict[str, Any], part: IngestResult, cfg: GateConfig, baseline: dict[str, Any] | None,
                many: bool) -> list[Check]:
    s = run["summary"]
    units = acceptance_units(part.windows, part.steps)
    out = []
    label = f"{run['id']}: " if many else ""
    if cfg.min_acceptance is not None:
        out.append(_floor_check("acceptance_rate", s.get("acceptance_rate"), cfg.min_acceptance, s, cfg, units,
                                f"{label}acceptance rate"))
    if cfg.min_mal is not None:
        out.append(_floor_check("mean_acceptance_length", s.get("mean_acceptance_length"), cfg.min_mal, s, cfg,
                                units, f"{label}mean acceptance length"))
    if baseline is not None:
        matched, why = _baseline.match(run, baseline)
        if matched:
            c = baseline_check(units, baseline, cfg, cfg.baseline or "baseline", _baseline.windows_frame(matched))
            c.message = label + c.message
            c.evidence["baseline_runs"] = [b["id"] for b in matched]
        else:
            c = Check("baseline_acceptance", "insufficient", f"{label}baseline refused: {why}",
                      {"baseline": cfg.baseline or "baseline", "refused": why})
        out.append(c)
    for c in out:
        c.run = run["id"] if many else None
        c.evidence.setdefault("run", run["id"])
    return out


def _settle_insufficient(checks: list[Check], many: bool) -> list[Check]:
    """With several runs, a run too small to judge (or without a comparable baseline run) does not make
    the whole gate inconclusive when others were judged: those checks become one skipped note."""
    if not many:
        return checks
    judged = [c for c in checks if c.status != "insufficient" or c.name == "data"]
    skipped = [c for c in checks if c.status == "insufficient" and c.name != "data"]
    if not skipped or not any(c.status in ("pass", "fail") for c in judged):
        return checks
    note = Check("skipped", "pass", f"{len(skipped)} check(s) skipped: " + "; ".join(c.message for c in skipped[:5])
                 + (" ..." if len(skipped) > 5 else ""), {"skipped": [c.message for c in skipped]})
    return [*judged, note]


def insufficient_note(checks: list[Check]) -> str:
    """One line naming what was missing, for the exit-3 message."""
    return "; ".join(c.message for c in checks if c.status == "insufficient")


__all__ = ["FAIL_ON", "FAIL_SEVERITIES", "GateConfig", "GateError", "GateResult", "Check", "load_config",
           "load_baseline", "acceptance_units", "pooled_rate", "median_mad", "bootstrap_diff", "baseline_check",
           "findings_check", "select_runs", "run_gate", "insufficient_note"]
