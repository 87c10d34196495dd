"""Record a source's raw API answers; replay them through a config's rules, sending nothing.

    bridge record --source jtl --duration 10m --out poll.jsonl
    bridge replay poll.jsonl [--config rules.toml]

A recording is JSON lines. The first names what was recorded:
`{"recording": 1, "source": "jtl", "kind": "jtl", "started": "<UTC>"}`; then one line per
poll: `{"at": "<UTC>", "ids": [...], "calls": [...]}`, `ids` being what the poll was asked
for, each call the HTTP exchange as it came over the wire (`method`, `url` without its query,
`status`, `reason`, `content_type`, rate-limit and paging `headers`, the raw `body` text, or
`body_b64` when it is not UTF-8) or the connection failure (`error`). Credentials are not
in it: request headers are not kept, and an OAuth2 token request goes past the recorder.

Replay builds the source from the config, as a poll would, but its HTTP goes to the
recording (`ReplayTransport`), so parsing, paging, drift checks and error classification all
run again; each poll's outcome then goes through the stages (bridge.stages.replay) with the
recorded time as the clock. What comes out is what each sink would have been sent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from yarl import URL

from bridge.config.schema import Config
from bridge.errors import ConfigError, SourceError
from bridge.model import Notification, PollResult
from bridge.sources import build_source
from bridge.sources.auth import StaticAuth
from bridge.sources.base import Source
from bridge.sources.client import SourceClient
from bridge.sources.exchange import Reply, Request, exchange
from bridge.stages import stages_for
from bridge.stages.base import Batch
from bridge.stages.replay import Recorded, replay

FORMAT = 1
# Reply headers a source reads (rate-limit budgets, paging links); the rest is noise.
_KEPT_HEADERS = ("retry-after", "link", "x-rate-limit", "ratelimit", "x-ratelimit", "date")


def _client(source: Source) -> SourceClient:
    client = getattr(source, "client", None)
    if not isinstance(client, SourceClient):
        raise ConfigError(f"source {source.name!r} is not polled over HTTP: nothing to record")
    return client


def _call_of(request: Request, reply: Reply) -> dict[str, Any]:
    url = URL(str(request.url))
    call: dict[str, Any] = {
        "method": request.method, "url": str(url.with_query(None)), "status": reply.status,
        "reason": reply.reason, "content_type": reply.content_type,
        "headers": {k: v for k, v in reply.headers.items()
                    if k.lower().startswith(_KEPT_HEADERS)},
    }
    try:
        call["body"] = reply.raw.decode()
    except UnicodeDecodeError:
        call["body_b64"] = base64.b64encode(reply.raw).decode()
    return call


@dataclass(slots=True)
class _Poll:
    at: datetime
    ids: list[str]
    calls: list[dict[str, Any]] = field(default_factory=list)


class RecordingSource:
    """A source whose polls are written to `out` as they happen (wraps any HTTP source)."""

    def __init__(self, inner: Source, out: TextIO, clock: Any) -> None:
        self.inner = inner
        self.config = inner.config
        self.lists_jobs = inner.lists_jobs
        self._out = out
        self._clock = clock
        self._poll: _Poll | None = None
        client = _client(inner)
        client.fetcher = replace(client.fetcher, transport=self._transport)
        out.write(json.dumps({"recording": FORMAT, "source": inner.name,
                              "kind": inner.config.kind, "started": clock().isoformat()}) + "\n")
        out.flush()

    @property
    def name(self) -> str:
        return self.inner.name

    async def _transport(self, session: aiohttp.ClientSession, request: Request,
                         max_bytes: int, where: str) -> Reply:
        poll = self._poll
        try:
            reply = await exchange(session, request, max_bytes, where)
        except (aiohttp.ClientError, TimeoutError, SourceError) as exc:
            if poll is not None:
                poll.calls.append({"method": request.method,
                                   "url": str(URL(str(request.url)).with_query(None)),
                                   "error": str(exc) or type(exc).__name__})
            raise
        if poll is not None:
            poll.calls.append(_call_of(request, reply))
        return reply

    async def poll(self, ids: Sequence[str]) -> PollResult:
        self._poll = poll = _Poll(at=self._clock(), ids=list(ids))
        try:
            return await self.inner.poll(ids)
        finally:
            self._poll = None
            self._out.write(json.dumps({"at": poll.at.isoformat(), "ids": poll.ids,
                                        "calls": poll.calls}) + "\n")
            self._out.flush()

    def parse_push(self, payload: Any) -> Any:
        return self.inner.parse_push(payload)


# --- reading and replaying ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Recording:
    source: str
    kind: str
    polls: list[_Poll]


def read_recording(path: Path) -> Recording:
    """The recording at `path`; ConfigError naming the line that is not one."""
    lines = path.read_text().splitlines()
    try:
        head = json.loads(lines[0]) if lines else {}
    except ValueError:
        head = {}
    if not isinstance(head, dict) or head.get("recording") != FORMAT:
        raise ConfigError("not a bridge recording (its first line should name the source, "
                          "as `bridge record` writes it)", file=str(path), line=1)
    polls = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            item = json.loads(line)
            polls.append(_Poll(at=datetime.fromisoformat(item["at"]), ids=list(item["ids"]),
                               calls=list(item["calls"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"not a recorded poll: {exc}", file=str(path),
                              line=number) from None
    return Recording(source=str(head["source"]), kind=str(head.get("kind", "")), polls=polls)


class ReplayTransport:
    """Answers a poll's requests from its recorded calls: the next unused call with the same
    method and path (host and query aside: the config replayed with may point elsewhere);
    a request the recording does not hold fails as a connection error would."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, session: aiohttp.ClientSession, request: Request,
                       max_bytes: int, where: str) -> Reply:
        path = URL(str(request.url)).path
        for n, call in enumerate(self.calls):
            if call["method"] == request.method and URL(call["url"]).path == path:
                del self.calls[n]
                if "error" in call:
                    raise aiohttp.ClientConnectionError(call["error"])
                raw = (base64.b64decode(call["body_b64"]) if "body_b64" in call
                       else str(call.get("body", "")).encode())
                return Reply(status=int(call["status"]), reason=str(call.get("reason", "")),
                             content_type=str(call.get("content_type", "")),
                             headers=dict(call.get("headers") or {}), raw=raw)
        raise aiohttp.ClientConnectionError(f"{request.method} {path} is not in the recording")


async def replay_recording(config: Config, recording: Recording) -> list[Batch]:
    """Each recorded poll through the source (parsing) and the stages; the batches."""
    configured = {s.name: s for s in config.sources}
    if recording.source not in configured:
        raise ConfigError(f"the recording is of source {recording.source!r}, which the config "
                          f"does not have (sources: {', '.join(configured) or 'none'})")
    transport = ReplayTransport()
    async with aiohttp.ClientSession() as session:
        source = build_source(configured[recording.source], session)
        client = _client(source)
        # No credential is needed, and none is fetched: the answers are on file.
        client.auth = StaticAuth({})
        client.fetcher = replace(client.fetcher, transport=transport, observe=None)
        recorded = []
        for poll in recording.polls:
            transport.calls = list(poll.calls)
            try:
                result: PollResult | None = await source.poll(poll.ids)
                error: SourceError | None = None
            except SourceError as exc:
                result, error = None, exc
            recorded.append(Recorded(source=recording.source, at=poll.at, poll=result,
                                     error=error))
    return await replay(stages_for(config), recorded)


def report(notifications: Iterable[Notification]) -> Iterator[str]:
    """What each sink would be sent, sink by sink, in order: `rule: text`."""
    by_sink: dict[str, list[Notification]] = {}
    for n in notifications:
        by_sink.setdefault(n.sink, []).append(n)
    for sink in sorted(by_sink):
        items = by_sink[sink]
        yield f"{sink}: {len(items)} notification{'s' if len(items) != 1 else ''}"
        for n in items:
            muted = f"  (silenced: {n.silenced})" if n.silenced else ""
            yield f"  {n.rule}: {text_of(n.payload)}{muted}"


def text_of(payload: Mapping[str, Any]) -> str:
    text = payload.get("text")
    return " ".join(str(text).split()) if text is not None else json.dumps(payload)[:200]
