"""The sink kinds, listed explicitly: `kind` in rules.toml -> one `SinkKind` entry.

Each entry names the kind's config model (one arm of the discriminated union on `kind` the
loader validates with), its factory and its capabilities. Adding a kind is a model, a
module and one entry here (README "How to add a sink kind"); nothing is discovered by
scanning files.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from bridge.config.schema import SinkBase, SlackSink, WebhookSink
from bridge.errors import ConfigError
from bridge.sinks import slack, webhook
from bridge.sinks.base import PayloadShape, Sink, SinkCapabilities, SinkKind
from bridge.store.base import Store

__all__ = ["SINK_KINDS", "PayloadShape", "Sink", "SinkCapabilities", "SinkKind", "build_sink",
           "sink_capabilities", "sink_kind"]

SINK_KINDS: dict[str, SinkKind[Any]] = {
    "slack": SinkKind(model=SlackSink, factory=slack.SlackNotifier,
                      capabilities=slack.capabilities),
    "webhook": SinkKind(model=WebhookSink, factory=webhook.build,
                        capabilities=SinkCapabilities(payload=PayloadShape.WEBHOOK)),
}


def sink_kind(config: SinkBase) -> SinkKind[Any]:
    """The registry entry of a validated `[[sinks]]` table; ConfigError for an unknown kind
    or a table that is not the kind's model (built by hand rather than by the loader)."""
    entry = SINK_KINDS.get(config.kind)
    if entry is None:
        known = ", ".join(SINK_KINDS)
        raise ConfigError(f"sink {config.name!r}: unknown kind {config.kind!r} (known: {known})",
                          path="kind")
    if not isinstance(config, entry.model):
        raise ConfigError(f"sink {config.name!r}: kind {config.kind!r} needs a "
                          f"{entry.model.__name__} config, got {type(config).__name__}",
                          path="kind")
    return entry


def build_sink(config: SinkBase, session: aiohttp.ClientSession, store: Store) -> Sink:
    """Make the sink `config.kind` names; raises ConfigError for an unknown kind."""
    return sink_kind(config).factory(config, session, store)


def sink_capabilities(config: SinkBase) -> SinkCapabilities:
    """What the delivery worker may rely on for this sink."""
    return sink_kind(config).capabilities_of(config)
