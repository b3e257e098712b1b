"""Replay a whole trace: load the models, rebuild each step's context, run the checks, sum up."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from specdec_diag.decoder.replay.reference import Reference
from specdec_diag.decoder.replay.result import Divergence, ReplayResult, StepVerdict
from specdec_diag.decoder.replay.structure import RecordedStep, check_structure
from specdec_diag.decoder.replay.tokens import check_emitted, verifier_check
from specdec_diag.schema import Trace, TraceError, read_trace


def replay_step(ref: Reference, s: RecordedStep) -> StepVerdict:
    """Structure, decision and token checks of one step (divergences collect in ``s.divs``)."""
    check_structure(s, ref.eos, ref.max_new)
    f = ref.forward(s)
    ref.check_probs(s, f)
    ref_flags = ref.decide(s, f)
    n_ref = ref.check_flags(s, ref_flags)
    tok = verifier_check(ref, s, f, n_ref)
    want = check_emitted(ref, s, n_ref, tok.token)
    near = sum(1 for x in ref_flags if x is None) + int(tok.near_tie)
    return StepVerdict(s.idx, s.req, s.line, s.g, s.n, n_ref, s.emitted, want if tok.token is not None else None,
                       sorted({d.kind for d in s.divs}), near, tok.prob)


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


def _first_context(tokenizer: Any, s: RecordedStep, first: Divergence, verdict: StepVerdict) -> dict[str, Any]:
    """The text around the first divergence, with the recorded and reference tokens where it is one."""
    pos = first.position if first.position is not None else 0
    ref = verdict.reference_emitted or []
    show = first.kind in ("token", "out_of_support", "accept_flags", "bonus_dropped")
    return _context_text(tokenizer, s.context, s.emitted[:pos],
                         s.emitted[pos] if show and pos < len(s.emitted) else None,
                         ref[pos] if show and pos < len(ref) else None)


def _most_telling(divs: list[Divergence]) -> Divergence:
    """Of one step's divergences, the one to show first: a differing token, then any decision with a
    position, then anything with a position, then the first."""
    for pred in (lambda d: d.kind == "token", lambda d: d.category == "decision" and d.position is not None,
                 lambda d: d.position is not None):
        hit = next((d for d in divs if pred(d)), None)
        if hit is not None:
            return hit
    return divs[0]


def _load(trace: Trace, pair: Any, target: str | Path | None, draft: str | Path | None, device: str,
          dtype: str) -> tuple[Any, list[str]]:
    """The model pair (given, or loaded as :func:`resolve_model_dirs` says) and warnings about it."""
    header, warnings = trace.header, [f"line {no}: {why}" for no, why in trace.dropped]
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
    return pair, warnings


class _Walk:
    """Rebuilds each request's context from its prompt and the tokens emitted so far."""

    def __init__(self, trace: Trace, prompts: list[list[int]], vocab: int):
        self.trace, self.prompts, self.vocab = trace, prompts, vocab
        self.contexts: dict[int, list[int]] = {}
        self.generated: dict[int, int] = defaultdict(int)
        self.prev: dict[int, dict[str, Any]] = {}
        self.checked: set[int] = set()

    def step(self, i: int, rec: dict[str, Any]) -> RecordedStep:
        req = rec.get("request") or 0
        line = self.trace.step_line(i)
        if req >= len(self.prompts):
            raise TraceError(self.trace.path, line, f"step {rec['step']} belongs to request {req} but the header "
                             f"has {len(self.prompts)} prompts")
        ctx = self.contexts.setdefault(req, list(self.prompts[req]))
        bad = [t for t in (*rec["draft_token_ids"], *rec["emitted_token_ids"]) if not 0 <= t < self.vocab]
        if bad or (req not in self.checked and any(not 0 <= t < self.vocab for t in self.prompts[req])):
            raise TraceError(self.trace.path, line, f"token id {bad[0] if bad else max(self.prompts[req])} outside "
                             f"the loaded target's vocabulary (size {self.vocab}): wrong models for this trace?")
        self.checked.add(req)
        return RecordedStep(rec, ctx, self.generated[req], line, self.prev.get(req))

    def advance(self, s: RecordedStep) -> None:
        s.context.extend(s.emitted)
        self.generated[s.req] += len(s.emitted)
        self.prev[s.req] = s.rec


def _acceptance_test(ref: Reference, z_crit: float) -> tuple[dict[str, Any] | None, Divergence | None]:
    """Run-level test for sampling steps without uniforms: accepted count vs sum min(1, p/q), as a
    martingale z-score. Returns the statistics and a divergence when |z| > z_crit."""
    if not ref.stat_trials:
        return None, None
    obs, exp, var = ref.stat_obs, ref.stat_exp, ref.stat_var
    z = (obs - exp) / math.sqrt(var) if var > 0 else (0.0 if abs(obs - exp) < 1e-9 else math.inf)
    p_two = math.erfc(abs(z) / math.sqrt(2)) if math.isfinite(z) else 0.0
    stats = {"trials": ref.stat_trials, "accepted": obs, "expected": exp, "variance": var, "z": z,
             "p_value": p_two, "z_critical": z_crit}
    if not abs(z) > z_crit:  # a NaN z is no evidence
        return stats, None
    return stats, Divergence("acceptance_statistics", f"{int(obs)} accepts in {ref.stat_trials} tested positions, "
                             f"reference expects {exp:.1f} +- {math.sqrt(var):.1f} (z = {z:.1f})",
                             recorded=obs, reference=exp)


def _mode(ref: Reference, header: dict[str, Any]) -> str:
    rule = ref.rule.name
    if rule in ("greedy", "typical"):
        mode = "exact"
    elif ref.stat_steps == 0:
        mode = "exact (recorded uniforms)"
    elif ref.exact_steps == 0:
        mode = "statistical (no uniforms recorded)"
    else:
        mode = "mixed"
    return f"{header.get('mode', 'speculative')}/{rule}: {mode}"


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
    try:
        prompts = prompt_ids(trace.header)
    except ValueError as exc:
        raise TraceError(trace.path, 1, str(exc)) from None
    dtype = dtype or trace.header.get("dtype") or "float32"
    pair, warnings = _load(trace, pair, target, draft, device, dtype)
    ref = Reference(trace.header, pair, dtype, use_draft)
    walk = _Walk(trace, prompts, pair.target.get_output_embeddings().weight.shape[0])
    verdicts: list[StepVerdict] = []
    divergences: list[Divergence] = []
    first, first_context = None, None
    for i, rec in enumerate(trace.steps):
        s = walk.step(i, rec)
        verdict = replay_step(ref, s)
        if s.divs and first is None:
            first = _most_telling(s.divs)
            first_context = _first_context(getattr(pair, "tokenizer", None), s, first, verdict)
        verdicts.append(verdict)
        divergences.extend(s.divs)
        walk.advance(s)
        if progress:
            progress(i + 1, len(trace.steps))
    return _result(trace, pair, ref, dtype, z_crit, verdicts, divergences, first, first_context, warnings)


def _result(trace: Trace, pair: Any, ref: Reference, dtype: str, z_crit: float, verdicts: list[StepVerdict],
            divergences: list[Divergence], first: Divergence | None, first_context: dict[str, Any] | None,
            warnings: list[str]) -> ReplayResult:
    """Sum the per-step verdicts up, with the run-level acceptance test."""
    stats: dict[str, Any] = {
        "exact_steps": ref.exact_steps, "statistical_steps": ref.stat_steps,
        "max_abs_p_error": ref.p_err_max, "max_abs_q_error": ref.q_err_max if ref.use_draft else None,
        "tolerances": {"logit_gap": ref.logit_tol, "probability": ref.p_tol, "dtype": dtype},
    }
    test, div = _acceptance_test(ref, z_crit)
    if test is not None:
        stats["acceptance_test"] = test
    if div is not None:
        divergences.append(div)
    by_kind: Counter = Counter()
    for v in verdicts:
        by_kind.update(v.kinds)
    by_kind.update(d.kind for d in divergences if d.step is None)
    diverging = sum(1 for v in verdicts if not v.agrees)
    if first is None and divergences:
        first = divergences[0]
    return ReplayResult(
        path=trace.path, mode=_mode(ref, trace.header), rule=ref.rule.name, fault_in_header=trace.header.get("fault"),
        steps_total=len(trace.steps), steps_checked=len(verdicts), steps_agreeing=len(verdicts) - diverging,
        steps_diverging=diverging, near_ties=sum(v.near_ties for v in verdicts), by_kind=dict(by_kind),
        divergences=divergences, first=first, first_context=first_context, statistics=stats,
        warnings=warnings, models={k: v for k, v in (getattr(pair, "info", {}) or {}).items()},
        verdicts=verdicts,
    )
