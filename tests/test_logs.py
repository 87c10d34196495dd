"""Logging setup: JSON and text lines, levels, and secrets masked wherever they appear."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.config.loader import parse_config
from bridge.errors import ConfigError
from bridge.logs import RedactingFilter, for_sink, for_source, installed_filter, setup_logging
from bridge.model import DeliveryStatus
from bridge.secrets import secret_values
from bridge.simulators.webhook_receiver import WebhookReceiver
from tests.crash_support import eventually
from tests.hostile_support import Answer, HostileServer

CONFIG = """
[bridge]
admin_token = "admin-token-123456"

[[sources]]
name = "zd"
kind = "zendesk"
base_url = "http://127.0.0.1:1"
[sources.auth]
type = "basic"
username = "ops@example.com/token"
password = "zendesk-api-token-abcdef"

[[sources]]
name = "hooks"
kind = "push"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[sinks]]
name = "pager"
kind = "webhook"
url = "https://hooks.example.com/T000/very-secret-path"
secret = "whsec_c2lua3NlY3JldHNpbmtzZWNyZXQ="
"""

SINK_SECRET = "whsec_c29hay10ZXN0LXNlY3JldC0wMTIzNDU2Nzg5YWI="
SECRETS = (
    "admin-token-123456",
    "zendesk-api-token-abcdef",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "https://hooks.example.com/T000/very-secret-path",
    "whsec_c2lua3NlY3JldHNpbmtzZWNyZXQ=",
)


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def _setup(fmt: str, level: str = "info", **kwargs: object) -> io.StringIO:
    stream = io.StringIO()
    setup_logging(level, fmt, stream=stream, **kwargs)  # type: ignore[arg-type]
    return stream


def test_secret_values_finds_every_secretstr_in_the_config() -> None:
    config = parse_config(CONFIG, "rules.toml", env={})
    assert secret_values(config) == frozenset(SECRETS)


def test_secret_values_skips_values_too_short_to_mask_safely() -> None:
    config = parse_config(CONFIG.replace("admin-token-123456", "abc"), "rules.toml", env={})
    assert "abc" not in secret_values(config)


@pytest.mark.usefixtures("restore_root")
def test_json_lines_carry_ts_level_logger_message_and_context() -> None:
    stream = _setup("json")
    logging.getLogger("bridge.test").info("polled %s", "zd", extra={"source": "zd", "jobs": 3})
    entry = json.loads(stream.getvalue().strip())
    assert entry["level"] == "info"
    assert entry["logger"] == "bridge.test"
    assert entry["message"] == "polled zd"
    assert entry["source"] == "zd"
    assert entry["jobs"] == 3
    assert entry["ts"].endswith("+00:00")


@pytest.mark.usefixtures("restore_root")
def test_text_lines_show_level_logger_message_and_context() -> None:
    stream = _setup("text")
    logging.getLogger("bridge.test").warning("source down", extra={"source": "zd"})
    line = stream.getvalue().strip()
    assert "WARNING" in line
    assert "bridge.test: source down" in line
    assert line.endswith("source=zd")


@pytest.mark.usefixtures("restore_root")
def test_source_and_sink_loggers_add_their_context_to_the_call_s_own() -> None:
    stream = _setup("json")
    for_source(logging.getLogger("bridge.test"), "zd").warning("down", extra={"failures": 3})
    for_sink(logging.getLogger("bridge.test"), "pager").error("dead")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["source"], first["failures"], first["message"]) == ("zd", 3, "down")
    assert (second["sink"], second["message"]) == ("pager", "dead")
    assert "source" not in second


@pytest.mark.usefixtures("restore_root")
async def test_a_failed_poll_and_a_failed_delivery_log_their_source_and_sink(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # `bridge demo` quiets bridge.deliver for its run; an in-process demo test leaves it so.
    caplog.set_level(logging.INFO, logger="bridge.deliver")
    stream = _setup("json")
    async with WebhookReceiver(secret=SINK_SECRET) as receiver, HostileServer(
            Answer(status=500)) as api:
        receiver.script([503])
        config = parse_config(f"""
[bridge]
state = "sqlite:///{tmp_path}/state.db"
[[sources]]
name = "zd"
kind = "zendesk"
base_url = "{api.url}"
interval = "1h"
down_after = 1
[sources.auth]
type = "basic"
username = "ops@example.com/token"
password = "zendesk-api-token-abcdef"
[[sinks]]
name = "pager"
kind = "webhook"
url = "{receiver.url}"
secret = "{SINK_SECRET}"
retry = {{ schedule = ["1h"] }}
[[rules]]
name = "down"
on = "source_down"
template = "source_down.slack.j2"
notify = ["pager"]
""", str(tmp_path / "rules.toml"), env={})
        async with Bridge(config, serve_http=False, drain_timeout=0.5) as bridge:
            await bridge.pipeline.poll("zd")

            async def retry_recorded() -> bool:
                rows = await bridge.store.list_outbox(DeliveryStatus.PENDING)
                return any(row.attempts >= 1 for row in rows)

            await eventually(retry_recorded, within=30, what="the failed delivery recorded")
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(e.get("sink") == "pager" and "retrying" in str(e["message"]) for e in entries), (
        [e for e in entries if e.get("logger") == "bridge.deliver"])
    assert any(e.get("source") == "zd" and "down" in str(e["message"]) for e in entries)


@pytest.mark.usefixtures("restore_root")
def test_level_filters_lower_records() -> None:
    stream = _setup("text", level="warning")
    logging.getLogger("bridge.test").info("hidden")
    logging.getLogger("bridge.test").error("shown")
    assert "hidden" not in stream.getvalue()
    assert "shown" in stream.getvalue()


@pytest.mark.usefixtures("restore_root")
def test_unknown_level_is_a_config_error_naming_the_choices() -> None:
    with pytest.raises(ConfigError, match="debug, info, warning"):
        setup_logging("loud", "text", stream=io.StringIO())


@pytest.mark.usefixtures("restore_root")
def test_setting_up_twice_does_not_double_lines() -> None:
    _setup("text")
    stream = _setup("text")
    logging.getLogger("bridge.test").info("once")
    assert stream.getvalue().count("once") == 1


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.usefixtures("restore_root")
def test_config_secrets_are_masked_in_message_args_context_and_traceback(fmt: str) -> None:
    config = parse_config(CONFIG, "rules.toml", env={})
    stream = _setup(fmt, config=config)
    log = logging.getLogger("bridge.test")
    log.info("token is zendesk-api-token-abcdef")
    log.info("posting to %s", "https://hooks.example.com/T000/very-secret-path")
    log.info("context", extra={"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
    try:
        raise RuntimeError("bad admin-token-123456")
    except RuntimeError:
        log.exception("failed")
    output = stream.getvalue()
    for secret in SECRETS:
        assert secret not in output
    assert "token is ***" in output
    assert "posting to ***" in output
    assert "RuntimeError: bad ***" in output


@pytest.mark.usefixtures("restore_root")
def test_secrets_added_later_are_masked_too() -> None:
    stream = _setup("text")
    flt = installed_filter()
    assert isinstance(flt, RedactingFilter)
    flt.add_secrets(["late-secret-value"])
    logging.getLogger("bridge.test").info("value late-secret-value")
    assert "late-secret-value" not in stream.getvalue()
    assert "value ***" in stream.getvalue()


def test_overlapping_secrets_are_masked_whole() -> None:
    flt = RedactingFilter(["abcd", "abcdefgh"])
    record = logging.LogRecord("x", logging.INFO, "", 0, "key abcdefgh", None, None)
    flt.filter(record)
    assert record.getMessage() == "key ***"
