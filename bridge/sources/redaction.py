"""Keeping secrets out of what a source says: error messages built from URLs, exceptions and
the API's own error bodies. What counts as a secret and how it is masked is
`bridge.secrets`'; this adds what only requests need."""

from __future__ import annotations

from collections.abc import Collection

import aiohttp
from yarl import URL

from bridge.secrets import redact
from bridge.secrets import url_secrets as _url_secrets

__all__ = ["client_error_text", "redact", "url_secrets"]


def url_secrets(url: URL) -> tuple[str, ...]:
    """What a requested URL carries that must not be shown: its password (and the Basic
    credential made of it) and every query value, since an error may quote any of them."""
    return tuple(_url_secrets(str(url), every_query_value=True))


def client_error_text(exc: aiohttp.ClientError, secrets: Collection[str]) -> str:
    """An aiohttp connection error as text safe to show."""
    if isinstance(exc, aiohttp.InvalidURL):
        # Its text is the whole URL, credentials and all.
        return "invalid URL"
    return redact(str(exc) or type(exc).__name__, secrets)
