"""The template sandbox still refuses the known ways out, in every flavor and in `when`.

Rendering uses only Jinja's public API (the sandbox's own attribute checks, `finalize`,
autoescape); these tests pin that a template can read the event's values and nothing else,
and that a refusal is a RenderError naming the template and line, never a raw exception.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from bridge.config import parse_config
from bridge.config.schema import Config, Rule
from bridge.errors import TemplateError
from bridge.filters import BridgeEnvironment
from bridge.model import Event, EventKind, JobState, JobStatus
from bridge.render import Renderer, RenderError, compile_when
from bridge.rules import event_context
from tests.config_support import sink, table
from tests.test_render import SLACK_AND_HOOK

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

CONFIG = (table("bridge", templates="templates") + SLACK_AND_HOOK
          + sink("pager", "webhook", url="https://hooks.example.invalid/pager",
                 body="evil.json.j2"))

# Each would reach Python internals, mutate the event or run code if the sandbox let it.
ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.system('touch PWNED') }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'].system('touch PWNED') }}",
    "{{ range.__globals__ }}",
    "{{ range.__code__ }}",
    "{{ job.__class__ }}",
    "{{ job.__class__.__init__.__globals__ }}",
    "{{ event.__reduce_ex__(2) }}",
    "{{ at.__class__.__subclasses__() }}",
    "{{ duration.__class__ }}",
    "{{ job.fields.__class__.__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__ }}",
    # single-underscore ("private") names that exist on the objects
    "{{ to._value_ }}",
    "{{ on._missing_ }}",
    "{% for x in [1] %}{{ loop._iterator }}{% endfor %}",
    "{% macro m() %}{% endmacro %}{{ m._func.__globals__ }}",
    "{{ namespace()._Namespace__attrs }}",
    # subscript and the attr filter take the same checks as the dot
    "{{ job['__class__'] }}",
    "{{ job | attr('__class__') }}",
    "{{ ('{0.__class__}' | attr('format'))(job) }}",
    # format-string attacks: fields are looked up through the sandbox
    "{{ '{0.__class__}'.format(job) }}",
    "{{ '{0.__class__.__mro__}'.format(job) }}",
    "{{ '{0._value_}'.format(to) }}",
    "{{ '{x.__init__.__globals__}'.format_map({'x': cycler}) }}",
    "{{ job.message.format_map({'x': job}) ~ '{x.__class__}'.format_map({'x': job}) }}",
    # the event is read-only
    "{{ job.fields.update({'x': 1}) }}",
    "{{ job.fields.pop('total') }}",
    "{{ job.fields.setdefault('x', 1) }}",
    "{% set l = [] %}{{ l.append(1) }}",
    # a refused value is refused in a test too, not read as false
    "{% if job.__class__ %}yes{% else %}no{% endif %}",
]

# (template file, sink) per flavor: Slack mrkdwn, Block Kit JSON, plain text, webhook body.
FLAVORS = {
    "slack": ("evil.slack.j2", "slack"),
    "blocks": ("evil.blocks.j2", "slack"),
    "text": ("evil.j2", "hook"),
    "json": ("evil.json.j2", "pager"),
}


def _event() -> Event:
    job = JobStatus(id="8b72", state=JobState.FAILED, raw_state="failed", progress=40.0,
                    message="Printer on fire", url="https://x.example/jobs/8b72",
                    fields={"total": 5}, failed_items=2, run=3)
    return Event(id="evt_1", on=EventKind.TRANSITION, source="zendesk", at=AT, job=job,
                 previous=job, from_state=JobState.RUNNING, to_state=JobState.FAILED,
                 first_seen=AT - timedelta(minutes=12), duration=timedelta(seconds=3723))


def _renderer(tmp_path: Path, name: str, text: str) -> tuple[Renderer, Config]:
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)
    (folder / "ok.j2").write_text("fine", encoding="utf-8")
    (folder / name).write_text(text, encoding="utf-8")
    config = parse_config(CONFIG, str(tmp_path / "rules.toml"), env={})
    return Renderer(config, strict=False), config


@pytest.mark.parametrize("flavor", sorted(FLAVORS))
@pytest.mark.parametrize("template", ESCAPES)
def test_the_sandbox_refuses_every_escape_in_every_flavor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template: str, flavor: str
) -> None:
    monkeypatch.chdir(tmp_path)
    name, sink_name = FLAVORS[flavor]
    renderer, config = _renderer(tmp_path, name, "line one\n" + template)
    # The body template is the sink's; the rule's own template is harmless then.
    rule_template = "ok.j2" if flavor == "json" else name
    rule = Rule.model_validate(
        {"name": "r", "on": "transition", "template": rule_template, "notify": [sink_name]})
    event = _event()
    with pytest.raises(RenderError, match="refused by the sandbox") as caught:
        renderer.render(rule, event, config.sink(sink_name))
    assert (caught.value.template, caught.value.line) == (name, 2)
    assert "templates may only read the event's values" in str(caught.value)
    assert not (tmp_path / "PWNED").exists()
    assert event.job is not None and event.job.fields == {"total": 5}


WHEN_ESCAPES = [
    "job.__class__",
    "''.__class__.__mro__",
    "cycler.__init__.__globals__",
    "to._value_",
    "'{0.__class__}'.format(job)",
    "job.fields.update({'x': 1})",
    "job['__class__'].__name__ == 'JobStatus'",
]


@pytest.mark.parametrize("expression", WHEN_ESCAPES)
def test_when_expressions_cannot_escape_either(expression: str) -> None:
    predicate = compile_when(expression)
    event = _event()
    with pytest.raises(SecurityError, match="is unsafe"):
        predicate(event_context(event))
    assert event.job is not None and event.job.fields == {"total": 5}


def test_reading_values_still_works_in_the_sandbox(tmp_path: Path) -> None:
    text = ("{{ job.id }} {{ job.fields.total }} {{ job.fields['total'] }} "
            "{{ '{0}/{1}'.format(source, job.id) }} {{ to.value }} {{ job.fields.items() | list }}")
    renderer, config = _renderer(tmp_path, "fine.j2", text)
    rule = Rule.model_validate(
        {"name": "r", "on": "transition", "template": "fine.j2", "notify": ["hook"]})
    assert renderer.render(rule, _event(), config.sink("hook"))["text"] == (
        "8b72 5 5 zendesk/8b72 failed [('total', 5)]")


def test_the_environment_keeps_the_sandboxs_own_lookups() -> None:
    # Overriding these would put our code between a template and Python's attributes; the
    # documented hook for a policy is is_safe_attribute, and the verdict cache lives there.
    for method in ("getattr", "getitem", "call", "wrap_str_format", "unsafe_undefined",
                   "is_safe_callable", "format_string", "call_binop", "call_unop"):
        ours = getattr(BridgeEnvironment, method, None)
        assert ours is getattr(SandboxedEnvironment, method, None), method


def test_a_refusal_is_a_template_error(tmp_path: Path) -> None:
    renderer, config = _renderer(tmp_path, "evil.j2", "{{ job.__class__ }}")
    rule = Rule.model_validate(
        {"name": "r", "on": "transition", "template": "evil.j2", "notify": ["hook"]})
    with pytest.raises(TemplateError):
        renderer.render(rule, _event(), config.sink("hook"))
