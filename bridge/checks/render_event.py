"""`bridge render`: what one rule would send for one event, per sink; nothing is sent.

The event runs through the pipeline's route stage (for a note when the rule would not
notify about it) and its render stage, with the event's own time as the clock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, TextIO

from bridge.checks.samples import event_from_data, reason
from bridge.config.schema import Config, Rule
from bridge.errors import TemplateError
from bridge.model import Event
from bridge.render import Renderer, compile_when
from bridge.rules import RuleBook
from bridge.stages import Batch, Chain, Context, Match, build_stages


def render_event(config: Config, rule_name: str, event: dict[str, Any], out: TextIO) -> int:
    """Print what `rule_name` would send for `event`, per sink; nothing is sent."""
    rule = next((r for r in config.rules if r.name == rule_name), None)
    if rule is None:
        names = ", ".join(r.name for r in config.rules) or "none"
        out.write(f"no rule named {rule_name!r} (rules: {names})\n")
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
    return asyncio.run(_render(config, stages, rule, parsed, out))


async def _render(config: Config, stages: Chain, rule: Rule, event: Event, out: TextIO) -> int:
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
    for name in rule.notify:
        out.write(f"── {name} ({config.sink(name).kind}) ──\n")
        if name in errors:
            out.write(f"error: {errors[name]}\n\n")
            continue
        out.write(_show(payloads[name]) + "\n\n")
    out.write("(nothing was sent)\n")
    return 1 if errors else 0


def _show(payload: Mapping[str, Any]) -> str:
    if isinstance(payload.get("body"), str):
        return json.dumps(json.loads(payload["body"]), indent=2, ensure_ascii=False)
    if isinstance(payload.get("blocks"), list):
        blocks = json.dumps(payload["blocks"], indent=2, ensure_ascii=False)
        return f"{payload.get('text', '')}\n\nblocks:\n{blocks}"
    return str(payload.get("text", ""))
