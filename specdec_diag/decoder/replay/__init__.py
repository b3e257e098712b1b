"""Replay a recorded trace against the reference verifier.

A trace says what a decoder *claims* happened at every step. Replay rebuilds each step's context from
the header's prompt ids plus the tokens emitted so far, runs the reference target (and draft) once over
``context + drafts`` with a fresh prefill (so no cache bug of the traced decoder can leak in), re-decides
the step with :mod:`specdec_diag.decoder.verification` (the functions decode runs), and reports where
the recorded decisions, tokens or bookkeeping disagree. Three strengths of check, by what the trace records:

* greedy: exact (reference argmax vs recorded flags, n and tokens);
* sampling with recorded uniforms: exact (same test, same inverse-CDF draw for the verifier's token);
* sampling without uniforms: per-step impossibility checks plus one run-level statistical test
  (accepted count vs the expected sum of min(1, p/q), a martingale z-score).

Near-ties (two logits or a uniform within numerical noise of a boundary) are counted separately and
never reported as divergences: a batched verify forward may legitimately round differently.

Modules: ``result`` (divergence kinds, verdicts, the result; pure Python), ``structure`` (checks that
need no model), ``reference`` (the reference forward and decision checks), ``tokens`` (verifier token
and emitted tokens), ``run`` (:func:`replay_trace`). What other gammas would do is analysis, not a
check: :mod:`specdec_diag.analysis.whatif`.
"""

from specdec_diag.decoder.replay.result import KINDS, TOLERANCE, Divergence, ReplayResult, StepVerdict
from specdec_diag.decoder.replay.run import (
           check_hashes,
           prompt_ids,
           replay_step,
           replay_trace,
           resolve_model_dirs,
)

__all__ = ["KINDS", "TOLERANCE", "Divergence", "ReplayResult", "StepVerdict", "check_hashes", "prompt_ids",
           "replay_step", "replay_trace", "resolve_model_dirs"]
