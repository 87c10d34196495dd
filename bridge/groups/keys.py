"""The key of an event in a rule's groups: its `group_by` fields, read as templates read them.

`source`, `rule`, `on`, `from`, `to`, `reason` are the event's own names; a dotted name walks
into the job (`job.state`, `job.fields.priority`). A field the event lacks is null: a source
event and a job event grouped by `job.state` land in different groups, never in an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from bridge.config.schema import Rule
from bridge.groups.model import key_text
from bridge.model import Event
from bridge.rules import event_context


def group_key(rule: Rule, event: Event) -> str:
    """The stored key of `event`'s group under `rule` (a rule with `group_by`)."""
    context = event_context(event, rule.name)
    return key_text({name: _scalar(_lookup(context, name)) for name in rule.group_by or ()})


def _lookup(context: Mapping[str, Any], dotted: str) -> Any:
    head, *rest = dotted.split(".")
    value: Any = context.get(head)
    for part in rest:
        if value is None:
            return None
        value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
    return value


def _scalar(value: Any) -> str | int | float | bool | None:
    if isinstance(value, Enum):
        return str(value.value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
