"""Warnings `bridge check` prints for configs that are valid but will not tell anyone.

A warning does not fail the check (exit 0): the config works, it only keeps quiet where a
newcomer expects to hear something. Today: a polled source whose going down (wrong
credentials, a base_url that does not answer) no `source_down` rule reports.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from bridge.config.loader import locate
from bridge.config.schema import Config
from bridge.errors import ConfigError
from bridge.model import EventKind
from bridge.sources import source_kind


def warnings(config: Config) -> list[ConfigError]:
    """One located warning per polled source no `source_down` rule matches."""
    found: list[ConfigError] = []
    watched = [r.source for r in config.rules if r.on is EventKind.SOURCE_DOWN]
    sink = config.sinks[0].name if config.sinks else "ops-slack"
    for index, source in enumerate(config.sources):
        if not source_kind(source).capabilities.polled:
            continue
        if any(fnmatchcase(source.name, pattern) for pattern in watched):
            continue
        found.append(locate(config, f"sources[{index}]", (
            f"warning: no rule has on = \"source_down\" for source {source.name!r}: wrong "
            "credentials or an unreachable base_url would go unnoticed; add "
            "[[rules]] name = \"source-down\", on = \"source_down\", "
            f"template = \"source_down.slack.j2\", notify = [\"{sink}\"]")))
    return found
