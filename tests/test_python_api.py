"""The notebook API (docs/python-api.md): ``import specdec_diag as sd`` stays light, ``sd.scan`` gives
the scan's tables, ``sd.runs`` / ``sd.report`` the analysis, ``to_pandas`` a pandas frame or a clear
error without pandas. Inputs: the sample fleet (real-format lines, sample_logs/fleet/README.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

import specdec_diag as sd
from specdec_diag.analysis.runs import segment
from specdec_diag.ingest import scan
from specdec_diag.schema import REPORT_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
FLEET = ROOT / "sample_logs" / "fleet"


def test_import_specdec_diag_loads_neither_polars_nor_torch():
    code = ("import sys, specdec_diag as sd; assert callable(sd.scan) is not None; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('polars', 'torch', 'pandas', 'ray')))")
    code = code.replace("assert callable(sd.scan) is not None; ", "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_scan_runs_report():
    t = sd.scan(FLEET, cache=False)
    ref = scan([FLEET], use_cache=False)
    assert_frame_equal(t.windows, ref.windows)
    assert t.inputs.height == 8 and not t.errors
    assert_frame_equal(sd.runs(t), segment(ref).table)
    rep = sd.report(t)
    assert rep["schema"] == REPORT_SCHEMA and [r["id"] for r in rep["runs"]] == segment(ref).ids
    assert "8 inputs" in repr(t)


def test_to_pandas():
    pytest.importorskip("pandas")
    t = sd.scan([FLEET], cache=False)
    df = t.to_pandas()
    assert df.shape == (t.windows.height, t.windows.width)
    assert list(t.to_pandas("inputs")["path"]) == t.inputs["path"].to_list()


def test_to_pandas_without_pandas_says_what_to_install(monkeypatch):
    t = sd.scan([FLEET], cache=False)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install pandas"):
        t.to_pandas()


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sd.nope  # noqa: B018


def test_the_documented_example_runs(tmp_path, monkeypatch):
    """The python blocks of docs/python-api.md, run in order on the sample fleet."""
    doc = (ROOT / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert blocks
    monkeypatch.chdir(ROOT)
    env: dict = {}
    for block in blocks:
        exec(compile(block, "docs/python-api.md", "exec"), env)  # noqa: S102 - our own documentation
