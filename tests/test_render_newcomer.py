"""`bridge render --sample [KIND]`, `--event -` from stdin, and a warning for job fields
the event does not give but the template reads (issue 15)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bridge.checks import sample_event
from bridge.cli import main
from bridge.model import Event, EventKind

CONFIG = """
[[sources]]
name = "zendesk"
kind = "zendesk"
base_url = "https://acme.zendesk.com"

[[sinks]]
name = "ops-slack"
kind = "slack"
webhook_url = "https://hooks.slack.com/services/T0/B0/secret-part"

[[rules]]
name = "job-failed"
on = "transition"
to = "failed"
template = "transition.slack.j2"
notify = "ops-slack"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(CONFIG)
    return path


def test_sample_without_a_rule_prints_the_sample_event_check_uses(
        config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--config", str(config), "--sample", "stalled"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert Event.from_dict(printed) == sample_event(EventKind.STALLED, source="zendesk")
    assert main(["render", "--config", str(config), "--sample", "stale"]) == 1
    assert "no event kind 'stale' (kinds: transition, progress, stalled" in (
        capsys.readouterr().err)


def test_sample_with_a_rule_renders_the_rules_own_kind(
        config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--config", str(config), "--rule", "job-failed", "--sample"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("── ops-slack (slack) ──\n❌ *zendesk* job ")
    assert "warning" not in out


def test_an_event_from_stdin_that_lacks_fields_the_template_reads_gets_a_warning(
        config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    event = {"on": "transition", "from": "running", "to": "failed", "job": {"id": "j1"}}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(event)))
    assert main(["render", "--config", str(config), "--rule", "job-failed", "--event", "-"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (
        "warning: the event has no job.message, job.url, job.progress, job.failed_items; the "
        "template reads them (rendered as empty here: add them to the event to see the real "
        "message)")
    assert "❌ *zendesk* job j1: running → *failed*" in out
    # Given, a field is not warned about.
    event["job"] = {"id": "j1", "message": "Printer on fire", "url": "https://x.example/j1",
                    "progress": 40, "failed_items": 2}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(event)))
    assert main(["render", "--config", str(config), "--rule", "job-failed", "--event", "-"]) == 0
    out = capsys.readouterr().out
    assert "warning" not in out and "Printer on fire" in out


def test_render_without_a_rule_names_the_rules(
        config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "e.json").write_text('{"on": "transition"}')
    assert main(["render", "--config", str(config), "--event", str(tmp_path / "e.json")]) == 1
    assert capsys.readouterr().err.strip() == "bridge render: give --rule NAME (rules: job-failed)"
