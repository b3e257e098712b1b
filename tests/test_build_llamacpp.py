"""scripts/build_llamacpp.sh without building: a finished build (its stamp) is reused, an unfinished
one is not taken as done, a build converted from another bundled pair is converted again, and missing
tools give one clear line (and a failure when required)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from specdec_diag.capture import llamacpp as lc

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_llamacpp.sh"


def _run(env_extra: dict[str, str], path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_extra}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([shutil.which("bash") or "/bin/bash", str(SCRIPT), "python-not-used"], env=env,
                          capture_output=True, text=True, timeout=60)


def _config() -> str:
    r = subprocess.run(["bash", str(SCRIPT), "--config"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "-DLLAMA_CURL=OFF" in r.stdout
    return r.stdout.strip()


def test_stamp_is_reused(tmp_path: Path, monkeypatch):
    dest = tmp_path / "llamacpp-0.3.36"
    dest.mkdir()
    (dest / "BUILD_OK").write_text(f"version=0.3.36\nconfig={_config()}\npair={lc.pair_key()}\n")
    r = _run({"SPECDEC_CACHE": str(tmp_path)})
    assert r.returncode == 0 and f"reusing {dest}" in r.stdout
    monkeypatch.setenv("SPECDEC_CACHE", str(tmp_path))
    assert lc.built()


def test_stamp_of_another_pair_converts_again(tmp_path: Path, monkeypatch):
    """The shell's pair key is the one Python computes; a stamp of another pair keeps the binaries and
    converts the pair again (here it stops at the missing interpreter, leaving the old stamp as it was)."""
    dest = tmp_path / "llamacpp-0.3.36"
    dest.mkdir()
    stamp = f"version=0.3.36\nconfig={_config()}\npair=0123456789abcdef\n"
    (dest / "BUILD_OK").write_text(stamp)
    monkeypatch.setenv("SPECDEC_CACHE", str(tmp_path))
    assert not lc.built()
    r = _run({"SPECDEC_CACHE": str(tmp_path)})
    assert "converting it again" in r.stdout and f"reusing {dest}" not in r.stdout
    assert (dest / "BUILD_OK").read_text() == stamp  # nothing converted: the old stamp stands


def test_stamp_of_other_options_is_not_reused(tmp_path: Path):
    dest = tmp_path / "llamacpp-0.3.36"
    dest.mkdir()
    (dest / "BUILD_OK").write_text("version=0.3.36\nconfig=-DGGML_NATIVE=ON\n")
    r = _run({"SPECDEC_CACHE": str(tmp_path)}, path=_bin_without(tmp_path, "cmake"))
    assert "reusing" not in r.stdout and "missing cmake" in r.stderr  # went on to (try to) build


def _bin_without(tmp_path: Path, missing: str) -> str:
    """A PATH with the few tools the script needs before its check, minus ``missing``."""
    b = tmp_path / "bin"
    b.mkdir()
    for tool in ("dirname", "nproc", "uname", "grep", "tar", "cc", "c++", "cmake", "mktemp", "rm", "mkdir"):
        src = shutil.which(tool)
        if src and tool != missing:
            (b / tool).symlink_to(src)
    return str(b)


@pytest.mark.skipif(shutil.which("dirname") is None, reason="needs coreutils")
def test_missing_cmake_is_one_line_and_unfinished_build_not_reused(tmp_path: Path):
    # an interrupted build leaves only a temporary sibling directory: never a stamp in the destination
    (tmp_path / ".llamacpp-0.3.36.tmp.abc123").mkdir()
    path = _bin_without(tmp_path, "cmake")
    r = _run({"SPECDEC_CACHE": str(tmp_path)}, path=path)
    assert r.returncode == 0, r.stderr  # optional by default: the llamacpp tests then skip
    assert "missing cmake" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "llamacpp-0.3.36" / "BUILD_OK").exists()
    r = _run({"SPECDEC_CACHE": str(tmp_path), "SPECDEC_REQUIRE_LLAMACPP": "1"}, path=path)
    assert r.returncode == 1 and "missing cmake" in r.stderr
