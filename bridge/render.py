"""Rendering: a rule's template and an event become the payload a sink sends.

Templates live in the `[bridge] templates` folder and are compiled once, in a sandboxed,
immutable Jinja environment with `StrictUndefined`: a misspelt name is an error, never an
empty string, and a template can read the event's values but not reach Python internals.

How a template's output becomes a payload, per sink kind:

- Slack: `{"text": ...}`, or `{"text": <fallback>, "blocks": [...]}` when the output parses as
  JSON with a `blocks` key. Name Block Kit templates `*.blocks.j2` (or `*.json.j2`) so that
  interpolated values are JSON-string escaped as well as mrkdwn-escaped.
- Webhook: `{"text": ..., "body": <JSON string>}` where the body is the envelope of contract
  section 6, or the sink's `body` template (which also sees `text` and `sink`).

Every failure is a `RenderError` (a `TemplateError`) naming the template and line.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.exceptions import SecurityError

from bridge.config.schema import Config, Rule, SinkBase
from bridge.errors import TemplateError
from bridge.filters import FILTERS, BridgeEnvironment, Flavor
from bridge.model import Event
from bridge.resources import bundled_templates, template_loader
from bridge.rules import Predicate, event_context
from bridge.sinks import PayloadShape, sink_capabilities
from bridge.webhooks import catalog
from bridge.when_hints import syntax_message, undefined_message

log = logging.getLogger(__name__)

# Slack truncates `text` past 40,000 characters; keep a visible marker instead.
MAX_OUTPUT = 40_000
TRUNCATED = "\n… (truncated)"
_JSON_SUFFIXES = (".json.j2", ".blocks.j2")
# Templates yield a few dozen chunks; more means a loop, read with the cap in mind.
_CHUNKS = 1024
_NAMES = "job, source, on, from, to, previous, at, duration, first_seen, reason, rule, event"


class RenderError(TemplateError):
    """A template failed; says which template, which line and what went wrong."""

    def __init__(self, detail: str, *, template: str = "", line: int | None = None):
        self.template = template
        self.line = line
        self.detail = detail
        where = f"{template}:{line}" if template and line else template
        super().__init__(f"{where}: {detail}" if where else detail)


def timezone_named(name: str) -> tzinfo:
    """The `[bridge] timezone`, or UTC (with a warning) when it is not a known zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown timezone %r in [bridge] timezone; showing times in UTC", name)
        return UTC


def is_json_template(name: str) -> bool:
    return name.endswith(_JSON_SUFFIXES)


def flavor_for(template: str, shape: PayloadShape) -> Flavor:
    """How interpolated values are escaped when `template` renders for a sink whose
    payload has this shape."""
    if shape is PayloadShape.SLACK:
        return Flavor.BLOCKS if is_json_template(template) else Flavor.SLACK
    return Flavor.JSON if is_json_template(template) else Flavor.TEXT


def _environment(flavor: Flavor, timezone: tzinfo, folder: str | None) -> BridgeEnvironment:
    env = BridgeEnvironment(
        flavor,
        timezone,
        loader=template_loader(folder) if folder else None,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=-1,
    )
    env.filters.update(FILTERS)
    return env


def _where(exc: BaseException, folder: str) -> tuple[str, int | None]:
    """The template file and line an exception was raised in (Jinja rewrites the traceback)."""
    base = os.path.abspath(folder) + os.sep if folder else ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if base and frame.filename.startswith(base):
            return frame.filename[len(base):], frame.lineno
        if frame.filename == "<template>":
            return "", frame.lineno
    return "", None


def translate(exc: Exception, name: str, folder: str = "") -> RenderError:
    """A Jinja (or any) failure as a RenderError the user can act on."""
    if isinstance(exc, RenderError):
        return exc
    if isinstance(exc, jinja2.TemplateNotFound):
        missing = str(exc.name or name)
        return RenderError(f"no such template {missing!r} in {folder or 'the templates folder'}"
                           " nor among the bundled ones",
                           template=name if missing != name else missing)
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return RenderError(f"syntax error: {exc.message}", template=exc.name or name,
                           line=exc.lineno)
    template, line = _where(exc, folder)
    template = template or name
    if isinstance(exc, SecurityError):
        refusal = str(exc).rstrip(".")
        return RenderError(f"refused by the sandbox: {refusal}; templates may only read the "
                           "event's values", template=template, line=line)
    if isinstance(exc, jinja2.UndefinedError):
        return RenderError(f"undefined: {exc.message} (templates see {_NAMES})",
                           template=template, line=line)
    return RenderError(f"{type(exc).__name__}: {exc}", template=template, line=line)


class Templates:
    """The templates of one folder, compiled once per flavor and kept."""

    def __init__(self, folder: str, timezone: tzinfo = UTC):
        self.folder = folder
        self.timezone = timezone
        self._envs = {flavor: _environment(flavor, timezone, folder) for flavor in Flavor}
        self._compiled: dict[tuple[str, Flavor], jinja2.Template] = {}

    def names(self) -> list[str]:
        """Every template file (`*.j2`) in the folder, sorted."""
        if not os.path.isdir(self.folder):
            return []
        return [n for n in FileSystemLoader(self.folder).list_templates() if n.endswith(".j2")
                and not any(part.startswith(".") for part in Path(n).parts)]

    def get(self, name: str, flavor: Flavor) -> jinja2.Template:
        key = (name, flavor)
        template = self._compiled.get(key)
        if template is None:
            try:
                template = self._envs[flavor].get_template(name)
            except Exception as exc:  # a template may fail to load in any way; say which
                raise translate(exc, name, self.folder) from None
            self._compiled[key] = template
        return template

    def render(self, name: str, flavor: Flavor, context: Mapping[str, Any]) -> str:
        """Render with the output capped at MAX_OUTPUT characters."""
        template = self.get(name, flavor)
        chunks = template.generate(context)
        try:
            # Read the chunks with a cap rather than Template.render: a loop may be endless.
            text = "".join(islice(chunks, _CHUNKS))
            rest = next(chunks, None)
            if rest is not None:
                text = _capped(text + rest, chunks)
        except Exception as exc:  # user templates can raise anything; never let it escape raw
            # generate() re-raised it with the template's own lines in the traceback.
            raise translate(exc, name, self.folder) from None
        text = text.strip()
        if len(text) <= MAX_OUTPUT:
            return text
        if flavor.json:
            raise RenderError(f"renders more than {MAX_OUTPUT} characters of JSON", template=name)
        return text[: MAX_OUTPUT - len(TRUNCATED)] + TRUNCATED


def _capped(head: str, chunks: Iterator[str]) -> str:
    """The rest of a long output, read only until it passes the cap (a loop may be endless)."""
    parts = [head]
    size = len(head)
    for chunk in chunks:
        if size > MAX_OUTPUT:
            break
        parts.append(chunk)
        size += len(chunk)
    return "".join(parts)


def parse_blocks(text: str) -> tuple[str, list[Any]] | None:
    """(fallback text, blocks) when `text` is Block Kit JSON, else None."""
    if not text.startswith(("{", "[")):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, list):
        return blocks_text(data), data
    if isinstance(data, dict) and isinstance(data.get("blocks"), list):
        fallback = data.get("text")
        if not isinstance(fallback, str) or not fallback:
            fallback = blocks_text(data["blocks"])
        return fallback, data["blocks"]
    return None


def blocks_text(blocks: Iterable[Any]) -> str:
    """A plain-text reading of Block Kit blocks: Slack's notification fallback."""
    lines: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        texts = [block.get("text"), *block.get("fields", []), *block.get("elements", [])]
        for item in texts:
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                lines.append(item["text"])
    return "\n".join(lines)[:MAX_OUTPUT]


@lru_cache(maxsize=256)
def _utc_stamp(moment: datetime) -> str:
    # The events of one poll share their time; format it once.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(event: Event, rule: str, text: str) -> dict[str, Any]:
    """The default webhook body (contract section 6), built through its published model."""
    return catalog.build(event, rule, text, _utc_stamp(event.at))


def envelope_json(event: Event, rule: str, text: str) -> str:
    """`envelope` as the JSON text a webhook sends, written by its model in one step."""
    return catalog.build_json(event, rule, text, _utc_stamp(event.at))


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class Renderer:
    """Renders a rule's template for one event and one sink into a notification payload.

    Every template the rules and sinks name is compiled at construction; with `strict`
    (the default) a missing or broken one raises TemplateError listing all of them.
    """

    def __init__(self, config: Config, *, strict: bool = True):
        self.templates = Templates(config.bridge.templates, timezone_named(config.bridge.timezone))
        self._sinks = {s.name: s for s in config.sinks}
        self._shapes = {s.name: sink_capabilities(s).payload for s in config.sinks}
        # The context of the last (event, rule) rendered: a rule notifying several sinks
        # renders the same event for each, and they can share one (templates never write to
        # it: Templates.render copies it into Jinja's own context).
        self._last: tuple[Event, str, dict[str, Any]] | None = None
        self._bundled: Templates | None = None  # for `fallback`, made on its first use
        problems = self.precompile(config.rules)
        if strict and problems:
            listed = "\n".join(f"  {p}" for p in problems)
            raise TemplateError(f"templates failed to compile (run `bridge check`):\n{listed}")

    def precompile(self, rules: Iterable[Rule]) -> list[RenderError]:
        """Compile every template the rules and sinks use; the problems, one per template."""
        wanted: dict[tuple[str, Flavor], None] = {}
        for rule in rules:
            for name in rule.notify:
                sink = self._sinks.get(name)
                if sink is not None:
                    wanted[(rule.template, flavor_for(rule.template, self._shape(sink)))] = None
                    if rule.grouped:
                        wanted[(rule.group_template,
                                flavor_for(rule.group_template, self._shape(sink)))] = None
        for sink in self._sinks.values():
            body = sink.body_template()
            if body:
                wanted[(body, Flavor.JSON)] = None
            reminder = sink.silence_reminder
            if reminder is not None:
                wanted[(reminder.template, flavor_for(reminder.template, self._shape(sink)))] = None
        problems: dict[str, RenderError] = {}
        for name, flavor in wanted:
            try:
                self.templates.get(name, flavor)
            except RenderError as exc:
                problems.setdefault(name, exc)
        return list(problems.values())

    def render(self, rule: Rule, event: Event, sink: SinkBase) -> dict[str, Any]:
        """The payload `rule` sends to `sink` about `event`. Raises RenderError."""
        context = self._context(event, rule.name)
        shape = self._shape(sink)
        if shape is PayloadShape.SLACK:
            return self.slack(rule.template, context)
        text = self.text(rule.template, context)
        if shape is PayloadShape.WEBHOOK:
            template = sink.body_template()
            if template:
                body = self.body(template, {**context, "text": text, "sink": sink.name})
            else:
                body = envelope_json(event, rule.name, text)
            return {"text": text, "body": body}
        return {"text": text}

    def fallback(self, rule: Rule, event: Event, sink: SinkBase) -> dict[str, Any]:
        """The payload of the bundled template for the event's kind, sent when the rule's
        own template (or the sink's body template) failed: a broken template costs the
        message its looks, never the alert (contract: never a silent drop)."""
        if self._bundled is None:
            self._bundled = Templates(str(bundled_templates()), self.templates.timezone)
        name, context = f"{event.on}.slack.j2", self._context(event, rule.name)
        shape = self._shape(sink)
        if shape is PayloadShape.SLACK:
            return {"text": self._bundled.render(name, Flavor.SLACK, context)}
        text = self._bundled.render(name, Flavor.TEXT, context)
        if shape is PayloadShape.WEBHOOK:
            return {"text": text, "body": envelope_json(event, rule.name, text)}
        return {"text": text}

    def shape(self, sink: SinkBase) -> PayloadShape:
        """What `sink`'s payload holds (its capabilities' `payload`)."""
        return self._shape(sink)

    def _shape(self, sink: SinkBase) -> PayloadShape:
        # Read once per configured sink: rendering runs per event and sink.
        if self._sinks.get(sink.name) is sink:
            return self._shapes[sink.name]
        return sink_capabilities(sink).payload

    def _context(self, event: Event, rule: str) -> dict[str, Any]:
        last = self._last
        if last is not None and last[0] is event and last[1] == rule:
            return last[2]
        context = event_context(event, rule)
        self._last = (event, rule, context)
        return context

    def slack(self, name: str, context: Mapping[str, Any]) -> dict[str, Any]:
        """A Slack payload (`text`, and `blocks` from a Block Kit template) from a context."""
        flavor = Flavor.BLOCKS if is_json_template(name) else Flavor.SLACK
        output = self.templates.render(name, flavor, context)
        blocks = parse_blocks(output)
        if blocks is not None:
            return {"text": blocks[0], "blocks": blocks[1]}
        if flavor is Flavor.BLOCKS:
            return {"text": _json_text(output, name)}
        return {"text": output}

    def text(self, name: str, context: Mapping[str, Any]) -> str:
        """The template as plain text (a Block Kit template gives its fallback text)."""
        if not is_json_template(name):
            return self.templates.render(name, Flavor.TEXT, context)
        output = self.templates.render(name, Flavor.JSON, context)
        blocks = parse_blocks(output)
        return blocks[0] if blocks is not None else _json_text(output, name)

    def body(self, name: str, context: Mapping[str, Any]) -> str:
        """A webhook body template's output, checked to be JSON."""
        output = self.templates.render(name, Flavor.JSON, context)
        try:
            return _dump(json.loads(output))
        except ValueError as exc:
            raise RenderError(f"body is not valid JSON: {exc}", template=name) from None


def _json_text(output: str, name: str) -> str:
    """The `text` of a JSON template that is not Block Kit; an error if it has none."""
    try:
        data = json.loads(output)
    except ValueError as exc:
        raise RenderError(f"output is not valid JSON: {exc}", template=name) from None
    if isinstance(data, dict) and isinstance(data.get("text"), str):
        return str(data["text"])
    raise RenderError("a JSON template for Slack needs a `blocks` list or a `text` string",
                      template=name)


_WHEN_ENV = _environment(Flavor.TEXT, UTC, None)


def compile_when(expression: str) -> Predicate:
    """A rule's `when` as a predicate over the event context (sandboxed, strict)."""
    try:
        compiled = _WHEN_ENV.compile_expression(expression, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(syntax_message(expression, str(exc.message))) from None

    def predicate(context: Mapping[str, Any]) -> Any:
        try:
            result = compiled(context)
            # A bare undefined name (or a refused attribute) must fail here, not later as a
            # truth test somewhere else: StrictUndefined raises its error on bool().
            if isinstance(result, jinja2.Undefined):
                bool(result)
        except jinja2.UndefinedError as exc:
            raise RenderError(undefined_message(expression, str(exc.message), context)) from None
        return result

    return predicate
