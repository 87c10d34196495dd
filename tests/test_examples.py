"""The files a new user meets first (bundled demo config, README example) keep working."""

from __future__ import annotations

import io
import json
from pathlib import Path

from bridge.checks import check, render_event, run_tests
from bridge.config import load_config
from bridge.resources import demo_config

ROOT = Path(__file__).resolve().parent.parent


def test_bundled_config_passes_check_and_its_own_tests() -> None:
    with demo_config() as path:
        config = load_config(path, env={})
    out = io.StringIO()
    assert check(config, out) == 0, out.getvalue()
    assert run_tests(config, out) == 0, out.getvalue()


def test_readme_example_renders_the_message_the_readme_shows() -> None:
    env = {"ZENDESK_EMAIL": "x", "ZENDESK_API_TOKEN": "x", "SLACK_BOT_TOKEN": "x"}
    config = load_config(ROOT / "examples" / "readme.toml", env=env)
    event = json.loads((ROOT / "examples" / "zendesk-failed.json").read_text())
    out = io.StringIO()
    assert render_event(config, "job-failed", event, out) == 0
    readme = (ROOT / "README.md").read_text()
    for line in out.getvalue().splitlines()[1:4]:
        assert line in readme
