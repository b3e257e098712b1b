"""The dashboard never shows a file outside its root (issue 16, rows 2-5; docs/security.md):

2. a link in the root pointing out is skipped, listed as refused, and the line viewer refuses it;
3. an edited cached report naming /etc/passwd is validated (recomputed, and the page says so), and
   the line viewer refuses any location outside the root even when a report gets through;
4. a tokenizer path outside the root named by a trace header is refused (bundled tokenizer or ids);
5. odd text in the Log directory box is one line in the page, never a traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402
from test_dashboard_app import WORDS, write_tokenizer, write_trace  # noqa: E402

from specdec_diag import paths  # noqa: E402
from specdec_diag.analysis.report import pooled_report as build_report  # noqa: E402  (the dashboard pools per directory)
from specdec_diag.dashboard_app import APP_PATH, ROOT_ENV, guard  # noqa: E402
from specdec_diag.ingest import scan  # noqa: E402

FIX = Path(__file__).resolve().parent / "fixtures"
TIMEOUT = 240
SECRET = "TOPSECRET-outside-the-root"


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory beside the root holding a parseable log whose every line carries SECRET."""
    d = tmp_path / "outside"
    d.mkdir()
    text = (FIX / "vllm" / "v1_a.log").read_text()
    (d / "secret.log").write_text("".join(f"{line} {SECRET}\n" for line in text.splitlines()))
    return d


@pytest.fixture
def root(tmp_path, outside, monkeypatch) -> Path:
    """The dashboard's root: two engine logs (findings with locations) and ``link.log`` -> outside."""
    d = tmp_path / "root"
    (d / "engines").mkdir(parents=True)
    shutil.copy(FIX / "vllm" / "v1_a.log", d / "engines" / "v1_a.log")
    shutil.copy(FIX / "sglang" / "early_accept_len.log", d / "engines" / "sglang.log")
    (d / "link.log").symlink_to(outside / "secret.log")
    monkeypatch.delenv("SPECDEC_CACHE_DIR", raising=False)  # the caches live in ROOT/.specdec-cache
    st.cache_resource.clear()  # the process-wide store of loaded directories
    st.cache_data.clear()
    return d


def app_on(root: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv(ROOT_ENV, str(root))
    return AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT).run()


def page_text(at: AppTest) -> str:
    """Everything the page shows as text (markdown, code, captions, alerts)."""
    parts = []
    for kind in ("markdown", "code", "caption", "error", "warning", "info", "success", "text"):
        parts += [str(e.value) for e in at.get(kind)]
    return "\n".join(parts)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# --- row 2: a link out of the root -----------------------------------------------------------


def test_link_out_of_the_root_is_skipped_and_listed_as_refused(root, monkeypatch):
    at = app_on(root, monkeypatch)
    assert_clean(at)
    loaded = at.session_state["loaded"]
    read = [str(p) for p in loaded.result.inputs["path"]]
    assert not any(p.endswith("link.log") for p in read), read
    assert loaded.files == 2
    refused = [w.value for w in at.warning if "refused" in w.value]
    assert refused and "link.log" in refused[0] and "outside" in refused[0], [w.value for w in at.warning]
    assert SECRET not in page_text(at)


def test_a_directory_of_only_refused_files_says_so(root, tmp_path, monkeypatch):
    (root / "only").mkdir()
    (root / "only" / "x.log").symlink_to(tmp_path / "outside" / "secret.log")
    at = app_on(root, monkeypatch)
    at.text_input(key="logdir").set_value("only").run()
    assert_clean(at)
    assert any("refused" in e.value and "x.log" in e.value for e in at.error), [e.value for e in at.error]


def test_line_viewer_refuses_a_link_out_of_the_root(root, outside):
    assert guard.log_line(root, str(root / "link.log"), 1).startswith("(refused:")
    assert guard.log_line(root, str(outside / "secret.log"), 1).startswith("(refused:")
    assert guard.log_line(root, "/etc/passwd", 1).startswith("(refused:")
    assert guard.log_line(root, "../outside/secret.log", 1).startswith("(refused:")
    first = (root / "engines" / "v1_a.log").read_text().splitlines()[0]
    assert guard.log_line(root, str(root / "engines" / "v1_a.log"), 1) == first[:guard.LINE_CHARS]
    assert guard.log_line(root, "engines/v1_a.log", 1) == first[:guard.LINE_CHARS]  # relative: against the root


def test_partition_and_confine(root, outside):
    kept, refused = paths.partition([root / "engines" / "v1_a.log", root / "link.log"], root)
    assert kept == [root / "engines" / "v1_a.log"]
    assert [f for f, _ in refused] == [root / "link.log"] and "outside" in refused[0][1]
    inner = root / "engines" / "again.log"
    inner.symlink_to(root / "engines" / "sglang.log")  # a link that stays inside is fine
    assert paths.confine(inner, root) == (root / "engines" / "sglang.log").resolve()
    with pytest.raises(paths.Refused, match="outside"):
        paths.confine(root / "engines" / ".." / ".." / "outside" / "secret.log", root)
    # the per-walk fast path (one lstat per file) agrees with the full check
    (root / "dirlink").symlink_to(outside, target_is_directory=True)
    check = paths.Confiner(root)
    for p in (inner, root / "link.log", root / "dirlink" / "secret.log", root / "engines" / "..",
              root / "..", root / "engines" / "v1_a.log", root / "missing.log", f"{root}/engines/../../outside/secret.log"):
        assert (check.outside(p) is None) == (paths.outside(p, root) is None), p
    assert check.outside(root / "dirlink" / "secret.log") is not None and check.outside(root / "..") is not None


# --- row 3: an edited cached report ----------------------------------------------------------


def _edit_cached_report(root: Path, outside: Path) -> Path:
    """Point every finding location of the dashboard's cached report at files outside the root."""
    caches = list((root / ".specdec-cache").rglob("report-*.json"))
    assert len(caches) == 1, caches
    report = json.loads(caches[0].read_text())
    assert report["findings"], "the fixture logs must give findings with locations"
    # the pages read each run's findings (a page shows one run), the Overview the top-level list
    for f in report["findings"] + [f for r in report.get("runs") or [] for f in r["findings"]]:
        f["locations"] = [{"path": "/etc/passwd", "line": 1}, {"path": "/etc/shadow", "line": 1},
                          {"path": str(outside / "secret.log"), "line": 2}, {"path": str(root / "link.log"), "line": 3}]
    caches[0].write_text(json.dumps(report))
    return caches[0]


def _show_all_lines(at: AppTest) -> AppTest:
    at.switch_page("views/findings.py").run()
    for cb in at.checkbox:
        cb.check()
    return at.run()


def test_edited_cached_report_is_validated_and_recomputed(root, outside, monkeypatch):
    assert_clean(app_on(root, monkeypatch))
    _edit_cached_report(root, outside)
    st.cache_resource.clear()  # a restart: the next load reads the cached report from disk
    at = app_on(root, monkeypatch)
    assert_clean(at)
    notes = [w.value for w in at.warning if "cached report" in w.value]
    assert notes and "failed validation" in notes[0] and "recomputed" in notes[0], [w.value for w in at.warning]
    from specdec_diag.analysis.report import build_report as build_runs_report

    expect = build_runs_report(scan(sorted((root / "engines").iterdir()), use_cache=False))["findings"]
    assert at.session_state["loaded"].report["findings"] == expect
    at = _show_all_lines(at)
    assert_clean(at)
    text = page_text(at)
    assert SECRET not in text and "root:x:0:0" not in text  # the note may name the path, never its content


def test_line_viewer_refuses_locations_outside_the_root_even_if_a_report_gets_through(root, outside, monkeypatch):
    assert_clean(app_on(root, monkeypatch))
    _edit_cached_report(root, outside)
    st.cache_resource.clear()
    monkeypatch.setattr(guard, "report_problem", lambda report, inputs: None)  # validation defeated
    at = _show_all_lines(app_on(root, monkeypatch))
    assert_clean(at)
    code = "\n".join(c.value for c in at.code)
    assert "/etc/passwd:1: (refused:" in code and "link.log:3: (refused:" in code, code
    assert SECRET not in page_text(at) and "root:x:0:0" not in page_text(at)


@pytest.mark.parametrize("edit, needle", [
    (lambda r: r.update(schema="x"), "schema"),
    (lambda r: r.update(findings={"a": 1}), "findings is not a list"),
    (lambda r: r["findings"][0].update(code="../../../etc/passwd"), "no valid code"),
    (lambda r: r["findings"][0].update(severity=3), "severity"),
    (lambda r: r["findings"][0]["locations"][0].update(line="1; rm"), "line"),
    (lambda r: r["findings"][0]["locations"][0].update(path="/etc/passwd"), "not one of the loaded files"),
    (lambda r: r["inputs"].append({"path": "/etc/passwd"}), "inputs"),
])
def test_report_validation_names_what_is_wrong(edit, needle):
    from specdec_diag.analysis.report import inputs_json

    result = scan([FIX / "sglang" / "early_accept_len.log"], use_cache=False)
    report = json.loads(json.dumps(build_report(result)))
    inputs = inputs_json(result.inputs)
    assert guard.report_problem(report, inputs) is None
    edit(report)
    why = guard.report_problem(report, inputs)
    assert why and needle in why


# --- row 4: a tokenizer path outside the root ------------------------------------------------


def test_trace_tokenizer_outside_the_root_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "troot"
    (root / "traces").mkdir(parents=True)
    write_tokenizer(tmp_path / "tok-outside")
    steps = write_trace(root / "traces" / "t.jsonl", tmp_path / "tok-outside")
    monkeypatch.setenv("SPECDEC_CACHE_DIR", str(tmp_path / "cache"))
    at = app_on(root, monkeypatch)
    at.switch_page("views/trace.py").run()
    assert_clean(at)
    html = at.get("html")[0].proto.body
    first = steps[0]["draft_token_ids"][0]
    assert f">#{first}<" in html and f">{WORDS[first]}<" not in html  # ids, not the outside tokenizer's words
    captions = " ".join(c.value for c in at.caption)
    assert "refused" in captions and str(tmp_path / "tok-outside") not in captions


def test_tokenizer_choice(tmp_path):
    root = tmp_path / "r"
    write_tokenizer(root / "tok")
    write_tokenizer(tmp_path / "out")
    (root / "tok-link").symlink_to(tmp_path / "out", target_is_directory=True)

    def hdr(path: str, sha: str | None = None) -> dict:
        return {"tokenizer": {"name_or_path": path}, "models": {"target": {"path": path, "sha256": sha}}}

    f, note = guard.tokenizer_file(hdr(str(root / "tok")), root)
    assert f == (root / "tok" / "tokenizer.json").resolve() and "tok/tokenizer.json" in note
    assert guard.tokenizer_file(hdr("tok"), root)[0] == f  # relative: against the root
    for bad in (str(tmp_path / "out"), str(root / "tok-link"), "../out", "~nosuchuser-specdec/x", "a\0b", "x" * 300):
        f, note = guard.tokenizer_file(hdr(bad), root)
        assert f is None and ("refused" in note or "not found" in note), (bad, note)
    # the bundled pair's weights: its own tokenizer, which ships with the code, replaces the refused path
    sha = next(iter(guard._bundled_sha()))
    f, note = guard.tokenizer_file(hdr(str(tmp_path / "out"), sha), root)
    assert f is not None and f.name == "tokenizer.json" and "bundled" in note and "refused" in note
    assert paths.outside(f, root) is not None  # it is outside the root: only because it is the package's


# --- row 5: the Log directory box ------------------------------------------------------------


@pytest.mark.parametrize("text, needle", [
    ("a" * 300, "name too long"),
    ("loop", "symbolic link loop"),
    ("loop/deeper", "symbolic link loop"),
    ("~nosuchuser-specdec", "no such user"),
    ("engines\0/etc", "NUL byte"),
    ("~", "outside the directory"),
    ("engines/v1_a.log/x", "no such directory"),
])
def test_log_directory_box_odd_text_is_one_line(root, text, needle, monkeypatch):
    (root / "loop").symlink_to(root / "loop2")
    (root / "loop2").symlink_to(root / "loop")
    at = app_on(root, monkeypatch)
    at.text_input(key="logdir").set_value(text).run()
    assert_clean(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "\n" not in errors[0] and len(errors[0]) < 300, errors
    assert needle in errors[0], errors
    assert any(needle in i.value for i in at.info)  # the page body says it too


def test_user_path_messages_are_one_line(root):
    for text in ("a" * 300, "a/" * 3000, "~nosuchuser-specdec/x", "x\0y", "\n\n..", "../" * 50):
        with pytest.raises(paths.Refused) as exc:
            paths.user_path(root, text)
        assert "\n" not in str(exc.value) and len(str(exc.value)) < 300, str(exc.value)
    assert paths.user_path(root, " engines ") == (root / "engines").resolve()
