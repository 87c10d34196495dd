"""The Dockerfile and the systemd unit in examples/ say what they should, and what they run works.

No container engine runs here, so the image itself is never built: these tests read the
Dockerfile (files it copies exist, a non-root user it creates runs `bridge run`, a volume
holds the state), run its HEALTHCHECK command against a live bridge, and let
`systemd-analyze verify` read the unit when systemd's tools are installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import build_parser
from tests.test_packaging import BUILD_INPUTS

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "examples" / "bridge.service"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments out."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def only(name: str) -> str:
    """The one `name` instruction of the final stage (the image that runs)."""
    steps = instructions()
    final = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    values = [rest for word, rest in steps[final:] if word == name]
    assert len(values) == 1, (name, values)
    return values[0]


def test_dockerfile_builds_from_files_that_exist_on_a_slim_python_311() -> None:
    bases = [rest for word, rest in instructions() if word == "FROM"]
    assert bases and all(b.split()[0] == "python:3.11-slim" for b in bases), bases
    copies = [shlex.split(rest) for word, rest in instructions() if word == "COPY"]
    local = [args[:-1] for args in copies if not args[0].startswith("--from=")]
    sources = {source.rstrip("/") for args in local for source in args}
    for source in sources:
        assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not there"
    # What the wheel test builds from, so the image's `pip wheel` is the one tested.
    assert sources == set(BUILD_INPUTS)
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert {".venv", ".git", "**/__pycache__"} <= set(ignored)


def test_dockerfile_runs_bridge_run_as_the_user_it_creates_with_state_in_a_volume() -> None:
    user = only("USER").split(":")[0]
    assert user not in {"root", "0", ""}
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert re.search(rf"useradd [^&]*\b{user}\b", runs), "the USER is never created"
    command = json.loads(only("CMD"))
    assert command[:2] == ["bridge", "run"]
    build_parser().parse_args(command[1:])  # options the CLI really has (exits 2 otherwise)
    volumes = json.loads(only("VOLUME"))
    assert only("WORKDIR") in volumes
    assert re.search(rf"chown {user}:\S* {volumes[0]}", runs), "the volume is not the user's"
    assert image_env()["BRIDGE_CONFIG"] == "/etc/bridge/rules.toml"


def image_env() -> dict[str, str]:
    pairs = (item.partition("=") for item in shlex.split(only("ENV")))
    return {key: value for key, _, value in pairs}


async def test_dockerfile_healthcheck_command_passes_on_a_live_bridge_and_fails_without_one(
        tmp_path: Path) -> None:
    healthcheck = only("HEALTHCHECK")
    probe = json.loads(healthcheck[healthcheck.index("CMD") + 3:].strip())
    assert probe[0] == "python"
    assert image_env()["BRIDGE_HEALTHZ_URL"] == f"http://127.0.0.1:{only('EXPOSE')}/healthz"
    probe[0] = sys.executable
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "demo", "--listen", "127.0.0.1:0", "--quiet",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path, env=env)
    try:
        assert demo.stdout is not None
        url = ""
        async with asyncio.timeout(30):
            while not url:
                line = (await demo.stdout.readline()).decode()
                assert line, "the demo exited before printing its dashboard address"
                if line.strip().startswith("dashboard"):
                    url = line.split()[-1].rstrip("/")
        alive = await asyncio.to_thread(subprocess.run, probe, capture_output=True, timeout=20,
                                        env={**env, "BRIDGE_HEALTHZ_URL": f"{url}/healthz"})
        assert alive.returncode == 0, alive.stderr
    finally:
        demo.send_signal(signal.SIGINT)
        await asyncio.wait_for(demo.communicate(), 30)
    dead = await asyncio.to_thread(subprocess.run, probe, capture_output=True, timeout=20,
                                   env={**env, "BRIDGE_HEALTHZ_URL": f"{url}/healthz"})
    assert dead.returncode != 0


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_unit_runs_bridge_as_a_dedicated_user_restarting_on_failure() -> None:
    settings = unit_settings()
    assert settings["User"] == ["bridge"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["EnvironmentFile"] == ["/etc/bridge/bridge.env"]
    assert settings["StateDirectory"] == ["bridge"]
    [start] = settings["ExecStart"]
    program, *args = shlex.split(start)
    assert program.endswith("/bridge") and args[0] == "run"
    build_parser().parse_args(args)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify wants the programs to exist: point them at this venv's `bridge`.
    installed = Path(sys.executable).parent / "bridge"
    text = UNIT.read_text(encoding="utf-8").replace("/opt/bridge/bin/bridge", str(installed))
    (tmp_path / "bridge.service").write_text(text, encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "bridge.service")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
