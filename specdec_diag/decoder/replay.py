"""Replay a recorded trace against the reference verifier, and predict what other gammas would do.

A trace says what a decoder *claims* happened at every step. Replay rebuilds each step's context from
the header's prompt ids plus the tokens emitted so far, runs the reference target (and draft) once over
``context + drafts`` with a fresh prefill (so no cache bug of the traced decoder can leak in), re-decides
the step with :mod:`specdec_diag.decoder.acceptance`, and reports where the recorded decisions, tokens
or bookkeeping disagree. Three strengths of check, by what the trace records:

* greedy: exact (reference argmax vs recorded flags, n and tokens);
* sampling with recorded uniforms: exact (same test, same inverse-CDF draw for the verifier's token);
* sampling without uniforms: per-step impossibility checks plus one run-level statistical test
  (accepted count vs the expected sum of min(1, p/q), a martingale z-score).

Near-ties (two logits or a uniform within numerical noise of a boundary) are counted separately and
never reported as divergences: a batched verify forward may legitimately round differently.

torch is imported inside functions only: :func:`what_if` and the result classes are pure Python so
the analysis side and the dashboard can use them without the decoder extra.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from specdec_diag.schema import Trace, TraceError, iter_trace_records, read_trace

#: divergence kind -> (category, finding code it evidences, what it means)
KINDS: dict[str, tuple[str, str, str]] = {
    # decisions and tokens vs the reference verifier
    "accept_flags": ("decision", "VERIFIER_MISMATCH", "recorded accept flags differ from the reference test"),
    "n_accepted": ("decision", "VERIFIER_MISMATCH", "recorded accepted count differs from the reference"),
    "token": ("decision", "VERIFIER_MISMATCH", "an emitted token differs from the reference verifier's"),
    "out_of_support": ("decision", "VERIFIER_MISMATCH",
                       "the verifier's token has zero probability under the distribution it must come from"),
    "impossible_decision": ("decision", "VERIFIER_MISMATCH",
                            "a draft accepted with p = 0, or rejected although p >= q (cannot happen)"),
    "acceptance_statistics": ("decision", "VERIFIER_MISMATCH",
                              "accepted count over the run is inconsistent with sum min(1, p/q)"),
    "p_mismatch": ("decision", "VERIFIER_MISMATCH", "recorded p(token) differs from the reference target's"),
    "q_mismatch": ("decision", "VERIFIER_MISMATCH",
                   "recorded q(token) differs from the reference draft's processed distribution"),
    "nan_p": ("decision", "PINNED_ACCEPTANCE_LENGTH", "recorded p is null/NaN: the verifier produced NaN logits"),
    # step structure
    "context_len": ("structure", "STRUCTURE_VIOLATION", "context_len is not prompt + tokens emitted so far"),
    "emitted_prefix": ("structure", "STRUCTURE_VIOLATION", "emitted tokens do not start with the accepted drafts"),
    "emitted_count": ("structure", "STRUCTURE_VIOLATION", "emitted is not n + 1 tokens and nothing was trimmed"),
    "bonus_dropped": ("structure", "BONUS_DROPPED", "all drafts accepted but no bonus token emitted"),
    "flags_vs_n": ("structure", "STRUCTURE_VIOLATION", "n_accepted is not the leading run of accept_flags"),
    "last_token_kind": ("structure", "STRUCTURE_VIOLATION", "last_token_kind disagrees with n (bonus iff n = gamma)"),
    "target_forwards": ("structure", "SEQUENTIAL_VERIFY", "more than one target forward in the step"),
    "kv_cache": ("structure", "KV_ROLLBACK", "target cache length is not sequence length - 1"),
    "positions": ("structure", "KV_ROLLBACK", "verify window positions are not L-1 .. L-1+gamma"),
    "gamma": ("structure", "STRUCTURE_VIOLATION", "more tokens drafted than requested"),
    "gamma_schedule": ("structure", "STRUCTURE_VIOLATION", "gamma requested differs from the previous gamma_next"),
    "trim": ("structure", "STRUCTURE_VIOLATION", "trimmed_by does not match the emitted tokens"),
}

#: (logit gap, probability tolerance) treated as numerical noise, by the dtype the replay runs in.
TOLERANCE = {"float32": (1e-4, 1e-3), "float16": (5e-2, 2e-2), "bfloat16": (1e-1, 3e-2)}


@dataclass
class Divergence:
    """One disagreement. ``position`` is the index in the step's window (0..gamma; gamma = bonus)
    or None for step-level / run-level findings; ``step`` is None for run-level ones."""

    kind: str
    message: str
    step: int | None = None
    request: int | None = None
    position: int | None = None
    recorded: Any = None
    reference: Any = None
    line: int | None = None

    @property
    def category(self) -> str:
        return KINDS[self.kind][0]

    @property
    def code(self) -> str:
        return KINDS[self.kind][1]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "category": self.category, "code": self.code}


@dataclass
class StepVerdict:
    """Per-step outcome: the recorded and reference n / tokens, and the divergence kinds found."""

    step: int
    request: int
    line: int | None
    gamma: int
    n_recorded: int
    n_reference: int | None
    emitted: list[int]
    reference_emitted: list[int] | None
    kinds: list[str] = field(default_factory=list)
    near_ties: int = 0
    token_prob: float | None = None  # probability of the verifier's token under its reference distribution

    @property
    def agrees(self) -> bool:
        return not self.kinds


@dataclass
class WhatIfRow:
    gamma: int
    tokens_per_step: float
    step_ms: float
    ms_per_token: float
    speedup: float | None
    leviathan_speedup: float | None
    used: bool


@dataclass
class WhatIf:
    """Predicted tokens/step and speed-up per gamma from the trace's own acceptance and timings.

    tokens/step(g) = 1 + sum_{j<=g} prod_{i<=j} beta_i, with beta_i the conditional acceptance at draft
    position i (measured where at least ``min_trials`` steps reached it, else the fitted alpha);
    step time(g) = g * draft_ms_per_token + verify_ms(g) + overhead_ms; speed-up = tokens/step * T_ar /
    step time, T_ar from a baseline trace or, failing that, the verify time of a 1-token window.
    """

    gamma_used: int
    gammas_seen: list[int]
    steps: int
    alpha_mle: float | None
    conditional_rates: list[float | None]
    rate_trials: list[int]
    draft_ms_per_token: float
    verify_ms_intercept: float
    verify_ms_per_token: float
    overhead_ms: float
    c: float | None
    verify_over_ar: float | None  # c_v = mean verify time / T_ar; >> 1 means verification is not free
    t_ar_ms: float
    t_ar_source: str
    measured_tokens_per_step: float
    measured_speedup: float | None
    best_gamma: int | None
    rows: list[WhatIfRow]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReplayResult:
    """Everything replay found; :meth:`to_dict` is the ``--json`` output."""

    path: str
    mode: str  # greedy | sampling-exact | sampling-statistical | baseline-greedy | ...
    rule: str
    fault_in_header: str | None
    steps_total: int
    steps_checked: int
    steps_agreeing: int
    steps_diverging: int
    near_ties: int
    by_kind: dict[str, int]
    divergences: list[Divergence]
    first: Divergence | None
    first_context: dict[str, Any] | None
    statistics: dict[str, Any]
    warnings: list[str]
    models: dict[str, Any]
    verdicts: list[StepVerdict]
    what_if: WhatIf | None

    @property
    def diverged(self) -> bool:
        return bool(self.divergences)

    @property
    def codes(self) -> list[str]:
        return sorted({d.code for d in self.divergences})

    def to_dict(self, max_divergences: int = 200) -> dict[str, Any]:
        """JSON-ready (non-finite floats become null)."""
        return _jsonable({
            "schema": "specdec-diag/replay@1",
            "path": self.path, "mode": self.mode, "rule": self.rule, "fault_in_header": self.fault_in_header,
            "diverged": self.diverged, "codes": self.codes,
            "counts": {"steps_total": self.steps_total, "steps_checked": self.steps_checked,
                       "steps_agreeing": self.steps_agreeing, "steps_diverging": self.steps_diverging,
                       "near_ties": self.near_ties, "by_kind": dict(self.by_kind)},
            "first_divergence": self.first.to_dict() if self.first else None,
            "first_context": self.first_context,
            "divergences": [d.to_dict() for d in self.divergences[:max_divergences]],
            "divergences_total": len(self.divergences),
            "statistics": self.statistics,
            "warnings": self.warnings,
            "models": self.models,
            "what_if": self.what_if.to_dict() if self.what_if else None,
        })


def _jsonable(o: Any) -> Any:
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    return o


# ---------------------------------------------------------------------------------------------
# What-if: pure Python over step records
# ---------------------------------------------------------------------------------------------


def _spec_steps(steps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speculative steps usable for acceptance statistics (drafted, not trimmed: trimming censors n)."""
    return [s for s in steps if s["gamma_drafted"] > 0 and (s.get("trimmed_by") or "none") == "none"]


def alpha_mle(steps: Sequence[dict[str, Any]]) -> float | None:
    """Censored-geometric MLE: sum n / (sum n + #steps with a rejection)."""
    spec = _spec_steps(steps)
    acc = sum(s["n_accepted"] for s in spec)
    rej = sum(1 for s in spec if s["n_accepted"] < s["gamma_drafted"])
    return acc / (acc + rej) if acc + rej else None


def conditional_rates(steps: Sequence[dict[str, Any]]) -> tuple[list[float | None], list[int]]:
    """beta_j = P(n >= j | n >= j-1, drafted >= j) for j = 1..max drafted, with the trial counts."""
    spec = _spec_steps(steps)
    gmax = max((s["gamma_drafted"] for s in spec), default=0)
    rates: list[float | None] = []
    trials: list[int] = []
    for j in range(1, gmax + 1):
        tried = [s for s in spec if s["gamma_drafted"] >= j and s["n_accepted"] >= j - 1]
        trials.append(len(tried))
        rates.append(sum(s["n_accepted"] >= j for s in tried) / len(tried) if tried else None)
    return rates, trials


def _fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares y = a + b x; b = 0 when x does not vary. A negative slope is noise: clamp to 0."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return my, 0.0
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    if b < 0:
        return my, 0.0
    return my - b * mx, b


def leviathan_speedup(alpha: float, gamma: int, c: float) -> float:
    """Theorem 3.8: (1 - alpha^(gamma+1)) / ((1 - alpha)(gamma c + 1))."""
    tokens = gamma + 1.0 if alpha >= 1.0 else (1 - alpha ** (gamma + 1)) / (1 - alpha)
    return tokens / (gamma * c + 1)


def what_if(steps: Sequence[dict[str, Any]], baseline_steps: Sequence[dict[str, Any]] | None = None,
            max_gamma: int | None = None, min_trials: int = 10) -> WhatIf | None:
    """Predict tokens/step and speed-up for gamma = 1 .. max_gamma (default 2 x the gamma used).

    Returns None when the trace has no speculative step (nothing to extrapolate from)."""
    spec = [s for s in steps if s["gamma_drafted"] > 0]
    if not spec:
        return None
    gammas = Counter(s["gamma_drafted"] for s in spec)
    gamma_used = gammas.most_common(1)[0][0]
    max_gamma = max_gamma or max(2 * gamma_used, 2)
    alpha = alpha_mle(steps)
    rates, trials = conditional_rates(steps)
    fallback = alpha if alpha is not None else 0.0

    def beta(j: int) -> float:
        if j <= len(rates) and rates[j - 1] is not None and trials[j - 1] >= min_trials:
            return float(rates[j - 1])
        return fallback

    drafted = sum(s["gamma_drafted"] for s in spec)
    t_d = sum(s["draft_ms"] for s in spec) / drafted
    # verify time vs gamma: fit a line only where gamma really varied (>= 3 values with >= 5 steps each,
    # e.g. the heuristic policy); else, and when the fit is unphysical, Leviathan's constant verify cost
    mean_verify = sum(s["verify_ms"] for s in spec) / len(spec)
    a_v, b_v = mean_verify, 0.0
    if sum(1 for cnt in gammas.values() if cnt >= 5) >= 3:
        a_v, b_v = _fit_line([float(s["gamma_drafted"]) for s in spec], [float(s["verify_ms"]) for s in spec])
        if a_v <= 0:
            a_v, b_v = mean_verify, 0.0
    t_o = sum(s["overhead_ms"] for s in spec) / len(spec)
    c = t_d / mean_verify if mean_verify > 0 else None
    base = [s for s in (baseline_steps or []) if s["gamma_drafted"] == 0]
    if base:
        t_ar = sum(s["draft_ms"] + s["verify_ms"] + s["overhead_ms"] for s in base) / sum(
            max(len(s["emitted_token_ids"]), 1) for s in base)
        source = "baseline trace (mean ms per emitted token)"
    else:
        t_ar = a_v + b_v + t_o
        source = "estimated: verify time of a 1-token window + overhead (no baseline trace given)"
    rows: list[WhatIfRow] = []
    for g in range(1, max_gamma + 1):
        surv, tokens = 1.0, 1.0
        for j in range(1, g + 1):
            surv *= beta(j)
            tokens += surv
        step_ms = g * t_d + a_v + b_v * g + t_o
        lev = leviathan_speedup(alpha, g, c) if alpha is not None and c is not None else None
        rows.append(WhatIfRow(g, tokens, step_ms, step_ms / tokens,
                              tokens * t_ar / step_ms if step_ms > 0 else None, lev, g == gamma_used))
    measured_tps = sum(len(s["emitted_token_ids"]) for s in spec) / len(spec)
    measured_ms = sum(s["draft_ms"] + s["verify_ms"] + s["overhead_ms"] for s in spec) / sum(
        len(s["emitted_token_ids"]) for s in spec)
    best = max((r for r in rows if r.speedup is not None), key=lambda r: r.speedup, default=None)
    return WhatIf(
        gamma_used=gamma_used, gammas_seen=sorted(gammas), steps=len(spec), alpha_mle=alpha,
        conditional_rates=rates, rate_trials=trials, draft_ms_per_token=t_d, verify_ms_intercept=a_v,
        verify_ms_per_token=b_v, overhead_ms=t_o, c=c, verify_over_ar=mean_verify / t_ar if t_ar > 0 else None,
        t_ar_ms=t_ar, t_ar_source=source,
        measured_tokens_per_step=measured_tps,
        measured_speedup=t_ar / measured_ms if base and measured_ms > 0 else None,
        best_gamma=best.gamma if best else None, rows=rows,
    )


# ---------------------------------------------------------------------------------------------
# Replay
# ---------------------------------------------------------------------------------------------


def prompt_ids(header: dict[str, Any]) -> list[list[int]]:
    """The prompts' token ids from a trace header (``prompt_token_ids``, as the decoder writes it;
    ``prompts`` entries that are dicts with ``ids`` or id lists are accepted too)."""
    raw = header.get("prompt_token_ids")
    if raw is None:
        raw = header.get("prompts")
    if not isinstance(raw, list) or not raw:
        raise ValueError("trace header records no prompt token ids (field 'prompt_token_ids'); "
                         "cannot rebuild the contexts")
    out = []
    for i, p in enumerate(raw):
        ids = p
        if isinstance(p, dict):
            ids = next((p[k] for k in ("ids", "token_ids", "input_ids") if k in p), None)
        if not isinstance(ids, list) or not ids or not all(isinstance(t, int) and not isinstance(t, bool)
                                                           for t in ids):
            raise ValueError(f"trace header prompt {i} has no token id list")
        out.append(ids)
    return out


def _step_lines(path: str) -> list[int]:
    try:
        return [no for no, rec, _ in iter_trace_records(path) if rec is not None and rec.get("type") == "step"]
    except OSError:
        return []


def _model_entry(header: dict[str, Any], role: str) -> dict[str, Any]:
    models = header.get("models") or {}
    entry = models.get(role) if isinstance(models, dict) else None
    return entry if isinstance(entry, dict) else {}


def resolve_model_dirs(header: dict[str, Any], target: str | Path | None, draft: str | Path | None,
                       ) -> tuple[Path | None, Path | None, list[str]]:
    """Given dirs win; else the header's paths if they exist here; else None (= the bundled pair)."""
    notes: list[str] = []
    dirs: list[Path | None] = []
    for role, given in (("target", target), ("draft", draft)):
        if given is not None:
            dirs.append(Path(given))
            continue
        hp = _model_entry(header, role).get("path")
        if hp and Path(hp).is_dir():
            dirs.append(Path(hp))
        else:
            if hp:
                notes.append(f"{role} path {hp} from the header is not on this machine; using the bundled pair")
            dirs.append(None)
    return dirs[0], dirs[1], notes


def check_hashes(header: dict[str, Any], pair: Any) -> list[str]:
    """Warnings where the loaded weights' sha256 differs from the one the header recorded."""
    warnings = []
    for role in ("target", "draft"):
        want = _model_entry(header, role).get("sha256")
        have = (pair.info.get(role) or {}).get("sha256") if getattr(pair, "info", None) else None
        if want and have and want != have:
            warnings.append(f"{role} weights differ from the trace's: header sha256 {want[:12]}..., "
                            f"loaded {have[:12]}... (divergences may come from the models, not the decoder)")
        elif want and not have:
            warnings.append(f"{role} weights hash unknown for the loaded model; cannot check it against the header")
    return warnings


class _Replayer:
    """Holds the models and per-run state; one :meth:`step` per recorded step."""

    def __init__(self, trace: Trace, pair: Any, dtype: str, use_draft: bool):
        import torch

        from specdec_diag.decoder import acceptance as acc

        self.torch, self.acc = torch, acc
        self.trace, self.pair = trace, pair
        h = trace.header
        rule = h.get("rule") or {}
        self.rule = acc.Rule(rule.get("name", "greedy"), dict(rule.get("params") or {}))
        s = h.get("sampling") or {}
        self.sampling = acc.SamplingConfig(float(s.get("temperature", 1.0) or 1.0), int(s.get("top_k", 0) or 0),
                                           float(s.get("top_p", 1.0) or 1.0))
        self.logit_tol, self.p_tol = TOLERANCE.get(dtype, TOLERANCE["float32"])
        self.use_draft = use_draft
        self.device = next(pair.target.parameters()).device
        self.eos = h.get("eos_token_id", getattr(pair, "eos_token_id", None))
        self.max_new = h.get("max_new_tokens")
        # run-level statistics (sampling without uniforms)
        self.stat_obs = 0.0
        self.stat_exp = 0.0
        self.stat_var = 0.0
        self.stat_trials = 0
        self.p_err_max = 0.0
        self.q_err_max = 0.0
        self.exact_steps = 0
        self.stat_steps = 0

    # -- models -------------------------------------------------------------------------------

    def _logits(self, model: Any, ids: list[int], start: int, count: int):
        torch = self.torch
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            out = model(input_ids=x, use_cache=False)
        return out.logits[0, start : start + count].float()

    # -- one step -----------------------------------------------------------------------------

    def step(self, rec: dict[str, Any], context: list[int], generated: int, line: int | None,
             prev: dict[str, Any] | None) -> tuple[StepVerdict, list[Divergence]]:
        torch, acc = self.torch, self.acc
        idx, req = rec["step"], rec.get("request") or 0
        g, n = rec["gamma_drafted"], rec["n_accepted"]
        drafts, emitted = list(rec["draft_token_ids"]), list(rec["emitted_token_ids"])
        flags = list(rec["accept_flags"])
        trimmed = rec.get("trimmed_by") or "none"
        L = len(context)
        divs: list[Divergence] = []

        def add(kind: str, message: str, position: int | None = None, recorded: Any = None,
                reference: Any = None) -> None:
            divs.append(Divergence(kind, message, idx, req, position, recorded, reference, line))

        # ---------------- structure ----------------
        if rec["context_len"] != L:
            add("context_len", f"context_len {rec['context_len']} but prompt + emitted so far = {L}",
                None, rec["context_len"], L)
        if g > rec["gamma_requested"]:
            add("gamma", f"drafted {g} > requested {rec['gamma_requested']}", None, g, rec["gamma_requested"])
        if prev is not None and prev.get("gamma_next") is not None and rec["gamma_requested"] != prev["gamma_next"]:
            add("gamma_schedule", f"gamma_requested {rec['gamma_requested']} but the previous step's "
                f"gamma_next was {prev['gamma_next']}", None, rec["gamma_requested"], prev["gamma_next"])
        lead = 0
        while lead < len(flags) and flags[lead]:
            lead += 1
        if trimmed == "none" and lead != n:
            add("flags_vs_n", f"n_accepted={n} but accept_flags lead with {lead} true", None, n, lead)
        if emitted[: min(n, len(emitted))] != drafts[: min(n, len(emitted))]:
            add("emitted_prefix", "emitted tokens are not the accepted drafts followed by one verifier token",
                None, emitted[:n], drafts[:n])
        if trimmed == "none":
            if len(emitted) != n + 1:
                if g > 0 and n == g and len(emitted) == g:
                    add("bonus_dropped", f"all {g} drafts accepted but only {g} tokens emitted (no bonus)",
                        g, len(emitted), g + 1)
                else:
                    add("emitted_count", f"{len(emitted)} tokens emitted, expected n+1 = {n + 1}",
                        None, len(emitted), n + 1)
            want_kind = "bonus" if n == g else "correction"
            if rec["last_token_kind"] != want_kind and len(emitted) == n + 1:
                add("last_token_kind", f"last_token_kind {rec['last_token_kind']!r} with n={n}, gamma={g}",
                    None, rec["last_token_kind"], want_kind)
        else:
            if len(emitted) > n + 1:
                add("emitted_count", f"{len(emitted)} tokens emitted, at most n+1 = {n + 1} when trimmed",
                    None, len(emitted), n + 1)
            if trimmed == "eos" and (self.eos is None or not emitted or emitted[-1] != self.eos):
                add("trim", f"trimmed_by eos but the last emitted token is not eos ({self.eos})", None,
                    emitted[-1:] or None, self.eos)
            if trimmed == "max_length" and self.max_new is not None and generated + len(emitted) != self.max_new:
                add("trim", f"trimmed_by max_length but {generated + len(emitted)} tokens generated, "
                    f"max_new_tokens={self.max_new}", None, generated + len(emitted), self.max_new)
        tf = rec["target_forwards"]
        if tf != 1:
            add("target_forwards", f"{tf} target forwards in one step (one batched verify expected)", None, tf, 1)
        seq_after = L + len(emitted)
        for fld, want in (("target_cache_before", L - 1), ("target_cache_after", seq_after - 1)):
            if rec.get(fld) is not None and rec[fld] != want:
                add("kv_cache", f"{fld}={rec[fld]}, expected sequence length - 1 = {want}", None, rec[fld], want)
        for fld, want in (("verify_pos_first", L - 1), ("verify_pos_last", L - 1 + g)):
            if rec.get(fld) is not None and rec[fld] != want:
                add("positions", f"{fld}={rec[fld]}, expected {want}", None, rec[fld], want)

        # ---------------- decisions (reference forward) ----------------
        window = context + drafts
        logits = self._logits(self.pair.target, window, L - 1, g + 1)
        rule = self.rule
        p = acc.target_probs(logits, rule, self.sampling)  # [g+1, V]
        dt = torch.tensor(drafts, dtype=torch.long, device=p.device)
        ar = torch.arange(g, device=p.device)
        p_tok = p[ar, dt] if g else p.new_zeros(0)
        q_full = None
        if self.use_draft and g > 0:
            dl = self._logits(self.pair.draft, window, L - 1, g)
            q_full = acc.plain_probs(dl) if rule.name == "greedy" else acc.process_logits(dl, self.sampling)
        rec_p, rec_q = rec["p"], rec["q"]
        # recorded p and q vs the reference
        for i in range(g):
            rp = rec_p[i]
            if rp is None or (isinstance(rp, float) and not math.isfinite(rp)):
                add("nan_p", f"recorded p at position {i} is null (NaN verifier logits)", i, None,
                    float(p_tok[i]))
                break
            err = abs(rp - float(p_tok[i]))
            self.p_err_max = max(self.p_err_max, err)
            if err > self.p_tol:
                add("p_mismatch", f"recorded p(token)={rp:.4g} at position {i}, reference {float(p_tok[i]):.4g}",
                    i, rp, float(p_tok[i]))
                break
        q_tok_rec = torch.tensor([float(x) if x is not None else float("nan") for x in rec_q],
                                 dtype=p.dtype, device=p.device)
        if q_full is not None:
            q_tok_ref = q_full[ar, dt]
            for i in range(g):
                rq = rec_q[i]
                err = abs(rq - float(q_tok_ref[i])) if rq is not None else float("inf")
                self.q_err_max = max(self.q_err_max, err if math.isfinite(err) else 0.0)
                if err > self.p_tol:
                    add("q_mismatch", f"recorded q(token)={rq if rq is None else round(rq, 6)} at position {i}, "
                        f"reference draft gives {float(q_tok_ref[i]):.6g}", i, rq, float(q_tok_ref[i]))
                    break
            q_tok = q_tok_ref
        else:
            q_tok = q_tok_rec

        uniforms = rec.get("uniforms")
        has_u = isinstance(uniforms, list) and len(uniforms) >= g + 1 and all(u is not None for u in uniforms[: g + 1])
        near = 0
        ref_flags: list[bool | None]
        if rule.name == "greedy":
            # near-tie: the draft's logit is within tolerance of the best other token's
            lg = logits[:g]
            others = lg.scatter(-1, dt.unsqueeze(-1), float("-inf")).max(-1).values if g else lg[:, 0]
            gap = (lg.gather(-1, dt.unsqueeze(-1)).squeeze(-1) - others).abs().tolist() if g else []
            ref = acc.greedy_flags(p, dt).tolist() if g else []
            ref_flags = [ref[i] if gap[i] >= self.logit_tol else None for i in range(g)]  # None: near-tie
            self.exact_steps += 1
        elif rule.name == "typical":
            ref = acc.typical_flags(p[:g], p_tok, rule.params["epsilon"], rule.params["delta"]).tolist() if g else []
            ref_flags = list(ref)
            self.exact_steps += 1
        else:
            scale = rule.params.get("lenience", 1.0) if rule.name == "lenient" else 1.0
            ratio = (p_tok / (scale * q_tok)).clamp(max=1.0) if g else p_tok
            if has_u:
                r = torch.tensor(uniforms[:g], dtype=p.dtype, device=p.device)
                lhs, rhs = r * scale * q_tok, p_tok
                ref = (lhs < rhs).tolist()
                # relative: a logit error of e moves a probability by a factor ~(1 + e)
                close = ((lhs - rhs).abs() <= self.logit_tol * torch.maximum(lhs, rhs) + 1e-12).tolist()
                ref_flags = [None if close[i] else ref[i] for i in range(g)]
                self.exact_steps += 1
            else:
                ref_flags = list(flags)  # cannot re-decide without the uniforms; test impossibilities instead
                self.stat_steps += 1
                for i in range(min(n + 1, g) if trimmed == "none" else min(n, g)):
                    a = float(ratio[i])
                    if not math.isfinite(a):
                        continue
                    x = 1.0 if flags[i] else 0.0
                    self.stat_obs += x
                    self.stat_exp += a
                    self.stat_var += a * (1 - a)
                    self.stat_trials += 1
                    if flags[i] and float(p_tok[i]) <= 0.0:
                        add("impossible_decision", f"draft at position {i} accepted although the reference "
                            "target gives it p = 0", i, True, False)
                    if not flags[i] and a >= 1.0 + self.p_tol and float(p_tok[i]) > float(q_tok[i]) + self.p_tol:
                        add("impossible_decision", f"draft at position {i} rejected although p >= q "
                            f"(p={float(p_tok[i]):.4g}, q={float(q_tok[i]):.4g})", i, False, True)
        near += sum(1 for f in ref_flags if f is None)
        # flags at every drafted position (the test is evaluated for all in one pass)
        for i in range(g):
            if ref_flags[i] is not None and bool(flags[i]) != bool(ref_flags[i]):
                add("accept_flags", f"position {i}: recorded {'accept' if flags[i] else 'reject'}, reference "
                    f"{'accept' if ref_flags[i] else 'reject'}", i, bool(flags[i]), bool(ref_flags[i]))
                break
        # the reference outcome, following the recorded choice where the reference is a near-tie
        adj = [bool(flags[i]) if ref_flags[i] is None else bool(ref_flags[i]) for i in range(g)]
        n_ref = 0
        while n_ref < g and adj[n_ref]:
            n_ref += 1
        if trimmed == "none" and n_ref != n:
            add("n_accepted", f"n_accepted {n}, reference {n_ref}", None, n, n_ref)
        # the verifier's token at position n_ref
        token_prob = None
        ref_tok: int | None = None
        tok_pos = n_ref
        rec_tok = emitted[tok_pos] if tok_pos < len(emitted) else None
        if rule.name == "greedy":
            ref_tok = int(p[tok_pos].argmax())
            token_prob = float(p[tok_pos, rec_tok]) if rec_tok is not None else None
            if rec_tok is not None and rec_tok != ref_tok and \
                    float(logits[tok_pos].max() - logits[tok_pos, rec_tok]) < self.logit_tol:
                ref_tok, near = rec_tok, near + 1
        else:
            bonus = tok_pos == g
            if bonus or rule.name == "typical":
                dist = p[tok_pos]
            elif q_full is not None:
                dist = acc.residual(p[tok_pos], q_full[tok_pos])
            else:
                dist = None  # residual needs the draft's full q
            if dist is not None:
                dist = dist / dist.sum().clamp(min=1e-30)
                if has_u:
                    u = torch.tensor([uniforms[g]], dtype=dist.dtype, device=dist.device)
                    ref_tok = int(acc.sample_from(dist.unsqueeze(0), u)[0])
                    if rec_tok is not None and rec_tok != ref_tok:
                        cdf = dist.cumsum(-1)
                        hi = float(cdf[rec_tok])
                        lo = hi - float(dist[rec_tok])
                        x = float(u[0]) * float(cdf[-1])
                        if float(dist[rec_tok]) > 0 and lo - self.logit_tol <= x <= hi + self.logit_tol:
                            ref_tok, near = rec_tok, near + 1
                if rec_tok is not None:
                    token_prob = float(dist[rec_tok])
                    # zero residual mass only counts when p is clearly below q (not rounding)
                    clear = bonus or rule.name == "typical" or float(p[tok_pos, rec_tok]) < float(
                        q_full[tok_pos, rec_tok]) * (1 - 10 * self.logit_tol) - 1e-12
                    if token_prob <= 0.0 and clear:
                        add("out_of_support", f"position {tok_pos}: token {rec_tok} has probability 0 under the "
                            f"{'target' if bonus else 'residual'} distribution", tok_pos, rec_tok, None)
            elif rec_tok is not None:
                token_prob = float(p[tok_pos, rec_tok])
                # a rejected draft has p < q, so the residual gives it no mass (standard rule only)
                if token_prob <= 0.0 or (rule.name == "sampling" and rec_tok == drafts[tok_pos]):
                    add("out_of_support", f"position {tok_pos}: correction token {rec_tok} cannot come from "
                        "norm(max(0, p - q))", tok_pos, rec_tok, None)
        # without the uniforms the verifier's draw cannot be repeated: it was support-checked above, so
        # take it as recorded and compare the rest of the step
        exact_tok = ref_tok is not None
        if ref_tok is None:
            ref_tok = rec_tok
        ref_emitted = drafts[:n_ref] + ([ref_tok] if ref_tok is not None else [])
        if self.eos is not None and self.eos in ref_emitted:
            ref_emitted = ref_emitted[: ref_emitted.index(self.eos) + 1]
        if self.max_new is not None:
            ref_emitted = ref_emitted[: max(self.max_new - generated, 0)]
        for i in range(min(len(emitted), len(ref_emitted))):
            if emitted[i] != ref_emitted[i]:
                add("token", f"position {i}: recorded token {emitted[i]}, reference {ref_emitted[i]}",
                    i, emitted[i], ref_emitted[i])
                break
        else:
            if len(emitted) > len(ref_emitted) and not any(d.kind in ("bonus_dropped", "emitted_count")
                                                            for d in divs):
                add("token", f"{len(emitted)} tokens emitted, reference emits {len(ref_emitted)}",
                    len(ref_emitted), emitted[len(ref_emitted)], None)
        verdict = StepVerdict(idx, req, line, g, n, n_ref, emitted, ref_emitted if exact_tok else None,
                              sorted({d.kind for d in divs}), near, token_prob)
        return verdict, divs


def _context_text(tokenizer: Any, context: list[int], emitted_before: list[int], rec_tok: Any, ref_tok: Any,
                  width: int = 24) -> dict[str, Any]:
    def dec(ids: list[int]) -> str:
        try:
            return tokenizer.decode(ids)
        except Exception:  # noqa: BLE001 - decoding is best effort for display
            return " ".join(map(str, ids))

    before = (context + emitted_before)[-width:]
    return {
        "before_ids": before,
        "before_text": dec(before),
        "recorded_token": rec_tok,
        "recorded_text": dec([rec_tok]) if isinstance(rec_tok, int) else None,
        "reference_token": ref_tok,
        "reference_text": dec([ref_tok]) if isinstance(ref_tok, int) else None,
    }


def replay_trace(
    trace: Trace | str | Path,
    pair: Any = None,
    *,
    target: str | Path | None = None,
    draft: str | Path | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    use_draft: bool = True,
    z_crit: float = 4.0,
    baseline: Trace | str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Re-verify every step of ``trace`` with the reference models and return what disagrees.

    ``pair`` (a :class:`~specdec_diag.decoder.models.ModelPair`) skips loading; otherwise the models
    are ``target``/``draft`` if given, else the header's paths when present here, else the bundled
    pair. ``use_draft=False`` trusts the recorded q (no draft forward: weaker sampling checks).
    Raises :class:`~specdec_diag.schema.TraceError` for unreadable traces and ``ValueError`` /
    ``ModelLoadError`` for unusable models (one-line messages).
    """
    if not isinstance(trace, Trace):
        trace = read_trace(trace)
    header = trace.header
    try:
        prompts = prompt_ids(header)
    except ValueError as exc:
        raise TraceError(trace.path, 1, str(exc)) from None
    warnings = [f"line {no}: {why}" for no, why in trace.dropped]
    dtype = dtype or header.get("dtype") or "float32"
    if pair is None:
        from specdec_diag.decoder.models import load_pair

        tdir, ddir, notes = resolve_model_dirs(header, target, draft)
        warnings += notes
        pair = load_pair(tdir, ddir, device=device, dtype=dtype)
    warnings += check_hashes(header, pair)
    tok = getattr(pair, "tokenizer", None)
    vocab_hdr = (header.get("tokenizer") or {}).get("vocab_size") if isinstance(header.get("tokenizer"), dict) else None
    if vocab_hdr and tok is not None and len(tok.get_vocab()) != vocab_hdr:
        warnings.append(f"tokenizer has {len(tok.get_vocab())} tokens, the trace's had {vocab_hdr}")

    rp = _Replayer(trace, pair, dtype, use_draft)
    vocab = pair.target.get_output_embeddings().weight.shape[0]
    checked_prompts: set[int] = set()
    lines = _step_lines(trace.path) if Path(trace.path).exists() else []
    contexts: dict[int, list[int]] = {}
    generated: dict[int, int] = defaultdict(int)
    prev: dict[int, dict[str, Any]] = {}
    verdicts: list[StepVerdict] = []
    divergences: list[Divergence] = []
    first_context = None
    first: Divergence | None = None
    total = len(trace.steps)
    for i, rec in enumerate(trace.steps):
        req = rec.get("request") or 0
        if req >= len(prompts):
            raise TraceError(trace.path, lines[i] if i < len(lines) else None,
                             f"step {rec['step']} belongs to request {req} but the header has {len(prompts)} prompts")
        ctx = contexts.setdefault(req, list(prompts[req]))
        line = lines[i] if i < len(lines) else None
        bad = [t for t in (*rec["draft_token_ids"], *rec["emitted_token_ids"]) if not 0 <= t < vocab]
        if bad or (req not in checked_prompts and any(not 0 <= t < vocab for t in prompts[req])):
            raise TraceError(trace.path, line, f"token id {bad[0] if bad else max(prompts[req])} outside the "
                             f"loaded target's vocabulary (size {vocab}): wrong models for this trace?")
        checked_prompts.add(req)
        verdict, divs = rp.step(rec, ctx, generated[req], line, prev.get(req))
        if divs and first is None:
            first = _most_telling(divs)
            pos = first.position if first.position is not None else 0
            emitted = rec["emitted_token_ids"]
            ref = verdict.reference_emitted or []
            show = first.kind in ("token", "out_of_support", "accept_flags", "bonus_dropped")
            first_context = _context_text(
                tok, ctx, emitted[:pos],
                emitted[pos] if show and pos < len(emitted) else None,
                ref[pos] if show and pos < len(ref) else None)
        verdicts.append(verdict)
        divergences.extend(divs)
        ctx.extend(rec["emitted_token_ids"])
        generated[req] += len(rec["emitted_token_ids"])
        prev[req] = rec
        if progress:
            progress(i + 1, total)

    stats: dict[str, Any] = {
        "exact_steps": rp.exact_steps, "statistical_steps": rp.stat_steps,
        "max_abs_p_error": rp.p_err_max, "max_abs_q_error": rp.q_err_max if use_draft else None,
        "tolerances": {"logit_gap": rp.logit_tol, "probability": rp.p_tol, "dtype": dtype},
    }
    if rp.stat_trials:
        z = (rp.stat_obs - rp.stat_exp) / math.sqrt(rp.stat_var) if rp.stat_var > 0 else (
            0.0 if abs(rp.stat_obs - rp.stat_exp) < 1e-9 else math.inf)
        p_two = math.erfc(abs(z) / math.sqrt(2)) if math.isfinite(z) else 0.0
        stats["acceptance_test"] = {"trials": rp.stat_trials, "accepted": rp.stat_obs, "expected": rp.stat_exp,
                                    "variance": rp.stat_var, "z": z, "p_value": p_two, "z_critical": z_crit}
        if abs(z) > z_crit:
            divergences.append(Divergence(
                "acceptance_statistics",
                f"{int(rp.stat_obs)} accepts in {rp.stat_trials} tested positions, reference expects "
                f"{rp.stat_exp:.1f} +- {math.sqrt(rp.stat_var):.1f} (z = {z:.1f})",
                recorded=rp.stat_obs, reference=rp.stat_exp))

    rule = rp.rule.name
    mode_hdr = header.get("mode", "speculative")
    if rule == "greedy" or rule == "typical":
        mode = "exact"
    elif rp.stat_steps == 0:
        mode = "exact (recorded uniforms)"
    elif rp.exact_steps == 0:
        mode = "statistical (no uniforms recorded)"
    else:
        mode = "mixed"
    mode = f"{mode_hdr}/{rule}: {mode}"

    by_kind = Counter()
    for v in verdicts:
        by_kind.update(v.kinds)
    by_kind.update(d.kind for d in divergences if d.step is None)
    diverging = sum(1 for v in verdicts if not v.agrees)
    if first is None and divergences:
        first = divergences[0]
    base_trace = read_trace(baseline) if baseline is not None and not isinstance(baseline, Trace) else baseline
    wi = what_if(trace.steps, base_trace.steps if base_trace else None)
    return ReplayResult(
        path=trace.path, mode=mode, rule=rule, fault_in_header=header.get("fault"),
        steps_total=total, steps_checked=len(verdicts), steps_agreeing=len(verdicts) - diverging,
        steps_diverging=diverging, near_ties=sum(v.near_ties for v in verdicts), by_kind=dict(by_kind),
        divergences=divergences, first=first, first_context=first_context, statistics=stats,
        warnings=warnings, models={k: v for k, v in (getattr(pair, "info", {}) or {}).items()},
        verdicts=verdicts, what_if=wi,
    )


def _most_telling(divs: list[Divergence]) -> Divergence:
    """Of one step's divergences, the one to show first: a differing token, then any decision with a
    position, then anything with a position, then the first."""
    for pred in (lambda d: d.kind == "token", lambda d: d.category == "decision" and d.position is not None,
                 lambda d: d.position is not None):
        hit = next((d for d in divs if pred(d)), None)
        if hit is not None:
            return hit
    return divs[0]
