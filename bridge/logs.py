"""Logging setup: text lines for a terminal or JSON lines for a collector, secrets redacted.

`setup_logging` installs one stderr handler on the root logger with a `RedactingFilter`.
The filter replaces every configured secret (the `SecretStr` values of the config, found by
`secret_values`, plus the secret parts of URLs, found by `secret_fragments`) with `***` in the
message, its arguments, extra context and tracebacks, so a secret that leaks into an exception
message from a library still never reaches the log.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, SecretStr

from bridge.errors import ConfigError

LogFormat = Literal["text", "json"]

MASK = "***"
# Shorter values would mask ordinary words and numbers all over the output; no real
# credential is this short.
MIN_SECRET_LENGTH = 4

_LEVELS = ("debug", "info", "warning", "error", "critical")
# Attributes every LogRecord has; anything else on a record came from `extra=` context.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}


def secret_values(*models: object) -> frozenset[str]:
    """Every `SecretStr` value inside the given config models (nested models, lists, dicts)."""
    found: set[str] = set()
    for model in models:
        _collect_secrets(model, found)
    return frozenset(s for s in found if len(s) >= MIN_SECRET_LENGTH)


def _collect_secrets(value: object, found: set[str]) -> None:
    if isinstance(value, SecretStr):
        found.add(value.get_secret_value())
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _collect_secrets(getattr(value, name), found)
    elif isinstance(value, Mapping):
        for item in value.values():
            _collect_secrets(item, found)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _collect_secrets(item, found)


_CREDENTIAL_KEY = re.compile(r"token|key|secret|pass|auth|sig|credential|session|code", re.I)


def secret_fragments(*models: object) -> frozenset[str]:
    """Parts of config URLs that are secrets on their own, for text that shows a URL only in
    part: the path, query and password of a secret URL (a Slack incoming webhook's secret is
    its path), and the password, its Basic credential and credential-like query values
    (`?token=`) of any other URL."""
    found: set[str] = set()
    for model in models:
        _collect_fragments(model, found, secret=False)
    return frozenset(s for s in found if len(s) >= MIN_SECRET_LENGTH)


def _collect_fragments(value: object, found: set[str], *, secret: bool) -> None:
    if isinstance(value, SecretStr):
        _collect_fragments(value.get_secret_value(), found, secret=True)
    elif isinstance(value, str):
        found.update(_url_fragments(value, whole_secret=secret))
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _collect_fragments(getattr(value, name), found, secret=secret)
    elif isinstance(value, Mapping):
        for item in value.values():
            _collect_fragments(item, found, secret=secret)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _collect_fragments(item, found, secret=secret)


def _url_fragments(text: str, *, whole_secret: bool) -> list[str]:
    if "://" not in text:
        return []
    try:
        parts = urlsplit(text)
        user, password = parts.username or "", parts.password
    except ValueError:
        return []
    # Every value of a secret URL; elsewhere only credential-like ones, or a plain
    # `?format=json` would mask "json" in every line.
    found = [value for key, value in parse_qsl(parts.query)
             if whole_secret or _CREDENTIAL_KEY.search(key)]
    if password:
        found += [password, base64.b64encode(f"{user}:{password}".encode()).decode()]
    if whole_secret:
        found += [parts.path, parts.query]
    return found


class Redactor:
    """Replaces known secret strings with `***`; longest first so overlapping secrets mask fully."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: tuple[str, ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        merged = set(self._secrets) | {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._secrets)

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


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in everything a record will print."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redactor = Redactor(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        self.redactor.update(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redactor:
            return True
        redact = self.redactor.redact
        # Format now, so a secret passed as a %-argument is masked too.
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS:
                record.__dict__[key] = self.redactor.redact_value(value)
        return True


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the `extra=` context, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`10:00:00.123 INFO  bridge.pipeline: message key=value`, readable in a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).astimezone()
        line = (
            f"{when:%Y-%m-%d %H:%M:%S}.{int(record.msecs):03d} {record.levelname:<7} "
            f"{record.name}: {record.getMessage()}"
        )
        context = _context(record)
        if context:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in context.items())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


def _text_value(value: object) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() for c in text) else text


def parse_level(level: str) -> int:
    name = level.strip().lower()
    if name not in _LEVELS:
        raise ConfigError(
            f"unknown log level {level!r}; use one of: {', '.join(_LEVELS)}", path="--log-level"
        )
    return logging.getLevelNamesMapping()[name.upper()]


class _BridgeHandler(logging.StreamHandler[TextIO]):
    """Marks the handler this module installed, so a second setup replaces it."""


def setup_logging(
    level: str = "info",
    fmt: str = "text",
    config: BaseModel | None = None,
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> RedactingFilter:
    """Send every log record to stderr (or `stream`) in `fmt` ("text" or "json"), masking the
    config's `SecretStr` values and `secrets`.

    Returns the filter, so the caller can `add_secrets` later (the HTTP server adds the admin
    token). Calling it again replaces the previous bridge handler instead of doubling lines.
    """
    if fmt not in ("text", "json"):
        raise ConfigError(f"unknown log format {fmt!r}; use text or json", path="--log-format")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _BridgeHandler):
            root.removeHandler(handler)
            handler.close()
    handler = _BridgeHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    redacting = RedactingFilter(secrets)
    if config is not None:
        redacting.add_secrets(secret_values(config) | secret_fragments(config))
    handler.addFilter(redacting)
    root.addHandler(handler)
    root.setLevel(parse_level(level))
    return redacting


def installed_filter() -> RedactingFilter | None:
    """The redacting filter of the handler `setup_logging` installed, if any."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _BridgeHandler):
            for flt in handler.filters:
                if isinstance(flt, RedactingFilter):
                    return flt
    return None

