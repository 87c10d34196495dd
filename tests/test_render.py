"""Rendering: payload per sink, escaping per flavor, sandbox, errors with template and line."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.config import parse_config
from bridge.config.schema import Config, Rule, SinkBase
from bridge.errors import TemplateError
from bridge.filters import format_duration, json_escape_text, progress_bar, state_emoji
from bridge.model import Event, EventKind, JobState, JobStatus
from bridge.render import MAX_OUTPUT, TRUNCATED, Renderer, RenderError, compile_when
from bridge.rules import event_context
from tests.config_support import sink, table

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

# A Slack and a webhook sink that render with the bundled defaults (the render, sandbox and
# golden tests' sinks), and each test's own `pager` with a body template.
SLACK_AND_HOOK = (sink("slack", "slack", webhook_url="https://hooks.slack.invalid/x")
                  + sink("hook", "webhook", url="https://hooks.example.invalid/bridge"))
CONFIG = (table("bridge", templates="templates", timezone="Europe/Berlin") + SLACK_AND_HOOK
          + sink("pager", "webhook", url="https://hooks.example.invalid/pager",
                 body="body.json.j2"))

Setup = Callable[..., tuple[Renderer, Config]]


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    """Write templates into a fresh folder and build a renderer over them."""

    def make(strict: bool = True, **templates: str) -> tuple[Renderer, Config]:
        folder = tmp_path / "templates"
        folder.mkdir(exist_ok=True)
        templates.setdefault("body_json", '{"summary": "{{ text }}", "job": {{ job | tojson }}}')
        for name, text in templates.items():
            (folder / name.replace("_", ".").replace(".slack", ".slack.j2")
             .replace(".blocks", ".blocks.j2").replace(".json", ".json.j2")
             .replace(".txt", ".j2")).write_text(text, encoding="utf-8")
        config = parse_config(CONFIG, str(tmp_path / "rules.toml"), env={})
        return Renderer(config, strict=strict), config

    return make


def rule(template: str, notify: tuple[str, ...] = ("slack",), name: str = "r") -> Rule:
    return Rule.model_validate(
        {"name": name, "on": "transition", "template": template, "notify": list(notify)})


def failed_event(message: str | None = "Printer <on> fire & \"smoke\"",
                 url: str | None = "https://x.example/jobs/8b72?a=1&b=2") -> Event:
    job = JobStatus(id="8b72", state=JobState.FAILED, raw_state="failed", progress=40.0,
                    message=message, url=url, fields={"total": 5}, failed_items=2, run=3)
    return Event(id="evt_1", on=EventKind.TRANSITION, source="zendesk", at=AT, job=job,
                 previous=job, from_state=JobState.RUNNING, to_state=JobState.FAILED,
                 first_seen=AT - timedelta(minutes=12), duration=timedelta(seconds=3723))


def sink(config: Config, name: str) -> SinkBase:
    return config.sink(name)


def test_slack_text_escapes_interpolated_values_but_not_the_template(setup: Setup) -> None:
    renderer, config = setup(a_slack="*{{ source }}* <{{ job.message }}>")
    payload = renderer.render(rule("a.slack.j2"), failed_event(), sink(config, "slack"))
    assert payload == {"text": '*zendesk* <Printer &lt;on&gt; fire &amp; "smoke">'}


def test_link_is_slack_markup_for_slack_and_plain_for_webhooks(setup: Setup) -> None:
    renderer, config = setup(a_txt="{{ job.id | link(job.url) }}")
    r = rule("a.j2", ("slack", "hook"))
    assert renderer.render(r, failed_event(), sink(config, "slack"))["text"] == (
        "<https://x.example/jobs/8b72?a=1&amp;b=2|8b72>")
    assert renderer.render(r, failed_event(), sink(config, "hook"))["text"] == (
        "8b72 (https://x.example/jobs/8b72?a=1&b=2)")


def test_link_without_url_is_just_the_text(setup: Setup) -> None:
    renderer, config = setup(a_txt="{{ job.id | link(job.url) }}")
    payload = renderer.render(rule("a.j2"), failed_event(url=None), sink(config, "slack"))
    assert payload["text"] == "8b72"


def test_constant_strings_are_escaped_for_slack_not_for_html(setup: Setup) -> None:
    renderer, config = setup(a_slack="{{ \"it's <b> & 'q'\" }}")
    payload = renderer.render(rule("a.slack.j2"), failed_event(), sink(config, "slack"))
    assert payload == {"text": "it's &lt;b&gt; &amp; 'q'"}


def test_constant_strings_are_json_escaped_in_json_templates(setup: Setup) -> None:
    renderer, config = setup(a_txt="x", body_json='{"s": "{{ \'say "hi"\' }}"}')
    payload = renderer.render(rule("a.j2", ("pager",)), failed_event(), sink(config, "pager"))
    assert json.loads(payload["body"]) == {"s": 'say "hi"'}


def test_macro_output_is_not_escaped_twice(setup: Setup) -> None:
    template = "{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(job.message) }}"
    renderer, config = setup(a_slack=template)
    payload = renderer.render(rule("a.slack.j2"), failed_event("a & b"), sink(config, "slack"))
    assert payload["text"] == "<a &amp; b>"


def test_block_kit_output_is_sent_as_blocks_with_fallback_text(setup: Setup) -> None:
    template = ('{"text": "{{ job.id }} failed", "blocks": [{"type": "section", "text": '
                '{"type": "mrkdwn", "text": "{{ job.message }}"}}]}')
    renderer, config = setup(a_blocks=template)
    payload = renderer.render(rule("a.blocks.j2"), failed_event("line\n\"quoted\" <b>"),
                              sink(config, "slack"))
    assert payload["text"] == "8b72 failed"
    assert payload["blocks"][0]["text"]["text"] == 'line\n"quoted" &lt;b&gt;'


def test_block_kit_without_text_falls_back_to_the_blocks_text(setup: Setup) -> None:
    template = ('{"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "H"}},'
                '{"type": "context", "elements": [{"type": "mrkdwn", "text": "{{ source }}"}]}]}')
    renderer, config = setup(a_blocks=template)
    payload = renderer.render(rule("a.blocks.j2"), failed_event(), sink(config, "slack"))
    assert payload["text"] == "H\nzendesk"


def test_a_block_kit_template_gives_webhooks_its_fallback_text(setup: Setup) -> None:
    template = '{"text": "{{ job.message }}", "blocks": []}'
    renderer, config = setup(a_blocks=template)
    payload = renderer.render(rule("a.blocks.j2", ("hook",)), failed_event("a & <b>"),
                              sink(config, "hook"))
    assert payload["text"] == "a & <b>"


def test_a_block_kit_template_that_is_not_json_fails_with_its_name(setup: Setup) -> None:
    renderer, config = setup(a_blocks='{"blocks": [ {{ job.id }} ]')
    with pytest.raises(RenderError, match=r"a\.blocks\.j2: output is not valid JSON"):
        renderer.render(rule("a.blocks.j2"), failed_event(), sink(config, "slack"))


def test_webhook_default_body_is_the_contract_envelope(setup: Setup) -> None:
    renderer, config = setup(a_txt="{{ job.message }}")
    payload = renderer.render(rule("a.j2", ("hook",), name="job-failed"),
                              failed_event("Printer on fire"), sink(config, "hook"))
    body = json.loads(payload["body"])
    assert body["type"] == "job.transition"
    assert body["timestamp"] == "2026-11-23T10:00:00Z"
    data = body["data"]
    assert {k: data[k] for k in ("event_id", "rule", "source", "from", "to", "text")} == {
        "event_id": "evt_1", "rule": "job-failed", "source": "zendesk", "from": "running",
        "to": "failed", "text": "Printer on fire"}
    assert data["job"]["id"] == "8b72"
    assert data["job"]["progress"] == 40
    assert data["job"]["fields"] == {"total": 5}
    assert payload["text"] == "Printer on fire"


def test_webhook_body_template_escapes_values_as_json_strings(setup: Setup) -> None:
    renderer, config = setup(a_txt='{{ job.message }} \\ "end"')
    payload = renderer.render(rule("a.j2", ("pager",)), failed_event('say "hi"\n'),
                              sink(config, "pager"))
    body = json.loads(payload["body"])
    assert body["summary"] == 'say "hi"\n \\ "end"'
    assert body["job"]["failed_items"] == 2


def test_webhook_body_that_is_not_json_is_an_error(setup: Setup) -> None:
    renderer, config = setup(a_txt="x", body_json='{"summary": {{ text }}}')
    with pytest.raises(RenderError, match=r"body\.json\.j2: body is not valid JSON"):
        renderer.render(rule("a.j2", ("pager",)), failed_event(), sink(config, "pager"))


def test_tojson_writes_whole_values(setup: Setup) -> None:
    renderer, config = setup(a_txt="{{ job | tojson }}|{{ at | tojson }}|{{ duration | tojson }}")
    text = renderer.render(rule("a.j2", ("hook",)), failed_event(), sink(config, "hook"))["text"]
    job_json, at_json, duration_json = text.split("|")
    assert json.loads(job_json)["message"] == 'Printer <on> fire & "smoke"'
    assert json.loads(at_json) == "2026-11-23T10:00:00+00:00"
    assert json.loads(duration_json) == 3723


# The sandbox's escape corpus, in every flavor and in `when`: tests/test_sandbox.py.


def test_an_undefined_name_is_an_error_with_template_and_line(setup: Setup) -> None:
    renderer, config = setup(a_txt="ok\n{{ job.id }}\n{{ jobb.id }}")
    with pytest.raises(RenderError) as caught:
        renderer.render(rule("a.j2"), failed_event(), sink(config, "slack"))
    assert str(caught.value).startswith("a.j2:3: undefined: 'jobb' is undefined")


def test_an_undefined_field_in_an_included_template_names_that_template(setup: Setup) -> None:
    renderer, config = setup(a_txt='{% include "part.j2" %}', part_txt="\n{{ job.nope }}")
    with pytest.raises(RenderError) as caught:
        renderer.render(rule("a.j2"), failed_event(), sink(config, "slack"))
    assert (caught.value.template, caught.value.line) == ("part.j2", 2)


def test_a_syntax_error_fails_at_start_up_with_template_and_line(setup: Setup) -> None:
    _, config = setup(strict=False, a_txt="fine\n{% if %}")
    with pytest.raises(TemplateError, match=r"a\.j2:2: syntax error"):
        Renderer(config.model_copy(update={"rules": [rule("a.j2")]}))


def test_a_missing_template_fails_at_start_up(setup: Setup) -> None:
    _, config = setup()
    with pytest.raises(TemplateError, match=r"no such template 'missing\.j2'"):
        Renderer(config.model_copy(update={"rules": [rule("missing.j2")]}))


def test_one_broken_template_does_not_stop_another(setup: Setup) -> None:
    renderer, config = setup(strict=False, bad_txt="{{ nope }}", good_txt="{{ job.id }}")
    with pytest.raises(RenderError):
        renderer.render(rule("bad.j2"), failed_event(), sink(config, "slack"))
    assert renderer.render(rule("good.j2"), failed_event(), sink(config, "slack")) == {
        "text": "8b72"}


def test_long_text_is_truncated_with_a_marker(setup: Setup) -> None:
    renderer, config = setup(a_txt="{% for i in range(20000) %}{{ 'xyz' }}{% endfor %}")
    text = renderer.render(rule("a.j2"), failed_event(), sink(config, "slack"))["text"]
    assert len(text) == MAX_OUTPUT
    assert text.endswith(TRUNCATED)


def test_an_output_without_end_is_cut_at_the_cap(setup: Setup) -> None:
    # 10^10 iterations: rendered whole this would never finish; the cap stops reading it.
    loop = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
    renderer, config = setup(a_txt=loop)
    text = renderer.render(rule("a.j2"), failed_event(), sink(config, "slack"))["text"]
    assert text == "x" * (MAX_OUTPUT - len(TRUNCATED)) + TRUNCATED


def test_json_string_escaping_matches_the_json_module() -> None:
    samples = [chr(c) for c in range(0x3000)] + ["\ud800", "\u2028", "a\"b", "tab\tend", "€ ok"]
    for text in samples:
        assert json_escape_text(text) == json.dumps(text, ensure_ascii=False)[1:-1], repr(text)


def test_long_json_output_is_an_error_not_broken_json(setup: Setup) -> None:
    template = '{"text": "{% for i in range(20000) %}xyz{% endfor %}"}'
    renderer, config = setup(a_blocks=template)
    with pytest.raises(RenderError, match="more than"):
        renderer.render(rule("a.blocks.j2"), failed_event(), sink(config, "slack"))


def test_times_show_in_the_configured_timezone(setup: Setup) -> None:
    renderer, config = setup(a_txt="{{ at | time('%H:%M %Z') }}")
    assert renderer.render(rule("a.j2"), failed_event(), sink(config, "slack")) == {
        "text": "11:00 CET"}


def test_values_read_naturally(setup: Setup) -> None:
    renderer, config = setup(a_txt="{{ job.progress }}% {{ duration }} {{ job.url is none }}"
                             " [{{ previous.message }}] {{ first_seen | ago }}")
    ev = failed_event(message=None)
    assert renderer.render(rule("a.j2"), ev, sink(config, "slack")) == {
        "text": "40% 1h 02m false [] 12m 00s ago"}


# --- filters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (0, "0s"),
        (45.4, "45s"),
        (timedelta(minutes=5, seconds=3), "5m 03s"),
        (timedelta(hours=1, minutes=2, seconds=3), "1h 02m"),
        (timedelta(days=2, hours=3, minutes=59), "2d 03h"),
        (-90, "-1m 30s"),
    ],
)
def test_duration_filter(value: Any, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (0, "▱▱▱▱▱▱▱▱▱▱ 0%"),
        (60, "▰▰▰▰▰▰▱▱▱▱ 60%"),
        (99.6, "▰▰▰▰▰▰▰▰▰▱ 100%"),
        (100, "▰▰▰▰▰▰▰▰▰▰ 100%"),
        (140, "▰▰▰▰▰▰▰▰▰▰ 100%"),
    ],
)
def test_progress_bar_filter(value: Any, text: str) -> None:
    assert progress_bar(value) == text


@pytest.mark.parametrize(
    ("state", "emoji"),
    [("succeeded", "✅"), ("failed", "❌"), ("cancelled", "🚫"), ("pending", "⏳"),
     ("running", "🔄"), ("blocked", "⛔"), ("unknown", "❔"), (JobState.FAILED, "❌"),
     (None, "❔")],
)
def test_state_emoji_filter(state: Any, emoji: str) -> None:
    assert state_emoji(state) == emoji


# --- when -------------------------------------------------------------------------------


def test_when_sees_the_event_names() -> None:
    predicate = compile_when("from == 'running' and to in ['failed'] and job.fields.total > 3")
    assert predicate(event_context(failed_event())) is True


def test_when_that_does_not_compile_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="does not compile"):
        compile_when("job.progress <")

