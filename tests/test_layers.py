"""The layers' import boundaries (docs/architecture.md): analysis computes and decides and never
presents (no rich, plotly, streamlit, xml) or loads torch; presentation lives in render/; the CLI and
the dashboard reach analysis only through its public names; imports only point down the layers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "specdec_diag"
#: third-party (and stdlib) packages that belong to presentation or to the decoder, not to analysis
NOT_IN_ANALYSIS = {"rich", "plotly", "streamlit", "torch", "transformers", "xml", "typer"}
#: our packages, lowest first: a module may import its own layer or a lower one, never a higher one
LAYERS = [("schema", "exit_codes"), ("ingest",), ("analysis",), ("render",), ("cli", "dashboard_app")]


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) of every import statement in a file, at any depth
    (imports inside functions count: they run too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module, [a.name for a in node.names]))
    return out


def files(sub: str) -> list[Path]:
    found = sorted((PKG / sub).rglob("*.py"))
    assert found, f"no modules under specdec_diag/{sub}"
    return found


def layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "specdec_diag" or len(parts) < 2:
        return None
    return next((i for i, names in enumerate(LAYERS) if parts[1] in names), None)


def test_importing_analysis_loads_no_presentation_and_no_torch():
    """The package and every module under it, then a whole report built: none of them pulls in a
    renderer or torch."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import specdec_diag.analysis as a\n"
        "for m in pkgutil.walk_packages(a.__path__, 'specdec_diag.analysis.'):\n"
        "    importlib.import_module(m.name)\n"
        "from specdec_diag.analysis.report import build_report\n"
        "from specdec_diag.ingest import scan\n"
        "build_report(scan(['tests/fixtures/rules/logs/vllm_healthy.log'], use_cache=False))\n"
        f"print(sorted(set({sorted(NOT_IN_ANALYSIS)!r}) & {{m.split('.')[0] for m in sys.modules}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_cli_start_up_loads_no_library():
    """Commands import the library when they run: `specdec-diag --help` loads neither polars nor
    analysis (exit codes come from the standard-library-only exit_codes module)."""
    code = ("import sys, specdec_diag.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('polars', 'torch', 'plotly') "
            "or m.startswith(('specdec_diag.analysis', 'specdec_diag.ingest'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_issue_one_liner():
    code = ("import specdec_diag.analysis, sys; "
            "assert not {'rich','plotly','streamlit','torch'} & set(sys.modules), sorted(sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("path", files("analysis"), ids=lambda p: str(p.relative_to(PKG)))
def test_analysis_sources_import_no_presentation(path):
    bad = [f"{path.name}:{line}: {mod}" for line, mod, _ in imports(path) if mod.split(".")[0] in NOT_IN_ANALYSIS]
    assert not bad, bad


def test_imports_only_point_down_the_layers():
    bad = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        own = layer("specdec_diag." + ".".join(rel.with_suffix("").parts))
        if own is None:
            continue
        for line, mod, _ in imports(path):
            target = layer(mod)
            if target is not None and target > own:
                bad.append(f"{rel}:{line}: imports {mod}")
    assert not bad, bad


def test_cli_and_dashboard_use_only_public_analysis_names():
    """Presentation helpers come from render/; from analysis only what a module exports."""
    import importlib

    bad = []
    for sub in ("cli", "dashboard_app"):
        for path in files(sub):
            for line, mod, names in imports(path):
                if not mod.startswith("specdec_diag.analysis"):
                    continue
                exported = getattr(importlib.import_module(mod), "__all__", None)
                for name in names:
                    if name.startswith("_") or (exported is not None and name not in exported
                                                and not _is_module(mod, name)):
                        bad.append(f"{path.relative_to(PKG)}:{line}: {mod}.{name}")
    assert not bad, bad


def _is_module(package: str, name: str) -> bool:
    return (PKG.joinpath(*package.split(".")[1:], name + ".py")).exists() or \
        (PKG.joinpath(*package.split(".")[1:], name)).is_dir()


def test_every_renderer_lives_in_render():
    """rich tables, plotly figures and XML are built in render/ (and the dashboard's own pages), not
    in the CLI commands that only wire arguments to the library."""
    owned = ["report.py", "check.py", "ingest.py", "dashboard.py", "_app.py", "decode.py", "replay.py"]
    bad = []
    for name in owned:
        for line, mod, _ in imports(PKG / "cli" / name):
            if mod.split(".")[0] in {"plotly", "xml"} or mod == "rich.table":
                bad.append(f"cli/{name}:{line}: {mod}")
    assert not bad, bad
