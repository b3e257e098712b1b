"""Replay: clean traces replay without divergence; every correctness fault is caught at the step where
it first shows, with the finding code it evidences; the what-if model reproduces Leviathan's numbers.

Traces come from the real decoder (speculative.generate) on the tiny random pair of conftest.py; the
"right step" for each fault is computed independently from the trace's own recorded fields.
"""

from __future__ import annotations

import copy
import json
import math

import pytest

pytest.importorskip("torch")

from conftest import random_prompts  # noqa: E402

from specdec_diag.schema import TraceError, read_trace  # noqa: E402

PROMPTS = random_prompts(3, seed=1, min_len=3)


def _decode(pair, path, *, rule="greedy", fault=None, gamma=4, max_new=30, temperature=0.8, top_k=0,
            baseline=False, seed=0, prompts=PROMPTS):
    from specdec_diag.decoder.faults import Fault
    from specdec_diag.decoder.speculative import DecodeConfig, generate
    from specdec_diag.decoder.verification import AcceptanceRule, SamplingConfig

    cfg = DecodeConfig(gamma=gamma, rule=AcceptanceRule(rule), sampling=SamplingConfig(temperature=temperature, top_k=top_k),
                       max_new_tokens=max_new, seed=seed, fault=Fault(fault), baseline=baseline)
    generate(pair, prompts, cfg, trace=str(path))
    return read_trace(path)


CASES = {
    "greedy": {}, "sampling": {"rule": "sampling"}, "baseline": {"baseline": True},
    "accept-all": {"fault": "accept-all"}, "no-rollback": {"fault": "no-rollback"},
    "drop-bonus": {"fault": "drop-bonus"}, "position-shift": {"fault": "position-shift"},
    "nan-verifier": {"fault": "nan-verifier"}, "sequential-verify": {"fault": "sequential-verify"},
    "raw-draft-probs": {"fault": "raw-draft-probs", "rule": "sampling", "top_k": 8},
    "accept-all-sampling": {"fault": "accept-all", "rule": "sampling"},
}


class _Traces(dict):
    """Decodes each case on first use and keeps it for the module (tests pick the cases they need)."""

    def __init__(self, pair, root):
        super().__init__()
        self.pair, self.root = pair, root

    def __missing__(self, name):
        self[name] = tr = _decode(self.pair, self.root / f"{name}.jsonl", **CASES[name])
        return tr


@pytest.fixture(scope="module")
def traces(tiny_pair, tmp_path_factory):
    return _Traces(tiny_pair, tmp_path_factory.mktemp("replay"))


def _replay(trace, pair, **kw):
    from specdec_diag.decoder.replay import replay_trace

    return replay_trace(trace, pair, **kw)


# ------------------------------------------------------------------------------------------------
# clean traces


def test_clean_greedy_trace_replays_without_divergence(traces, tiny_pair):
    tr = traces["greedy"]
    steps = tr.steps
    # the check must be meaningful: both accepted and rejected drafts occur
    assert any(s["n_accepted"] < s["gamma_drafted"] for s in steps)
    assert any(s["n_accepted"] > 0 for s in steps)
    res = _replay(tr, tiny_pair)
    assert not res.diverged, res.divergences[:3]
    assert res.steps_checked == len(steps) == res.steps_agreeing
    assert res.mode.endswith("exact")
    # the reference reproduces every recorded step exactly
    for v, s in zip(res.verdicts, steps, strict=True):
        assert v.n_reference == s["n_accepted"]
        assert v.reference_emitted == s["emitted_token_ids"]
    assert res.statistics["max_abs_p_error"] < 1e-4


def test_clean_sampling_trace_with_uniforms_is_exact(traces, tiny_pair):
    tr = traces["sampling"]
    res = _replay(tr, tiny_pair)
    assert not res.diverged, res.divergences[:3]
    assert "recorded uniforms" in res.mode
    assert res.statistics["exact_steps"] == len(tr.steps)
    # every verifier token was re-drawn by the reference (near-ties are rare and not divergences)
    exact = [v for v in res.verdicts if v.reference_emitted is not None]
    assert len(exact) == len(tr.steps)
    untrimmed = [v for v, s in zip(res.verdicts, tr.steps, strict=True) if s["trimmed_by"] == "none"]
    assert untrimmed and all(v.token_prob is not None and v.token_prob > 0 for v in untrimmed)


def test_sampling_without_uniforms_uses_the_statistical_test(traces, tiny_pair):
    clean = copy.deepcopy(traces["sampling"])
    for s in clean.steps:
        s["uniforms"] = None
    res = _replay(clean, tiny_pair)
    assert "statistical" in res.mode
    test = res.statistics["acceptance_test"]
    assert test["trials"] >= len(clean.steps)
    assert abs(test["z"]) < 4 and not res.diverged
    # independent recomputation of the expected accept count over the tested positions
    # (accept-all makes every test position an accept, far above sum min(1, p/q))
    bad = copy.deepcopy(traces["accept-all-sampling"])
    for s in bad.steps:
        s["uniforms"] = None
    res_bad = _replay(bad, tiny_pair)
    kinds = {d.kind for d in res_bad.divergences}
    assert "acceptance_statistics" in kinds
    t = res_bad.statistics["acceptance_test"]
    assert t["accepted"] == t["trials"] and t["z"] > 4


def test_baseline_trace_replays_and_feeds_what_if(traces, tiny_pair):
    from specdec_diag.analysis.whatif import what_if

    base = traces["baseline"]
    assert all(s["gamma_drafted"] == 0 for s in base.steps)
    res = _replay(base, tiny_pair)
    assert not res.diverged and what_if(base.steps) is None
    w = what_if(traces["greedy"].steps, base.steps)
    assert w.t_ar_source.startswith("baseline")
    want = sum(s["draft_ms"] + s["verify_ms"] + s["overhead_ms"] for s in base.steps) / len(base.steps)
    assert w.t_ar_ms == pytest.approx(want)
    assert w.measured_speedup is not None and w.measured_speedup > 0


# ------------------------------------------------------------------------------------------------
# faults: a divergence at the right step, with the right code


def _first(res):
    assert res.diverged
    return res.first


def test_accept_all_diverges_at_first_draft_the_target_would_reject(traces, tiny_pair):
    tr = traces["accept-all"]
    # the decoder recorded its verifier's argmax: the first step where a draft differs from it
    want = next(s["step"] for s in tr.steps
                if any(d != a for d, a in zip(s["draft_token_ids"], s["argmax_p"], strict=False)))
    assert all(s["n_accepted"] == s["gamma_drafted"] for s in tr.steps)
    res = _replay(tr, tiny_pair)
    d = _first(res)
    assert d.step == want and d.kind == "token"
    assert "VERIFIER_MISMATCH" in res.codes
    assert all(v.agrees for v in res.verdicts if v.step < want)


def test_no_rollback_fires_kv_check_at_first_rejection_then_tokens_diverge(traces, tiny_pair):
    tr = traces["no-rollback"]
    want = next(s["step"] for s in tr.steps if s["n_accepted"] < s["gamma_drafted"])
    res = _replay(tr, tiny_pair)
    d = _first(res)
    assert d.step == want and d.kind == "kv_cache" and d.code == "KV_ROLLBACK"
    assert {"KV_ROLLBACK", "VERIFIER_MISMATCH"} <= set(res.codes)
    assert any(x.kind == "token" for x in res.divergences)


def test_drop_bonus_fires_at_first_full_accept(traces, tiny_pair):
    tr = traces["drop-bonus"]
    want = next(s["step"] for s in tr.steps if s["gamma_drafted"] > 0 and s["n_accepted"] == s["gamma_drafted"])
    res = _replay(tr, tiny_pair)
    d = _first(res)
    assert d.step == want and d.kind == "bonus_dropped" and d.code == "BONUS_DROPPED"
    full = sum(1 for s in tr.steps if s["gamma_drafted"] > 0 and s["n_accepted"] == s["gamma_drafted"])
    assert res.by_kind["bonus_dropped"] == full
    assert set(res.codes) == {"BONUS_DROPPED"}  # tokens themselves are the reference's


def test_position_shift_fires_positions_and_tokens(traces, tiny_pair):
    tr = traces["position-shift"]
    res = _replay(tr, tiny_pair)
    d = _first(res)
    assert d.step == tr.steps[0]["step"]
    assert res.by_kind["positions"] == len(tr.steps)
    assert {"KV_ROLLBACK", "VERIFIER_MISMATCH"} <= set(res.codes)
    assert res.by_kind.get("token", 0) > 0


def test_nan_verifier_diverges_exactly_at_the_nan_step(traces, tiny_pair):
    tr = traces["nan-verifier"]
    after = int(tr.header["fault_params"]["after_step"])
    res = _replay(tr, tiny_pair)
    d = _first(res)
    assert d.step == after
    assert all(v.agrees for v in res.verdicts if v.step < after)
    assert "PINNED_ACCEPTANCE_LENGTH" in res.codes
    assert any(x.kind == "nan_p" and x.step == after for x in res.divergences)


def test_raw_draft_probs_caught_by_the_reference_draft(traces, tiny_pair):
    tr = traces["raw-draft-probs"]
    res = _replay(tr, tiny_pair)
    d = _first(res)
    assert d.step == next(s["step"] for s in tr.steps if s["gamma_drafted"] > 0)
    assert d.kind == "q_mismatch" and d.code == "VERIFIER_MISMATCH"
    # the recorded q is the draft's raw softmax: it is not what the token was sampled from
    assert res.statistics["max_abs_q_error"] > 1e-2


def test_sequential_verify_is_a_structure_finding(traces, tiny_pair):
    tr = traces["sequential-verify"]
    res = _replay(tr, tiny_pair)
    assert set(res.codes) == {"SEQUENTIAL_VERIFY"}
    assert res.by_kind["target_forwards"] == sum(1 for s in tr.steps if s["target_forwards"] != 1)
    assert res.first.step == tr.steps[0]["step"]


def test_tampered_token_is_located(traces, tiny_pair):
    tr = copy.deepcopy(traces["greedy"])
    k = 7
    s = tr.steps[k]
    pos = len(s["emitted_token_ids"]) - 1
    s["emitted_token_ids"][pos] = (s["emitted_token_ids"][pos] + 1) % 90 + 3
    res = _replay(tr, tiny_pair)
    d = _first(res)
    assert (d.step, d.position, d.kind) == (s["step"], pos, "token")
    assert d.recorded == s["emitted_token_ids"][pos]
    assert res.first_context["recorded_token"] == d.recorded
    assert res.first_context["reference_text"]
    assert all(v.agrees for v in res.verdicts[:k])


def test_structure_checks_on_edited_fields(traces, tiny_pair):
    tr = copy.deepcopy(traces["greedy"])
    tr.steps[2]["target_forwards"] = 3
    tr.steps[3]["n_accepted"] = max(tr.steps[3]["n_accepted"] - 1, 0) if tr.steps[3]["n_accepted"] else 1
    tr.steps[4]["context_len"] += 1
    res = _replay(tr, tiny_pair)
    kinds = {v.step: set(v.kinds) for v in res.verdicts}
    assert "target_forwards" in kinds[tr.steps[2]["step"]]
    assert "flags_vs_n" in kinds[tr.steps[3]["step"]]
    assert "context_len" in kinds[tr.steps[4]["step"]]


def test_hash_mismatch_warns(traces, tiny_pair):
    tr = copy.deepcopy(traces["greedy"])
    tr.header["models"]["target"]["sha256"] = "0" * 64
    res = _replay(tr, tiny_pair)
    assert any("target weights differ" in w for w in res.warnings)
    assert not res.diverged


def test_gpt2_pair_replays_clean(tiny_gpt2_pair, tmp_path):
    tr = _decode(tiny_gpt2_pair, tmp_path / "g.jsonl", rule="sampling", max_new=20)
    res = _replay(tr, tiny_gpt2_pair)
    assert not res.diverged, res.divergences[:3]


# ------------------------------------------------------------------------------------------------
# CLI


def _cli(args):
    from typer.testing import CliRunner

    from specdec_diag.cli import app

    return CliRunner().invoke(app, ["replay", *args])


def test_cli_exit_codes_and_json(traces, tiny_pair_dirs, tmp_path):
    t, d = map(str, tiny_pair_dirs)
    ok = _cli([traces["greedy"].path, "--target", t, "--draft", d, "--json"])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["schema"] == "specdec-diag/replay@1" and doc["diverged"] is False
    assert doc["counts"]["steps_checked"] == len(traces["greedy"].steps)
    assert [r["gamma"] for r in doc["what_if"]["rows"]] == list(range(1, 9))
    bad = _cli([traces["drop-bonus"].path, "--target", t, "--draft", d])
    assert bad.exit_code == 1
    assert "BONUS_DROPPED" in bad.output and "first divergence" in bad.output
    # header paths are used when no dirs are given
    assert _cli([traces["greedy"].path]).exit_code == 0


def test_cli_bad_input_is_one_line(tmp_path, traces):
    bad = tmp_path / "bad.jsonl"
    lines = open(traces["greedy"].path).read().splitlines()
    bad.write_text("\n".join([lines[0], '{"type": "step", "step": 0}', *lines[1:]]) + "\n")
    r = _cli([str(bad)])
    assert r.exit_code == 2
    assert f"{bad}:2:" in r.output and "Traceback" not in r.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text(lines[0] + "\n")
    assert _cli([str(empty)]).exit_code == 3
    assert _cli([str(tmp_path / "missing.jsonl")]).exit_code == 2
    r = _cli([traces["greedy"].path, "--target", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_header_without_prompt_ids_is_a_trace_error(traces, tiny_pair):
    tr = copy.deepcopy(traces["greedy"])
    tr.header.pop("prompt_token_ids")
    tr.header["prompts"] = [None]
    with pytest.raises(TraceError, match="prompt"):
        _replay(tr, tiny_pair)


def test_token_outside_vocabulary_names_the_line(traces, tiny_pair):
    tr = read_trace(traces["greedy"].path)
    tr.steps[3]["emitted_token_ids"][0] = 10_000
    with pytest.raises(TraceError, match=r":5: token id 10000 outside"):
        _replay(tr, tiny_pair)


def test_result_json_is_finite(traces, tiny_pair):
    from specdec_diag.analysis.whatif import what_if

    res = _replay(traces["nan-verifier"], tiny_pair)
    doc = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert "what_if" not in doc  # replay checks; the what-if is analysis (the CLI adds it)
    assert doc["first_divergence"]["kind"] in {"nan_p", "token"}
    assert math.isfinite(what_if(traces["nan-verifier"].steps).alpha_mle)


# ------------------------------------------------------------------------------------------------
# the committed sample traces (sample_logs/traces, made by scripts/make_sample_logs.py)

SAMPLES = __import__("pathlib").Path(__file__).resolve().parent.parent / "sample_logs" / "traces"


def _sample_files():
    return sorted(p for p in SAMPLES.glob("*.jsonl*")) if SAMPLES.is_dir() else []


@pytest.mark.skipif(not _sample_files(), reason="sample traces not generated")
def test_sample_traces_are_valid_small_and_labelled():
    manifest = json.loads((SAMPLES.parent / ".meta" / "traces.json").read_text())
    files = _sample_files()
    assert sum(p.stat().st_size for p in files) <= 2 * 1024 * 1024
    names = {p.name for p in files}
    assert names == set(manifest["files"])
    from specdec_diag.decoder.faults import FAULTS

    faults = {m["fault"] for m in manifest["files"].values()} - {None}
    assert faults == set(FAULTS)  # one trace per fault
    for p in files:
        assert p.stat().st_size <= 200 * 1024, p
        tr = read_trace(p)
        entry = manifest["files"][p.name]
        assert tr.header.get("fault") == entry["fault"]
        assert len(tr.steps) == entry["steps"] and not tr.dropped
        # what the manifest promises replay finds is what the README documents
        if entry["fault"] in (None, "slow-draft"):
            assert not entry["replay"]["diverged"]
        else:
            assert entry["replay"]["diverged"]


@pytest.mark.skipif(not _sample_files(), reason="sample traces not generated")
def test_sample_traces_replay_as_the_manifest_says():
    """Replays a committed trace with the models it was made with (the bundled pair)."""
    from specdec_diag.decoder.models import ModelLoadError, default_pair_dirs, load_pair

    manifest = json.loads((SAMPLES.parent / ".meta" / "traces.json").read_text())
    if manifest["pair"] != "bundled" or not default_pair_dirs()[0].is_dir():
        pytest.skip("sample traces were not made with the bundled pair, or it is absent")
    try:
        pair = load_pair()
    except ModelLoadError as exc:  # pragma: no cover - depends on the assets
        pytest.skip(str(exc))
    for name in ("fault-drop-bonus",):  # its tokens are the reference's: also a clean-agreement check
        path = next(p for p in _sample_files() if p.name.startswith(name + "."))
        res = _replay(path, pair)
        want = manifest["files"][path.name]["replay"]
        assert res.diverged == want["diverged"]
        assert res.codes == want["codes"]
        assert not any("weights differ" in w for w in res.warnings)
