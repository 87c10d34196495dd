"""The wheel, installed outside the checkout: `bridge demo`, `check` and `test` work from it.

A wheel is built from a copy of the sources (the build leaves nothing in the checkout) and
installed, not editable, into a new venv in a temporary folder. Every command then runs the
venv's own `bridge` from a folder outside the repository, with no PYTHONPATH, and the test
asserts the package it imported is the venv's copy, so the worktree's source cannot stand in.

Two installs: one reuses this venv's dependencies (through a .pth line, so it runs offline
and fast), the other (slow) installs the wheel with its declared dependencies from the
package index into a venv of its own, which proves pyproject's dependency list suffices.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# All a wheel is built from; the Dockerfile's build stage copies the same (test_deploy_files).
BUILD_INPUTS = ("pyproject.toml", "README.md", "bridge")
EVENT_LINE = re.compile(r"^\d\d:\d\d:\d\d (\w+)\s+(\w+)\s", re.MULTILINE)
FIND_INSTALLED = (
    "import bridge, bridge.resources as r\n"
    "with r.demo_config() as path:\n"
    "    print(bridge.__file__); print(path); print(r.bundled_templates())\n"
)


def run(args: list[str | Path], cwd: Path,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "BRIDGE_CONFIG"}}
    env |= {"NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n" \
        f"{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.db*"))
        else:
            shutil.copy(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    ok(run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", out,
            source], cwd=out, timeout=180))
    [built] = out.glob("bridge-*.whl")
    return built


def install_reusing_deps(wheel: Path, venv: Path) -> None:
    ok(run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent))
    site = Path(ok(run([venv / "bin" / "python", "-c",
                        "import sysconfig; print(sysconfig.get_path('purelib'))"],
                       cwd=venv.parent)).strip())
    # This venv's site-packages as a plain path line: its dependencies (and pip) import, but
    # its own .pth files, the editable install of the worktree among them, are not processed.
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "reused-deps.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    ok(run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-index", "--ignore-installed", wheel], cwd=venv.parent))


def install_with_declared_deps(wheel: Path, venv: Path) -> None:
    ok(run([sys.executable, "-m", "venv", venv], cwd=venv.parent))
    ok(run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel],
           cwd=venv.parent, timeout=300))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("install", [
    pytest.param(install_reusing_deps, id="deps-reused"),
    pytest.param(install_with_declared_deps, id="deps-from-index", marks=pytest.mark.slow),
])
def test_installed_wheel_runs_the_demo_and_checks_the_bundled_config_from_anywhere(
        wheel: Path, tmp_path: Path, install: Callable[[Path, Path], None]) -> None:
    venv = tmp_path / "venv"
    install(wheel, venv)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert not elsewhere.resolve().is_relative_to(REPO)
    bridge = venv / "bin" / "bridge"

    module, config, templates = ok(run([venv / "bin" / "python", "-c", FIND_INSTALLED],
                                       cwd=elsewhere)).split()
    for path in (module, config, templates):
        assert Path(path).is_relative_to(venv), path
    assert {p.name for p in Path(templates).glob("*.j2")} >= {
        "transition.blocks.j2", "transition.slack.j2", "pagerduty.json.j2"}

    demo = run([bridge, "demo", "--duration", "10", "--listen", "127.0.0.1:0"], cwd=elsewhere)
    printed = ok(demo)
    assert f"config     {config}" in printed
    assert len(EVENT_LINE.findall(printed)) >= 3, printed
    assert "stopped cleanly" in printed
    assert "Traceback" not in printed + demo.stderr

    assert ok(run([bridge, "check", "--config", config], cwd=elsewhere)).startswith(
        "ok: 4 sources, 3 sinks, 8 rules, 18 templates")

    # A copy on its own, without a templates folder, renders with the bundled templates.
    shutil.copy(config, elsewhere / "rules.toml")
    checked = ok(run([bridge, "check"], cwd=elsewhere))
    assert checked.startswith("ok: 4 sources, 3 sinks, 8 rules, 0 templates\n"), checked
    assert f"bundled templates used (not in {elsewhere / 'templates'}): " in checked
    assert "3 passed, 0 failed" in ok(run([bridge, "test"], cwd=elsewhere))
