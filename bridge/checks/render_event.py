"""`bridge render`: what one rule would send for one event, per sink; nothing is sent.

The event runs through the pipeline's route stage (for a note when the rule would not
notify about it) and its render stage, with the event's own time as the clock. A template
reading a job field the event file does not give (it renders as empty) gets a warning:
each absent field is set to a marker in turn, and a change in the output shows it is read.
For a rule with `group_by`, the event then runs through the group stage: the digest of a
group of just this event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from bridge.checks.samples import event_from_data, reason, sample_event, source_for
from bridge.config.schema import Config, Rule
from bridge.errors import BridgeError, TemplateError
from bridge.model import Event, EventKind
from bridge.render import Renderer, compile_when
from bridge.rules import RuleBook
from bridge.stages import Batch, Chain, Context, Match, build_stages


class BadEventInput(BridgeError):
    """`bridge render` got no usable event (unreadable file or stdin, unknown kind)."""


def read_event(config: Config, *, event: str | None, sample: str | None, rule: str | None,
               stdin: TextIO) -> dict[str, Any]:
    """The event `bridge render` renders: `--sample [KIND]`, or `--event FILE` / `-` (stdin).
    Without a rule only `--sample` makes sense (it prints the sample)."""
    if sample is not None:
        try:
            return sample_data(config, sample or None, rule)
        except ValueError as exc:
            raise BadEventInput(str(exc)) from None
    if rule is None:
        names = ", ".join(r.name for r in config.rules) or "none"
        raise BadEventInput(f"give --rule NAME (rules: {names})")
    where = "stdin" if event == "-" else str(event)
    try:
        text = stdin.read() if event == "-" else Path(str(event)).read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise BadEventInput(f"{where}: cannot read the event: {exc}") from None
    if not isinstance(data, dict):
        raise BadEventInput(f"{where}: the event must be a JSON object")
    return data


def sample_data(config: Config, kind: str | None, rule_name: str | None) -> dict[str, Any]:
    """The sample event `bridge check` renders for `kind` (default: the rule's own), as the
    JSON an `--event` file holds. Raises ValueError for an unknown kind or rule."""
    rule = next((r for r in config.rules if r.name == rule_name), None)
    if rule_name is not None and rule is None:
        raise ValueError(_no_rule(config, rule_name))
    if kind:
        try:
            on = EventKind(kind)
        except ValueError:
            raise ValueError(f"no event kind {kind!r} (kinds: "
                             f"{', '.join(k.value for k in EventKind)})") from None
    elif rule is not None:
        on = rule.on
    else:
        raise ValueError("--sample needs a KIND without --rule (e.g. --sample transition)")
    return sample_event(on, source=source_for(config, rule), rule=rule).as_dict()


def _no_rule(config: Config, rule_name: str) -> str:
    names = ", ".join(r.name for r in config.rules) or "none"
    return f"no rule named {rule_name!r} (rules: {names})"


def render_event(config: Config, rule_name: str, event: dict[str, Any], out: TextIO) -> int:
    """Print what `rule_name` would send for `event`, per sink; nothing is sent."""
    rule = next((r for r in config.rules if r.name == rule_name), None)
    if rule is None:
        out.write(_no_rule(config, rule_name) + "\n")
        return 1
    try:
        parsed = event_from_data(event, config, default_id="evt_render")
        stages = build_stages(config, RuleBook([rule], compile_when),
                              Renderer(config, strict=False))
    except (ValueError, KeyError, TypeError) as exc:
        out.write(f"not a valid event: {reason(exc)}\n")
        return 1
    except TemplateError as exc:
        out.write(f"{exc}\n")
        return 1
    return asyncio.run(_render(config, stages, rule, parsed, out, event))


async def _unset_fields_read(stages: Chain, ctx: Context, rule: Rule, event: Event,
                             payloads: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """The optional job fields absent from the event data whose value the output shows."""
    job = event.job
    if job is None:
        return []
    raw = given.get("job")
    written: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    read = []
    for name, marker in _MARKERS.items():
        if name in written or getattr(job, name) is not None:
            continue
        marked = dataclasses.replace(event, job=dataclasses.replace(job, **{name: marker}))
        batch = await stages.get("render").run(
            ctx, Batch(matches=(Match(event=marked, rule=rule),)))
        if {n.sink: n.payload for n in batch.notifications} != payloads:
            read.append(name)
    return read


# A value per optional job field that no template shows by accident.
_MARKERS: dict[str, Any] = {"message": "\u2063marker\u2063", "url": "https://marker.invalid/",
                            "progress": 42.4242, "failed_items": 424242}


async def _render(config: Config, stages: Chain, rule: Rule, event: Event, out: TextIO,
                  given: Mapping[str, Any]) -> int:
    ctx = Context(source=event.source, now=event.at)
    routed = await stages.get("route").run(ctx, Batch(events=(event,)))
    if not routed.matches:
        why = routed.skipped[0].decision.describe() if routed.skipped else (
            f"rule {rule.name}: FILTERED by on: event is {event.on}, rule wants {rule.on}")
        out.write(f"note: {why}; this rule would not notify about this event. "
                  "Showing what it would send if it did.\n\n")
    batch = await stages.get("render").run(ctx, Batch(matches=(Match(event=event, rule=rule),)))
    payloads = {n.sink: n.payload for n in batch.notifications}
    errors = {f.sink: f.error for f in batch.failures}
    unset = await _unset_fields_read(stages, ctx, rule, event, payloads, given)
    if unset:
        out.write(f"warning: the event has no {', '.join('job.' + f for f in unset)}; the "
                  "template reads "
                  f"{'it' if len(unset) == 1 else 'them'} (rendered as empty here: add "
                  f"{'it' if len(unset) == 1 else 'them'} to the event to see the real "
                  "message)\n\n")
    for name in rule.notify:
        out.write(f"── {name} ({config.sink(name).kind}) ──\n")
        if name in errors:
            out.write(f"error: {errors[name]}\n\n")
            continue
        out.write(_show(payloads[name]) + "\n\n")
    failed = bool(errors)
    if rule.grouped:
        failed = await _render_digest(config, stages, rule, event, ctx, out) or failed
    out.write("(nothing was sent)\n")
    return 1 if failed else 0


async def _render_digest(config: Config, stages: Chain, rule: Rule, event: Event, ctx: Context,
                         out: TextIO) -> bool:
    """A grouped rule sends the above only as thread replies; its messages are digests.
    Shows the digest of a group holding just this event (its first flush); True on errors."""
    batch = await stages.get("group").run(ctx, Batch(matches=(Match(event=event, rule=rule),)))
    digests = {n.sink: n.payload for n in batch.notifications}
    errors = {f.sink: f.error for f in batch.failures}
    for name in rule.notify:
        out.write(f"── {name} ({config.sink(name).kind}): digest of a group of this event "
                  f"({rule.group_template}) ──\n")
        if name in errors:
            out.write(f"error: {errors[name]}\n\n")
            continue
        replies = digests[name].get("replies")
        thread = f"\n\n(+ {len(replies)} thread reply: the message above)" if replies else ""
        out.write(_show(digests[name]) + thread + "\n\n")
    return bool(errors)


def _show(payload: Mapping[str, Any]) -> str:
    if isinstance(payload.get("body"), str):
        return json.dumps(json.loads(payload["body"]), indent=2, ensure_ascii=False)
    if isinstance(payload.get("blocks"), list):
        blocks = json.dumps(payload["blocks"], indent=2, ensure_ascii=False)
        return f"{payload.get('text', '')}\n\nblocks:\n{blocks}"
    return str(payload.get("text", ""))
