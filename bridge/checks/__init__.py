"""The commands that look at a config without running it: check, test, render.

- `check` (bridge.checks.check): templates and `when`s against sample events;
- `run_tests` (bridge.checks.rule_tests): the config's `[[tests]]` through the stages;
- `render_event` (bridge.checks.render_event): one rule, one event, per sink;
- sample events and events from data (bridge.checks.samples), with the fixed clock.
"""

from __future__ import annotations

from bridge.checks.check import check
from bridge.checks.render_event import render_event
from bridge.checks.rule_tests import Sent, compare, diff, outputs, run_tests
from bridge.checks.samples import FIXED_NOW, event_from_data, sample_event

__all__ = [
    "FIXED_NOW", "Sent", "check", "compare", "diff", "event_from_data", "outputs",
    "render_event", "run_tests", "sample_event",
]
