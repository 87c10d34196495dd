"""Grouping in `bridge check` and `bridge test`, and the group stage as a table."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.checks import FIXED_NOW, check, render_event, run_tests, sample_event
from bridge.config import load_config
from bridge.config.schema import Config
from bridge.errors import ConfigErrors
from bridge.groups.keys import group_key
from bridge.model import EventKind, JobState
from bridge.stages import Batch, Context, stages_for
from bridge.stages.group import Group
from tests.test_checks import HEAD

GROUPED = """
[[rules]]
name = "failures"
on = "transition"
to = ["failed"]
template = "transition.slack.j2"
notify = ["ops-slack", "pager"]
group_by = ["source", "job.state"]
group_wait = "10s"
group_interval = "1m"
"""


def write(tmp_path: Path, toml: str, **templates: str) -> Config:
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)
    for name, text in templates.items():
        (folder / name).write_text(text, encoding="utf-8")
    path = tmp_path / "rules.toml"
    path.write_text(toml, encoding="utf-8")
    return load_config(path, env={})


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1)
                if needle in line)


def run(command: object, config: Config) -> tuple[int, str]:
    out = io.StringIO()
    code = command(config, out)  # type: ignore[operator]
    return code, out.getvalue()


@pytest.mark.parametrize(("setting", "message"), [
    ('group_by = ["sauce"]', "rules[0].group_by: cannot group by 'sauce'"),
    ('group_by = []', "rules[0].group_by: list at least one event field"),
    ('group_wait = "soon"', "rules[0].group_wait: expected a duration"),
    ('group_interval = "0s"', "rules[0].group_interval: must be greater than zero"),
])
def test_a_bad_grouping_key_is_a_file_line_error(tmp_path: Path, setting: str,
                                                 message: str) -> None:
    name = setting.split(" ", 1)[0]
    toml = HEAD + "\n".join(line for line in GROUPED.splitlines()
                            if not line.startswith(f"{name} ")) + f"\n{setting}\n"
    with pytest.raises(ConfigErrors) as caught:
        write(tmp_path, toml)
    rendered = str(caught.value)
    assert f"rules.toml:{line_of(tmp_path / 'rules.toml', setting)}: {message}" in rendered


def test_group_settings_without_group_by_are_an_error_not_ignored(tmp_path: Path) -> None:
    toml = HEAD + GROUPED.replace('group_by = ["source", "job.state"]\n', "")
    with pytest.raises(ConfigErrors) as caught:
        write(tmp_path, toml)
    assert "rules[0].group_wait: group_wait has no effect without group_by" in (
        str(caught.value))


def test_check_renders_the_group_template_against_a_sample_group(tmp_path: Path) -> None:
    config = write(tmp_path, HEAD + GROUPED)
    code, out = run(check, config)
    assert code == 0, out
    assert "digest.slack.j2" in out.splitlines()[-1]  # the bundled one
    broken = GROUPED + 'group_template = "mine.slack.j2"\n'
    config = write(tmp_path, HEAD + broken,
                   **{"mine.slack.j2": "{{ counts.failed }} failed\n{{ jobs[0].nmae }}"})
    code, out = run(check, config)
    assert code == 1
    line = line_of(tmp_path / "rules.toml", "group_template")
    assert out.startswith(f"{config.path}:{line}: rules[0].group_template: mine.slack.j2:2: "
                          "undefined")
    assert "(sample group for sink 'ops-slack', 'pager')" in out


def test_bridge_test_asserts_on_the_digest_and_its_thread_reply(tmp_path: Path) -> None:
    slack_update = HEAD.replace('webhook_url = "https://hooks.slack.invalid/x"',
                                'token = "xoxb-1"\nchannel = "#ops"\nmode = "update"')
    test = """
[[tests]]
name = "a failure goes into the digest"
event.on = "transition"
event.from = "running"
event.to = "failed"
event.job = { id = "8b72", message = "Printer on fire" }
expect = [ { sink = "ops-slack", contains = "1 job · source *zendesk* · job.state *failed*" },
           { sink = "pager", contains = "\\"type\\":\\"job.group\\"" } ]

[[tests]]
name = "the thread reply says why"
event.on = "transition"
event.from = "running"
event.to = "failed"
event.job = { id = "8b72", message = "Printer on fire" }
expect = [ { sink = "ops-slack", contains = "> Printer on fire" }, { sink = "pager" } ]

[[tests]]
name = "a wrong expectation fails"
event = { on = "transition", from = "running", to = "failed", job.id = "8b72" }
expect = [ { sink = "ops-slack", contains = "2 jobs" }, { sink = "pager" } ]
"""
    code, out = run(run_tests, write(tmp_path, slack_update + GROUPED + test))
    assert code == 1
    assert out.splitlines()[:3] == ["PASS  a failure goes into the digest",
                                    "PASS  the thread reply says why",
                                    "FAIL  a wrong expectation fails"]
    assert "+[ops-slack] 📋 *failures*: 1 job · source *zendesk* · job.state *failed*" in out


async def test_the_group_stage_takes_grouped_matches_out_of_rendering_and_keeps_marks(
        tmp_path: Path) -> None:
    throttled = GROUPED + 'throttle = "1h"\n' + """
[[rules]]
name = "every-failure"
on = "transition"
template = "transition.slack.j2"
notify = ["pager"]
"""
    first = '[[rules]]\nname = "failures"'
    config = write(tmp_path, HEAD + throttled.replace(first, first + "\ncontinue = true"))
    chain = stages_for(config)
    stages = [s for s in chain.stages if s.name != "group"]
    event = sample_event(EventKind.TRANSITION, source="zendesk")
    other = sample_event(EventKind.TRANSITION, source="jtl")
    ctx = Context(source="zendesk", now=FIXED_NOW)
    batch = Batch(events=(event, other))
    for stage in stages[:3]:  # detect, repeat, route
        batch = await stage.run(ctx, batch)
    assert [m.rule.name for m in batch.matches] == ["failures", "every-failure"] * 2
    grouped = await Group().run(ctx, batch)
    assert [m.rule.name for m in grouped.matches] == ["every-failure"] * 2
    assert [(g.rule, g.key, g.event.id, g.wait) for g in grouped.grouped] == [
        ("failures", '{"source":"zendesk","job.state":"failed"}', event.id,
         timedelta(seconds=10)),
        ("failures", '{"source":"jtl","job.state":"failed"}', other.id, timedelta(seconds=10))]
    assert [m.rule for m in grouped.marks] == ["failures", "failures"]  # throttle still counts
    assert group_key(config.rules[0], event) == grouped.grouped[0].key
    assert event.job is not None and event.job.state is JobState.FAILED


def test_bridge_render_shows_a_grouped_rules_digest_after_its_reply(tmp_path: Path) -> None:
    config = write(tmp_path, HEAD + GROUPED)
    event = {"on": "transition", "from": "running", "to": "failed",
             "job": {"id": "8b72", "message": "Printer on fire"}}
    out = io.StringIO()
    assert render_event(config, "failures", event, out) == 0
    text = out.getvalue()
    assert "── ops-slack (slack): digest of a group of this event (digest.slack.j2) ──" in text
    assert "📋 *failures*: 1 job · source *zendesk* · job.state *failed*" in text
    assert '"type": "job.group"' in text and text.endswith("(nothing was sent)\n")


def test_a_body_template_that_fails_on_a_digest_is_reported_at_the_sinks_body_line(
        tmp_path: Path) -> None:
    # A webhook body written for single events reads `job`, which a digest has as null: the
    # problem is that sink's `body`, so `bridge check` points at the line that names it.
    head = HEAD + 'body = "pager.json.j2"\n'
    config = write(tmp_path, head + GROUPED, **{"pager.json.j2": '{"id": "{{ job.id }}"}'})
    code, out = run(check, config)
    assert code == 1
    line = line_of(tmp_path / "rules.toml", 'body = "pager.json.j2"')
    assert f"{config.path}:{line}: sinks[1].body: pager.json.j2:1: undefined" in out
    assert "(sample group for sink 'pager')" in out
    assert "rules[0].group_template" not in out
