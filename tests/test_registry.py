"""The kind registries: one entry per source and sink kind, and the README's steps work.

`bridge.sources.SOURCE_KINDS` and `bridge.sinks.SINK_KINDS` are the only lists of kinds:
the loader's discriminated union, `build_source` / `build_sink`, the scheduler (`polled`),
push input (`accepts_push`) and the delivery worker (`orders_itself`, `edits_in_place`)
all read them. The second half follows README "How to add a source kind" and "How to add
a sink kind" to the letter with two tiny kinds defined here, and runs them in a real
bridge: the source polls a real local HTTP server, the sink posts to another one.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest
from pydantic import field_validator, model_validator

from bridge.app import Bridge
from bridge.checks import sample_event
from bridge.config import parse_config
from bridge.config.schema import SinkBase, SourceBase
from bridge.errors import ConfigError, ConfigErrors, PermanentDelivery, SourceUnavailable
from bridge.model import Delivery, EventKind, JobState, JobStatus, PollResult
from bridge.render import Renderer
from bridge.secrets import redact_url
from bridge.simulators.webhook_receiver import Reply, WebhookReceiver
from bridge.sinks import SINK_KINDS, PayloadShape, SinkCapabilities, SinkKind, sink_capabilities
from bridge.sinks.base import Sink
from bridge.sinks.retry import Verdict, classify, classify_exception
from bridge.sinks.slack import SLACK_CLAIM_BATCH
from bridge.sources import SOURCE_KINDS, SourceCapabilities, SourceKind, build_source
from bridge.sources.base import map_state
from bridge.store.base import Store
from tests.crash_support import eventually

# --- every registered kind is whole ------------------------------------------------------


def _literal_kind(model: type[Any]) -> object:
    (value,) = typing.get_args(model.model_fields["kind"].annotation)
    return value


@pytest.mark.parametrize("kind", list(SOURCE_KINDS))
def test_every_source_kind_has_a_model_a_factory_and_capabilities(kind: str) -> None:
    entry = SOURCE_KINDS[kind]
    assert issubclass(entry.model, SourceBase)
    assert _literal_kind(entry.model) == kind, "the model's `kind` Literal is its registry key"
    assert callable(entry.factory)
    assert isinstance(entry.capabilities, SourceCapabilities)
    # A kind that takes pushes has the `secret` that signs them, and no other kind does.
    assert ("secret" in entry.model.model_fields) is entry.capabilities.accepts_push
    assert entry.capabilities.polled or entry.capabilities.accepts_push, "it must get jobs"


@pytest.mark.parametrize("kind", list(SINK_KINDS))
def test_every_sink_kind_has_a_model_a_factory_and_capabilities(kind: str) -> None:
    entry = SINK_KINDS[kind]
    assert issubclass(entry.model, SinkBase)
    assert _literal_kind(entry.model) == kind
    assert callable(entry.factory)
    assert isinstance(entry.capabilities, SinkCapabilities) or callable(entry.capabilities)


@pytest.mark.parametrize(("section", "registry"), [("source", SOURCE_KINDS),
                                                   ("sink", SINK_KINDS)])
def test_the_loader_knows_exactly_the_registered_kinds(section: str, registry: Any) -> None:
    with pytest.raises(ConfigErrors) as caught:
        parse_config(f'[[{section}s]]\nname = "x"\nkind = "nope"\n', "rules.toml", {})
    (error,) = caught.value.errors
    assert error.render().endswith(f"(known: {', '.join(registry)})")


@pytest.mark.parametrize(("mode", "edits"), [("post", False), ("update", True),
                                             ("thread", False)])
def test_slack_capabilities_follow_its_mode(mode: str, edits: bool) -> None:
    config = parse_config(f'[[sinks]]\nname = "s"\nkind = "slack"\ntoken = "xoxb-1"\n'
                          f'channel = "#c"\nmode = "{mode}"\n', "rules.toml", {})
    assert sink_capabilities(config.sinks[0]) == SinkCapabilities(
        orders_itself=True, edits_in_place=edits, payload=PayloadShape.SLACK,
        claim_batch=SLACK_CLAIM_BATCH)


def test_a_webhook_sink_is_sent_row_by_row_in_job_order() -> None:
    config = parse_config('[[sinks]]\nname = "w"\nkind = "webhook"\nurl = "http://h/x"\n',
                          "rules.toml", {})
    assert sink_capabilities(config.sinks[0]) == SinkCapabilities(payload=PayloadShape.WEBHOOK)


# --- README "How to add a source kind", step by step ---------------------------------------

# Step 1: the config model, next to the others in bridge/config/schema.py. It validates its
# own fields, and the rules between them, once.
class BeaconSource(SourceBase):
    kind: Literal["beacon"]
    url: str

    @field_validator("url")
    @classmethod
    def _absolute(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return url


BEACON_STATES = {"working": JobState.RUNNING, "broken": JobState.FAILED}


# Step 2: the implementation in bridge/sources/<kind>.py, behind the `Source` protocol.
class Beacon:
    """Polls one URL answering `{"id": ..., "status": ...}` about a single job."""

    lists_jobs = True

    def __init__(self, config: BeaconSource, session: aiohttp.ClientSession) -> None:
        self.config: SourceBase = config
        self._url = config.url
        self._session = session

    @property
    def name(self) -> str:
        return self.config.name

    async def poll(self, ids: Sequence[str]) -> PollResult:
        try:
            async with self._session.get(self._url) as response:
                body = json.loads(await response.text())
        except (aiohttp.ClientError, ValueError) as exc:
            raise SourceUnavailable(f"beacon {self.name}: {exc}") from None
        raw = str(body["status"])
        job = JobStatus(id=str(body["id"]), raw_state=raw,
                        state=map_state(raw, BEACON_STATES, self.config.states))
        return PollResult(observations=[job], complete=True)

    def parse_push(self, payload: Any) -> Sequence[JobStatus]:
        raise SourceUnavailable("beacon sources are polled, not pushed to")


# Step 3: one entry in SOURCE_KINDS (bridge/sources/__init__.py).
BEACON = SourceKind(model=BeaconSource, factory=Beacon,
                    capabilities=SourceCapabilities(polled=True))


# --- README "How to add a sink kind", step by step -----------------------------------------

# Step 1: the config model in bridge/config/schema.py.
class TextPostSink(SinkBase):
    kind: Literal["textpost"]
    url: str
    prefix: str = ""

    @model_validator(mode="after")
    def _short_prefix(self) -> TextPostSink:
        if len(self.prefix) > 10:
            raise ValueError("a textpost sink's 'prefix' is at most 10 characters")
        return self


# Step 2: the implementation in bridge/sinks/<kind>.py, behind the `Sink` protocol; it
# classifies answers with the shared retry table and raises, never returns False.
class TextPoster:
    """POSTs each notification's text as text/plain."""

    def __init__(self, config: TextPostSink, session: aiohttp.ClientSession) -> None:
        self.config: SinkBase = config
        self._config = config
        self._session = session

    @property
    def name(self) -> str:
        return self._config.name

    async def send(self, delivery: Delivery) -> None:
        text = delivery.notification.payload.get("text")
        if not isinstance(text, str):
            raise PermanentDelivery(f"notification {delivery.id} has no text")
        where = f"POST {redact_url(self._config.url)}"
        try:
            async with self._session.post(self._config.url, data=self._config.prefix + text,
                                          headers={"content-type": "text/plain"}) as answer:
                outcome = classify(answer.status, answer.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise classify_exception(exc).error(where) from None
        if outcome.verdict is not Verdict.OK:
            raise outcome.error(where)

    async def aclose(self) -> None:
        """Nothing runs in the background."""


def build_text_poster(config: TextPostSink, session: aiohttp.ClientSession,
                      store: Store) -> Sink:
    del store  # remembers nothing between notifications
    return TextPoster(config, session)


# Step 3: one entry in SINK_KINDS (bridge/sinks/__init__.py).
TEXTPOST = SinkKind(model=TextPostSink, factory=build_text_poster)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two entries, as if written into the registry files (undone after the test)."""
    monkeypatch.setitem(SOURCE_KINDS, "beacon", BEACON)
    monkeypatch.setitem(SINK_KINDS, "textpost", TEXTPOST)


def _config_text(tmp_path: Path, api: str, hook: str, prefix: str = "[bridge] ") -> str:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "seen.txt.j2").write_text(
        "{{ source }} job {{ job.id }} is {{ job.state }}", encoding="utf-8")
    return f"""
[bridge]
state = "sqlite:///{tmp_path}/state.db"
templates = "templates"

[[sources]]
name = "lighthouse"
kind = "beacon"
url = "{api}"
interval = "1h"

[[sinks]]
name = "plain"
kind = "textpost"
url = "{hook}"
prefix = "{prefix}"

[[rules]]
name = "seen"
on = "appeared"
template = "seen.txt.j2"
notify = ["plain"]
"""


@pytest.mark.usefixtures("registered")
def test_rendering_follows_the_payload_a_sink_kind_declares_not_its_class(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(_config_text(tmp_path, "http://127.0.0.1:9/", "http://127.0.0.1:9/in"),
                          str(tmp_path / "rules.toml"), {})
    rule, sink = config.rules[0], config.sinks[0]
    event = sample_event(EventKind.APPEARED, source="lighthouse")
    assert Renderer(config).render(rule, event, sink) == {
        "text": "lighthouse job 8b72 is pending"}
    # The same kind, declaring the webhook payload: the default envelope comes with it.
    monkeypatch.setitem(SINK_KINDS, "textpost", replace(
        TEXTPOST, capabilities=SinkCapabilities(payload=PayloadShape.WEBHOOK)))
    payload = Renderer(config).render(rule, event, sink)
    assert json.loads(payload["body"])["type"] == "job.appeared"
    assert json.loads(payload["body"])["data"]["text"] == payload["text"]


@pytest.mark.usefixtures("registered")
async def test_a_source_and_a_sink_kind_added_as_the_readme_says_run_in_a_real_bridge(
        tmp_path: Path) -> None:
    async with WebhookReceiver(path="/status") as api, WebhookReceiver(path="/in") as hook:
        api.script([], then=Reply(body='{"id": "lamp-1", "status": "broken"}'))
        config = parse_config(_config_text(tmp_path, api.url, hook.url),
                              str(tmp_path / "rules.toml"), {})
        assert isinstance(config.sources[0], BeaconSource)
        assert isinstance(config.sinks[0], TextPostSink)
        async with Bridge(config, serve_http=False, drain_timeout=1.0) as bridge:
            await bridge.pipeline.poll("lighthouse")

            async def delivered() -> bool:
                return any(r.status == 200 for r in hook.requests)

            await eventually(delivered, within=10, what="the textpost sink's POST")
    assert api.requests and api.requests[0].path == "/status"
    (posted,) = [r for r in hook.requests if r.status == 200]
    assert posted.headers["content-type"] == "text/plain"
    assert posted.body.decode() == "[bridge] lighthouse job lamp-1 is failed"


@pytest.mark.usefixtures("registered")
def test_an_added_kind_reports_its_own_field_errors_at_their_line(tmp_path: Path) -> None:
    text = _config_text(tmp_path, "ftp://x", "http://127.0.0.1:9/in", prefix="far too long!")
    with pytest.raises(ConfigErrors) as caught:
        parse_config(text, "rules.toml", {})
    lines = text.splitlines()
    rendered = [e.render() for e in caught.value.errors]
    url_line = lines.index('url = "ftp://x"') + 1
    sink_line = lines.index("[[sinks]]") + 1
    assert rendered[:2] == [
        f"rules.toml:{url_line}: sources[0].url: url must start with http:// or https://",
        f"rules.toml:{sink_line}: sinks[0]: a textpost sink's 'prefix' is at most 10 characters",
    ]


@pytest.mark.usefixtures("registered")
def test_an_added_kind_gets_did_you_mean_for_its_keys_and_its_name() -> None:
    text = ('[[sources]]\nname = "l"\nkind = "beacon"\nurll = "http://h/"\n'
            '[[sinks]]\nname = "p"\nkind = "textpots"\n')
    with pytest.raises(ConfigErrors) as caught:
        parse_config(text, "rules.toml", {})
    rendered = [e.render() for e in caught.value.errors]
    assert "rules.toml:4: sources[0].urll: unknown key 'urll'; did you mean 'url'?" in rendered
    assert any(r.startswith("rules.toml:7: sinks[0].kind: unknown sink kind 'textpots'; "
                            "did you mean 'textpost'?") for r in rendered)


async def test_an_unregistered_kind_cannot_be_built() -> None:
    config = BeaconSource.model_validate({"name": "l", "kind": "beacon", "url": "http://h/"})
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError, match="unknown source kind 'beacon'"):
            build_source(config, session)

