"""`bridge check`: validate a config's templates and `when`s against sample events.

Compiles every template and renders each rule's template against a realistic sample event
of its kind for every sink it notifies, so a misspelt name or a missing template shows up
before a real job fails. Exit code 0 when clean, 1 with `file:line: path: message` lines.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.checks.advice import warnings
from bridge.checks.samples import (
    FIXED_NOW,
    event_from_data,
    reason,
    sample_event,
    sample_group,
    source_for,
)
from bridge.config.loader import locate
from bridge.config.schema import Config, Rule
from bridge.errors import ConfigError, TemplateError
from bridge.filters import Flavor
from bridge.groups.digest import Digests
from bridge.model import EventKind
from bridge.reminders import payload as reminder_payload
from bridge.render import Renderer, RenderError, Templates, compile_when
from bridge.resources import find_template
from bridge.rules import event_context
from bridge.silence_reminder import context as reminder_context
from bridge.silence_reminder import sample as reminder_sample


@dataclass(slots=True)
class _Problems:
    config: Config
    items: list[ConfigError] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)

    def add(self, path: str, message: str) -> None:
        if (path, message) in self.seen:
            return
        self.seen.add((path, message))
        self.items.append(locate(self.config, path, message))

    def add_file(self, file: str, line: int | None, message: str) -> None:
        self.items.append(ConfigError(message, file=file, line=line))


def check(config: Config, out: TextIO) -> int:
    """Validate templates and `when`s against sample events; 0 when clean, 1 on problems."""
    problems = _Problems(config)
    folder = config.bridge.templates
    templates = Templates(folder)
    bundled, missing = _template_origins(config)
    if missing and not os.path.isdir(folder):
        problems.add("bridge.templates", f"templates folder {folder} does not exist, and "
                     f"bridge bundles no {', '.join(missing)}: create the folder with "
                     f"{'it' if len(missing) == 1 else 'them'}")
    _check_timezone(config, problems)
    names = templates.names()
    _check_unused_templates(config, templates, names, problems)
    renderer = Renderer(config, strict=False)
    for index, rule in enumerate(config.rules):
        _check_rule(config, renderer, index, rule, problems)
    _check_idle_bodies(config, renderer, problems)
    _check_reminders(config, renderer, problems)
    for index, test in enumerate(config.tests):
        try:
            event_from_data(test.event, config, default_id="check")
        except (ValueError, KeyError, TypeError) as exc:
            problems.add(f"tests[{index}].event", f"not a valid event: {reason(exc)}")
    for problem in problems.items:
        out.write(problem.render() + "\n")
    if problems.items:
        count = len(problems.items)
        out.write(f"{count} problem{'s' if count != 1 else ''}\n")
        return 1
    for warning in warnings(config):
        out.write(warning.render() + "\n")
    out.write(f"ok: {len(config.sources)} sources, {len(config.sinks)} sinks, "
              f"{len(config.rules)} rules, {len(names)} templates\n")
    if bundled:
        out.write(f"bundled templates used (not in {folder}): {', '.join(bundled)}\n")
    return 0


def _template_origins(config: Config) -> tuple[list[str], list[str]]:
    """The templates the config names that come from the package, and those found nowhere."""
    bundled: list[str] = []
    missing: list[str] = []
    for name in _used_templates(config):
        path = find_template(config.bridge.templates, name)
        if path is None:
            missing.append(name)
        elif path != Path(config.bridge.templates) / name:
            bundled.append(name)
    return sorted(bundled), sorted(missing)


def _used_templates(config: Config) -> set[str]:
    used = {r.template for r in config.rules} | {r.group_template for r in config.rules
                                                 if r.grouped}
    reminders = {s.silence_reminder.template for s in config.sinks if s.silence_reminder}
    return used | reminders | {body for s in config.sinks if (body := s.body_template())}


def _check_timezone(config: Config, problems: _Problems) -> None:
    try:
        ZoneInfo(config.bridge.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.add("bridge.timezone", f"unknown timezone {config.bridge.timezone!r} "
                     "(an IANA name like 'UTC' or 'Europe/Berlin')")


def _check_unused_templates(config: Config, templates: Templates, names: Iterable[str],
                            problems: _Problems) -> None:
    """Syntax errors in templates no rule names (the rules report their own)."""
    used = _used_templates(config)
    for name in names:
        if name in used:
            continue
        try:
            templates.get(name, Flavor.TEXT)
        except RenderError as exc:
            problems.add_file(os.path.join(templates.folder, exc.template or name), exc.line,
                              exc.detail)


def _check_rule(config: Config, renderer: Renderer, index: int, rule: Rule,
                problems: _Problems) -> None:
    where = f"rules[{index}]"
    sample = sample_event(rule.on, source=source_for(config, rule), rule=rule)
    if rule.when is not None:
        try:
            predicate = compile_when(rule.when)
        except TemplateError as exc:
            problems.add(f"{where}.when", str(exc))
            predicate = None
        try:
            if predicate is not None:
                bool(predicate(event_context(sample, rule.name)))
        except TemplateError as exc:
            problems.add(f"{where}.when", f"{exc} (on a sample {rule.on} event)")
        except Exception as exc:  # a user's expression may fail in any way; report it
            problems.add(f"{where}.when", f"`when` fails on a sample {rule.on} event: "
                         f"{type(exc).__name__}: {exc}")
    # The same template error for several sinks is one problem, naming them all.
    failures: dict[tuple[str, str], list[str]] = {}
    for name in rule.notify:
        sink_index, sink = next((i, s) for i, s in enumerate(config.sinks) if s.name == name)
        try:
            renderer.render(rule, sample, sink)
        except RenderError as exc:
            body = sink.body_template()
            path = f"sinks[{sink_index}].body" if body and exc.template == body else (
                f"{where}.template")
            failures.setdefault((path, str(exc)), []).append(repr(name))
    for (path, message), sinks in failures.items():
        problems.add(path, f"{message} (sample {rule.on} event for sink "
                     f"{', '.join(sinks)})")
    if rule.grouped:
        _check_digest(config, renderer, index, rule, problems)


def _check_digest(config: Config, renderer: Renderer, index: int, rule: Rule,
                  problems: _Problems) -> None:
    """The rule's `group_template` against a sample group of three jobs, for every sink."""
    group = sample_group(rule, source=source_for(config, rule))
    rendered = Digests(config, renderer).render(group, FIXED_NOW)
    failures: dict[tuple[str, str], list[str]] = {}
    for failure in rendered.failures:
        sink_index, sink = next((i, s) for i, s in enumerate(config.sinks)
                                if s.name == failure.sink)
        body = sink.body_template()
        path = f"sinks[{sink_index}].body" if body and failure.template == body else (
            f"rules[{index}].group_template")
        failures.setdefault((path, failure.error), []).append(repr(failure.sink))
    for (path, message), sinks in failures.items():
        problems.add(path, f"{message} (sample group for sink {', '.join(sinks)})")


def _check_idle_bodies(config: Config, renderer: Renderer, problems: _Problems) -> None:
    """Body templates of webhook sinks no rule notifies yet (the rules check the others)."""
    notified = {name for rule in config.rules for name in rule.notify}
    for index, sink in enumerate(config.sinks):
        body = sink.body_template()
        if not body or sink.name in notified:
            continue
        sample = sample_event(EventKind.TRANSITION, source=source_for(config, None))
        context = {**event_context(sample, "sample"), "text": "sample text", "sink": sink.name}
        try:
            renderer.body(body, context)
        except RenderError as exc:
            problems.add(f"sinks[{index}].body", f"{exc} (sample transition event)")


def _check_reminders(config: Config, renderer: Renderer, problems: _Problems) -> None:
    """Each sink's silence reminder template, rendered with two sample long silences."""
    for index, sink in enumerate(config.sinks):
        reminder = sink.silence_reminder
        if reminder is None:
            continue
        listed = reminder_sample(FIXED_NOW)
        values = reminder_context(listed, sink=sink.name, reminder=reminder, now=FIXED_NOW)
        try:
            reminder_payload(renderer, sink, reminder.template, values, listed)
        except TemplateError as exc:
            problems.add(f"sinks[{index}].silence_reminder", f"{exc} (sample reminder)")
