"""The error tree. Every failure bridge raises is a BridgeError; its type says what to do.

    BridgeError
    ├── ConfigError            bad rules.toml: file, path and line, with what was expected
    ├── SourceError            a poll failed; the source is marked down
    │   ├── SourceUnavailable  retryable: timeout, connection, 5xx, 429, bad JSON, schema drift
    │   │   └── RateLimited    a 429 still refused after waiting it out (its headers kept)
    │   └── SourceMisconfigured permanent until the config changes: 401, 403, 412, wrong cluster
    ├── DeliveryError          a sink could not deliver; the outbox decides what next
    │   ├── RetryableDelivery  408, 425, 429, 5xx, connection errors: try again later
    │   └── PermanentDelivery  other 4xx, invalid payload: dead-letter at once
    ├── TemplateError          a template failed to compile or render (including sandbox refusals)
    └── StoreError             the state store is unreachable, locked, corrupt or full
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType


class BridgeError(Exception):
    """Root of every error bridge raises on purpose."""


class ConfigError(BridgeError):
    """One problem in a config file, located as `file:line: path: message`."""

    def __init__(self, message: str, *, file: str = "", line: int | None = None, path: str = ""):
        self.file = file
        self.line = line
        self.path = path
        self.detail = message
        super().__init__(self.render())

    def render(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        what = f"{self.path}: {self.detail}" if self.path else self.detail
        return f"{where}: {what}"


class ConfigErrors(BridgeError):
    """Every problem found in one config, reported together so the user fixes them in one go."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__("\n".join(e.render() for e in errors))


class SourceError(BridgeError):
    """A poll failed. The source is marked down; jobs are neither changed nor vanished."""

    retry_after: float | None = None

    def __init__(self, message: str, *, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


class SourceUnavailable(SourceError):
    """A passing failure (timeout, 5xx, 429, malformed answer): retried with backoff."""


class RateLimited(SourceUnavailable):
    """HTTP 429. `headers` are the answer's, for the rate-limit budget they announce."""

    headers: Mapping[str, str] = MappingProxyType({})


class SourceMisconfigured(SourceError):
    """The source rejects our request as configured (credentials, tenant, cluster)."""


class DeliveryError(BridgeError):
    """A sink failed to deliver a notification."""

    retryable: bool = False

    def __init__(self, message: str, *, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


class RetryableDelivery(DeliveryError):
    retryable = True


class PermanentDelivery(DeliveryError):
    retryable = False


class TemplateError(BridgeError):
    """A template could not be compiled or rendered."""


class StoreError(BridgeError):
    """The state store failed; the message says which database and what to check."""
