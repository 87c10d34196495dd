"""Hostile and broken answers for every source kind: a poll yields valid jobs or a SourceError.

Hypothesis feeds each kind hundreds of malformed answers over a real socket (non-JSON,
truncated JSON, wrong shapes, odd ids, odd progress, error statuses, redirects) through ONE
local `HostileServer` and ONE client session per test: the test swaps the server's answer
and polls again. Whatever comes back must be valid observations (`JobStatus` with a text
id, a canonical state, progress None or within 0..100) or a `SourceUnavailable` /
`SourceMisconfigured` with a one-line readable message; any other exception is a bug.
Push bodies go through `parse_push` of every kind the same way, without a socket.

Then the same through a real `Bridge`: a malformed answer marks only its source down with a
readable reason and emits no false event, while the other sources keep polling.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.app import Bridge
from bridge.cli import main
from bridge.config import Config, parse_config
from bridge.errors import SourceError, SourceMisconfigured, SourceUnavailable
from bridge.model import EventKind, JobState, JobStatus, PollResult
from bridge.pipeline import PollOutcome
from bridge.resources import bundled_templates
from bridge.sources import SOURCE_KINDS, build_source
from bridge.sources.base import Source
from bridge.sources.exchange import MAX_BODY_BYTES
from tests.hostile_support import Answer, HostileServer, json_answer, redirect

ESALES_ID = "1234567890123456789"
TEMPLATES = bundled_templates()
EXAMPLES = 200
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- the rig: one loop, one server, one session per test -----------------------------------


@dataclass(slots=True)
class Rig:
    runner: asyncio.Runner
    server: HostileServer
    session: aiohttp.ClientSession

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)


async def _open_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


@pytest.fixture
def rig() -> Iterator[Rig]:
    # Hypothesis drives plain functions, so the test owns its event loop instead of
    # pytest-asyncio; every example reuses the server and the session.
    with asyncio.Runner() as runner:
        server = runner.run(HostileServer().__aenter__())
        session = runner.run(_open_session())
        try:
            yield Rig(runner, server, session)
        finally:
            runner.run(session.close())
            runner.run(server.__aexit__(None, None, None))


def source_config(kind: str, base_url: str, **extra: Any) -> dict[str, Any]:
    """A minimal valid `[[sources]]` table of each kind pointing at `base_url`."""
    common: dict[str, Any] = {"name": f"hostile-{kind}", "kind": kind, "base_url": base_url,
                              "timeout": "2s"}
    per_kind: dict[str, dict[str, Any]] = {
        "jtl": {"tenant_id": "tenant-1", "auth": {"type": "bearer", "token": "jtl-token"}},
        "terminal": {"connection_token": "conn-token",
                     "auth": {"type": "bearer", "token": "terminal-token"}},
        "esales": {"api_key": "esales-key", "ids": [ESALES_ID]},
        "zendesk": {"auth": {"type": "basic", "username": "a@b.c/token", "password": "zd-pw"}},
        "http": {"url": "/jobs", "items": "data[*]", "progress": "percent",
                 "message": "error.detail"},
        "push": {"progress": "percent", "message": "error.detail"},
    }
    return {**common, **per_kind[kind], **extra}


def make_source(kind: str, session: aiohttp.ClientSession, base_url: str, **extra: Any
                ) -> Source:
    config = SOURCE_KINDS[kind].model.model_validate(source_config(kind, base_url, **extra))
    return build_source(config, session)


# --- what every outcome must satisfy -------------------------------------------------------


def assert_readable(exc: SourceError) -> None:
    # RateLimited (a 429 still refused after its waits) is a SourceUnavailable.
    assert isinstance(exc, SourceUnavailable | SourceMisconfigured), repr(exc)
    message = str(exc)
    assert message.strip(), f"empty message from {type(exc).__name__}"
    assert message.isprintable(), f"unprintable message: {message!r}"
    assert len(message) <= 600, f"message too long to read: {len(message)} chars"
    assert "Traceback" not in message


def assert_valid_job(job: object) -> None:
    assert isinstance(job, JobStatus), repr(job)
    assert type(job.id) is str and job.id, f"bad id {job.id!r}"
    assert isinstance(job.state, JobState)
    assert isinstance(job.raw_state, str)
    if job.progress is not None:
        assert isinstance(job.progress, float), repr(job.progress)
        assert 0.0 <= job.progress <= 100.0, f"progress {job.progress!r} out of 0..100"
    assert job.message is None or isinstance(job.message, str)
    assert job.failed_items is None or (type(job.failed_items) is int and job.failed_items >= 0)


def assert_valid_poll(rig: Rig, source: Source, ids: list[str]) -> PollResult | None:
    """Poll once: valid observations (returned) or a readable SourceError (None)."""
    try:
        result = rig.run(source.poll(ids))
    except SourceError as exc:
        assert_readable(exc)
        return None
    assert isinstance(result, PollResult)
    for job in result.observations:
        assert_valid_job(job)
    assert all(type(i) is str for i in result.missing)
    return result


def assert_valid_push(source: Source, payload: Any) -> None:
    try:
        jobs = source.parse_push(payload)
    except SourceError as exc:
        assert_readable(exc)
        return
    for job in jobs:
        assert_valid_job(job)


# --- strategies -----------------------------------------------------------------------------

ODD_TEXT = st.sampled_from([
    "", " ", "NaN", "nan", "-1", "150", "42%", "1e999", "-inf", "null", "true", "{}", "[]",
    "\x00", "\n", "\u202e", "é", "x" * 5000, "<html>", "0x10", "3.5", "running", "RUNNING",
])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-10**40, max_value=10**40),
    st.floats(), st.text(max_size=12), ODD_TEXT,
)
JUNK = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids,
                                                              max_size=3),
    max_leaves=8,
)
IDS = st.one_of(st.text(min_size=1, max_size=8), st.integers(), st.just("i" * 600), JUNK)
PROGRESS = st.one_of(
    st.integers(-1000, 1000), st.floats(),
    st.sampled_from(["50", "50%", "NaN", "-3", "1e999", "abc", "", "100.0001", "-0"]), JUNK,
)
TEXTS = st.one_of(st.text(max_size=20), JUNK)
STATUSES = st.sampled_from([200, 201, 204, 400, 401, 403, 404, 408, 410, 412, 418, 425, 429,
                            500, 502, 503, 504, 599])
RETRY_AFTER: st.SearchStrategy[dict[str, str]] = st.one_of(st.just({}), st.sampled_from(
    ["0.62", "-1", "NaN", "inf", "1e999", "soon", "Wed, 21 Oct 2015 07:28:00 GMT", ""]
).map(lambda v: {"Retry-After": v}))
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=latin-1",
                                 "text/html", "text/plain", None])
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
HTML = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"
LOCATIONS = st.sampled_from(["/", "/elsewhere?token=abc", "http://[::1", "ftp://x/", "",
                             "http://127.0.0.2:9/", "javascript:alert(1)", "//"])


def _status_answer(body: Any, status: int, headers: dict[str, str]) -> Answer:
    return json_answer(body, status, headers)


def _truncated(body: Any, fraction: float) -> Answer:
    raw = json.dumps(body).encode()
    return Answer(body=raw[:int(len(raw) * fraction)])


NOTHING: st.SearchStrategy[Any] = st.nothing()


def answers(bodies: st.SearchStrategy[Any], good: st.SearchStrategy[Any] = NOTHING
            ) -> st.SearchStrategy[Answer]:
    """Wire answers around `bodies`: 200 JSON a poll must accept (`good`) or not, then
    every other way to go wrong."""
    raw = st.one_of(
        st.sampled_from([b"", b" ", b"null", b"NaN", b"[", b'{"a": ', DEEP, DEEP_OBJECT, HTML,
                         b"\xff\xfe\x00", "{\"é\": 1}".encode("latin-1")]),
        st.binary(max_size=40),
    )
    return st.one_of(
        good.map(json_answer),
        bodies.map(json_answer),
        st.builds(_status_answer, bodies, STATUSES, RETRY_AFTER),
        st.builds(_truncated, bodies, st.floats(0, 0.99)),
        st.builds(lambda body, ct, status: Answer(body=body, content_type=ct, status=status),
                  raw, CONTENT_TYPES, st.sampled_from([200, 200, 500, 401])),
        st.builds(redirect, LOCATIONS, st.sampled_from([301, 302, 303, 307, 308])),
        st.just(Answer(status=304, content_type=None)),
    )


def objects(required: dict[str, st.SearchStrategy[Any]],
            optional: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Near-valid items (the required keys present) and items with any key missing."""
    return st.one_of(
        st.fixed_dictionaries(required, optional=optional),
        st.fixed_dictionaries({}, optional={**required, **optional}),
    )


def lists_of(items: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.one_of(items, JUNK), max_size=4)


GOOD_IDS = st.one_of(st.text(min_size=1, max_size=8), st.integers(min_value=0))
# Numbers a poll must take (clamped or dropped), and messages of any text.
GOOD_PROGRESS = st.one_of(st.none(), st.integers(-10**6, 10**6), st.floats())
GOOD_TEXT = st.one_of(st.none(), st.text(max_size=20), st.just("m" * 600))


def valid_items(id_key: str, state_key: str, states: list[Any],
                optional: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Items a poll must accept (a good id and a known state) whatever the other fields hold."""
    return st.fixed_dictionaries({id_key: GOOD_IDS, state_key: st.sampled_from(states)},
                                 optional=optional)


JTL_STATES = st.one_of(st.integers(-2, 9), st.sampled_from(["2", "Running", "weird"]),
                       st.floats(), JUNK)
JTL_OPTIONAL = {"Progress": PROGRESS, "progress": PROGRESS, "ProgressText": TEXTS}
JTL_ITEM = objects({"Identifier": IDS, "State": JTL_STATES}, {"state": JTL_STATES,
                                                              **JTL_OPTIONAL})
JTL_GOOD = st.lists(valid_items("Identifier", "State", [0, 2, 3, 7, "Running"],
                                {"Progress": GOOD_PROGRESS, "ProgressText": GOOD_TEXT}),
                    max_size=3)
JTL_BODY = st.one_of(lists_of(JTL_ITEM), JUNK)

TERMINAL_STATES = st.one_of(
    st.sampled_from(["requested", "in_progress", "completed", "failed", "paused"]), JUNK)
TERMINAL_OPTIONAL = {"progress": PROGRESS, "failureReason": TEXTS}
TERMINAL_ITEM = objects({"id": IDS, "status": TERMINAL_STATES}, TERMINAL_OPTIONAL)
TERMINAL_VALID_ITEM = valid_items("id", "status", ["requested", "in_progress", "failed"],
                                  {"progress": GOOD_PROGRESS, "failureReason": GOOD_TEXT})
TERMINAL_GOOD = st.fixed_dictionaries({"results": st.lists(TERMINAL_VALID_ITEM, max_size=3),
                                       "next": st.none()})
TERMINAL_BODY = st.one_of(
    objects({"results": lists_of(TERMINAL_ITEM)},
            {"next": st.one_of(st.none(), st.just(""), st.just("c1"), JUNK)}),
    TERMINAL_ITEM, JUNK,
)

ZENDESK_STATES = st.one_of(
    st.sampled_from(["queued", "working", "completed", "failed", "killed", "odd"]), JUNK)
ZENDESK_RESULT = objects({}, {"status": st.one_of(st.just("Failed"), JUNK),
                              "success": JUNK, "error": JUNK, "errors": JUNK})
ZENDESK_OPTIONAL = {
    "progress": PROGRESS, "total": PROGRESS, "message": TEXTS, "url": TEXTS,
    "results": st.one_of(st.lists(st.one_of(ZENDESK_RESULT, JUNK), max_size=3), JUNK),
}
ZENDESK_ITEM = objects({"id": IDS, "status": ZENDESK_STATES}, ZENDESK_OPTIONAL)
ZENDESK_VALID_ITEM = valid_items(
    "id", "status", ["queued", "working", "completed"],
    {"progress": GOOD_PROGRESS, "total": GOOD_PROGRESS, "message": GOOD_TEXT,
     "results": st.lists(st.one_of(ZENDESK_RESULT, JUNK), max_size=3)})
ZENDESK_GOOD = st.fixed_dictionaries({"job_statuses": st.lists(ZENDESK_VALID_ITEM, max_size=3)})
ZENDESK_BODY = st.one_of(
    objects({"job_statuses": lists_of(ZENDESK_ITEM)},
            {"meta": objects({"has_more": JUNK}, {"after_cursor": JUNK}),
             "links": objects({}, {"next": st.one_of(st.just("/next"), JUNK)}),
             "next_page": JUNK}),
    objects({"job_status": ZENDESK_ITEM}, {}), JUNK,
)

ESALES_STATES = ["WAITING", "BLOCKED", "IN_PROGRESS", "SUCCESS", "FAILURE", "ABORTED",
                 "NOT_FOUND", "PAUSED"]
ESALES_GOOD = st.fixed_dictionaries({"status": st.sampled_from(ESALES_STATES)},
                                    optional={"reason": st.one_of(st.text(), st.none()),
                                              "id": IDS})
ESALES_BODY = st.one_of(
    objects({"status": st.one_of(st.sampled_from(ESALES_STATES), JUNK)},
            {"reason": TEXTS, "id": IDS}),
    JUNK,
)

HTTP_OPTIONAL = {"percent": PROGRESS,
                 "error": st.one_of(objects({}, {"detail": TEXTS}), JUNK)}
HTTP_ITEM = objects({"id": IDS, "status": st.one_of(st.sampled_from(
    ["running", "succeeded", "done", "weird"]), JUNK)}, HTTP_OPTIONAL)
HTTP_VALID_ITEM = valid_items(
    "id", "status", ["running", "succeeded", "odd"],
    {"percent": st.one_of(GOOD_PROGRESS, st.sampled_from(["50%", " 7 ", "NaN", "-1", "1e999"])),
     "error": st.one_of(st.fixed_dictionaries({}, optional={"detail": JUNK}), st.none())})
HTTP_GOOD = st.fixed_dictionaries({"data": st.lists(HTTP_VALID_ITEM, max_size=3)})
HTTP_BODY = st.one_of(objects({"data": lists_of(HTTP_ITEM)}, {}), HTTP_ITEM, JUNK)


@dataclass(frozen=True, slots=True)
class Kind:
    """How to fuzz one polled kind: bodies it must accept, any bodies, tracked ids and the
    path (and body) of a by-id lookup, which gets its own fuzzed answer."""

    good: st.SearchStrategy[Any]
    any: st.SearchStrategy[Any]
    ids: tuple[str, ...] = ()
    lookup_path: str | None = None
    lookup: st.SearchStrategy[Any] = NOTHING


POLLED: dict[str, Kind] = {
    "jtl": Kind(JTL_GOOD, JTL_BODY),
    "terminal": Kind(TERMINAL_GOOD, TERMINAL_BODY, ("t-1",), "/syncs/t-1",
                     st.one_of(TERMINAL_VALID_ITEM, TERMINAL_ITEM)),
    "esales": Kind(ESALES_GOOD, ESALES_BODY, (ESALES_ID,)),
    # Tracked ids the list leaves out are asked for with show_many.
    "zendesk": Kind(ZENDESK_GOOD, ZENDESK_BODY, ("z-1",), "/api/v2/job_statuses/show_many.json",
                    st.fixed_dictionaries({"job_statuses": st.lists(
                        st.one_of(ZENDESK_VALID_ITEM, ZENDESK_ITEM), max_size=2)})),
    "http": Kind(HTTP_GOOD, HTTP_BODY),
}
PUSH_BODIES: dict[str, st.SearchStrategy[Any]] = {
    "jtl": st.one_of(JTL_ITEM, JTL_GOOD, JTL_BODY),
    "terminal": st.one_of(objects({"type": st.sampled_from(["sync.completed", "other"])},
                                  {"detail": st.one_of(objects({"sync": TERMINAL_ITEM}, {}),
                                                       JUNK)}),
                          TERMINAL_VALID_ITEM, TERMINAL_BODY),
    "esales": st.one_of(ESALES_BODY, lists_of(ESALES_BODY)),
    "zendesk": st.one_of(ZENDESK_GOOD, ZENDESK_BODY),
    "http": st.one_of(HTTP_GOOD, HTTP_BODY),
    "push": st.one_of(HTTP_VALID_ITEM, HTTP_ITEM, lists_of(HTTP_ITEM), JUNK),
}
TRACKED = {kind: list(spec.ids) for kind, spec in POLLED.items()}


# --- 1. fuzzed polls ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(POLLED))
def test_a_fuzzed_answer_gives_valid_jobs_or_a_readable_source_error(kind: str, rig: Rig
                                                                     ) -> None:
    spec = POLLED[kind]
    jobs_seen = 0
    lookups = answers(spec.lookup, spec.lookup) if spec.lookup_path else st.none()

    @FUZZ
    @given(answer=answers(spec.any, spec.good), lookup=lookups)
    def poll_once(answer: Answer, lookup: Answer | None) -> None:
        nonlocal jobs_seen
        rig.server.answer = answer
        if spec.lookup_path and lookup is not None:
            rig.server.by_path[spec.lookup_path] = lookup
        # A fresh source per answer: Zendesk remembers unfinished jobs between polls.
        source = make_source(kind, rig.session, rig.server.url)
        result = assert_valid_poll(rig, source, TRACKED[kind])
        jobs_seen += len(result.observations) if result else 0

    poll_once()
    # The fuzz must reach past the error paths into item parsing.
    assert jobs_seen >= 10


def test_fuzzed_answers_to_an_http_source_polled_per_id_stay_valid(rig: Rig) -> None:
    source = make_source("http", rig.session, rig.server.url, url="/jobs/{id}", items=None)

    @FUZZ
    @given(answer=answers(st.one_of(HTTP_ITEM, HTTP_BODY)))
    def poll_once(answer: Answer) -> None:
        rig.server.answer = answer
        assert_valid_poll(rig, source, ["j-1", "j-2"])

    poll_once()


@pytest.mark.parametrize("kind", sorted(PUSH_BODIES))
def test_a_fuzzed_push_body_gives_valid_jobs_or_a_readable_source_error(kind: str) -> None:
    source = make_source(kind, None, "http://127.0.0.1:9")  # type: ignore[arg-type]

    @settings(FUZZ, max_examples=300)
    @given(payload=PUSH_BODIES[kind])
    def push_once(payload: Any) -> None:
        assert_valid_push(source, payload)

    push_once()


# --- 1b. the corpus: named hostile answers every kind must survive ---------------------------

CORPUS: dict[str, Answer] = {
    "html error page": Answer(status=200, body=HTML, content_type="text/html"),
    "empty body": Answer(body=b""),
    "truncated json": Answer(body=b'{"results": [{"id": "x", "sta'),
    "deeply nested array": Answer(body=DEEP),
    "deeply nested object": Answer(body=DEEP_OBJECT),
    "invalid utf-8": Answer(body=b'{"status": "\xff\xfe"}'),
    "NaN literal": Answer(body=b"NaN"),
    "a 5000-digit number": Answer(body=b"9" * 5000),
    "deep error body on a 500": Answer(status=500, body=DEEP_OBJECT),
    "connection cut mid-body": Answer(body=b'{"data": [' + b" " * 4000 + b"]}",
                                      truncate_at=10),
    "redirect loop": redirect("/loop"),
    "redirect to an invalid url": redirect("http://[::1"),
    "redirect to another scheme": redirect("ftp://127.0.0.1/x"),
}


@pytest.mark.parametrize("kind", sorted(POLLED))
async def test_every_corpus_answer_gives_a_readable_source_error(kind: str) -> None:
    async with HostileServer() as server, aiohttp.ClientSession() as session:
        source = make_source(kind, session, server.url)
        for name, answer in CORPUS.items():
            server.answer = answer
            with pytest.raises(SourceError) as caught:
                await source.poll(TRACKED[kind])
            assert_readable(caught.value)
            assert caught.value.args, name


@pytest.mark.parametrize("kind", sorted(POLLED))
async def test_a_slow_answer_past_the_timeout_is_a_timeout(kind: str) -> None:
    async with HostileServer(Answer(delay=5.0)) as server, \
            aiohttp.ClientSession() as session:
        source = make_source(kind, session, server.url, timeout="200ms")
        with pytest.raises(SourceUnavailable, match="timed out") as caught:
            await asyncio.wait_for(source.poll(TRACKED[kind]), 3)
    assert_readable(caught.value)


@pytest.mark.parametrize("kind", sorted(POLLED))
async def test_a_body_over_the_cap_is_refused(kind: str) -> None:
    huge = Answer(body=b"[" + b" " * MAX_BODY_BYTES + b"]")
    async with HostileServer(huge) as server, aiohttp.ClientSession() as session:
        source = make_source(kind, session, server.url)
        with pytest.raises(SourceUnavailable, match="larger than") as caught:
            await source.poll(TRACKED[kind])
    assert_readable(caught.value)


async def test_a_chunked_body_over_the_cap_is_refused_while_reading() -> None:
    huge = Answer(body=b"[" + b" " * MAX_BODY_BYTES + b"]", chunked=True)
    async with HostileServer(huge) as server, aiohttp.ClientSession() as session:
        source = make_source("http", session, server.url)
        with pytest.raises(SourceUnavailable, match="larger than"):
            await source.poll([])


async def test_an_invalid_configured_url_is_a_config_error_not_a_crash() -> None:
    # The config refuses it (issue 15); a source built around the model still says so
    # readably rather than crash.
    with pytest.raises(ValueError, match="invalid host or port"):
        make_source("http", None, "", url="http://[::1/jobs")  # type: ignore[arg-type]
    model = SOURCE_KINDS["http"].model
    valid = model.model_validate(source_config("http", "", url="http://x/jobs"))
    config = model.model_construct(**{**dict(valid), "url": "http://[::1/jobs"})
    async with aiohttp.ClientSession() as session:
        source = build_source(config, session)
        with pytest.raises(SourceMisconfigured, match="invalid URL") as caught:
            await source.poll([])
    assert_readable(caught.value)


# --- 1c. progress and ids at the edges, and unknown states ----------------------------------


def _one_item(kind: str, item: dict[str, Any]) -> Any:
    wrap: dict[str, Callable[[dict[str, Any]], Any]] = {
        "jtl": lambda i: [i], "terminal": lambda i: {"results": [i], "next": None},
        "zendesk": lambda i: {"job_statuses": [i]}, "esales": lambda i: i,
        "http": lambda i: {"data": [i]},
    }
    return wrap[kind](item)


STATE_KEYS = {"jtl": ("Identifier", "State"), "terminal": ("id", "status"),
              "zendesk": ("id", "status"), "esales": ("id", "status"), "http": ("id", "status")}
RUNNING = {"jtl": 2, "terminal": "in_progress", "zendesk": "working", "esales": "IN_PROGRESS",
           "http": "running"}
PROGRESS_KEY = {"jtl": "Progress", "terminal": "progress", "http": "percent"}


@pytest.mark.parametrize("kind", sorted(PROGRESS_KEY))
@pytest.mark.parametrize("raw", [-5, 150, 1e308, "NaN", "Infinity", "-Infinity"])
async def test_progress_out_of_range_is_clamped_or_dropped(kind: str, raw: Any) -> None:
    id_key, state_key = STATE_KEYS[kind]
    body = json.dumps(_one_item(kind, {id_key: "j1", state_key: RUNNING[kind]}))
    # NaN and Infinity as bare JSON literals, as a lenient server writes them.
    body = body.replace("}", f', "{PROGRESS_KEY[kind]}": {raw}}}', 1)
    async with HostileServer(Answer(body=body.encode())) as server, \
            aiohttp.ClientSession() as session:
        result = await make_source(kind, session, server.url).poll([])
    (job,) = result.observations
    assert job.progress is None or 0 <= job.progress <= 100
    if isinstance(raw, int | float) and not math.isnan(raw) and raw > 100:
        assert job.progress == 100.0


# eSales is left out: it keeps the id it asked for and never reads one from the body.
@pytest.mark.parametrize("kind", ["http", "jtl", "terminal", "zendesk"])
@pytest.mark.parametrize("odd_id", [True, 4.5, None, {"a": 1}, [1], ""])
async def test_an_id_of_an_odd_type_is_schema_drift(kind: str, odd_id: Any) -> None:
    id_key, state_key = STATE_KEYS[kind]
    answer = json_answer(_one_item(kind, {id_key: odd_id, state_key: RUNNING[kind]}))
    async with HostileServer(answer) as server, aiohttp.ClientSession() as session:
        with pytest.raises(SourceUnavailable, match="unexpected response shape") as caught:
            await make_source(kind, session, server.url).poll([])
    assert_readable(caught.value)


UNKNOWN = {"jtl": 9, "terminal": "paused", "zendesk": "on_hold", "esales": "PAUSED",
           "http": "on_hold"}


@pytest.mark.parametrize("kind", sorted(UNKNOWN))
async def test_an_unknown_state_maps_to_unknown_with_a_warning(
        kind: str, caplog: pytest.LogCaptureFixture) -> None:
    id_key, state_key = STATE_KEYS[kind]
    answer = json_answer(_one_item(kind, {id_key: "j1", state_key: UNKNOWN[kind]}))
    caplog.set_level(logging.WARNING)
    async with HostileServer(answer) as server, aiohttp.ClientSession() as session:
        source = make_source(kind, session, server.url)
        ids = [ESALES_ID] if kind == "esales" else []
        result = await source.poll(ids)
        await source.poll(ids)
    assert [job.state for job in result.observations] == [JobState.UNKNOWN]
    assert [job.raw_state for job in result.observations] == [str(UNKNOWN[kind])]
    warnings = [r for r in caplog.records if "unmapped state" in r.getMessage()]
    assert len(warnings) == 1, "warn once per raw value, not once per poll"
    assert source.name in warnings[0].getMessage()
    assert str(UNKNOWN[kind]) in warnings[0].getMessage()


async def test_an_unknown_pushed_state_maps_to_unknown_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    source = make_source("push", None, "http://127.0.0.1:9")  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING)
    (job,) = source.parse_push({"id": "p1", "status": "on_hold"})
    assert job.state is JobState.UNKNOWN
    assert any("on_hold" in r.getMessage() for r in caplog.records)


# --- 2. through a real Bridge ---------------------------------------------------------------

VALID: dict[str, Any] = {
    "jtl": [{"Identifier": "w1", "State": 2, "Progress": 10}],
    "terminal": {"results": [{"id": "s1", "status": "in_progress"}], "next": None},
    "zendesk": {"job_statuses": [{"id": "z1", "status": "working"}]},
    "esales": {"status": "IN_PROGRESS"},
    "http": {"data": [{"id": "h1", "status": "running"}]},
}
MALFORMED: dict[str, Answer] = {
    "jtl": json_answer({"workers": []}),
    "terminal": Answer(body=b'{"results": [{"id": "s1", "sta'),
    "zendesk": Answer(body=HTML, content_type="text/html"),
    "esales": json_answer({"status": ["IN_PROGRESS"]}),
    "http": json_answer({"data": [{"id": {"nested": 1}, "status": "running"}]}),
}


class Recorder:
    def __init__(self) -> None:
        self.outcomes: list[PollOutcome] = []

    def __call__(self, outcome: PollOutcome) -> None:
        self.outcomes.append(outcome)

    def events(self, source: str) -> list[tuple[EventKind, str | None]]:
        return [(e.on, e.job.id if e.job else None)
                for o in self.outcomes if o.source == source for e in o.events]


def bridge_config(tmp_path: Path, servers: dict[str, HostileServer],
                  extra_rules: str = "") -> Config:
    tables = []
    for kind, server in servers.items():
        table = source_config(kind, server.url, interval="1h", timeout="1s")
        table["name"] = kind
        tables.append(table)
    tables.append({**source_config("push", ""), "name": "push", "base_url": None})
    text = f"""
[bridge]
state = "sqlite:///{tmp_path}/state.db"
templates = "{TEMPLATES}"

[[sinks]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:9/never-called"

[[rules]]
name = "downs"
on = "source_down"
template = "source_down.slack.j2"
notify = ["hook"]
{extra_rules}
"""
    config = parse_config(text, str(tmp_path / "rules.toml"), {})
    sources = [SOURCE_KINDS[t["kind"]].model.model_validate({k: v for k, v in t.items()
                                                       if v is not None}) for t in tables]
    return config.model_copy(update={"sources": sources})


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, HostileServer]]:
    opened = {kind: HostileServer(json_answer(body)) for kind, body in VALID.items()}
    for server in opened.values():
        await server.__aenter__()
    try:
        yield opened
    finally:
        for server in opened.values():
            await server.__aexit__(None, None, None)


async def _started(config: Config, recorder: Recorder) -> Bridge:
    bridge = Bridge(config, serve_http=False, observers=[recorder], drain_timeout=0.5)
    await bridge.__aenter__()
    polled = {s.name for s in config.sources if s.kind != "push"}
    for _ in range(300):  # the scheduler polls every source once at start-up
        if polled <= {o.source for o in recorder.outcomes}:
            break
        await asyncio.sleep(0.01)
    return bridge


@pytest.mark.parametrize("kind", sorted(MALFORMED))
async def test_a_malformed_answer_marks_only_its_source_down_with_a_readable_reason(
        kind: str, tmp_path: Path, servers: dict[str, HostileServer]) -> None:
    recorder = Recorder()
    bridge = await _started(bridge_config(tmp_path, servers), recorder)
    try:
        recorder.outcomes.clear()
        servers[kind].answer = MALFORMED[kind]
        for name in servers:
            await bridge.pipeline.poll(name)
        # down_after = 3 (the default): the third failed poll in a row marks it down, once.
        await bridge.pipeline.poll(kind)
        assert recorder.events(kind) == []
        await bridge.pipeline.poll(kind)
        await bridge.pipeline.poll(kind)
        assert recorder.events(kind) == [(EventKind.SOURCE_DOWN, None)]
        down = next(e for o in recorder.outcomes for e in o.events if o.source == kind)
        assert down.reason
        assert_readable(SourceUnavailable(down.reason))
        health = bridge.pipeline.health(kind)
        assert health is not None and not health.up
        assert bridge.pipeline.jobs(kind)  # the job seen before is neither changed nor gone
        for other in set(servers) - {kind}:
            assert recorder.events(other) == []
            other_health = bridge.pipeline.health(other)
            assert other_health is not None and other_health.up
            assert [o.error for o in recorder.outcomes if o.source == other] == [None]
    finally:
        await bridge.__aexit__(None, None, None)


async def test_a_malformed_push_is_refused_and_emits_nothing(
        tmp_path: Path, servers: dict[str, HostileServer]) -> None:
    recorder = Recorder()
    bridge = await _started(bridge_config(tmp_path, servers), recorder)
    try:
        recorder.outcomes.clear()
        for payload in ([{"id": {"x": 1}, "status": "running"}], "text", [], {"status": "x"}):
            with pytest.raises(SourceUnavailable) as caught:
                await bridge.push("push", payload)
            assert_readable(caught.value)
        assert recorder.outcomes == []
        await bridge.pipeline.poll("http")
        assert [o.error for o in recorder.outcomes] == [None]
    finally:
        await bridge.__aexit__(None, None, None)


BROKEN_RULE = """
[[rules]]
name = "broken"
on = "appeared"
source = "http"
template = "broken.j2"
notify = ["hook"]
continue = true

[[rules]]
name = "fine"
on = "appeared"
template = "appeared.slack.j2"
notify = ["hook"]
"""


async def test_a_template_that_raises_at_render_time_does_not_stop_the_pipeline(
        tmp_path: Path, servers: dict[str, HostileServer],
        caplog: pytest.LogCaptureFixture) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    for template in TEMPLATES.iterdir():
        if template.is_file():
            (templates / template.name).write_text(template.read_text())
    # Compiles, then fails while rendering: a division by zero over the event.
    (templates / "broken.j2").write_text("{{ job.id }} {{ 1 // (job.progress or 0) }}")
    config = bridge_config(tmp_path, {"http": servers["http"]}, BROKEN_RULE)
    config = config.model_copy(update={"bridge": config.bridge.model_copy(
        update={"templates": str(templates)})})
    recorder = Recorder()
    caplog.set_level(logging.ERROR)
    bridge = await _started(config, recorder)
    try:
        servers["http"].answer = json_answer({"data": [{"id": "h1", "status": "running"},
                                                       {"id": "h2", "status": "running"}]})
        outcome = await bridge.pipeline.poll("http")
        assert outcome.error is None
        rules = sorted((n.rule, n.job_id) for o in recorder.outcomes for n in o.notifications)
        # The broken rule's sink gets the bundled template's message (never a silent drop).
        assert rules == [("broken", "h1"), ("broken", "h2"), ("fine", "h1"), ("fine", "h2")]
        assert any("broken" in r.getMessage() for r in caplog.records)
        assert bridge.pipeline.health("http") is not None
    finally:
        await bridge.__aexit__(None, None, None)


def test_two_sources_with_the_same_name_are_reported_by_check_with_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(f"""[bridge]
state = "sqlite:///{tmp_path}/state.db"

[[sources]]
name = "exports"
kind = "http"
url = "http://127.0.0.1:9/jobs"

[[sources]]
name = "exports"
kind = "push"
""")
    assert main(["check", "--config", str(rules)]) == 1
    err = capsys.readouterr().err
    assert f"{rules}:10: sources[1].name: duplicate name 'exports'" in err
