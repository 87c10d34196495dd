"""The logic of `bridge check`, `bridge test` and `bridge render`: exit code and a report.

`check` compiles every template and renders each rule's template against a realistic sample
event of its kind for every sink it notifies, so a misspelt name or a missing template shows
up before a real job fails. `run_tests` runs the config's `[[tests]]` through the real rules
and templates with a fixed clock, like `promtool test rules`. `render_event` shows what one
rule would send for one event, without sending anything.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.config.loader import locate
from bridge.config.schema import Config, Expectation, Rule, RuleTest, SinkBase, WebhookSink
from bridge.errors import ConfigError, TemplateError
from bridge.filters import Flavor
from bridge.model import Event, EventKind, JobState, JobStatus
from bridge.render import Renderer, RenderError, Templates, blocks_text, compile_when
from bridge.resources import find_template
from bridge.rules import Outcome, RuleBook, event_context

# The fixed clock of `bridge test` and of sample events, so outputs never depend on today.
FIXED_NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
_JOB_EVENTS = frozenset(EventKind) - {EventKind.SOURCE_DOWN, EventKind.SOURCE_UP}
_DEFAULT_STATE = {
    EventKind.TRANSITION: JobState.FAILED,
    EventKind.PROGRESS: JobState.RUNNING,
    EventKind.STALLED: JobState.RUNNING,
    EventKind.APPEARED: JobState.PENDING,
    EventKind.VANISHED: JobState.RUNNING,
}


# --- sample events --------------------------------------------------------------------------

# What detection gives as `reason` (bridge.detect); other job events have none.
_SAMPLE_REASONS = {
    EventKind.STALLED: "no progress for 15m",
    EventKind.VANISHED: "the job is no longer in the source's job list",
}


def sample_event(kind: EventKind, *, source: str = "example", rule: Rule | None = None) -> Event:
    """A realistic event of `kind`, shaped to pass the rule's `from` / `to` filters."""
    if kind not in _JOB_EVENTS:
        down = kind is EventKind.SOURCE_DOWN
        return Event(
            id=f"evt_sample_{kind}", on=kind, source=source, at=FIXED_NOW,
            # source_up carries why the source was down, as detection sets it.
            reason="HTTP 503 Service Unavailable from GET /api/v2/job_statuses",
            duration=None if down else timedelta(minutes=7),
        )
    state = rule.to[0] if rule and rule.to else _DEFAULT_STATE[kind]
    before = rule.from_[0] if rule and rule.from_ else JobState.RUNNING
    job = _sample_job(state)
    return Event(
        id=f"evt_sample_{kind}",
        on=kind,
        source=source,
        at=FIXED_NOW,
        job=job,
        previous=None if kind is EventKind.APPEARED else _sample_job(before),
        from_state=before if kind is EventKind.TRANSITION else None,
        to_state=state if kind is EventKind.TRANSITION else None,
        first_seen=FIXED_NOW - timedelta(minutes=25),
        duration=timedelta(minutes=23, seconds=12),
        reason=_SAMPLE_REASONS.get(kind),
    )


def _sample_job(state: JobState) -> JobStatus:
    failed = state in (JobState.FAILED, JobState.CANCELLED)
    progress = 100.0 if state is JobState.SUCCEEDED else 40.0
    return JobStatus(
        id="8b72",
        state=state,
        raw_state=str(state),
        progress=progress,
        message="Printer on fire" if failed else "Importing 120 of 300 tickets",
        url="https://example.com/jobs/8b72",
        fields={"id": "8b72", "status": str(state), "progress": progress, "total": 300},
        failed_items=2 if failed else 0,
        run=1,
    )


def _source_for(config: Config, rule: Rule | None) -> str:
    for source in config.sources:
        if rule is None or fnmatchcase(source.name, rule.source):
            return source.name
    return "example"


def event_from_data(data: Mapping[str, Any], config: Config, *, default_id: str) -> Event:
    """An event from a test or `--event` file, with sensible defaults for what is missing.

    `source` defaults to the first source, `at` to a fixed clock, `job.state` to `to`, and a
    transition's `previous` to the job in state `from`. Raises ValueError/KeyError on bad data.
    """
    if "on" not in data:
        raise ValueError("the event needs 'on' (transition, progress, stalled, ...)")
    kind = EventKind(data["on"])
    filled: dict[str, Any] = {"id": default_id, "source": _source_for(config, None),
                              "at": FIXED_NOW.isoformat(), **data}
    job = filled.get("job")
    if kind in _JOB_EVENTS or job is not None:
        job = {"id": "test-job", **(job or {})}
        job.setdefault("state", filled.get("to") or str(_DEFAULT_STATE.get(kind, "unknown")))
        filled["job"] = job
        if filled.get("from") and not filled.get("previous"):
            filled["previous"] = {**job, "state": filled["from"], "raw_state": filled["from"]}
    return Event.from_dict(filled)


# --- bridge check ---------------------------------------------------------------------------


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
    for index, test in enumerate(config.tests):
        try:
            event_from_data(test.event, config, default_id="check")
        except (ValueError, KeyError, TypeError) as exc:
            problems.add(f"tests[{index}].event", f"not a valid event: {_reason(exc)}")
    for problem in problems.items:
        out.write(problem.render() + "\n")
    if problems.items:
        count = len(problems.items)
        out.write(f"{count} problem{'s' if count != 1 else ''}\n")
        return 1
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
    used = {r.template for r in config.rules}
    return used | {s.body for s in config.sinks if isinstance(s, WebhookSink) and s.body}


def _reason(exc: BaseException) -> str:
    return f"missing {exc}" if isinstance(exc, KeyError) else str(exc)


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
    sample = sample_event(rule.on, source=_source_for(config, rule), rule=rule)
    if rule.when is not None:
        try:
            predicate = compile_when(rule.when)
            bool(predicate(event_context(sample, rule.name)))
        except TemplateError as exc:
            problems.add(f"{where}.when", str(exc))
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
            body = sink.body if isinstance(sink, WebhookSink) else None
            path = f"sinks[{sink_index}].body" if body and exc.template == body else (
                f"{where}.template")
            failures.setdefault((path, str(exc)), []).append(repr(name))
    for (path, message), sinks in failures.items():
        problems.add(path, f"{message} (sample {rule.on} event for sink "
                     f"{', '.join(sinks)})")


def _check_idle_bodies(config: Config, renderer: Renderer, problems: _Problems) -> None:
    """Body templates of webhook sinks no rule notifies yet (the rules check the others)."""
    notified = {name for rule in config.rules for name in rule.notify}
    for index, sink in enumerate(config.sinks):
        if not isinstance(sink, WebhookSink) or not sink.body or sink.name in notified:
            continue
        sample = sample_event(EventKind.TRANSITION, source=_source_for(config, None))
        context = {**event_context(sample, "sample"), "text": "sample text", "sink": sink.name}
        try:
            renderer.body(sink.body, context)
        except RenderError as exc:
            problems.add(f"sinks[{index}].body", f"{exc} (sample transition event)")


# --- bridge test ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent:
    """One notification a test produced (or the error that stopped it)."""

    rule: str
    sink: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def text(self) -> str:
        return str(self.payload.get("text", ""))

    def haystack(self) -> str:
        """Everything the sink would show or receive, for `contains` / `not_contains`."""
        parts = [self.text]
        if isinstance(self.payload.get("blocks"), list):
            parts.append(blocks_text(self.payload["blocks"]))
        body = self.payload.get("body")
        if isinstance(body, str):
            parts.append(body)
            parts.extend(_strings(json.loads(body)))
        unescaped = [p.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
                     for p in parts]
        return "\n".join(parts + unescaped)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def route(rulebook: RuleBook, renderer: Renderer, sinks: Mapping[str, SinkBase], event: Event,
          now: datetime) -> list[Sent]:
    """What the rules send for one event with a fresh memory, one entry per (rule, sink)."""
    sent = []
    for decision in rulebook.evaluate(event, {}, now):
        if decision.outcome is not Outcome.MATCHED:
            continue
        for name in decision.rule.notify:
            try:
                payload = renderer.render(decision.rule, event, sinks[name])
            except TemplateError as exc:
                sent.append(Sent(rule=decision.rule.name, sink=name, error=str(exc)))
                continue
            sent.append(Sent(rule=decision.rule.name, sink=name, payload=payload))
    return sent


def _satisfies(sent: Sent, expect: Expectation) -> bool:
    if sent.sink != expect.sink or sent.error is not None:
        return False
    haystack = sent.haystack()
    if expect.contains is not None and expect.contains not in haystack:
        return False
    if expect.not_contains is not None and expect.not_contains in haystack:
        return False
    return expect.equals is None or sent.text.strip() == expect.equals.strip()


def compare(expected: Sequence[Expectation], got: Sequence[Sent]) -> list[str]:
    """Why `got` does not match `expected` (each expectation takes one notification)."""
    problems = [f"rule {s.rule}: template failed for sink {s.sink}: {s.error}"
                for s in got if s.error is not None]
    unused = [s for s in got if s.error is None]
    for expect in expected:
        match = next((s for s in unused if _satisfies(s, expect)), None)
        if match is None:
            problems.append(f"{expect.sink}: no notification {_describe(expect)}")
        else:
            unused.remove(match)
    problems.extend(f"{s.sink}: unexpected notification from rule {s.rule}" for s in unused)
    return problems


def _describe(expect: Expectation) -> str:
    parts = []
    if expect.contains is not None:
        parts.append(f"containing {expect.contains!r}")
    if expect.not_contains is not None:
        parts.append(f"without {expect.not_contains!r}")
    if expect.equals is not None:
        parts.append(f"equal to {expect.equals!r}")
    return " and ".join(parts) if parts else "at all"


def _expected_lines(expected: Sequence[Expectation]) -> list[str]:
    lines: list[str] = []
    for expect in expected:
        if expect.equals is not None:
            lines.extend(f"[{expect.sink}] {line}" for line in expect.equals.strip().splitlines())
            continue
        conditions = []
        if expect.contains is not None:
            conditions.append(f"contains {expect.contains!r}")
        if expect.not_contains is not None:
            conditions.append(f"not contains {expect.not_contains!r}")
        lines.append(f"[{expect.sink}] ({', '.join(conditions) or 'any message'})")
    return lines


def _got_lines(got: Sequence[Sent]) -> list[str]:
    lines: list[str] = []
    for sent in got:
        text = f"(template error: {sent.error})" if sent.error else sent.text.strip()
        lines.extend(f"[{sent.sink}] {line}" for line in (text.splitlines() or [""]))
    return lines


def diff(expected: Sequence[Expectation], got: Sequence[Sent]) -> list[str]:
    return list(difflib.unified_diff(_expected_lines(expected), _got_lines(got),
                                     fromfile="expected", tofile="got", lineterm=""))


def _run_one(test: RuleTest, index: int, config: Config, rulebook: RuleBook,
             renderer: Renderer, out: TextIO) -> bool:
    try:
        event = event_from_data(test.event, config, default_id=f"evt_test_{index}")
    except (ValueError, KeyError, TypeError) as exc:
        out.write(f"FAIL  {test.name}\n      not a valid event: {_reason(exc)}\n")
        return False
    sinks = {s.name: s for s in config.sinks}
    got = route(rulebook, renderer, sinks, event, FIXED_NOW)
    problems = compare(test.expect, got)
    if not problems:
        out.write(f"PASS  {test.name}\n")
        return True
    out.write(f"FAIL  {test.name}\n")
    for problem in problems:
        out.write(f"      - {problem}\n")
    for line in diff(test.expect, got):
        out.write(f"      {line}\n")
    return False


def run_tests(config: Config, out: TextIO) -> int:
    """Run the config's `[[tests]]`; 0 when all pass, 1 on any failure."""
    if not config.tests:
        out.write(f"no [[tests]] in {config.path or 'the config'}\n")
        return 0
    try:
        rulebook = RuleBook(config.rules, compile_when)
    except TemplateError as exc:
        out.write(f"{exc}\n")
        return 1
    renderer = Renderer(config, strict=False)
    failed = sum(not _run_one(test, i, config, rulebook, renderer, out)
                 for i, test in enumerate(config.tests))
    total = len(config.tests)
    out.write(f"\n{total - failed} passed, {failed} failed\n")
    return 1 if failed else 0


# --- bridge render --------------------------------------------------------------------------


def render_event(config: Config, rule_name: str, event: dict[str, Any], out: TextIO) -> int:
    """Print what `rule_name` would send for `event`, per sink; nothing is sent."""
    rule = next((r for r in config.rules if r.name == rule_name), None)
    if rule is None:
        names = ", ".join(r.name for r in config.rules) or "none"
        out.write(f"no rule named {rule_name!r} (rules: {names})\n")
        return 1
    try:
        parsed = event_from_data(event, config, default_id="evt_render")
        rulebook = RuleBook([rule], compile_when)
    except (ValueError, KeyError, TypeError) as exc:
        out.write(f"not a valid event: {_reason(exc)}\n")
        return 1
    except TemplateError as exc:
        out.write(f"{exc}\n")
        return 1
    decisions = rulebook.evaluate(parsed, {}, parsed.at)
    why = decisions[0].describe() if decisions else (
        f"rule {rule.name}: FILTERED by on: event is {parsed.on}, rule wants {rule.on}")
    if not decisions or decisions[0].outcome is not Outcome.MATCHED:
        out.write(f"note: {why}; this rule would not notify about this event. "
                  "Showing what it would send if it did.\n\n")
    renderer = Renderer(config, strict=False)
    status = 0
    for name in rule.notify:
        sink = config.sink(name)
        out.write(f"── {name} ({sink.kind}) ──\n")
        try:
            payload = renderer.render(rule, parsed, sink)
        except TemplateError as exc:
            out.write(f"error: {exc}\n\n")
            status = 1
            continue
        out.write(_show(payload) + "\n\n")
    out.write("(nothing was sent)\n")
    return status


def _show(payload: Mapping[str, Any]) -> str:
    if isinstance(payload.get("body"), str):
        return json.dumps(json.loads(payload["body"]), indent=2, ensure_ascii=False)
    if isinstance(payload.get("blocks"), list):
        blocks = json.dumps(payload["blocks"], indent=2, ensure_ascii=False)
        return f"{payload.get('text', '')}\n\nblocks:\n{blocks}"
    return str(payload.get("text", ""))
