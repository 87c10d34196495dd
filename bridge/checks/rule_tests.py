"""`bridge test`: the config's `[[tests]]` through the pipeline's own stages, like `promtool
test rules`.

Each test's event runs through the stage list of `bridge.stages` with a fixed clock, a fresh
rule memory and no store or sinks; each expectation takes one of the notifications that
come out (by sink, `contains`, `not_contains`, `equals`), and anything left over fails. A
rule with `group_by` gives its digest of the test's event (a group of one, rendered with
its `group_template` as the first flush), so a test asserts on what the digest shows.
"""

from __future__ import annotations

import asyncio
import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from bridge.checks.samples import event_from_data, reason
from bridge.config.schema import Config, Expectation, RuleTest
from bridge.errors import TemplateError
from bridge.model import Event
from bridge.render import blocks_text
from bridge.stages import Batch, Chain, Context, stages_for


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
        # A digest's thread replies (Slack update mode) are part of what the channel shows.
        replies = self.payload.get("replies")
        if isinstance(replies, list):
            parts.extend(str(r.get("text", "")) for r in replies if isinstance(r, Mapping))
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


async def outputs(stages: Chain, event: Event, now: datetime) -> list[Sent]:
    """What the stages send for one event with a fresh memory, one entry per (rule, sink).

    The pipeline's own stages (`bridge.stages.stages_for`), with a fixed clock and no store:
    a test sees exactly what a live poll would queue for this event.
    """
    batch = await stages.run(Context(source=event.source, now=now), Batch(events=(event,)))
    return sent(batch)


def sent(batch: Batch) -> list[Sent]:
    """The batch's notifications and render failures, in rule, then sink order."""
    made = {(n.event_id, n.rule, n.sink): n for n in batch.notifications}
    failed = {(f.event.id, f.rule, f.sink): f for f in batch.failures}
    out = []
    for match in batch.matches:
        for sink in match.rule.notify:
            key = (match.event.id, match.rule.name, sink)
            # A failed template is shown as failed, even though its sink got the bundled
            # template's message instead.
            if key in failed:
                out.append(Sent(rule=match.rule.name, sink=sink, error=failed[key].error))
            elif key in made:
                out.append(Sent(rule=match.rule.name, sink=sink, payload=made[key].payload))
    # Grouped rules: their digests, rendered at once (the group stage without a store).
    out.extend(Sent(rule=n.rule, sink=n.sink, payload=n.payload)
               for n in batch.notifications if n.digest)
    grouped = {entry.rule for entry in batch.grouped}
    out.extend(Sent(rule=f.rule, sink=f.sink, error=f.error) for f in batch.failures
               if f.rule in grouped)
    return out


def _satisfies(sent: Sent, expect: Expectation) -> bool:
    if sent.sink != expect.sink or sent.error is not None:
        return False
    haystack = sent.haystack()
    if expect.contains is not None and expect.contains not in haystack:
        return False
    if expect.not_contains is not None and expect.not_contains in haystack:
        return False
    return expect.equals is None or sent.text.strip() == expect.equals.strip()


@dataclass(frozen=True, slots=True)
class Causes:
    """Why a test failed: by expectation index and by index of what was sent."""

    expected: Mapping[int, str]
    got: Mapping[int, str]

    def __bool__(self) -> bool:
        return bool(self.expected or self.got)


def causes(expected: Sequence[Expectation], got: Sequence[Sent]) -> Causes:
    """Each expectation takes one notification; what is left over on either side fails."""
    bad_got = {j: f"rule {s.rule}: template failed for sink {s.sink}: {s.error}"
               for j, s in enumerate(got) if s.error is not None}
    unused = [j for j, s in enumerate(got) if s.error is None]
    bad_expected: dict[int, str] = {}
    for i, expect in enumerate(expected):
        match = next((j for j in unused if _satisfies(got[j], expect)), None)
        if match is None:
            bad_expected[i] = f"{expect.sink}: no notification {_describe(expect)}"
        else:
            unused.remove(match)
    for j in unused:
        bad_got[j] = (f"{got[j].sink}: unexpected notification from rule {got[j].rule} "
                      "(no expectation took it)")
    return Causes(expected=bad_expected, got=bad_got)


def compare(expected: Sequence[Expectation], got: Sequence[Sent]) -> list[str]:
    """Why `got` does not match `expected`, one line per cause."""
    found = causes(expected, got)
    return [*found.got.values(), *found.expected.values()]


def _describe(expect: Expectation) -> str:
    parts = []
    if expect.contains is not None:
        parts.append(f"containing {expect.contains!r}")
    if expect.not_contains is not None:
        parts.append(f"without {expect.not_contains!r}")
    if expect.equals is not None:
        parts.append(f"equal to {expect.equals!r}")
    return " and ".join(parts) if parts else "at all"


def _expected_lines(expected: Sequence[Expectation]) -> list[tuple[int, str]]:
    """The expected side of the diff: (index of the expectation, line)."""
    lines: list[tuple[int, str]] = []
    for i, expect in enumerate(expected):
        if expect.equals is not None:
            lines.extend((i, f"[{expect.sink}] {line}")
                         for line in (expect.equals.strip().splitlines() or [""]))
            continue
        conditions = []
        if expect.contains is not None:
            conditions.append(f"contains {expect.contains!r}")
        if expect.not_contains is not None:
            conditions.append(f"not contains {expect.not_contains!r}")
        lines.append((i, f"[{expect.sink}] ({', '.join(conditions) or 'any message'})"))
    return lines


def _got_lines(got: Sequence[Sent]) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    for j, sent in enumerate(got):
        text = f"(template error: {sent.error})" if sent.error else sent.text.strip()
        lines.extend((j, f"[{sent.sink}] {line}") for line in (text.splitlines() or [""]))
    return lines


def diff(expected: Sequence[Expectation], got: Sequence[Sent]) -> list[str]:
    """A whole-text diff (`-` expected, `+` got) with each failure's cause written under
    the lines it is about (`   ^ cause`), so the reason sits where the mismatch shows."""
    found = causes(expected, got)
    left, right = _expected_lines(expected), _got_lines(got)
    last_left = {i: n for n, (i, _) in enumerate(left)}
    last_right = {j: n for n, (j, _) in enumerate(right)}
    out = ["--- expected", "+++ got"]

    def emit(mark: str, text: str, a: int | None, b: int | None) -> None:
        out.append(mark + text)
        if a is not None and last_left[left[a][0]] == a and left[a][0] in found.expected:
            out.append(f"   ^ {found.expected[left[a][0]]}")
        if b is not None and last_right[right[b][0]] == b and right[b][0] in found.got:
            out.append(f"   ^ {found.got[right[b][0]]}")

    matcher = difflib.SequenceMatcher(a=[t for _, t in left], b=[t for _, t in right],
                                      autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            for k in range(a1 - a0):
                emit(" ", left[a0 + k][1], a0 + k, b0 + k)
            continue
        for a in range(a0, a1):
            emit("-", left[a][1], a, None)
        for b in range(b0, b1):
            emit("+", right[b][1], None, b)
    return out


async def _run_one(test: RuleTest, index: int, config: Config, stages: Chain,
                   out: TextIO) -> bool:
    try:
        event = event_from_data(test.event, config, default_id=f"evt_test_{index}")
    except (ValueError, KeyError, TypeError) as exc:
        out.write(f"FAIL  {test.name}\n      not a valid event: {reason(exc)}\n")
        return False
    # The event's own time (`at`, default the fixed sample time) is the clock, so a test can
    # place an event inside or outside a maintenance window.
    got = await outputs(stages, event, event.at)
    if not causes(test.expect, got):
        out.write(f"PASS  {test.name}\n")
        return True
    out.write(f"FAIL  {test.name}\n")
    for line in diff(test.expect, got):
        out.write(f"      {line}\n")
    return False


async def _run_all(config: Config, stages: Chain, out: TextIO) -> int:
    failed = 0
    for index, test in enumerate(config.tests):
        failed += not await _run_one(test, index, config, stages, out)
    return failed


def run_tests(config: Config, out: TextIO) -> int:
    """Run the config's `[[tests]]`; 0 when all pass, 1 on any failure."""
    if not config.tests:
        out.write(f"no [[tests]] in {config.path or 'the config'}\n")
        return 0
    try:
        stages = stages_for(config)
    except TemplateError as exc:
        out.write(f"{exc}\n")
        return 1
    failed = asyncio.run(_run_all(config, stages, out))
    total = len(config.tests)
    out.write(f"\n{total - failed} passed, {failed} failed\n")
    return 1 if failed else 0
