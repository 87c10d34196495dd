"""No secret ever leaks: not in errors, logs, `bridge check` output, events or the outbox.

Like Alertmanager's shared receiver test ("no secret appears in an error message"), every
source kind and every sink kind is configured with distinctive secrets (tokens, passwords,
API keys, OAuth2 client secrets and the access tokens they buy, connection tokens, `whsec_`
signing secrets, Slack tokens, URLs with credentials) and then made to fail every way a
server can: 401, 500, 429, timeouts, refused connections, bad JSON, HTML, bad redirects. The
hostile server quotes the request back (`{echo}`: path, query, headers, body), so any error
built from what the server said would carry the secrets if they were not redacted.

Each test checks the exception message, the log lines bridge itself emits (a raw handler on
the `bridge` logger, before any filter) and everything that reaches the log stream through
the real `setup_logging` filter at debug level (libraries included).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import BaseModel

from bridge.app import Bridge
from bridge.cli import main
from bridge.config import Config, parse_config
from bridge.errors import DeliveryError, SourceError
from bridge.logs import setup_logging
from bridge.model import Delivery, Event, EventKind, Notification
from bridge.resources import bundled_templates
from bridge.secrets import REGISTRY
from bridge.sinks import SINK_KINDS, build_sink
from bridge.sources import SOURCE_KINDS, build_source
from bridge.store.base import Store
from tests import store_fixtures
from tests.hostile_support import Answer, HostileServer, json_answer, redirect, refused_url

# Distinctive secrets, each of them long enough for every redactor (4+ characters).
JTL_TOKEN = "jtl-bearer-S3CR3T-a1"
JTL_API_KEY = "jtl-apikey-S3CR3T-a2"
JTL_CLIENT_SECRET = "jtl-client-S3CR3T-a3"
ACCESS_TOKEN = "oauth-access-S3CR3T-a4"
TERMINAL_TOKEN = "term-bearer-S3CR3T-b1"
CONNECTION_TOKEN = "term-conn-S3CR3T-b2"
WHSEC = "whsec_" + base64.b64encode(b"signing-key-S3CR3T-b3").decode()
ESALES_KEY = "esales-key-S3CR3T-c1"
ZENDESK_PASSWORD = "zd-pass-S3CR3T-d1"
URL_PASSWORD = "pa55word"
URL_TOKEN = "abc-S3CR3T-e1"
HEADER_KEY = "http-hdr-S3CR3T-e2"
EXTRA_HEADER = "http-extra-S3CR3T-e3"
HTTP_CLIENT_SECRET = "http-client-S3CR3T-e4"
SLACK_TOKEN = "xoxb-slack-S3CR3T-f1"
SLACK_HOOK_PATH = "/services/T000/B000/slackhookS3CR3Tf2"
HOOK_TOKEN = "hook-S3CR3T-g1"


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


SECRETS: dict[str, str] = {
    "jtl token": JTL_TOKEN, "jtl api_key": JTL_API_KEY, "oauth2 client_secret": JTL_CLIENT_SECRET,
    "oauth2 access token": ACCESS_TOKEN, "terminal token": TERMINAL_TOKEN,
    "connection_token": CONNECTION_TOKEN, "whsec secret": WHSEC,
    "whsec key": WHSEC.removeprefix("whsec_"), "esales api_key": ESALES_KEY,
    "zendesk password": ZENDESK_PASSWORD, "url password": URL_PASSWORD,
    "url token": URL_TOKEN, "header auth value": HEADER_KEY, "extra header": EXTRA_HEADER,
    "http client_secret": HTTP_CLIENT_SECRET, "slack token": SLACK_TOKEN,
    "slack webhook path": "slackhookS3CR3Tf2", "webhook url token": HOOK_TOKEN,
    # The encoded forms a Basic Authorization header carries.
    "zendesk basic": _basic("ops@example.com/token", ZENDESK_PASSWORD),
    "url basic": _basic("user", URL_PASSWORD),
    "jtl client basic": _basic("jtl-client", JTL_CLIENT_SECRET),
    "http client basic": _basic("http-client", HTTP_CLIENT_SECRET),
}


def assert_clean(text: str, where: str) -> None:
    for name, secret in SECRETS.items():
        at = text.find(secret)
        assert at < 0, f"{name} leaked into {where}: ...{text[max(0, at - 80):at + 80]}..."


# --- log capture -----------------------------------------------------------------------------


class _Lines(logging.Handler):
    """Formats each record as it is emitted: what bridge's own code wrote, before any filter."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter("%(name)s %(message)s").format(record))


@dataclass(slots=True)
class Logs:
    raw: _Lines
    stream: io.StringIO = field(default_factory=io.StringIO)

    def install(self, config: BaseModel) -> None:
        """The real filter, as `bridge run` installs it, at debug level (libraries too)."""
        setup_logging("debug", config=config, stream=self.stream)

    def assert_clean(self) -> None:
        assert_clean("\n".join(self.raw.lines), "bridge's own log lines")
        assert_clean(self.stream.getvalue(), "the filtered log stream")


@pytest.fixture
def logs() -> Iterator[Logs]:
    raw = _Lines()
    ours = logging.getLogger("bridge")
    ours.addHandler(raw)
    root = logging.getLogger()
    level = root.level
    before = list(root.handlers)
    try:
        yield Logs(raw)
    finally:
        ours.removeHandler(raw)
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)


# --- sources ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Servers:
    api: HostileServer
    # A second origin (127.0.0.2): what a redirect away from the API may reach.
    other: HostileServer


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    async with HostileServer() as api, HostileServer(host="127.0.0.2") as other:
        yield Servers(api, other)


def _hostport(url: str) -> str:
    return url.removeprefix("http://")


SourceTable = Callable[[str], dict[str, Any]]
SOURCE_TABLES: dict[str, SourceTable] = {
    "jtl-bearer": lambda base: {
        "kind": "jtl", "base_url": base, "tenant_id": "t1", "api_key": JTL_API_KEY,
        "auth": {"type": "bearer", "token": JTL_TOKEN}},
    "jtl-oauth2": lambda base: {
        "kind": "jtl", "base_url": base, "tenant_id": "t1", "api_key": JTL_API_KEY,
        "auth": {"type": "oauth2", "token_url": f"{base}/oauth/token?audience={URL_TOKEN}",
                 "client_id": "jtl-client", "client_secret": JTL_CLIENT_SECRET}},
    "terminal": lambda base: {
        "kind": "terminal", "base_url": base, "connection_token": CONNECTION_TOKEN,
        "secret": WHSEC, "ids": ["t-1"], "auth": {"type": "bearer", "token": TERMINAL_TOKEN}},
    "esales": lambda base: {"kind": "esales", "base_url": base, "api_key": ESALES_KEY,
                            "ids": ["1234567890123456789"]},
    "zendesk": lambda base: {
        "kind": "zendesk", "base_url": base, "ids": ["z-1"],
        "auth": {"type": "basic", "username": "ops@example.com/token",
                 "password": ZENDESK_PASSWORD}},
    "http-url-credentials": lambda base: {
        "kind": "http", "url": f"http://user:{URL_PASSWORD}@{_hostport(base)}/jobs"
                               f"?token={URL_TOKEN}", "items": "data[*]"},
    "http-header": lambda base: {
        "kind": "http", "url": f"{base}/jobs?token={URL_TOKEN}", "items": "data[*]",
        "headers": {"X-Extra": EXTRA_HEADER},
        "auth": {"type": "header", "header": "X-Api-Key", "value": HEADER_KEY}},
    "http-oauth2": lambda base: {
        "kind": "http", "url": f"{base}/jobs/{{id}}", "ids": ["j-1"],
        "auth": {"type": "oauth2", "token_url": f"{base}/oauth/token",
                 "client_id": "http-client", "client_secret": HTTP_CLIENT_SECRET}},
}


def source_model(variant: str, base: str, **extra: Any) -> Any:
    table = {"name": variant, "timeout": "2s", **SOURCE_TABLES[variant](base), **extra}
    return SOURCE_KINDS[table["kind"]].model.model_validate(table)


ECHO_JSON = b'{"error": "refused: {echo}", "message": "{echo}", "ok": false}'
SOURCE_FAILURES: dict[str, Callable[[Servers], Answer]] = {
    "401 quoting the request": lambda s: Answer(status=401, body=ECHO_JSON),
    "403 quoting the request": lambda s: Answer(status=403, body=ECHO_JSON),
    "412 quoting the request": lambda s: Answer(status=412, body=ECHO_JSON),
    "500 quoting the request": lambda s: Answer(status=500, body=ECHO_JSON),
    "429 quoting the request": lambda s: Answer(status=429, body=ECHO_JSON,
                                                headers={"Retry-After": "0.62"}),
    "bad JSON quoting the request": lambda s: Answer(body=b'{"results": "{echo}'),
    "HTML quoting the request": lambda s: Answer(body=b"<html>{echo}</html>",
                                                 content_type="text/html"),
    "wrong shape quoting the request": lambda s: Answer(body=b'{"unexpected": "{echo}"}'),
    "redirect loop with the token in the location": lambda s: redirect(
        f"/loop?token={URL_TOKEN}&key={ESALES_KEY}"),
    "redirect to an invalid URL holding secrets": lambda s: redirect(
        f"http://user:{URL_PASSWORD}@[::1/{URL_TOKEN}"),
    "redirect to another host": lambda s: redirect(f"{s.other.url}/stolen?token={URL_TOKEN}"),
    "timeout": lambda s: Answer(delay=5.0),
}


async def _poll_and_fail(source: Any, ids: list[str]) -> SourceError:
    with pytest.raises(SourceError) as caught:
        await source.poll(ids)
    return caught.value


@pytest.mark.parametrize("failure", sorted(SOURCE_FAILURES))
@pytest.mark.parametrize("variant", sorted(SOURCE_TABLES))
async def test_a_failing_source_never_shows_a_secret(
        variant: str, failure: str, servers: Servers, logs: Logs) -> None:
    config = source_model(variant, servers.api.url, timeout="300ms")
    logs.install(config)
    servers.api.answer = SOURCE_FAILURES[failure](servers)
    async with aiohttp.ClientSession() as session:
        source = build_source(config, session)
        error = await _poll_and_fail(source, list(config.ids))
    assert_clean(str(error), "the error message")
    logs.assert_clean()
    # Whatever reached the other origin carried no credential either.
    for seen in servers.other.requests:
        assert_clean(f"{seen.path_qs} {seen.headers} {seen.body!r}", "a request to another host")


@pytest.mark.parametrize("variant", ["http-oauth2", "jtl-oauth2"])
@pytest.mark.parametrize("failure", ["401 quoting the request", "500 quoting the request"])
async def test_an_api_refusing_an_oauth2_access_token_never_shows_it(
        variant: str, failure: str, servers: Servers, logs: Logs) -> None:
    config = source_model(variant, servers.api.url)
    logs.install(config)
    servers.api.by_path["/oauth/token"] = json_answer(
        {"access_token": ACCESS_TOKEN, "token_type": "bearer"})
    servers.api.answer = SOURCE_FAILURES[failure](servers)
    async with aiohttp.ClientSession() as session:
        error = await _poll_and_fail(build_source(config, session), list(config.ids))
    assert any(ACCESS_TOKEN in str(r.headers) for r in servers.api.requests)
    assert_clean(str(error), "the error message")
    logs.assert_clean()


@pytest.mark.parametrize("variant", sorted(SOURCE_TABLES))
async def test_a_refused_connection_never_shows_a_secret(variant: str, logs: Logs) -> None:
    config = source_model(variant, refused_url())
    logs.install(config)
    async with aiohttp.ClientSession() as session:
        error = await _poll_and_fail(build_source(config, session), list(config.ids))
    assert "connection failed" in str(error)
    assert_clean(str(error), "the error message")
    logs.assert_clean()


@pytest.mark.parametrize("variant", sorted(SOURCE_TABLES))
async def test_a_redirect_to_another_host_is_refused_before_credentials_go_there(
        variant: str, servers: Servers) -> None:
    servers.api.answer = redirect(f"{servers.other.url}/elsewhere")
    config = source_model(variant, servers.api.url)
    async with aiohttp.ClientSession() as session:
        error = await _poll_and_fail(build_source(config, session), list(config.ids))
    assert servers.other.requests == []
    assert "another host" in str(error)


async def test_a_redirect_on_the_same_host_is_still_followed(servers: Servers) -> None:
    servers.api.by_path["/jobs"] = redirect("/v2/jobs", status=301)
    servers.api.by_path["/v2/jobs"] = json_answer({"data": [{"id": "a", "status": "running"}]})
    config = source_model("http-header", servers.api.url)
    async with aiohttp.ClientSession() as session:
        result = await build_source(config, session).poll([])
    assert [job.id for job in result.observations] == ["a"]
    assert servers.api.requests[-1].headers.get("X-Api-Key") == HEADER_KEY


# --- sinks -----------------------------------------------------------------------------------


def sink_model(variant: str, base: str) -> Any:
    tables: dict[str, dict[str, Any]] = {
        "webhook": {"kind": "webhook", "secret": WHSEC,
                    "url": f"http://hookuser:{URL_PASSWORD}@{_hostport(base)}/hook"
                           f"?token={HOOK_TOKEN}"},
        "slack-token": {"kind": "slack", "token": SLACK_TOKEN, "channel": "#ops",
                        "base_url": f"{base}/api/", "min_interval": "0s"},
        "slack-webhook": {"kind": "slack", "webhook_url": f"{base}{SLACK_HOOK_PATH}",
                          "min_interval": "0s"},
    }
    table = {"name": variant, "timeout": "300ms", **tables[variant]}
    return SINK_KINDS[table["kind"]].model.model_validate(table)


SINK_FAILURES: dict[str, Callable[[Servers], Answer]] = {
    "401 quoting the request": lambda s: Answer(status=401, body=ECHO_JSON),
    "404 quoting the request": lambda s: Answer(status=404, body=b"{echo}",
                                                content_type="text/plain"),
    "410 quoting the request": lambda s: Answer(status=410, body=ECHO_JSON),
    "500 quoting the request": lambda s: Answer(status=500, body=b"{echo}",
                                                content_type="text/plain"),
    "429 with a long Retry-After": lambda s: Answer(status=429, body=ECHO_JSON,
                                                    headers={"Retry-After": "3600"}),
    "200 refusing and quoting the request": lambda s: Answer(body=ECHO_JSON),
    "200 HTML quoting the request": lambda s: Answer(body=b"<html>{echo}</html>",
                                                     content_type="text/html"),
    "redirect to another host": lambda s: redirect(f"{s.other.url}/stolen"),
    "timeout": lambda s: Answer(delay=5.0),
}


def delivery() -> Delivery:
    notification = Notification(
        event_id="evt_1", rule="job-failed", sink="any", source="zendesk", job_id="8b72",
        payload={"text": "job 8b72 failed", "body": '{"type": "job.transition"}'},
        on=EventKind.TRANSITION, terminal=True, state="failed")
    return Delivery(id="msg_1", notification=notification, created_at=datetime.now(UTC))


store = store_fixtures.sqlite_store


async def _send_and_fail(config: Any, store: Store, base_session: aiohttp.ClientSession
                         ) -> DeliveryError | None:
    sink = build_sink(config, base_session, store)
    try:
        await sink.send(delivery())
    except DeliveryError as exc:
        return exc
    finally:
        await sink.aclose()
    return None


SINK_VARIANTS = ["slack-token", "slack-webhook", "webhook"]


@pytest.mark.parametrize("failure", sorted(SINK_FAILURES))
@pytest.mark.parametrize("variant", SINK_VARIANTS)
async def test_a_failing_sink_never_shows_a_secret(
        variant: str, failure: str, servers: Servers, store: Store, logs: Logs) -> None:
    config = sink_model(variant, servers.api.url)
    logs.install(config)
    servers.api.answer = SINK_FAILURES[failure](servers)
    async with aiohttp.ClientSession() as session:
        error = await _send_and_fail(config, store, session)
    if error is not None:
        assert_clean(str(error), "the delivery error")
    logs.assert_clean()
    for seen in servers.other.requests:
        assert_clean(f"{seen.path_qs} {seen.headers} {seen.body!r}", "a request to another host")


@pytest.mark.parametrize("variant", SINK_VARIANTS)
async def test_a_refused_sink_connection_never_shows_a_secret(
        variant: str, store: Store, logs: Logs) -> None:
    config = sink_model(variant, refused_url())
    logs.install(config)
    async with aiohttp.ClientSession() as session:
        error = await _send_and_fail(config, store, session)
    assert error is not None and error.retryable
    assert_clean(str(error), "the delivery error")
    logs.assert_clean()


# --- bridge check ----------------------------------------------------------------------------

CHECKED = f"""[bridge]
state = "sqlite:///{{tmp}}/state.db"
admin_token = "admin-S3CR3T-h1"

[[sources]]
name = "zendesk"
kind = "zendesk"
base_url = "https://acme.zendesk.com"
intervall = "30s"
[sources.auth]
type = "basic"
username = "ops@example.com/token"
password = "{ZENDESK_PASSWORD}"

[[sources]]
name = "terminal"
kind = "terminal"
connection_token = "{CONNECTION_TOKEN}"
secret = "{WHSEC}"
timeout = "{CONNECTION_TOKEN}"
[sources.auth]
type = "bearer"
token = "${{TERMINAL_TOKEN}}"

[[sources]]
name = "jtl"
kind = "jtl"
tenant_id = "t1"
api_key = 12345678
[sources.auth]
type = "oauth2"
client_id = "jtl-client"
client_secret = "{JTL_CLIENT_SECRET}"
scope = ["{JTL_API_KEY}"]

[[sources]]
name = "exports"
kind = "http"
url = "http://user:{URL_PASSWORD}@api.example.com/jobs?token={URL_TOKEN}"
items = "data[?"
states = {{ done = "{ESALES_KEY}" }}

[[sinks]]
name = "ops-slack"
kind = "slack"
token = "{SLACK_TOKEN}"
mode = "sometimes"

[[sinks]]
name = "pager"
kind = "webhook"
url = "http://hookuser:{URL_PASSWORD}@hooks.example.com/hook?token={HOOK_TOKEN}"
secret = "{HOOK_TOKEN}"
header = {{ "X-Key" = "{EXTRA_HEADER}" }}

[[rules]]
name = "job-failed"
on = "transition"
template = "missing.j2"
notify = ["ops-slak"]
"""


def test_check_output_for_a_config_full_of_errors_shows_no_secret(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERMINAL_TOKEN", TERMINAL_TOKEN)
    rules = tmp_path / "rules.toml"
    rules.write_text(CHECKED.replace("{tmp}", str(tmp_path)))
    assert main(["check", "--config", str(rules)]) == 1
    out = capsys.readouterr()
    assert "problem(s) found" in out.err
    assert_clean(out.out + out.err, "bridge check output")


def test_check_output_for_a_config_that_is_not_toml_shows_no_secret(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[[sources]]\nname = "z"\npassword = "{ZENDESK_PASSWORD}\n'
                     f'token = {SLACK_TOKEN}\n')
    assert main(["check", "--config", str(rules)]) == 1
    out = capsys.readouterr()
    assert "not valid TOML" in out.err
    assert_clean(out.out + out.err, "bridge check output")


def test_check_output_for_a_config_with_a_runtime_store_error_shows_no_secret(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[bridge]\nstate = "postgresql://bridge:{URL_PASSWORD}@/db?x=1"\n'
                     '[[sources]]\nname = "z"\nkind = "zendesk"\n')
    main(["check", "--config", str(rules)])
    out = capsys.readouterr()
    assert_clean(out.out + out.err, "bridge check output")


# --- events, reasons and the outbox of a running bridge --------------------------------------

TEMPLATES = bundled_templates()


def running_config(tmp_path: Path, servers: Servers, hook: str) -> Config:
    text = f"""
[bridge]
state = "sqlite:///{tmp_path}/state.db"
templates = "{TEMPLATES}"

[[sinks]]
name = "pager"
kind = "webhook"
url = "{hook}"
secret = "{WHSEC}"
retry = {{ schedule = ["50ms"], attempts = 2 }}

[[rules]]
name = "downs"
on = "source_down"
template = "source_down.slack.j2"
notify = ["pager"]
"""
    config = parse_config(text, str(tmp_path / "rules.toml"), {})
    sources = [source_model(v, servers.api.url, interval="1h") for v in sorted(SOURCE_TABLES)]
    return config.model_copy(update={"sources": sources})


async def test_source_down_events_rendered_messages_and_the_outbox_show_no_secret(
        tmp_path: Path, servers: Servers, logs: Logs) -> None:
    servers.api.answer = Answer(status=401, body=ECHO_JSON)
    servers.other.answer = Answer(status=500, body=ECHO_JSON)
    hook = (f"http://hookuser:{URL_PASSWORD}@{_hostport(servers.other.url)}/hook"
            f"?token={HOOK_TOKEN}")
    config = running_config(tmp_path, servers, hook)
    logs.install(config)
    events: list[Event] = []
    bridge = Bridge(config, serve_http=False, drain_timeout=0.5,
                    observers=[lambda outcome: events.extend(outcome.events)])
    async with bridge:
        for source in config.sources:
            await bridge.pipeline.poll(source.name)
        downs = [e for e in events if e.on is EventKind.SOURCE_DOWN]
        assert {e.source for e in downs} == {s.name for s in config.sources}
        for _ in range(300):
            rows = await bridge.store.list_outbox()
            if rows and all(r.attempts >= 2 for r in rows):
                break
            await _tick()
        rows = await bridge.store.list_outbox()
        health = [bridge.pipeline.health(s.name) for s in config.sources]
    assert rows, "the source_down rule queued notifications"
    for event in downs:
        assert event.reason
        assert_clean(str(event.as_dict()), f"the source_down event of {event.source}")
    for state in health:
        assert state is not None
        assert_clean(str(state.reason), "a source's health reason")
    for row in rows:
        assert_clean(str(row.notification.payload), "a rendered notification")
        assert_clean(str(row.last_error), "a delivery's last error")
    logs.assert_clean()


async def _tick() -> None:
    await asyncio.sleep(0.01)


# --- one registry for logs, errors, HTTP answers and reports ----------------------------------

# Known to no config: only `REGISTRY` can mask it, so each place below must ask the registry.
REGISTERED_ONLY = "registered-only-S3CR3T-z9"


@pytest.fixture
def registered_only() -> None:
    REGISTRY.add([REGISTERED_ONLY])


@pytest.mark.usefixtures("registered_only")
def test_a_secret_only_the_registry_knows_is_masked_in_log_lines(logs: Logs) -> None:
    setup_logging("info", "json", stream=logs.stream)
    logging.getLogger("bridge.test").warning("token %s", REGISTERED_ONLY,
                                             extra={"source": REGISTERED_ONLY})
    line = logs.stream.getvalue()
    assert REGISTERED_ONLY not in line
    assert '"message": "token ***"' in line and '"source": "***"' in line


@pytest.mark.usefixtures("registered_only")
async def test_a_secret_only_the_registry_knows_is_masked_in_api_error_answers(
        tmp_path: Path) -> None:
    config = parse_config(f'[bridge]\nstate = "sqlite:///{tmp_path}/state.db"\n'
                          'listen = "127.0.0.1:0"\n', str(tmp_path / "rules.toml"), {})
    async with Bridge(config, drain_timeout=0.1) as bridge, aiohttp.ClientSession() as session:
        assert bridge.http_url is not None
        async with session.get(f"{bridge.http_url}v1/jobs",
                               params={"state": REGISTERED_ONLY}) as answer:
            status, body = answer.status, await answer.text()
    assert status == 400
    assert REGISTERED_ONLY not in body
    assert "got '***'" in body


@pytest.mark.usefixtures("registered_only")
def test_a_secret_only_the_registry_knows_is_masked_in_check_output_and_config_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.toml"
    (tmp_path / "templates").mkdir()
    rules.write_text(f'[bridge]\nstate = "sqlite:///{tmp_path}/state.db"\n'
                     '[[sinks]]\nname = "pager"\nkind = "webhook"\nurl = "http://h.example/x"\n'
                     f'[[rules]]\nname = "r"\non = "appeared"\ntemplate = "{REGISTERED_ONLY}.j2"\n'
                     'notify = ["pager"]\n')
    assert main(["check", "--config", str(rules)]) == 1
    out = capsys.readouterr()
    assert "no such template '***.j2'" in out.out + out.err
    assert REGISTERED_ONLY not in out.out + out.err
    rules.write_text(f'[[sources]]\nname = "x"\nkind = "{REGISTERED_ONLY}"\n')
    assert main(["check", "--config", str(rules)]) == 1
    out = capsys.readouterr()
    assert "sources[0].kind: unknown source kind '***'" in out.err
    assert REGISTERED_ONLY not in out.out + out.err
