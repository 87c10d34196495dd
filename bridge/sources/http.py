"""The generic JSON poller (`kind = "http"`) and the JMESPath extraction it shares with push.

`url` is requested with `method` (and `body` for POST); `items` selects the list of jobs
(omitted: the answer is one job), and `id`, `state`, `progress`, `message` are read from
each item. Expressions are compiled once, when the source is built, so a typo is a config
error at start-up rather than a failed poll. Raw states map through `[sources.states]`; a
raw value that already is a canonical state name maps to itself; anything else is unknown.

Extension: a `url` containing `{id}` is polled once per tracked id (like eSales), and a 404
there puts the id in `missing`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urljoin

import aiohttp
import jmespath
from jmespath.exceptions import JMESPathError

from bridge.config.schema import HttpSource, PushSource
from bridge.errors import ConfigError
from bridge.model import JobState, JobStatus, PollResult
from bridge.sources.auth import Clock
from bridge.sources.client import ClientSource, SourceClient
from bridge.sources.fanout import poll_by_id
from bridge.sources.mapping import StateMapper, raw_text
from bridge.sources.ratelimit import RatePacer, Sleep
from bridge.sources.shapes import drift, expect_list, expect_object, items_of, percent_value

# A raw value that already names a canonical state maps to it.
CANONICAL_STATES: dict[str, JobState] = {state.value: state for state in JobState}
ID_PLACEHOLDER = "{id}"


class Expression(Protocol):
    """A compiled JMESPath expression: `search(value)` and the text it was written as."""

    @property
    def expression(self) -> str: ...

    def search(self, value: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Field:
    """A JMESPath expression that names one key (`id`, `"job-id"`): a dict lookup, as
    JMESPath answers it (None for a missing key or a value that is not an object), without
    an interpreter per call; the id and state of every pushed or listed job go through it."""

    expression: str
    key: str

    def search(self, value: Any) -> Any:
        return value.get(self.key) if isinstance(value, dict) else None


def compile_expression(expression: str, setting: str) -> Expression:
    try:
        compiled = jmespath.compile(expression)
    except JMESPathError as exc:
        raise ConfigError(f"invalid JMESPath expression {expression!r}: {exc}",
                          path=setting) from None
    tree = compiled.parsed
    if tree.get("type") == "field" and not tree.get("children"):
        return Field(expression, str(tree["value"]))
    return compiled


@dataclass(frozen=True, slots=True)
class Extractor:
    """The compiled `id`, `state`, `progress`, `message` expressions of one source."""

    id: Expression
    state: Expression
    progress: Expression | None
    message: Expression | None

    @classmethod
    def of(cls, config: HttpSource | PushSource) -> Extractor:
        return cls(
            id=compile_expression(config.id, "id"),
            state=compile_expression(config.state, "state"),
            progress=compile_expression(config.progress, "progress") if config.progress
            else None,
            message=compile_expression(config.message, "message") if config.message else None,
        )

    def job(self, item: Any, states: StateMapper, where: str) -> JobStatus:
        job_id = self.id.search(item)
        if job_id is None or job_id == "":
            raise drift(f"{where} id ({self.id.expression!r})", "found nothing")
        if isinstance(job_id, bool) or not isinstance(job_id, str | int):
            raise drift(f"{where} id ({self.id.expression!r})", "should be a string or integer")
        raw = self.state.search(item)
        if raw is None:
            raise drift(f"{where} state ({self.state.expression!r})", "found nothing")
        raw_state = raw_text(raw)
        return JobStatus(
            id=str(job_id),
            state=states(raw_state),
            raw_state=raw_state,
            progress=self._progress(item, where),
            message=self._message(item),
            fields=item if isinstance(item, dict) else {"value": item},
        )

    def jobs(self, items: list[Any], states: StateMapper, where: str) -> list[JobStatus]:
        return [self.job(item, states, f"{where}[{i}]") for i, item in enumerate(items)]

    def _progress(self, item: Any, where: str) -> float | None:
        if self.progress is None:
            return None
        value = self.progress.search(item)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return percent_value(float(value.strip().rstrip("%")))
            except ValueError:
                pass
        elif isinstance(value, int | float) and not isinstance(value, bool):
            return percent_value(float(value))
        raise drift(f"{where} progress ({self.progress.expression!r})", "should be a number")

    def _message(self, item: Any) -> str | None:
        if self.message is None:
            return None
        value = self.message.search(item)
        if value is None or value == "":
            return None
        return value if isinstance(value, str) else raw_text(value)


class HttpJobs(ClientSource):
    """An `http` source."""

    def __init__(
        self, config: HttpSource, session: aiohttp.ClientSession, *,
        clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.method = config.method
        self.body = config.body if config.method == "POST" else None
        self.extract = Extractor.of(config)
        self.items = compile_expression(config.items, "items") if config.items else None
        self.url = urljoin(config.base_url.rstrip("/") + "/", config.url) if config.base_url \
            else config.url
        self.lists_jobs = ID_PLACEHOLDER not in self.url
        client = SourceClient.for_source(config, session, clock=clock,
                                         pacer=RatePacer(clock=clock, sleep=sleep))
        super().__init__(config, client, CANONICAL_STATES)

    async def poll(self, ids: Sequence[str]) -> PollResult:
        if self.lists_jobs:
            jobs = self._parse(await self._fetch(self.url), "response")
            return PollResult(observations=jobs, complete=self.items is not None)
        return await poll_by_id(self.name, ids, self._lookup)

    def parse_push(self, payload: Any) -> Sequence[JobStatus]:
        return self._parse(payload, "push")

    async def _fetch(self, url: str, accept: frozenset[int] = frozenset()) -> Any:
        response = await self.client.request(self.method, url, json_body=self.body,
                                             accept=accept)
        return None if response.status == 404 and 404 in accept else response.body

    async def _lookup(self, job_id: str) -> JobStatus | None:
        body = await self._fetch(self.url.replace(ID_PLACEHOLDER, quote(job_id, safe="")),
                                 frozenset({404}))
        if body is None:
            return None
        return next((job for job in self._parse(body, "response") if job.id == job_id), None)

    def _parse(self, body: Any, where: str) -> list[JobStatus]:
        if self.items is None:
            return self.extract.jobs(items_of(body, where), self.states, where)
        found = self.items.search(body)
        items = expect_list(found, f"{where} items ({self.items.expression!r})")
        return self.extract.jobs([expect_object(i, where) for i in items], self.states, where)
