"""Logging setup: text lines for a terminal or JSON lines for a collector, secrets redacted.

`setup_logging` installs one stderr handler on the root logger with a `RedactingFilter`.
The filter masks every secret the process's `bridge.secrets.REGISTRY` knows (the config's
`SecretStr` values and URL credentials, the admin token) in the message, its arguments,
extra context and tracebacks, so a secret that leaks into an exception message from a
library still never reaches the log.

Records about one source or one sink carry it as context (`source=`, `sink=`): modules log
through `for_source(log, name)` / `for_sink(log, name)`, LoggerAdapters that add it, so a
JSON collector can filter on the key instead of parsing messages.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, MutableMapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from pydantic import BaseModel

from bridge.errors import ConfigError
from bridge.secrets import REGISTRY, SecretRegistry

LogFormat = Literal["text", "json"]

_LEVELS = ("debug", "info", "warning", "error", "critical")
# Attributes every LogRecord has; anything else on a record came from `extra=` context.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}


class ContextLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose records carry its context, merged with any `extra=` of the call
    (Python 3.11's LoggerAdapter would replace that `extra` instead)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]
                ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def for_source(logger: logging.Logger, source: str) -> ContextLogger:
    return ContextLogger(logger, {"source": source})


def for_sink(logger: logging.Logger, sink: str) -> ContextLogger:
    return ContextLogger(logger, {"sink": sink})


class RedactingFilter(logging.Filter):
    """A handler filter that masks, in everything a record will print, the secrets of
    `registry` (the process's `REGISTRY` unless told otherwise)."""

    def __init__(self, secrets: Iterable[str] = (), *,
                 registry: SecretRegistry = REGISTRY) -> None:
        super().__init__()
        self.redactor = registry
        registry.add(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        self.redactor.add(secrets)

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
    """One JSON object per line: ts, level, logger, message, the `extra=` context, exc.

    Ours, not python-json-logger's: that one formats `record.exc_info` itself, ahead of the
    `exc_text` RedactingFilter masked, so a secret in a traceback would reach the log."""

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
    """Send every log record to stderr (or `stream`) in `fmt` ("text" or "json"), masking
    the secrets of `bridge.secrets.REGISTRY`, to which the config's and `secrets` are added.

    Returns the filter. Calling it again replaces the previous bridge handler instead of
    doubling lines.
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
        REGISTRY.add_config(config)
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

