"""The source kinds, listed explicitly: `kind` in rules.toml -> one `SourceKind` entry.

Each entry names the kind's config model (validated as one arm of the discriminated union
on `kind`, see `bridge.config.loader`), the factory that builds the source, and the
capabilities the rest of bridge asks about instead of the kind's name. Adding a kind is a
model, a module and one entry here (README "How to add a source kind"); nothing is
discovered by scanning.
"""

from __future__ import annotations

from typing import Any

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
from bridge.sources.base import Source, SourceCapabilities, SourceKind
from bridge.sources.esales import EsalesImports
from bridge.sources.http import HttpJobs
from bridge.sources.jtl import JtlWorkers
from bridge.sources.push import PushedJobs
from bridge.sources.terminal import TerminalSyncs
from bridge.sources.zendesk import ZendeskJobs

__all__ = ["SOURCE_KINDS", "Source", "SourceCapabilities", "SourceKind", "build_source",
           "source_kind"]

# In the order `bridge check` lists them.
SOURCE_KINDS: dict[str, SourceKind[Any]] = {
    "jtl": SourceKind(model=JtlSource, factory=JtlWorkers),
    "terminal": SourceKind(model=TerminalSource, factory=TerminalSyncs,
                           capabilities=SourceCapabilities(accepts_push=True)),
    "esales": SourceKind(model=EsalesSource, factory=EsalesImports),
    "zendesk": SourceKind(model=ZendeskSource, factory=ZendeskJobs),
    "http": SourceKind(model=HttpSource, factory=HttpJobs),
    "push": SourceKind(model=PushSource, factory=PushedJobs,
                       capabilities=SourceCapabilities(polled=False, accepts_push=True)),
}


def source_kind(config: SourceBase) -> SourceKind[Any]:
    """The registry entry of a validated `[[sources]]` table.

    Raises ConfigError when the kind is not registered or the table is not its model (a
    table built by hand rather than by the loader)."""
    entry = SOURCE_KINDS.get(config.kind)
    if entry is None:
        known = ", ".join(SOURCE_KINDS)
        raise ConfigError(f"unknown source kind {config.kind!r} (known: {known})",
                          path=f"sources.{config.name}.kind")
    if not isinstance(config, entry.model):
        raise ConfigError(f"kind {config.kind!r} needs a {entry.model.__name__} config, "
                          f"got {type(config).__name__}", path=f"sources.{config.name}")
    return entry


def build_source(config: SourceBase, session: aiohttp.ClientSession) -> Source:
    """The ready-to-poll source for one `[[sources]]` table, sharing `session`.

    Raises ConfigError for an unknown kind or an invalid JMESPath expression."""
    return source_kind(config).factory(config, session)
