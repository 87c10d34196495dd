"""`bridge init`: a starter config that `bridge check` accepts once its variables are set,
the templates it names next to it, and nothing overwritten without --force."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import load_config
from bridge.init import SINKS, SOURCES
from bridge.resources import bundled_templates

# Plausible values for every variable any snippet reads.
VALUES = {
    "ZENDESK_URL": "https://acme.zendesk.com", "ZENDESK_EMAIL": "ops@acme.com",
    "ZENDESK_API_TOKEN": "zendesk-token-123456", "JTL_TENANT_ID": "tenant-1",
    "JTL_CLIENT_ID": "client-1", "JTL_CLIENT_SECRET": "jtl-secret-123456",
    "TERMINAL_API_KEY": "terminal-key-123456", "TERMINAL_CONNECTION_TOKEN": "con_tkn_123456",
    "ESALES_URL": "https://c1.api.esales.apptus.cloud", "ESALES_API_KEY": "esales-key-123456",
    "JOBS_URL": "https://api.example.com", "JOBS_API_TOKEN": "jobs-token-123456",
    "PUSH_SECRET": "whsec_ZGVtby13ZWJob29rLXNlY3JldC0xMjM0NTY=",
    "SLACK_BOT_TOKEN": "xoxb-123-456-abcdef", "WEBHOOK_URL": "https://hooks.example.com/b",
    "WEBHOOK_SECRET": "whsec_ZGVtby13ZWJob29rLXNlY3JldC0xMjM0NTY=",
}


def test_init_writes_a_config_with_placeholders_and_lists_the_variables(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--dir", str(tmp_path), "--source", "zendesk", "--sink", "slack"]) == 0
    out = capsys.readouterr().out
    text = (tmp_path / "rules.toml").read_text()
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", text)) - {"VAR"}  # the header says ${VAR}
    assert placeholders == {"ZENDESK_URL", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN",
                            "SLACK_BOT_TOKEN"}
    for name in placeholders:  # every required variable is listed, in the file and printed
        assert re.search(rf"^  {name} +\S", out, re.M), name
        assert re.search(rf"^#   {name} +\S", text, re.M), name
    assert "bridge check --online\n  bridge notify-test ops-slack\n  bridge run" in out
    # The templates the rules name are next to it, copies of the bundled ones.
    for name in ("transition.slack.j2", "stalled.slack.j2", "source_down.slack.j2"):
        assert (tmp_path / "templates" / name).read_bytes() == (
            bundled_templates() / name).read_bytes()
    # Unset variables are what `check` names first: one line each.
    assert main(["check", "--config", str(tmp_path / "rules.toml")]) == 1
    err = capsys.readouterr().err
    assert "environment variable ZENDESK_API_TOKEN is not set" in err


@pytest.mark.parametrize(("sources", "sinks"), [
    *(([kind], ["slack"]) for kind in SOURCES),
    (list(SOURCES), list(SINKS)),
    (["zendesk"], ["webhook"]),
])
def test_every_combination_passes_check_once_the_variables_are_set(
        tmp_path: Path, sources: list[str], sinks: list[str],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["init", "--dir", str(tmp_path)]
    args += [*itertools.chain.from_iterable(["--source", k] for k in sources)]
    args += [*itertools.chain.from_iterable(["--sink", k] for k in sinks)]
    assert main(args) == 0
    for name, value in VALUES.items():
        monkeypatch.setenv(name, value)
    config = load_config(tmp_path / "rules.toml")
    assert [s.kind for s in config.sources] == sources
    assert main(["check", "--config", str(tmp_path / "rules.toml")]) == 0
    out = capsys.readouterr().out
    assert "warning" not in out  # source_down is covered
    assert out.splitlines()[-1].startswith(f"ok: {len(sources)} sources, {len(sinks)} sinks")


def test_init_overwrites_nothing_without_force(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "stalled.slack.j2").write_text("mine")
    assert main(["init", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (f"bridge init: would overwrite templates/stalled.slack.j2 in "
                           f"{tmp_path}; nothing written (pass --force to overwrite, or run "
                           "it in an empty folder)")
    assert not (tmp_path / "rules.toml").exists()
    assert (tmp_path / "templates" / "stalled.slack.j2").read_text() == "mine"
    assert main(["init", "--dir", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "templates" / "stalled.slack.j2").read_text() != "mine"
