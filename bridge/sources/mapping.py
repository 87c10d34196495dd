"""Raw API states as canonical ones: the text users match in `[sources.states]`, and a
mapper that warns once per value it cannot map."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from bridge.model import JobState
from bridge.sources.base import map_state

log = logging.getLogger(__name__)

# An API inventing endless distinct states must not grow this memory (or the log) forever.
MAX_WARNED_STATES = 100


class StateMapper:
    """A source's raw -> canonical state table; warns once per unmapped raw value."""

    def __init__(
        self, source: str, defaults: Mapping[str, JobState], overrides: Mapping[str, JobState]
    ) -> None:
        self.source = source
        self.defaults = defaults
        self.overrides = overrides
        self._warned: set[str] = set()

    def __call__(self, raw: str) -> JobState:
        state = map_state(raw, self.defaults, self.overrides)
        known = raw in self.overrides or raw in self.defaults
        if not known and raw not in self._warned and len(self._warned) < MAX_WARNED_STATES:
            self._warned.add(raw)
            log.warning(
                "source %s reported the unmapped state %r: treating it as unknown; "
                "map it in [sources.states]%s", self.source, raw[:200],
                "" if len(self._warned) < MAX_WARNED_STATES
                else " (further unmapped states of this source are not logged)",
            )
        return state


def raw_text(value: object) -> str:
    """A raw API value as the text users match in `[sources.states]` and see as raw_state."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, sort_keys=True)
