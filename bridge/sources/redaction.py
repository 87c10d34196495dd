"""Keeping secrets out of what a source says: error messages built from URLs, exceptions and
the API's own error bodies."""

from __future__ import annotations

from collections.abc import Collection

import aiohttp
from yarl import URL

# Secrets shorter than this are not redacted: replacing "1" everywhere would garble messages.
MIN_SECRET_LEN = 4


def redact(text: str, secrets: Collection[str]) -> str:
    """`text` with every secret replaced by `***`, longest first so overlaps go too."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_LEN:
            text = text.replace(secret, "***")
    return text


def url_secrets(url: URL) -> tuple[str, ...]:
    """What a URL carries that must not be shown: its password (and the Basic credential
    aiohttp makes of it) and its query values (`?token=...`)."""
    found = [value for value in url.query.values() if len(value) >= MIN_SECRET_LEN]
    if url.password:
        found.append(url.password)
        found.append(aiohttp.encode_basic_auth(url.user or "", url.password).split(" ", 1)[1])
    if found:
        found.append(str(url))
    return tuple(found)


def client_error_text(exc: aiohttp.ClientError, secrets: Collection[str]) -> str:
    """An aiohttp connection error as text safe to show."""
    if isinstance(exc, aiohttp.InvalidURL):
        # Its text is the whole URL, credentials and all.
        return "invalid URL"
    return redact(str(exc) or type(exc).__name__, secrets)
