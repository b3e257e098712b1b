"""Runs, not piles (docs/runs.md): segmentation, per-run findings, comparisons and the sample fleet."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from specdec_diag.analysis import report as R
from specdec_diag.analysis.runs import segment, stream_of
from specdec_diag.cli import app
from specdec_diag.ingest import scan

ROOT = Path(__file__).resolve().parents[1]
FLEET = ROOT / "sample_logs" / "fleet"
SAMPLES = ROOT / "sample_logs"
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def fleet() -> dict:
    return R.build_report(scan([FLEET], use_cache=False))


def by_id(rep: dict) -> dict[str, dict]:
    return {r["id"]: r for r in rep["runs"]}


def test_stream_names_join_rotations():
    assert stream_of("a/vllm.log.1")[0] == stream_of("a/vllm.log.2.gz")[0] == stream_of("a/vllm.log")[0] == "a/vllm.log"
    assert stream_of("a/vllm.log.2.gz")[2] == 2
    assert stream_of("a/vllm-2026-03-14.log") == ("a/vllm.log", "20260314", 0)
    assert stream_of("a/server.log.2026-03-14")[0] == "a/server.log"
    assert stream_of("t/fault-slow-draft.jsonl.gz")[0] == "t/fault-slow-draft.jsonl"


def test_fleet_report_matches_its_readme(fleet):
    runs = by_id(fleet)
    readme = (FLEET / "README.md").read_text()
    assert set(runs) == {line.split("`")[1] for line in readme.splitlines() if line.startswith("| `host-")}
    a = runs["host-a/vllm.log#vllm:p1e0@2026-03-14T09:00:10"]
    assert a["window_count"] == 72 and len(a["sources"]) == 3 and a["k"] == 3          # rotated files: one run
    c = runs["host-c/vllm.log#vllm:p1e0@2026-03-14T09:00:15"]
    assert [f["code"] for f in c["findings"] if f["severity"] == "error"] == ["DRAFTER_BROKEN"]
    assert all("host-c" in loc["path"] for f in c["findings"] for loc in f["locations"])
    for rid, run in runs.items():                                                   # healthy runs carry no error
        if rid != c["id"]:
            assert not [f for f in run["findings"] if f["severity"] == "error"], rid
    d1, d2 = runs["host-d/vllm.log#vllm:p1e0@2026-03-14T09:00:10"], runs["host-d/vllm.log#vllm:p1e0@2026-03-14T09:05:10"]
    assert (d1["k"], d2["k"], d2["split"]) == (3, 5, "startup banner") and d1["sources"] == d2["sources"]
    assert d1["last_line"] < d2["first_line"]
    (pair,) = [x for x in fleet["comparisons"] if x["kind"] == "speculation"]
    assert pair["run"].startswith("host-e/") and pair["baseline_run"].startswith("host-f/") and pair["fair"]
    assert 0.6 < pair["speedup"] < 0.9 and pair["load"]["buckets"]
    e = runs[pair["run"]]
    ns = [f for f in e["findings"] if f["code"] == "NO_SPEEDUP"]
    assert ns and ns[0]["evidence"]["basis"] == "measured" and ns[0]["evidence"]["baseline_run"] == pair["baseline_run"]
    assert runs[pair["baseline_run"]]["speculative"] is False and runs[pair["baseline_run"]]["status"] == "ok"
    assert fleet["fleet"]["by_status"] == {"error": 1, "warning": 1, "ok": 5, "no data": 0}
    for run in runs.values():                                            # startup lines name model + version
        assert run["model"] == ("meta-llama/Llama-3.1-8B-Instruct" if run["engine"] == "vllm" else "Qwen/Qwen3-8B")
        assert run["version"] == "0.10.1" or run["engine"] != "vllm"
    assert fleet["fleet"]["worst_first"][0] == c["id"]
    assert all(f["run"] in runs for f in fleet["findings"])


def test_fleet_report_validates_against_the_schema(fleet):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "docs" / "report-2.schema.json").read_text())
    jsonschema.validate(json.loads(json.dumps(fleet, allow_nan=False)), schema)


def test_numbered_rotations_join_when_named(tmp_path):
    src = FLEET / "host-a"
    shutil.copy(src / "vllm.log", tmp_path / "vllm.log")
    shutil.copy(src / "vllm-2026-03-14.log", tmp_path / "vllm.log.1")
    shutil.copy(src / "vllm-2026-03-13.log.gz", tmp_path / "vllm.log.2.gz")
    files = [tmp_path / "vllm.log", tmp_path / "vllm.log.1", tmp_path / "vllm.log.2.gz"]
    runs = segment(scan(files, use_cache=False))
    assert runs.table.height == 1 and runs.table["windows"][0] == 72 and runs.table["method"][0] == "eagle3"


def test_numbered_and_dated_rotations_are_found_in_a_directory(tmp_path):
    """logrotate's names (``x.log.1``, ``x.log.2.gz``, ``x.log-YYYYMMDD``) are read by a directory
    scan and join one run, as when the files are named explicitly."""
    src = FLEET / "host-a"
    shutil.copy(src / "vllm.log", tmp_path / "vllm.log")
    shutil.copy(src / "vllm-2026-03-14.log", tmp_path / "vllm.log.1")
    shutil.copy(src / "vllm-2026-03-13.log.gz", tmp_path / "vllm.log.2.gz")
    (tmp_path / "notes.log.bak").write_text("SpecDecoding metrics: not a log\n")
    res = scan([tmp_path], use_cache=False)
    assert sorted(Path(p).name for p in res.inputs["path"]) == ["vllm.log", "vllm.log.1", "vllm.log.2.gz"]
    runs = segment(res)
    assert runs.table.height == 1 and runs.table["windows"][0] == 72


def _vllm_run():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fleet", ROOT / "scripts" / "make_fleet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_acceptance_regression_over_time(tmp_path):
    mf = _vllm_run()
    from datetime import timedelta

    early = mf.vllm_run(1, mf.T0, 3, 0.80, 30)
    late = mf.vllm_run(2, mf.T0 + timedelta(hours=2), 3, 0.60, 30)
    mf.write(tmp_path / "h" / "vllm.log", early + late)
    rep = R.build_report(scan([tmp_path], use_cache=False))
    first, second = sorted(rep["runs"], key=lambda r: r["start"])
    assert second["split"] == "startup banner"
    hist = [c for c in rep["comparisons"] if c["kind"] == "history"]
    assert len(hist) == 1 and hist[0]["run"] == second["id"] and hist[0]["regression"]
    codes = [(f["code"], f["severity"]) for f in second["findings"]]
    assert ("ACCEPTANCE_COLLAPSE", "warning") in codes
    assert not [f for f in first["findings"] if f["code"] == "ACCEPTANCE_COLLAPSE"]


@pytest.mark.parametrize("path", sorted(p for p in (SAMPLES / "engines").rglob("*") if p.is_file()
                                        and not p.name.endswith(".md")), ids=lambda p: p.name)
def test_single_run_files_keep_the_codes_of_the_pooled_report(path):
    """For a file that is one run, the run's findings are the codes the old pooled report found."""
    res = scan([path], use_cache=False)
    rep = R.build_report(res)
    if len(rep["runs"]) != 1:
        pytest.skip("several runs in this file")
    pooled = {(f["code"], f["severity"]) for f in R.run_findings(res)}
    assert {(f["code"], f["severity"]) for f in rep["runs"][0]["findings"]} == pooled


def test_check_on_the_fleet_names_the_broken_run_and_select_limits_it():
    runner = CliRunner()
    r = runner.invoke(app, ["check", str(FLEET), "--no-cache"])
    flat = re.sub(r"[\s│┃]", "", r.output)  # the table folds long cells
    assert r.exit_code == 1 and "DRAFTER_BROKENinhost-c/vllm.log#vllm:p1e0@2026-03-14T09:00:15" in flat, r.output
    assert runner.invoke(app, ["check", str(FLEET), "--no-cache", "--select", "host-[abd]/*"]).exit_code == 0


def test_a_rotated_file_opening_with_a_specdecoding_line_stays_in_its_run(tmp_path):
    """vLLM prints ``Engine 000`` on throughput lines only: a file cut after one starts with a
    SpecDecoding line tagged ``pid=1`` alone; it is still the same process."""
    mf = _vllm_run()
    lines = mf.vllm_run(1, mf.T0, 3, 0.8, 20)
    mf.write(tmp_path / "h" / "vllm-2026-03-13.log", lines[:12])   # ends on a throughput line
    mf.write(tmp_path / "h" / "vllm-2026-03-14.log", lines[12:])   # opens with its SpecDecoding line
    runs = segment(scan([tmp_path], use_cache=False))
    assert runs.table.height == 1 and runs.table["windows"][0] == 40 and runs.table["tag"][0] == "pid=1 Engine 000"


def test_cli_ingest_shows_and_writes_the_runs_table(tmp_path):
    import polars as pl

    r = CliRunner().invoke(app, ["ingest", str(FLEET), "--runs", "--no-cache", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    head = next(i for i, ln in enumerate(lines) if "runs (7)" in ln)
    body = lines[head + 2:head + 9]                                     # one line per run at 80 columns
    assert [ln.split()[0][:6] for ln in body] == ["host-a", "host-b", "host-c", "host-d", "host-d", "host-e", "host-f"]
    assert "startup" in body[4]
    table = pl.read_parquet(tmp_path / "runs.parquet")
    assert table.height == 7 and table.filter(pl.col("id").str.starts_with("host-d/"))["k"].sort().to_list() == [3, 5]


def _dumps(rep: dict) -> str:
    return json.dumps(rep, sort_keys=True, default=str)


def test_the_cached_fast_path_equals_the_per_run_path(tmp_path):
    """build_report with the per-run cache (cold, then warm) gives exactly the report without it, and
    each run's summary and findings are those of judging that run's own rows alone."""
    from specdec_diag.analysis import metrics
    from specdec_diag.analysis.rules.base import ranked
    from specdec_diag.schema import jsonable

    res = scan([FLEET], use_cache=False)
    plain = R.build_report(res)
    cold = R.build_report(res, cache_dir=tmp_path)
    assert len(list((tmp_path / "runs").glob("*.json"))) == len(plain["runs"])
    warm = R.build_report(res, cache_dir=tmp_path)
    assert _dumps(plain) == _dumps(cold) == _dumps(warm)
    parts = segment(res).split()
    facts = {c["run"]: {"measured_speedup": c} for c in plain["comparisons"]
             if c.get("kind") == "speculation" and c.get("fair")}
    for run in plain["runs"]:
        sub = parts[run["id"]]
        assert run["summary"] == jsonable(metrics.summarize(sub))
        alone = [R.finding_json(f) for f in ranked(R.run_rules(sub, facts=facts.get(run["id"])))]
        codes = {f["code"] for f in run["findings"]} - {f["code"] for f in alone}
        assert codes <= {"ACCEPTANCE_COLLAPSE"}, run["id"]  # only the regression against earlier runs is added
        assert [f for f in run["findings"] if f in alone] == alone


def test_only_a_changed_run_is_judged_again(tmp_path, monkeypatch):
    """The per-run cache: after one file changes only its run is judged again; a damaged entry is
    recomputed, never trusted."""
    from specdec_diag.analysis import run_cache

    logs = tmp_path / "logs"
    shutil.copytree(FLEET, logs)
    cache = tmp_path / "cache"
    before = R.build_report(scan([logs], use_cache=False), cache_dir=cache)
    judged: list[str] = []
    real = R.run_rules
    monkeypatch.setattr(R, "run_rules", lambda sub, *a, **k: (judged.append(sub.fingerprint), real(sub, *a, **k))[1])
    assert _dumps(R.build_report(scan([logs], use_cache=False), cache_dir=cache)) == _dumps(before)
    assert judged == []
    entry = next((cache / run_cache.DIRNAME).glob("*.json"))
    entry.write_text('{"summary": {}, "findings": [{"code": "NOPE"}]}')
    assert _dumps(R.build_report(scan([logs], use_cache=False), cache_dir=cache)) == _dumps(before)
    assert len(judged) == 1
    judged.clear()
    host_c = logs / "host-c" / "vllm.log"
    host_c.write_text(host_c.read_text().replace("Accepted: 63 tokens", "Accepted: 64 tokens", 1))
    after = R.build_report(scan([logs], use_cache=False), cache_dir=cache)
    assert len(judged) == 1 and judged[0].endswith("#" + next(r["id"] for r in after["runs"] if "host-c" in r["id"]))
    changed = [r["id"] for r, b in zip(after["runs"], before["runs"], strict=True) if _dumps(r) != _dumps(b)]
    assert changed == [judged[0].split("#", 1)[1]]


# ---------------------------------------------------------------------------------------------
# startup facts: vLLM model / version / pid, SGLang k from the preceding server_args banner
# ---------------------------------------------------------------------------------------------

# The first five are verbatim startup lines published in public GitHub content, found with the
# project's search tool (find_string; its excerpts carry no address, so each is quoted as printed):
# vLLM 0.10.1 on an APIServer-prefixed log, a V1 engine core with a DP prefix and speculative_config=None,
# a non-default args with served_model_name (a KServe deployment), a 0.9.1 server, a docker-compose
# prefixed 'model_tag' line. The sixth is the first line of tests/fixtures/vllm/v1_d_apiserver.log; the
# last is built in the V0 form of a published 0.6.3 line ("INFO 10-07 14:22:31 llm_engine.py:237]
# Initializing an LLM engine (v0.6.3) with config: model='Qwen/Qwen2.5-7B-Instruct', ...") with a V0
# SpeculativeConfig repr added.
VLLM_STARTUP = [
    ("(APIServer pid=24129) INFO 08-21 07:50:10 [api_server.py:1805] vLLM API server version 0.10.1",
     {"version": "0.10.1", "pid": "24129"}),
    ("(EngineCore_DP0 pid=143) INFO 03-18 14:04:03 [core.py:93] Initializing a V1 LLM engine "
     "(v0.13.0+faa43dbf.nv26.01) with config: model='neuralmagic/Qwen2.5-14B-Instruct-FP8-dynamic', "
     "speculative_config=None, tokenizer='neuralmagic/Qwen2.5-14B-Instruct-FP8-dynamic', skip_tokenizer_init=False",
     {"version": "0.13.0+faa43dbf.nv26.01", "model": "neuralmagic/Qwen2.5-14B-Instruct-FP8-dynamic", "pid": "143"}),
    ("INFO 08-31 08:01:29 [cli_args.py:325] non-default args: {'port': 8080, 'model': '/mnt/models', "
     "'max_model_len': 2048, 'served_model_name': ['qwen25-vl-7b-instruct']}",
     {"model": "/mnt/models", "served_model_name": "qwen25-vl-7b-instruct"}),
    ("INFO 06-24 19:42:02 [api_server.py:1287] vLLM API server version 0.9.1", {"version": "0.9.1"}),
    ("   vllm-20b-b-1   | (APIServer pid=1) INFO 03-10 15:49:42 [utils.py:238] non-default args: {'model_tag': "
     "'openai/gpt-oss-20b', 'model': 'openai/gpt-oss-20b', 'gpu_memory_utilization': 0.8}",
     {"model": "openai/gpt-oss-20b", "pid": "1"}),
    # the speculative part names the drafter: its 'model' is not the target
    ("(APIServer pid=1) INFO 09-15 11:00:00 [utils.py:326] non-default args: {'model': "
     "'meta-llama/Llama-3.1-8B-Instruct', 'speculative_config': {'method': 'eagle', 'model': "
     "'yuhuili/EAGLE-LLaMA3.1-Instruct-8B', 'num_speculative_tokens': 4}}",
     {"model": "meta-llama/Llama-3.1-8B-Instruct", "pid": "1"}),
    ("INFO 10-17 12:00:00 llm_engine.py:237] Initializing an LLM engine (v0.6.3) with config: "
     "model='meta-llama/Llama-2-7b-hf', speculative_config=SpeculativeConfig(draft_model='JackFram/llama-68m', "
     "num_spec_tokens=5), tokenizer='meta-llama/Llama-2-7b-hf'",
     {"version": "0.6.3", "model": "meta-llama/Llama-2-7b-hf"}),
]


@pytest.mark.parametrize(("line", "facts"), VLLM_STARTUP)
def test_vllm_startup_lines_give_model_version_and_pid(line, facts):
    from specdec_diag.ingest.vllm_startup import startup_facts

    assert dict(startup_facts(line)) == facts


def test_vllm_runs_carry_model_and_version_and_pair_with_a_baseline(tmp_path):
    """Two vLLM processes of one model, with and without speculation: each run shows the model and the
    engine version of its startup lines (no more model '-'), and the pair is found by model."""
    spec = (FIXTURES / "vllm" / "v1_d_apiserver.log").read_text().splitlines()
    banner = "(APIServer pid=1) INFO 09-15 10:59:59 [api_server.py:1805] vLLM API server version 0.10.1"
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "vllm.log").write_text("\n".join([banner, *spec]) + "\n")
    base = [ln for ln in spec if "SpecDecoding" not in ln]
    base[0] = ("(APIServer pid=1) INFO 09-15 11:00:00 [utils.py:326] non-default args: "
               "{'model': 'meta-llama/Llama-3.1-8B-Instruct'}")
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "vllm.log").write_text("\n".join([banner, *base]) + "\n")
    rep = R.build_report(scan([tmp_path], use_cache=False))
    runs = {r["host"]: r for r in rep["runs"]}
    assert runs["spec"]["model"] == runs["base"]["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert runs["spec"]["version"] == runs["base"]["version"] == "0.10.1"
    assert runs["spec"]["speculative"] and not runs["base"]["speculative"]
    pairs = [c for c in rep["comparisons"] if c.get("kind") == "speculation"]
    assert [(p["run"], p["baseline_run"]) for p in pairs] == [(runs["spec"]["id"], runs["base"]["id"])]


def test_sglang_windows_take_k_from_the_preceding_server_args(tmp_path):
    """A restart into another k in one SGLang file: the windows before it keep the first banner's k."""
    lines = (FIXTURES / "sglang" / "early_accept_len.log").read_text().splitlines()
    second = [lines[0].replace("[2025-01-07 20:15:40]", "[2025-01-07 21:15:40]")
              .replace("speculative_num_steps=5", "speculative_num_steps=3")
              .replace("speculative_num_draft_tokens=6", "speculative_num_draft_tokens=4")]
    later = [ln.replace("[2025-01-07 20:", "[2025-01-07 21:") for ln in lines[1:]]
    (tmp_path / "sglang.log").write_text("\n".join(lines + second + later) + "\n")
    res = scan([tmp_path], use_cache=False)
    dec = res.windows.filter(res.windows["format"].str.starts_with("sglang-decode")
                             & res.windows["mean_acceptance_length"].is_not_null())
    cut = len(lines)
    assert set(dec.filter(dec["line"] <= cut)["k"].to_list()) == {5}
    assert set(dec.filter(dec["line"] > cut)["k"].to_list()) == {3}
    assert segment(res).table["k"].to_list() == [5, 3]


def test_cli_report_and_check_judge_only_the_changed_run(tmp_path, monkeypatch):
    """`report` / `check` on a directory keep each run's result in the run cache beside the ingest
    cache: run again after one file changed, only that file's run is judged; --no-cache judges all."""
    from specdec_diag.analysis import run_cache

    logs = tmp_path / "logs"
    shutil.copytree(FLEET, logs)
    monkeypatch.setenv("SPECDEC_CACHE_DIR", str(tmp_path / "cache"))
    judged: list[str] = []
    real = R.run_rules
    monkeypatch.setattr(R, "run_rules", lambda sub, *a, **k: (judged.append(sub.fingerprint.split("#", 1)[1]),
                                                              real(sub, *a, **k))[1])
    runner = CliRunner()

    def report() -> str:
        r = runner.invoke(app, ["report", str(logs), "--format", "json"])
        assert r.exit_code == 0, r.output
        return r.output

    first = report()
    runs = json.loads(first)["runs"]
    assert sorted(judged) == sorted(r["id"] for r in runs)
    assert len(list((tmp_path / "cache" / run_cache.DIRNAME).glob("*.json"))) == len(runs)
    judged.clear()
    assert report() == first and judged == []
    assert runner.invoke(app, ["check", str(logs)]).exit_code == 1 and judged == []  # the broken replica
    host_c = logs / "host-c" / "vllm.log"
    host_c.write_text(host_c.read_text().replace("Accepted: 63 tokens", "Accepted: 64 tokens", 1))
    after = json.loads(report())
    assert judged == [next(r["id"] for r in after["runs"] if r["id"].startswith("host-c/"))]
    judged.clear()
    assert runner.invoke(app, ["report", str(logs), "--format", "json", "--no-cache"]).exit_code == 0
    assert len(judged) == len(runs)
