"""The sink registry: every sink kind, listed explicitly, and `build_sink` to make one.

A new kind adds its module and one line to `SINK_FACTORIES` (and its config model to
`bridge.config.schema.SINK_KINDS`); nothing is discovered by scanning files.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from bridge.config.schema import SinkBase
from bridge.errors import ConfigError
from bridge.sinks import slack, webhook
from bridge.sinks.base import Sink
from bridge.store.base import Store

SinkFactory = Callable[[SinkBase, aiohttp.ClientSession, Store], Sink]


def _webhook(config: SinkBase, session: aiohttp.ClientSession, store: Store) -> Sink:
    del store  # webhooks remember nothing between notifications
    return webhook.build(config, session)


SINK_FACTORIES: dict[str, SinkFactory] = {
    "slack": slack.build,
    "webhook": _webhook,
}


def build_sink(config: SinkBase, session: aiohttp.ClientSession, store: Store) -> Sink:
    """Make the sink `config.kind` names; raises ConfigError for an unknown kind."""
    factory = SINK_FACTORIES.get(config.kind)
    if factory is None:
        known = ", ".join(sorted(SINK_FACTORIES))
        raise ConfigError(f"sink {config.name!r}: unknown kind {config.kind!r} (known: {known})",
                          path="kind")
    return factory(config, session, store)


__all__ = ["SINK_FACTORIES", "Sink", "SinkFactory", "build_sink"]
