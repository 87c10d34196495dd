"""The source kinds, listed explicitly: `kind` in rules.toml -> the class that polls it.

Adding a kind means a module in this package, a config model in `bridge.config.schema`
and one line in `SOURCE_FACTORIES`; nothing is discovered by scanning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import aiohttp

from bridge.config.schema import (
    EsalesSource,
    HttpSource,
    JtlSource,
    PushSource,
    SourceBase,
    TerminalSource,
    ZendeskSource,
)
from bridge.errors import ConfigError
from bridge.sources.base import Source
from bridge.sources.esales import EsalesImports
from bridge.sources.http import HttpJobs
from bridge.sources.jtl import JtlWorkers
from bridge.sources.push import PushedJobs
from bridge.sources.terminal import TerminalSyncs
from bridge.sources.zendesk import ZendeskJobs

__all__ = ["SOURCE_FACTORIES", "Source", "SourceFactory", "build_source"]

SourceFactory = Callable[[SourceBase, aiohttp.ClientSession], Source]
_C = TypeVar("_C", bound=SourceBase)


def _factory(model: type[_C], make: Callable[[_C, aiohttp.ClientSession], Source]
             ) -> SourceFactory:
    def build(config: SourceBase, session: aiohttp.ClientSession) -> Source:
        if not isinstance(config, model):
            raise ConfigError(f"kind {config.kind!r} needs a {model.__name__} config, "
                              f"got {type(config).__name__}", path=f"sources.{config.name}")
        return make(config, session)

    return build


SOURCE_FACTORIES: dict[str, SourceFactory] = {
    "jtl": _factory(JtlSource, JtlWorkers),
    "terminal": _factory(TerminalSource, TerminalSyncs),
    "esales": _factory(EsalesSource, EsalesImports),
    "zendesk": _factory(ZendeskSource, ZendeskJobs),
    "http": _factory(HttpSource, HttpJobs),
    "push": _factory(PushSource, PushedJobs),
}


def build_source(config: SourceBase, session: aiohttp.ClientSession) -> Source:
    """The ready-to-poll source for one `[[sources]]` table, sharing `session`.

    Raises ConfigError for an unknown kind or an invalid JMESPath expression."""
    factory = SOURCE_FACTORIES.get(config.kind)
    if factory is None:
        known = ", ".join(sorted(SOURCE_FACTORIES))
        raise ConfigError(f"unknown source kind {config.kind!r} (known: {known})",
                          path=f"sources.{config.name}.kind")
    return factory(config, session)
