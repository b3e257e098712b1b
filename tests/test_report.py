"""The report: exactly the §4 contract (analysis.report), JSON-safe, and renderers (render/) that
carry the same facts."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from rich.console import Console
from typer.testing import CliRunner

from specdec_diag.analysis import report as R
from specdec_diag.cli import app
from specdec_diag.ingest.base import STEPS_SCHEMA, IngestResult
from specdec_diag.render import charts, figures, html_report, junit, markdown_report, terminal
from specdec_diag.schema import CONTRACT_WINDOW_COLUMNS, INPUT_SCHEMA, conform_windows

REPORT_SCHEMA = R.REPORT_SCHEMA
SCHEMA_FILE = __import__("pathlib").Path(__file__).resolve().parents[1] / "docs" / "report-2.schema.json"

runner = CliRunner()
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def result(n: int = 6) -> IngestResult:
    r = IngestResult.empty()
    r.windows = conform_windows(pl.DataFrame({
        "source": ["a.log"] * n, "line": list(range(1, n + 1)), "engine": ["vllm"] * n,
        "engine_id": ["Engine 000"] * n, "window": ["interval"] * n, "time": [T0 + timedelta(seconds=10 * i) for i in range(n)],
        "k": [3] * n, "num_drafts": [100] * n, "draft_tokens": [300] * n, "accepted_tokens": [150] * n,
        "acceptance_rate": [0.5] * (n - 1) + [float("nan")],
        "per_position_acceptance": [[0.7, 0.5, 0.3]] * n, "kv_usage": [0.2] * n,
    }, strict=False))
    r.inputs = pl.DataFrame([{"path": "a.log", "format": "vllm-v1-specdecoding-E", "engine": "vllm", "lines": n,
                              "records": n, "malformed": 0, "fingerprint": "abc", "error": None}], schema=INPUT_SCHEMA)
    return r


def with_steps(r: IngestResult) -> IngestResult:
    rows = []
    for i, n in enumerate([3, 0, 1, 2, 3, 1]):
        rows.append({"source": "t.jsonl", "line": i + 2, "step": i, "context_len": 10, "gamma_requested": 3,
                     "gamma_drafted": 3, "draft_token_ids": [1, 2, 3], "q": [0.5] * 3, "p": [0.5] * 3,
                     "accept_flags": [j < n for j in range(3)], "n_accepted": n, "emitted_token_ids": [0] * (n + 1),
                     "last_token_kind": "bonus" if n == 3 else "correction", "target_forwards": 1,
                     "min_pq": [0.8, 0.7, 0.6], "draft_ms": 3.0, "verify_ms": 10.0, "overhead_ms": 1.0})
    r.steps = pl.DataFrame(rows, schema=STEPS_SCHEMA)
    return r


FINDING = {"code": "DRAFTER_BROKEN", "severity": "error", "title": "drafts are <never> accepted",
           "evidence": {"acceptance_rate": 0.001, "definitions": {"acceptance_rate": "accepted/drafted"}},
           "recommendation": "check the draft weights", "locations": [{"path": "a.log", "line": 3}]}
WARN = {"code": "K_TOO_LARGE", "severity": "warning", "title": "k too large", "evidence": {"k": 7},
        "recommendation": "use k=3", "locations": []}


def with_findings(rep: dict, findings: list[dict]) -> dict:
    """The report with its one run's findings replaced (and the fleet lists recomputed)."""
    run = rep["runs"][0]
    run["findings"] = findings
    run["status"] = R.run_status(run["summary"], findings)
    rep["findings"] = R.fleet_findings(rep["runs"])
    rep["fleet"] = R.fleet_rollup(rep["runs"])
    return rep


def validate(rep: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(json.dumps(rep, allow_nan=False)), json.loads(SCHEMA_FILE.read_text()))


def test_report_has_exactly_the_contract_keys_and_is_json_safe():
    rep = R.build_report(result(), windows=True)
    assert tuple(rep) == R.REPORT_KEYS == ("schema", "inputs", "runs", "comparisons", "findings", "fleet")
    assert rep["schema"] == REPORT_SCHEMA == "specdec-diag/report@2"
    assert set(rep["inputs"][0]) == {"path", "format", "engine", "lines", "records", "malformed"}
    (run,) = rep["runs"]
    assert run["id"] == "./a.log#vllm:e0@2026-03-01T12:00:00" and run["k"] == 3 and run["window_count"] == 6
    assert all(tuple(w) == CONTRACT_WINDOW_COLUMNS for w in run["windows"])
    for key in ("engine", "k", "num_drafts", "draft_tokens", "accepted_tokens", "acceptance_rate",
                "mean_acceptance_length", "per_position_acceptance"):
        assert key in run["summary"]
    text = json.dumps(rep, allow_nan=False)  # NaN became null, datetimes strings
    back = json.loads(text)
    assert back["runs"][0]["windows"][-1]["acceptance_rate"] is None
    assert back["runs"][0]["windows"][0]["time"] == "2026-03-01T12:00:00.000000+00:00"
    s = back["runs"][0]["summary"]
    assert s["acceptance_rate"] == 0.5 and s["mean_acceptance_length"] == 2.5
    for f in rep["findings"]:  # whatever the rules found, in the contract shape, naming its run
        assert tuple(f) == (*R.FINDING_KEYS, "run") and f["severity"] in ("error", "warning", "info")
    validate(rep)
    assert "windows" not in R.build_report(result())["runs"][0]  # windows are opt-in


def test_schema_rejects_a_report_missing_a_run_field():
    jsonschema = pytest.importorskip("jsonschema")
    rep = json.loads(json.dumps(R.build_report(result()), allow_nan=False))
    del rep["runs"][0]["k"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rep, json.loads(SCHEMA_FILE.read_text()))


def test_empty_result_report():
    rep = R.build_report(IngestResult.empty())
    assert rep["runs"] == [] and rep["inputs"] == [] and not R.has_data(rep)
    json.dumps(rep, allow_nan=False)
    validate(rep)
    assert "0 runs" in html_report.render_html(rep)


def test_html_is_one_offline_file_with_all_charts():
    rep = R.build_report(with_steps(result()), windows=True)
    with_findings(rep, [FINDING])
    page = html_report.render_html(rep)
    assert page.count("<html") == 1
    assert not re.search(r"<script[^>]+src=", page) and not re.search(r"<link[^>]+href=['\"]?http", page)
    from plotly.offline import get_plotlyjs

    assert page.count(get_plotlyjs()[:40]) == 1                                  # bundle inlined once
    n_charts = sum(len(figures.figures(r)) for r in rep["runs"])
    assert page.count('Plotly.newPlot') == n_charts >= 5
    assert len(page) > 3_000_000
    assert "&lt;never&gt;" in page and "<never>" not in page                       # escaped
    for title in ("Acceptance rate over time", "Per-position acceptance", "Accepted length per step",
                  "Step time: draft / verify / overhead", "Predicted vs achieved speed-up"):
        assert title in page


def test_downsample_keeps_the_pooled_rate():
    xs = list(range(10_000))
    ys = [0.2 if i % 2 else 0.8 for i in xs]
    ws = [1.0 if i % 2 else 3.0 for i in xs]
    dx, dy = charts.downsample(xs, ys, ws, max_points=1000)
    assert len(dx) == 1000 and dx[0] == 0 and dx[1] == 10
    assert dy[0] == pytest.approx((5 * 0.8 * 3 + 5 * 0.2) / 20)
    assert charts.downsample(xs[:5], ys[:5], ws[:5]) == (xs[:5], ys[:5])


def test_long_series_are_downsampled_in_the_html():
    rep = R.build_report(result(4000), windows=True)
    fig = figures.figures(rep["runs"][0])[0][1]
    assert len(fig.data[0].x) <= charts.MAX_POINTS


def test_accepted_length_distribution_from_per_position():
    d, basis = charts.accepted_length_distribution({"per_position_acceptance": [0.7, 0.5, 0.3]})
    assert basis.startswith("derived") and d == pytest.approx({0: 0.3, 1: 0.2, 2: 0.2, 3: 0.3})
    d, basis = charts.accepted_length_distribution({"accepted_length_histogram": {"0": 1, "3": 3}})
    assert basis == "trace steps" and d == {0: 0.25, 3: 0.75}


def test_junit_one_case_per_rule_with_failures_for_errors():
    rep = with_findings(R.build_report(result()), [FINDING, WARN])
    root = ET.fromstring(junit.render_junit(rep, [{"name": "acceptance_rate", "status": "insufficient",
                                               "message": "need 500 draft tokens"}]))
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["DRAFTER_BROKEN"].find("failure") is not None
    assert "acceptance_rate: 0.001" in cases["DRAFTER_BROKEN"].find("failure").text
    assert cases["K_TOO_LARGE"].find("failure") is None and "k too large" in cases["K_TOO_LARGE"].find("system-out").text
    assert cases["acceptance_rate"].find("skipped") is not None
    run_id = rep["runs"][0]["id"]
    assert "DRAFTER_BROKEN" in cases[run_id].find("failure").get("message")       # one case per run
    suite = root.find("testsuite")
    assert suite.get("failures") == "2" and int(suite.get("tests")) == len(cases) and suite.get("skipped") == "1"
    strict = ET.fromstring(junit.render_junit(rep, fail_severities=("error", "warning")))  # check --fail-on warning
    assert {c.get("name") for c in strict.iter("testcase") if c.find("failure") is not None} == {
        "DRAFTER_BROKEN", "K_TOO_LARGE", run_id}


def test_markdown_and_terminal_carry_the_numbers_and_findings():
    rep = with_findings(R.build_report(result()), [FINDING, WARN])
    md = markdown_report.render_markdown(rep)
    assert "| acceptance rate | 50.0 % |" in md and "[ERROR] `DRAFTER_BROKEN`" in md and "`a.log:3`" in md
    assert md.index("## Fleet") < md.index("## Run") and "| ./a.log#vllm:e0@2026-03-01T12:00:00 |" in md
    buf = Console(record=True, width=140, file=io.StringIO())
    terminal.render_terminal(rep, buf)
    out = buf.export_text()
    assert "DRAFTER_BROKEN" in out and "check the draft weights" in out and "50.0 %" in out
    assert out.index("Fleet") < out.index("DRAFTER_BROKEN") < out.index("K_TOO_LARGE")


def test_fleet_table_is_one_line_per_run_at_100_columns(tmp_path):
    for n in range(3):
        d = tmp_path / f"host-{n}" / "logs"
        d.mkdir(parents=True)
        (d / "a-very-long-file-name-for-a-replica.log").write_text(
            "\n".join(VLLM_LINE.format(s=10 * i) for i in range(5)) + "\n")
    r = runner.invoke(app, ["report", str(tmp_path), "--no-cache"], terminal_width=100)
    assert r.exit_code == 0, r.output
    buf = Console(record=True, width=100, file=io.StringIO())
    from specdec_diag.ingest import scan

    terminal.print_fleet(R.build_report(scan([tmp_path], use_cache=False)), buf)
    lines = buf.export_text().splitlines()
    assert len(lines) == 2 + 3 and all(len(ln) <= 100 for ln in lines)         # title, header, one per run


# ---- the command ----------------------------------------------------------------------------------

VLLM_LINE = ("INFO 05-06 06:11:{s:02d} [metrics.py:101] SpecDecoding metrics: Mean acceptance length: 2.50, "
             "Accepted throughput: 15.00 tokens/s, Drafted throughput: 30.00 tokens/s, Accepted: 150 tokens, "
             "Drafted: 300 tokens, Per-position acceptance rate: 0.700, 0.500, 0.300, Avg Draft acceptance rate: 50.0%")


def test_cli_report_formats(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text("\n".join(VLLM_LINE.format(s=10 * i) for i in range(5)) + "\n")
    r = runner.invoke(app, ["report", str(log), "--format", "json", "--no-cache"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    validate(rep)
    s = rep["runs"][0]["summary"]
    assert s["acceptance_rate"] == 0.5 and s["num_drafts"] == 500
    for fmt in ("markdown", "html", "junit", "terminal"):
        out = tmp_path / f"r.{fmt}"
        r = runner.invoke(app, ["report", str(log), "-f", fmt, "-o", str(out), "--no-cache"])
        assert r.exit_code == 0 and out.stat().st_size > 100, (fmt, r.output)
    assert "50.0 %" in (tmp_path / "r.terminal").read_text()


def test_cli_report_exit_codes(tmp_path):
    r = runner.invoke(app, ["report", str(tmp_path / "nope.log")])
    assert r.exit_code == 2 and "nope.log: no such file or directory" in r.output
    assert runner.invoke(app, ["report", str(tmp_path), "--format", "pdf"]).exit_code == 2
    empty = tmp_path / "empty.log"
    empty.write_text("hello\n")
    r = runner.invoke(app, ["report", str(empty), "--no-cache"])
    assert r.exit_code == 3 and "no speculative-decoding records" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[thresholds]\nno_such_threshold = 1\n")
    r = runner.invoke(app, ["report", str(empty), "--config", str(bad)])
    assert r.exit_code == 2 and "no_such_threshold" in r.output and "Traceback" not in r.output


def test_report_and_check_never_import_torch(tmp_path):
    """The analysis side must stay light: running both commands loads neither torch nor transformers."""
    import subprocess
    import sys

    log = tmp_path / "vllm.log"
    log.write_text("\n".join(VLLM_LINE.format(s=10 * i) for i in range(5)) + "\n")
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from specdec_diag.cli import app\n"
        f"r = CliRunner().invoke(app, ['report', {str(log)!r}, '-f', 'html', '-o', {str(tmp_path / 'r.html')!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        f"r = CliRunner().invoke(app, ['check', {str(log)!r}, '--min-acceptance', '0.1', '--no-cache'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_one_json_converter_for_every_writer():
    """schema.jsonable: NaN/inf -> null, dates -> ISO, tuples and numpy values -> plain JSON; the
    json.dumps default built on it still refuses what it cannot convert."""
    import numpy as np

    from specdec_diag.schema import json_default, jsonable

    got = jsonable({"a": (1, float("nan")), "b": np.float32(0.5), "c": np.arange(3), "d": T0, 4: float("-inf")})
    assert got == {"a": [1, None], "b": 0.5, "c": [0, 1, 2], "d": "2026-03-01T12:00:00+00:00", "4": None}
    assert json.dumps({"n": np.int64(7)}, default=json_default) == '{"n": 7}'
    with pytest.raises(TypeError, match="set"):
        json.dumps({1, 2}, default=json_default)


def test_exit_codes_are_the_documented_contract():
    from specdec_diag.exit_codes import ExitCode

    assert [(c.name, int(c)) for c in ExitCode] == [("OK", 0), ("FAILED", 1), ("USAGE", 2), ("NO_DATA", 3)]
