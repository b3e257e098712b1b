"""The dashboard in streamlit's AppTest: every page renders on sample_logs/ and on a small directory
with a synthetic trace, and the numbers shown are the report's (computed here independently with
scan + build_report, formatted the way the page formats them)."""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from specdec_diag.analysis import metrics, theory  # noqa: E402
from specdec_diag.analysis.report import build_report as build_runs_report  # noqa: E402
from specdec_diag.analysis.report import pooled_report as build_report  # noqa: E402
from specdec_diag.dashboard_app import APP_PATH, ROOT_ENV  # noqa: E402
from specdec_diag.ingest import scan  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
SAMPLE = ROOT / "sample_logs"
PAGES = ("acceptance", "bottlenecks", "findings", "trace", "compare")
TIMEOUT = 240
WORDS = ["<unk>", "<eos>", "<pad>"] + [f"w{i}" for i in range(29)]


def pct(v):
    return "—" if v is None else f"{v * 100:.1f} %"


def num(v, nd=2, suffix=""):
    return "—" if v is None else f"{v:,.{nd}f}{suffix}"


def write_tokenizer(d: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tk = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    d.mkdir(parents=True, exist_ok=True)
    tk.save(str(d / "tokenizer.json"))


def write_trace(path: Path, tok_dir: Path, steps: int = 60, gamma: int = 4, seed: int = 3) -> list[dict]:
    """A valid specdec-trace@1 file: greedy, two requests, random accepted counts, timings."""
    rng = random.Random(seed)
    header = {"type": "header", "schema": "specdec-trace@1", "mode": "speculative",
              "rule": {"name": "greedy", "lossy": False, "params": {}},
              "gamma_policy": {"name": "constant", "gamma": gamma},
              "sampling": {"temperature": 1.0, "do_sample": False},
              "tokenizer": {"name_or_path": str(tok_dir)}, "models": {"target": {"path": str(tok_dir)}},
              "prompt_token_ids": [[3, 4, 5], [6, 7]]}
    recs, out = [header], []
    ctx = {0: 3, 1: 2}
    for i in range(steps):
        req = i % 2
        n = rng.choice([0, 1, 2, 4, 4, 3])
        drafts = [rng.randrange(3, len(WORDS)) for _ in range(gamma)]
        flags = [j < n for j in range(gamma)]
        if n < gamma - 1 and rng.random() < 0.5:
            flags[-1] = True  # a later position passing the test after a rejection: still rejected
        emitted = drafts[:n] + [rng.randrange(3, len(WORDS))]
        step = {"type": "step", "step": i // 2, "request": req, "context_len": ctx[req], "gamma_requested": gamma,
                "gamma_drafted": gamma, "draft_token_ids": drafts, "q": [0.5] * gamma, "p": [0.25] * gamma,
                "accept_flags": flags, "n_accepted": n, "emitted_token_ids": emitted,
                "last_token_kind": "bonus" if n == gamma else "correction", "target_forwards": 1,
                "draft_ms": 2.0 + rng.random(), "verify_ms": 10.0 + rng.random(), "overhead_ms": 0.5}
        ctx[req] += len(emitted)
        recs.append(step)
        out.append(step)
    recs.append({"type": "summary", "steps": steps, "draft_tokens": steps * gamma,
                 "accepted_tokens": sum(s["n_accepted"] for s in out),
                 "emitted_tokens": sum(len(s["emitted_token_ids"]) for s in out)})
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return out


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dash") / "logs"
    (d / "engines").mkdir(parents=True)
    shutil.copy(FIX / "vllm" / "v1_a.log", d / "engines" / "v1_a.log")
    shutil.copy(FIX / "sglang" / "early_accept_len.log", d / "engines" / "sglang.log")
    (d / "traces").mkdir()
    write_tokenizer(d / "tok")
    write_trace(d / "traces" / "synthetic.jsonl", d / "tok")
    (d / "empty").mkdir()
    return d


@pytest.fixture(autouse=True)
def _cache_env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SPECDEC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "ingest-cache"))


def app_on(root: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv(ROOT_ENV, str(root))
    at = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT)
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def metrics_by_label(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def check_overview(at: AppTest, report: dict) -> None:
    s = report["summary"]
    shown = metrics_by_label(at)
    assert shown["Acceptance rate"] == pct(s["acceptance_rate"])
    assert shown["Mean acceptance length"] == num(s["mean_acceptance_length"])
    assert shown["Tokens / step"] == num(s["tokens_per_step"])
    assert shown["Predicted speed-up"] == num(s["speedup"]["predicted"], suffix="×")
    assert shown["Achieved speed-up"] == num(s["speedup"]["achieved"], suffix="×")
    # the verdict names the top finding
    verdict = [e.value for e in (*at.error, *at.warning, *at.success)]
    assert verdict, "no verdict line"
    top = report["findings"][0] if report["findings"] else None
    if top and top["severity"] in ("error", "warning"):
        assert top["title"] in verdict[0]
    else:
        assert verdict[0].startswith("Healthy")


def test_overview_opens_on_the_fleet(small_dir, monkeypatch):
    """The whole directory: counts by status and one table row per run, no pooled number; the run
    selector lists every run (worst first) and scopes the Overview to the run's own numbers."""
    rep = build_runs_report(scan([small_dir], use_cache=False))
    at = app_on(small_dir, monkeypatch)
    assert_clean(at)
    shown = metrics_by_label(at)
    assert shown["Runs"] == str(len(rep["runs"])) and "Acceptance rate" not in shown
    for status, n in rep["fleet"]["by_status"].items():
        assert shown[next(k for k in shown if k.endswith(status))] == str(n)
    table = at.dataframe[0].value
    assert len(table) == len(rep["runs"]) and set(table["run"]) == {r["id"] for r in rep["runs"]}
    assert "acceptance over time" in table.columns
    sel = next(s for s in at.selectbox if s.label == "Run")
    assert sel.value == "whole directory (fleet)" and set(rep["fleet"]["worst_first"]) <= set(sel.options)
    for run in rep["runs"]:
        if not run["summary"].get("windows_used"):
            continue
        sel = next(s for s in at.selectbox if s.label == "Run")
        sel.set_value(run["id"]).run()
        assert_clean(at)
        check_overview(at, {"summary": run["summary"], "findings": run["findings"]})
        assert at.session_state["loaded"].result.windows.height == run["window_count"]


def test_run_selector_scopes_the_other_pages(small_dir, monkeypatch):
    rep = build_runs_report(scan([small_dir], use_cache=False))
    trace = next(r for r in rep["runs"] if r["engine"] == "specdec-diag")
    at = app_on(small_dir, monkeypatch)
    next(s for s in at.selectbox if s.label == "Run").set_value(trace["id"]).run()
    at.switch_page("views/findings.py").run()
    assert_clean(at)
    assert all(str(f.get("run")) == trace["id"] for f in at.session_state["loaded"].report["findings"])
    at.switch_page("views/bottlenecks.py").run()
    assert_clean(at)
    assert metrics_by_label(at)["Draft cost ratio c"] == num(trace["summary"]["c"], 3)


def test_overview_filters_the_runs_table(monkeypatch):
    at = app_on(SAMPLE / "fleet", monkeypatch)
    assert_clean(at)
    assert len(at.dataframe[0].value) == 7
    at.multiselect(key="fleet_engine").set_value(["sglang"]).run()
    assert set(at.dataframe[0].value["engine"]) == {"sglang"} and len(at.dataframe[0].value) == 2
    at.multiselect(key="fleet_engine").set_value([]).run()
    at.multiselect(key="fleet_status").set_value(["error"]).run()
    assert list(at.dataframe[0].value["run"]) == ["host-c/vllm.log#vllm:p1e0@2026-03-14T09:00:15"]
    assert any("DRAFTER_BROKEN" in m.value and "host-c" in m.value for m in at.markdown)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(small_dir, page, monkeypatch):
    at = app_on(small_dir, monkeypatch)
    at.switch_page(f"views/{page}.py").run()
    assert_clean(at)
    assert at.title and at.title[0].value.lower().startswith(page[:5])
    assert not at.error, [e.value for e in at.error]


def test_bottlenecks_time_and_what_if(small_dir, monkeypatch):
    rep = build_runs_report(scan([small_dir], use_cache=False))
    trace = next(r for r in rep["runs"] if r["engine"] == "specdec-diag")  # the run that times its steps
    at = app_on(small_dir, monkeypatch)
    next(s for s in at.selectbox if s.label == "Run").set_value(trace["id"]).run()
    at.switch_page("views/bottlenecks.py").run()
    s = trace["summary"]
    shown = metrics_by_label(at)
    assert shown["draft time"] == num(s["time_breakdown"]["draft_ms"], 0, " ms")
    assert shown["Draft cost ratio c"] == num(s["c"], 3)
    sp = s["speedup"]
    at.slider(key="whatif_gamma").set_value(7).run()
    assert_clean(at)
    expect = theory.speedup(sp["alpha"], 7, sp["c"])
    assert metrics_by_label(at)["predicted at γ=7"] == num(expect, suffix="×")
    assert metrics_by_label(at)[f"predicted at current k={sp['gamma']}"] == num(sp["predicted"], suffix="×")


def test_acceptance_split_by_file_matches_metrics(small_dir, monkeypatch):
    """The split of one run's windows by file equals the metric over a scan of that file alone."""
    rep = build_runs_report(scan([small_dir], use_cache=False))
    at = app_on(small_dir, monkeypatch)
    for f in ("engines/v1_a.log", "traces/synthetic.jsonl"):
        run = next(r for r in rep["runs"] if r["sources"] == [str(small_dir / f)])
        next(s for s in at.selectbox if s.label == "Run").set_value(run["id"]).run()
        at.switch_page("views/acceptance.py").run()
        at.radio(key="split_by").set_value("file").run()
        assert_clean(at)
        df = at.dataframe[0].value
        rates = dict(zip(df["group"], df["acceptance rate"], strict=True))
        one = scan([small_dir / f], use_cache=False)
        table = one.steps if one.steps.height else one.windows
        assert set(rates) == {f} and rates[f] == pytest.approx(metrics.acceptance_rate(table), abs=1e-4)


def test_trace_explorer_strikes_rejected_drafts(small_dir, monkeypatch):
    at = app_on(small_dir, monkeypatch)
    at.switch_page("views/trace.py").run()
    assert_clean(at)
    html = at.get("html")[0].proto.body
    steps = [json.loads(x) for x in (small_dir / "traces" / "synthetic.jsonl").read_text().splitlines()[1:-1]]
    first20 = [s for s in steps if s["request"] == 0][:20]
    rejected = sum(s["gamma_drafted"] - s["n_accepted"] for s in first20)
    accepted = sum(s["n_accepted"] for s in first20)
    assert html.count("class='tk rej'") == rejected + 1  # + the legend chip
    assert html.count("class='tk acc'") == accepted + 1
    assert html.count("class='tk bon'") == sum(s["last_token_kind"] == "bonus" for s in first20)
    # ids decoded through the local tokenizer.json (tokenizers only), not shown as #ids
    assert f">{WORDS[first20[0]['draft_token_ids'][0]]}<" in html
    assert "#" + str(first20[0]["draft_token_ids"][0]) not in html


@pytest.mark.parametrize("text, needle", [
    ("../", "outside the directory"),
    ("/", "outside the directory"),
    ("nope", "no such directory"),
    ("empty", "no log files"),
])
def test_bad_directories_get_a_message_not_a_traceback(small_dir, text, needle, monkeypatch):
    at = app_on(small_dir, monkeypatch)
    at.text_input(key="logdir").set_value(text).run()
    assert_clean(at)
    assert any(needle in e.value for e in at.error), [e.value for e in at.error]
    assert any(needle in i.value for i in at.info)  # the page body says it too


def test_symlink_out_of_root_is_refused(small_dir, tmp_path, monkeypatch):
    from specdec_diag.dashboard_app import data as D

    link = small_dir / "escape"
    if not link.exists():
        link.symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(D.PathError, match="outside"):
        D.resolve(small_dir.resolve(), "escape")
    assert D.resolve(small_dir.resolve(), "engines") == (small_dir / "engines").resolve()


def test_compare_shows_the_difference_of_the_two_reports(small_dir, monkeypatch):
    """Compare pairs runs (or directories of one configuration), never piles of runs."""
    rep = build_runs_report(scan([small_dir], use_cache=False))
    runs = {r["engine"]: r for r in rep["runs"]}
    at = app_on(small_dir, monkeypatch)
    at.switch_page("views/compare.py").run()
    at.selectbox(key="cmp_a").set_value("run: " + runs["vllm"]["id"]).run()
    at.selectbox(key="cmp_b").set_value("traces").run()  # a directory holding one run
    assert_clean(at)
    a = runs["vllm"]["summary"]
    b = build_report(scan([small_dir / "traces"], use_cache=False))["summary"]
    d = b["acceptance_rate"] - a["acceptance_rate"]
    assert metrics_by_label(at)["Acceptance rate B − A"] == f"{d * 100:+.1f} pt"
    at.selectbox(key="cmp_a").set_value("engines").run()  # vLLM + SGLang: two configurations, refused
    assert_clean(at)
    assert any("2 runs of different configurations" in w.value for w in at.warning)
    assert "Acceptance rate B − A" not in metrics_by_label(at)


def test_pages_never_pool_the_runs_of_a_directory(monkeypatch):
    """With the whole fleet chosen, Acceptance / Bottlenecks / Findings show its worst run and say so;
    Compare opens on the measured with/without-speculation pair."""
    rep = build_runs_report(scan([SAMPLE / "fleet"], use_cache=False))
    worst = rep["fleet"]["worst_first"][0]
    at = app_on(SAMPLE / "fleet", monkeypatch)
    for _ in range(600):  # a fleet above BACKGROUND_RUNS is diagnosed in a thread
        if at.session_state["loaded"].report.get("findings") is not None:
            break
        time.sleep(0.1)
    for page in ("acceptance", "bottlenecks", "findings"):
        at.switch_page(f"views/{page}.py").run()
        assert_clean(at)
        assert any(worst in i.value and "worst of the 7 runs" in i.value for i in at.info), page
    shown = {f"{f['code']}: {f['title']}" for f in rep["findings"] if f["run"] == worst}
    others = {f"{f['code']}: {f['title']}" for f in rep["findings"] if f["run"] != worst} - shown
    text = " ".join(e.value for e in at.markdown) + " ".join(e.label for e in at.expander)
    assert any(t.split(": ", 1)[1] in text for t in shown)
    assert not any(t.split(": ", 1)[1] in text for t in others if "host-c" not in t)
    at.switch_page("views/compare.py").run()
    assert_clean(at)
    pair = next(c for c in rep["comparisons"] if c["kind"] == "speculation")
    assert at.selectbox(key="cmp_a").value == "run: " + pair["baseline_run"]
    assert at.selectbox(key="cmp_b").value == "run: " + pair["run"]


def test_dir_key_follows_file_changes(small_dir, tmp_path):
    from specdec_diag.dashboard_app import data as D

    d = tmp_path / "k"
    d.mkdir()
    (d / "a.log").write_text("x\n")
    k1 = D.dir_key(d)
    assert D.dir_key(d) == k1
    (d / "a.log").write_text("xy\n")
    assert D.dir_key(d)[0] != k1[0]
    (d / "notes.md").write_text("ignored by the scan\n")
    assert D.dir_key(d)[1] == 1


def test_long_series_are_downsampled():
    from specdec_diag.dashboard_app import data as D
    from specdec_diag.ingest.base import IngestResult
    from specdec_diag.schema import conform_windows

    n = 5000
    w = conform_windows(pl.DataFrame({
        "source": ["big.log"] * n, "line": list(range(1, n + 1)), "engine": ["vllm"] * n, "engine_id": ["0"] * n,
        "window": ["interval"] * n, "draft_tokens": [100] * n, "accepted_tokens": [i % 100 for i in range(n)],
        "acceptance_rate": [(i % 100) / 100 for i in range(n)], "running_reqs": [i % 7 for i in range(n)],
    }))
    res = IngestResult.empty()
    res.windows = w
    series, notes = D.acceptance_series("k-downsample", res)
    assert 0 < series.height <= D.MAX_POINTS
    assert notes and "5,000 windows" in notes[0]
    # equal weights: the mean of the buckets is the mean of the windows
    assert series["y"].mean() == pytest.approx(w["acceptance_rate"].mean(), abs=0.01)
    ctx, _ = D.engine_context("k-downsample", res)
    assert 0 < ctx.filter(pl.col("metric") == "running_reqs").height <= D.MAX_POINTS


@pytest.mark.skipif(not any(SAMPLE.rglob("*.*")), reason="sample_logs/ is empty")
def test_sample_logs_every_page(monkeypatch):
    # the reference report fills the ingest cache (its own dir, see _cache_env), so the app's scan is quick
    report = build_runs_report(scan([SAMPLE]))
    at = app_on(SAMPLE, monkeypatch)
    assert_clean(at)
    loaded = at.session_state["loaded"]
    for _ in range(600):  # a fleet of > BACKGROUND_RUNS runs is diagnosed in a background thread
        if loaded.report.get("findings") is not None:
            break
        time.sleep(0.2)
    at.run()
    assert metrics_by_label(at)["Runs"] == str(len(report["runs"])) and len(at.dataframe[0].value) == len(report["runs"])
    at.session_state["cmp_a"] = at.session_state["cmp_b"] = "."  # the directory with itself: no second analysis
    for page in PAGES:
        at.switch_page(f"views/{page}.py").run()
        assert_clean(at)
        assert not at.error, (page, [e.value for e in at.error])
    at.switch_page("views/findings.py").run()  # the worst run's findings (no page pools the runs)
    shown = [m.value for m in at.markdown if "`" in m.value and "—" in m.value]
    worst = report["fleet"]["worst_first"][0]
    assert any(worst in i.value for i in at.info)
    mine = [f for f in report["findings"] if f["run"] == worst]
    assert mine and len(shown) >= len(mine)
    for f in mine[:5]:
        title = f["title"].replace(str(SAMPLE.resolve()) + "/", "")
        assert any(f["code"] in s and title in s for s in shown), f["code"]


def test_cli_rejects_a_missing_directory(tmp_path):
    from typer.testing import CliRunner

    from specdec_diag.cli import app
    from specdec_diag.cli.dashboard import streamlit_command

    r = CliRunner().invoke(app, ["dashboard", str(tmp_path / "missing")])
    assert r.exit_code == 2
    assert "no such directory" in r.output
    cmd = streamlit_command(APP_PATH, "127.0.0.1", 8600)
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.headless") + 1] == "true"


@pytest.mark.parametrize("n, max_points", [(10, 20), (5000, 2000), (4001, 7)])
def test_bucket_agrees_with_the_report_downsampler(n, max_points):
    from specdec_diag.dashboard_app.data import bucket
    from specdec_diag.render.charts import downsample

    rng = random.Random(n)
    xs = [float(i) for i in range(n)]
    ys = [rng.random() for _ in range(n)]
    ws = [float(rng.randint(0, 50)) for _ in range(n)]
    got = bucket(pl.DataFrame({"x": xs, "y": ys, "w": ws}), max_points, "w")
    ex, ey = downsample(xs, ys, ws, max_points)
    assert got["x"].to_list() == ex
    assert got["y"].to_list() == pytest.approx(ey)


def test_large_inputs_render_before_the_rules_finish(small_dir, tmp_path, monkeypatch):
    """Above BACKGROUND_ROWS the rules run in a thread: the Overview renders from the summary with a
    'still running' note, and the findings appear on a later run, equal to build_report's."""
    import threading

    from specdec_diag.analysis import report as report_mod
    from specdec_diag.dashboard_app import data as D

    d = tmp_path / "big"
    shutil.copytree(small_dir / "engines", d)
    release = threading.Event()
    real = report_mod.build_report

    def slow(result, *args, **kw):
        release.wait(30)
        return real(result, *args, **kw)

    monkeypatch.setattr(report_mod, "build_report", slow)
    monkeypatch.setattr(D, "BACKGROUND_ROWS", 0)
    at = app_on(d, monkeypatch)
    assert_clean(at)
    assert any("Running the diagnosis rules" in i.value for i in at.info), [i.value for i in at.info]
    assert metrics_by_label(at)["Runs"] == "2" and len(at.dataframe[0].value) == 2  # the runs, before the rules
    release.set()
    expect = real(scan([d], use_cache=False))["findings"]
    for _ in range(100):
        at.run()
        if not any("Running the diagnosis rules" in i.value for i in at.info):
            break
        time.sleep(0.2)
    assert_clean(at)
    assert at.session_state["loaded"].report["findings"] == expect
    top = expect[0]
    if top["severity"] in ("error", "warning"):
        assert any(top["title"] in m.value for m in at.markdown)


def test_warm_up_fills_the_pages_caches(small_dir, tmp_path, monkeypatch):
    """Large inputs: the frames each page needs are computed in a background thread after loading,
    and the pages then render the same content without errors."""
    from specdec_diag.dashboard_app import data as D

    d = tmp_path / "warm"
    shutil.copytree(small_dir, d, ignore=shutil.ignore_patterns("empty"))
    monkeypatch.setattr(D, "BACKGROUND_ROWS", 0)
    at = app_on(d, monkeypatch)
    loaded = at.session_state["loaded"]
    assert loaded.warmed.wait(60)
    for _ in range(100):
        if loaded.report["findings"] is not None:
            break
        time.sleep(0.2)
    for page in PAGES:
        at.switch_page(f"views/{page}.py").run()
        assert_clean(at)
        assert not at.error, [e.value for e in at.error]


def test_the_dashboard_never_imports_torch(small_dir, tmp_path):
    """Every page, in a fresh interpreter: neither torch nor transformers may be loaded."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        f"os.environ[{ROOT_ENV!r}] = {str(small_dir)!r}\n"
        f"os.environ['SPECDEC_CACHE_DIR'] = {str(tmp_path)!r}\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({str(APP_PATH)!r}, default_timeout=120).run()\n"
        f"for p in {list(PAGES)!r}:\n"
        "    at.switch_page(f'views/{p}.py').run()\n"
        "    assert not at.exception, p\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_scan_cache_returns_what_a_scan_returns_and_misses_on_any_change(tmp_path):
    """The directory-level scan cache (re-opening a 2,000-file fleet): a hit equals a fresh scan; any
    change to a file, or a damaged entry, is a miss."""
    from specdec_diag.dashboard_app import data as D
    from specdec_diag.dashboard_app import scan_cache as SC

    logs = tmp_path / "logs"
    shutil.copytree(SAMPLE / "fleet", logs)
    files = D.listing(logs, logs).files
    fresh = scan(files, use_cache=False)
    key = SC.key(files)
    SC.store(tmp_path / "c", key, fresh)
    hit = SC.load(tmp_path / "c", key, files)
    for t in SC.TABLES:
        assert getattr(hit, t).equals(getattr(fresh, t)), t
    assert (hit.headers, hit.fingerprint, hit.warnings) == (fresh.headers, fresh.fingerprint, fresh.warnings)
    assert SC.load(tmp_path / "c", key, files[1:]) is None
    f = logs / "host-b" / "vllm.log"
    f.write_text(f.read_text())  # same bytes, new mtime/ctime
    assert SC.key(files) != key
    entry = next((tmp_path / "c" / SC.DIRNAME).glob("scan-*"))
    pl.DataFrame({"x": [1]}).write_ipc(entry / "windows.arrow")
    assert SC.load(tmp_path / "c", key, files) is None


def test_runs_of_one_configuration_are_taken_together(tmp_path, monkeypatch):
    """Two DP ranks of one configuration are comparable runs: the pages show them together (no 'worst
    run' scope), and Compare accepts their directory."""
    d = tmp_path / "dp"
    d.mkdir()
    shutil.copy(SAMPLE / "engines" / "vllm" / "v1_dp2_docker.log", d / "vllm.log")
    rep = build_runs_report(scan([d], use_cache=False))
    assert len(rep["runs"]) == 2 and len({(r["model"], r["method"], r["k"]) for r in rep["runs"]}) == 1
    at = app_on(d, monkeypatch)
    at.switch_page("views/acceptance.py").run()
    assert_clean(at)
    assert not at.info and any("share one configuration" in c.value for c in at.caption)
    assert at.session_state["loaded"].summary["windows_used"] == sum(
        r["summary"]["windows_used"] for r in rep["runs"])
