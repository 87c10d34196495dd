"""The one secret registry: which strings must never be shown, and how they are masked.

Every place that shows text a secret could reach masks through this module, with one rule
for what is long enough to mask (`maskable`) and one mask (`***`):

- log lines (`bridge.logs.RedactingFilter`), HTTP responses (`bridge.server.app`), config
  errors and `bridge check` / `test` / `render` output (`bridge.cli`) mask with `REGISTRY`,
  the process's secrets: the CLI registers the loaded config's, the HTTP server the admin
  token;
- sources and sinks mask the error messages they build with `redact(text, their_secrets)`,
  since some of theirs are not in any config (an OAuth2 access token issued a moment ago,
  the credentials in a URL a server redirected to);
- the loader masks validation messages with `raw_secrets(data)`, before a Config exists.

A secret is masked together with the parts of it that are secrets on their own
(`secret_parts`): a `whsec_` key without its prefix; a URL's path and query (a Slack
incoming webhook's secret is its path), query values, password and the Basic credential
made of it.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, SecretStr

MASK = "***"
# Shorter values would mask ordinary words and numbers all over the output; no real
# credential is this short.
MIN_LENGTH = 4
_SIGNING_PREFIX = "whsec_"
# Query keys that carry credentials in a URL that is not itself a secret: only their values
# are masked, or a plain `?format=json` would mask "json" in every line.
_CREDENTIAL_KEY = re.compile(r"token|key|secret|pass|auth|sig|credential|session|code", re.I)


def maskable(value: str) -> bool:
    """Long enough to mask; a bare `whsec_` prefix holds no key (and masking it would garble
    every hint that names the prefix)."""
    return len(value.removeprefix(_SIGNING_PREFIX)) >= MIN_LENGTH


def url_secrets(url: str, *, every_query_value: bool = False) -> list[str]:
    """What a URL carries that must not be shown: its password and the Basic credential
    made of it, and its credential-like query values (`?token=`); every query value with
    `every_query_value` (a URL bridge requests, whose error text may quote any of them)."""
    if "://" not in url:
        return []
    try:
        parts = urlsplit(url)
        user, password = parts.username or "", parts.password
    except ValueError:
        return []
    found = [value for key, value in _query_pairs(parts.query)
             if every_query_value or _CREDENTIAL_KEY.search(key)]
    if password:
        found += [password, *_basic_credentials(user, password)]
    return [s for s in found if maskable(s)]


def _basic_credentials(user: str, password: str) -> set[str]:
    # aiohttp encodes `user:password` as latin-1, other clients as UTF-8.
    found = {base64.b64encode(f"{user}:{password}".encode()).decode()}
    with contextlib.suppress(UnicodeEncodeError):
        found.add(base64.b64encode(f"{user}:{password}".encode("latin-1")).decode())
    return found


def _query_pairs(query: str) -> list[tuple[str, str]]:
    # Decoded and as written: an error may quote either form.
    raw = [pair.split("=", 1) for pair in query.split("&") if "=" in pair]
    return [*parse_qsl(query), *((k, v) for k, v in raw)]


def secret_parts(secret: str) -> list[str]:
    """`secret` and the parts of it that are secrets on their own."""
    found = [secret]
    if secret.startswith(_SIGNING_PREFIX):
        found.append(secret.removeprefix(_SIGNING_PREFIX))
    if "://" in secret:
        try:
            parts = urlsplit(secret)
        except ValueError:
            return found
        found += [parts.path, parts.query, *url_secrets(secret, every_query_value=True)]
    return [s for s in found if maskable(s)]


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (and every part of it that is one) replaced by `***`,
    longest first so overlapping secrets are masked whole."""
    for secret in _ordered(p for s in secrets for p in secret_parts(s)):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _ordered(secrets: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({s for s in secrets if maskable(s)}, key=len, reverse=True))


def redact_url(url: str) -> str:
    """`scheme://host/…`: enough to tell two secret URLs apart, never credentials, paths or
    queries (for sink URLs, which are secrets whole)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not host:
        return "<invalid URL>"
    return f"{parts.scheme}://{host}{port}/…"


def hide_password(url: str) -> str:
    """The URL with its password replaced by `***` (a database URL in a message)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", rf"\1{MASK}@", url)


# --- what a config holds --------------------------------------------------------------------


def secret_values(*models: object) -> frozenset[str]:
    """Every `SecretStr` value inside the given config models (nested models, lists, dicts),
    whole: what the user wrote."""
    found: set[str] = set()
    for model in models:
        _walk(model, found, parts=False)
    return frozenset(s for s in found if maskable(s))


def config_secrets(*models: object) -> frozenset[str]:
    """What to mask for these config models: every `SecretStr` value with its parts, and the
    credentials in every other URL (an `http` source's `user:password@` or `?token=`)."""
    found: set[str] = set()
    for model in models:
        _walk(model, found, parts=True)
    return frozenset(s for s in found if maskable(s))


def _walk(value: object, found: set[str], *, parts: bool) -> None:
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        found.update(secret_parts(secret) if parts else [secret])
    elif isinstance(value, str):
        if parts:
            found.update(url_secrets(value))
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _walk(getattr(value, name), found, parts=parts)
    elif isinstance(value, Mapping):
        for item in value.values():
            _walk(item, found, parts=parts)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _walk(item, found, parts=parts)


def raw_secrets(data: Any, keys: Iterable[str]) -> frozenset[str]:
    """The secrets in raw config data (before validation): the string values of `keys`
    anywhere in it, with their parts. Validation messages quote input (a secret pasted into
    `timeout` would be echoed back), so they are masked with these."""
    wanted = frozenset(keys)
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in wanted and isinstance(item, str):
                    found.update(secret_parts(item))
                elif isinstance(item, str):
                    found.update(url_secrets(item))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return frozenset(found)


# --- the process's registry -----------------------------------------------------------------


class SecretRegistry:
    """A set of secrets and `redact` over them. `REGISTRY` is the process's own."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these from now on, each with its parts."""
        merged = {*self._secrets, *(p for s in secrets for p in secret_parts(s))}
        self._secrets = _ordered(merged)

    def add_config(self, *models: object) -> None:
        """Mask every secret of these config models (see `config_secrets`)."""
        self.add(config_secrets(*models))

    def clear(self) -> None:
        self._secrets = ()

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __contains__(self, secret: object) -> bool:
        return secret in self._secrets

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def redact_value(self, value: Any) -> Any:
        """Redact strings inside plain data (str, mappings, sequences); other values pass."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {k: self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_value(v) for v in value]
        return value


REGISTRY = SecretRegistry()
