"""Every threshold the diagnosis rules use, in one place.

Each field carries its default and a docstring (the string literal right after it) saying what it
governs and where the number comes from; the rule pages in ``docs/rules/`` list the fields each rule
reads. Override them from a TOML file with a ``[thresholds]`` table::

    [thresholds]
    min_draft_tokens = 200
    large_batch = 64
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 with the tomli backport
    import tomli as tomllib  # type: ignore[no-redef]


@dataclass(frozen=True)
class Thresholds:
    """Numbers that decide when a rule fires. Defaults come from the user problems (docs/problems.md) and the
    theory (docs/theory.md)."""

    # --- how much data a rule needs before it judges -------------------------------------------------
    min_draft_tokens: int = 500
    """Draft tokens a group (file + engine, or trace request set) needs before acceptance is judged (problem
    3, docs/problems.md#p03: '>= 500 drafted tokens'); below it a rule emits at most an info 'not enough data'
    note."""
    min_steps: int = 20
    """Speculative steps a trace needs before step statistics (timings, regressions, rates) are judged."""
    min_windows: int = 3
    """Windows each side of a change point, and contiguous windows of a pinned run (collapse, pinning)."""
    min_position_trials: int = 30
    """Drafts that reached position j before a zero rate there counts as a cliff, not noise (below it:
    an info 'not enough data' note; 30 trials put the 95 % Wilson upper bound of a zero rate near 11 %,
    about ``cliff_conditional``)."""
    min_explicit_windows: int = 1
    """Windows of explicit evidence a rule needs: a fact the engine printed (``cuda graph: False``, requests
    waiting while the KV cache is full) is not a statistic, so one window is enough."""
    min_verify_steps: int = 40
    """Verify steps a drafter judgment needs where the engine prints no draft counts (SGLang): zero
    accepted in 40 steps puts the 95 % Wilson upper bound of the accepted share near 9 %, far below any
    working drafter's first position (``cliff_first_position``). One SGLang decode line covers
    ``decode_log_interval`` steps (default 40), so one line of ``accept len: 1.00`` is a warning and two
    are an error."""
    sglang_decode_log_interval: int = 40
    """SGLang's default ``--decode-log-interval``: decode steps one ``Decode batch`` line covers (at
    least: every step of every running request verifies a draft), used where the log does not say."""
    min_inactive_windows: int = 2
    """Windows without any drafting (0 drafted, or accept length exactly 1.00 at a gated batch size) before
    SPEC_INACTIVE calls speculation off: one idle window is normal, two in a row are a pattern."""

    # --- acceptance level ----------------------------------------------------------------------------
    broken_acceptance_rate: float = 0.05
    """Acceptance rate (accepted/drafted) below which the drafter is called broken (problem 3,
    docs/problems.md#p03: AR < 5 %)."""
    broken_mal: float = 1.10
    """Mean acceptance length below which the drafter is called broken (problem 3, docs/problems.md#p03: MAL <
    1.10)."""
    low_alpha: float = 0.40
    """Leviathan alpha (per-token acceptance probability, estimated) below which acceptance is low
    (problem 19, docs/problems.md#p19: drafter/target mismatch typically shows 30-55 % AR)."""
    suspicious_acceptance: float = 0.99
    """Acceptance rate at or above which acceptance is 'about 100 %' (verifier bypassed?)."""
    suspicious_z: float = 4.0
    """z-score by which trace acceptances may exceed what the recorded p/q ratios allow before it is
    called suspicious (binomial test on accepted positions)."""

    # --- per-position shape --------------------------------------------------------------------------
    cliff_first_position: float = 0.30
    """Position-0 acceptance a draft needs before a later zero is called a cliff (problem 7,
    docs/problems.md#p07: pp[0] > 0.3)."""
    cliff_conditional: float = 0.10
    """Conditional rate pp[j]/pp[j-1] below which position j is a cliff (healthy ones are roughly flat)."""
    cliff_zero: float = 0.02
    """Per-position rate counted as 'about zero' at a cliff."""
    tail_position_rate: float = 0.10
    """Per-position rate under which a tail position 'rarely accepts' (problem 8, docs/problems.md#p08: tail
    pp < 0.1)."""
    tail_positions: int = 2
    """Tail positions below ``tail_position_rate`` needed before K_TOO_LARGE considers a smaller gamma."""
    keep_position_rate: float = 0.20
    """Per-position rate a position needs to be worth drafting (problem 8, docs/problems.md#p08: last position
    with pp >= 0.2)."""
    min_gain: float = 0.05
    """Predicted relative speed-up a smaller gamma must bring before K_TOO_LARGE fires."""
    assumed_cost_ratio: float = 0.05
    """Draft cost ratio c assumed when no timings are known (Leviathan measured c = 0.02-0.11)."""
    verify_saturation_tokens: int = 256
    """Tokens one target forward can verify before it turns compute-bound (roofline ridge point), used for
    the cost of verifying k+1 tokens per request at batch b when the logs do not measure it: the step costs
    max(1, b (k+1) / N) / max(1, b / N) plain decode steps. H100 SXM fp16: 989 TFLOP/s over 3.35 TB/s is
    about 295 FLOP per byte, i.e. about 295 tokens per weight read (2 FLOP per 2-byte weight per token);
    A100: 312 / 2.04 = 153; 256 sits between (see docs/rules/K_TOO_LARGE.md for the sources)."""

    # --- change over time, context, temperature ------------------------------------------------------
    collapse_relative_drop: float = 0.50
    """Relative drop of acceptance after a change point that counts as a collapse (problem 10,
    docs/problems.md#p10: 61 % -> 0.9 %)."""
    collapse_absolute_drop: float = 0.15
    """Absolute drop (acceptance-rate points) a collapse also needs, so low rates do not trip it."""
    decay_relative_drop: float = 0.30
    """Relative drop from the shortest- to the longest-context bin that counts as decay (problem 6,
    docs/problems.md#p06)."""
    decay_bins: int = 4
    """Context-length bins used for the decay regression."""
    sharp_drop_share: float = 0.60
    """Share of the total decay in one adjacent-bin step that makes it a 'sharp drop at a size' (window
    bug)."""
    temperature_gap: float = 0.15
    """Acceptance-rate gap between greedy (T < 0.3) and sampled (T >= 0.7) traffic that counts as
    temperature sensitivity (problem 5, docs/problems.md#p05)."""

    # --- speed ---------------------------------------------------------------------------------------
    no_speedup_ratio: float = 1.0
    """Achieved (or predicted) speed-up at or below which speculation is 'no faster' than the baseline."""
    min_speedup: float = 1.10
    """Predicted speed-up S(alpha, gamma, c) below which the draft is too expensive for its acceptance."""
    draft_share: float = 0.50
    """Share of step time spent drafting that counts as too expensive on its own."""
    sequential_forwards_share: float = 0.10
    """Share of steps with more than one target forward that makes verification sequential."""
    sequential_marginal_cost: float = 0.60
    """Marginal verify cost of one more token, as a share of a whole forward (fit verify_ms on gamma+1),
    above which verification scales like gamma+1 separate forwards (healthy batched verify: small)."""
    sequential_baseline_cost: float = 0.90
    """Marginal verify cost per drafted token against a baseline trace's single-token forward,
    (verify_ms / baseline forward - 1) / gamma, above which each token got its own forward (sequential:
    about 1; healthy batched verify on the sample CPU pair: about 0.2; timing noise and slow faulty
    steps reach 0.8, hence the margin)."""
    large_batch: int = 32
    """Running requests at or above which the target is likely compute-bound (problem 1, docs/problems.md#p01:
    batch 16-32)."""
    compute_bound_share: float = 0.50
    """Share of speculative windows at or above ``large_batch`` before COMPUTE_BOUND_BATCH fires."""
    kv_full: float = 0.90
    """KV-cache usage (fraction) counted as full (problem 20, docs/problems.md#p20: usage > 90 %)."""
    queue_share: float = 0.30
    """Share of windows with waiting requests (or full KV) before CAPACITY_QUEUEING fires."""
    ttft_tpot_ratio: float = 100.0
    """TTFT / TPOT above which requests spend their time queued, not decoding (problem 20,
    docs/problems.md#p20)."""
    no_graph_share: float = 0.05
    """Share of speculative decode windows without CUDA graphs before NO_CUDA_GRAPH fires."""

    # --- generated text ------------------------------------------------------------------------------
    degenerate_repeats: int = 10
    """Consecutive repeats of one token or word, or of an n-gram of up to ``degenerate_max_period`` items, that
    make a logged output degenerate (a list of ten equal numbers is rare prose; 25 x 'the' is a stuck decoder)."""
    degenerate_max_period: int = 8
    """Longest repeated unit, in tokens or words, looked for (characters: twice this)."""
    degenerate_char_run: int = 32
    """Characters a looping character pattern must cover ('!' x 32; layout runs such as '-----' excluded)."""

    # --- data quality --------------------------------------------------------------------------------
    idle_gen_tps: float = 1.0
    """Generation throughput (tok/s) under which a window is idle (problem 17, docs/problems.md#p17: SGLang
    0.39 tok/s first window)."""
    idle_share: float = 0.25
    """Share of idle or draft-less windows before BENCHMARK_ARTIFACT reports them."""
    min_request_draft_tokens: int = 50
    """Draft tokens a per-request record needs to be meaningful (problem 17, docs/problems.md#p17: < ~50)."""
    identical_windows: int = 3
    """Identical consecutive non-trivial windows (same counts and per-position rates) that suggest repeated
    prompts."""
    malformed_error_share: float = 0.50
    """Share of a file's records that were malformed above which MALFORMED_INPUT is an error."""
    max_locations: int = 20
    """Locations listed per finding; the rest are counted in evidence['more_locations']."""

    def with_overrides(self, values: dict[str, Any], where: str = "thresholds") -> Thresholds:
        """A copy with ``values`` applied; unknown names or wrong types raise ``ValueError``."""
        known = {f.name: f for f in fields(self)}
        clean: dict[str, Any] = {}
        for name, value in values.items():
            if name not in known:
                raise ValueError(f"{where}: unknown threshold {name!r}")
            default = getattr(self, name)
            if isinstance(default, int) and not isinstance(default, bool):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError(f"{where}: threshold {name!r} must be an integer, got {value!r}")
            elif not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"{where}: threshold {name!r} must be a number, got {value!r}")
            clean[name] = type(default)(value)
        return replace(self, **clean)

    @classmethod
    def from_toml(cls, path: str | Path) -> Thresholds:
        """Defaults overridden by the ``[thresholds]`` table of a TOML file (missing table: defaults)."""
        path = Path(path)
        data = read_toml(path)
        table = data.get("thresholds", {})
        if not isinstance(table, dict):
            raise ValueError(f"{path}: [thresholds] must be a table")
        return cls().with_overrides(table, where=str(path))


def read_toml(path: Path, error: type[Exception] = ValueError) -> dict[str, Any]:
    """A TOML file as a dict; an unreadable or invalid file raises ``error`` with a one-line
    ``path: message`` (shared by ``Thresholds.from_toml`` and the gate's ``load_config``)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML ({exc})") from None


@cache
def threshold_docs() -> dict[str, str]:
    """Field name -> its docstring (the string literal after the field), for the rule pages."""
    tree = ast.parse(inspect.getsource(Thresholds))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for prev, node in zip(body, body[1:], strict=False):
        if (isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name)
                and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            docs[prev.target.id] = " ".join(node.value.value.split())
    return docs
