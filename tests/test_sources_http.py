"""The generic http and push sources (JMESPath extraction) and the shared fetch helper."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import jmespath
import pytest
from aiohttp import web
from pydantic import ValidationError

from bridge.config.schema import HttpSource, PushSource
from bridge.errors import SourceUnavailable
from bridge.model import JobState
from bridge.secrets import redact
from bridge.simulators.base import Fault, Simulator, json_response
from bridge.sources import build_source
from bridge.sources.exchange import Fetcher, Request
from bridge.sources.http import HttpJobs, compile_expression
from bridge.sources.push import PushedJobs


class JobsApi(Simulator):
    """Any JSON job API: `GET|POST /jobs` answers `body`; `GET /jobs/{id}` answers from `by_id`."""

    def __init__(self) -> None:
        super().__init__()
        self.body: Any = {}
        self.by_id: dict[str, Any] = {}
        self.posted: list[Any] = []

    def routes(self) -> Iterable[web.RouteDef]:
        return [web.get("/jobs", self._jobs), web.post("/jobs", self._post),
                web.get("/jobs/{id}", self._one)]

    async def _jobs(self, request: web.Request) -> web.Response:
        return json_response(self.body)

    async def _post(self, request: web.Request) -> web.Response:
        self.posted.append(await request.json())
        return json_response(self.body)

    async def _one(self, request: web.Request) -> web.Response:
        job = self.by_id.get(request.match_info["id"])
        return json_response({"error": "no such job"}, 404) if job is None else json_response(job)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def api() -> AsyncIterator[JobsApi]:
    async with JobsApi() as s:
        yield s


def http(api: JobsApi, session: aiohttp.ClientSession, **settings: Any) -> HttpJobs:
    data = {"name": "exports", "kind": "http", "url": f"{api.base_url}/jobs", "timeout": "2s",
            **settings}
    built = build_source(HttpSource.model_validate(data), session)
    assert isinstance(built, HttpJobs)
    return built


LISTED = {"data": [
    {"id": 7, "status": "running", "percent": 40, "error": None},
    {"id": "b", "status": "error", "percent": "100%", "error": {"detail": "disk full"}},
]}


async def test_items_and_fields_are_extracted_with_jmespath(
        api: JobsApi, session: aiohttp.ClientSession) -> None:
    api.body = LISTED
    source = http(api, session, items="data[*]", progress="percent", message="error.detail",
                  states={"error": "failed"})
    result = await source.poll([])
    first, second = result.observations
    assert (first.id, first.state, first.progress, first.message) == (
        "7", JobState.RUNNING, 40.0, None)
    assert (second.id, second.state, second.raw_state, second.progress, second.message) == (
        "b", JobState.FAILED, "error", 100.0, "disk full")
    assert second.fields == LISTED["data"][1]
    assert result.complete


async def test_single_object_answer_is_one_job(api: JobsApi,
                                               session: aiohttp.ClientSession) -> None:
    api.body = {"job": {"key": "export-1", "phase": "done"}}
    source = http(api, session, id="job.key", state="job.phase", states={"done": "succeeded"})
    result = await source.poll([])
    [job] = result.observations
    assert (job.id, job.state) == ("export-1", JobState.SUCCEEDED)
    assert not result.complete


@pytest.mark.parametrize(("raw", "state"), [("cancelled", JobState.CANCELLED),
                                            ("succeeded", JobState.SUCCEEDED),
                                            ("exploded", JobState.UNKNOWN)])
async def test_canonical_names_map_to_themselves_and_others_are_unknown(
        api: JobsApi, session: aiohttp.ClientSession, raw: str, state: JobState) -> None:
    api.body = {"id": "j", "status": raw}
    [job] = (await http(api, session).poll([])).observations
    assert job.state is state


async def test_post_sends_the_configured_body(api: JobsApi,
                                              session: aiohttp.ClientSession) -> None:
    api.body = {"id": "j", "status": "running"}
    await http(api, session, method="POST", body={"query": "open"}).poll([])
    assert api.posted == [{"query": "open"}]


async def test_url_with_id_placeholder_polls_each_id_and_404_is_missing(
        api: JobsApi, session: aiohttp.ClientSession) -> None:
    api.by_id["a1"] = {"id": "a1", "status": "running"}
    source = http(api, session, url=f"{api.base_url}/jobs/{{id}}")
    result = await source.poll(["a1", "zz"])
    assert not source.lists_jobs
    assert [job.id for job in result.observations] == ["a1"]
    assert result.missing == frozenset({"zz"})


async def test_items_expression_finding_nothing_is_drift(api: JobsApi,
                                                         session: aiohttp.ClientSession) -> None:
    api.body = {"results": []}
    with pytest.raises(SourceUnavailable, match=r"items \('data\[\*\]'\) should be a list"):
        await http(api, session, items="data[*]").poll([])


async def test_item_without_id_is_drift(api: JobsApi, session: aiohttp.ClientSession) -> None:
    api.body = [{"status": "running"}]
    with pytest.raises(SourceUnavailable, match=r"id \('uid'\) found nothing"):
        await http(api, session, items="[*]", id="uid").poll([])


def test_invalid_jmespath_is_refused_by_the_model_before_any_source_is_built() -> None:
    # Validated with the config (so `check` and `run` refuse it alike, with file:line).
    with pytest.raises(ValidationError, match="invalid JMESPath expression 'status\\[\\?'"):
        HttpSource.model_validate({"name": "x", "kind": "http", "url": "http://x/",
                                   "state": "status[?"})


async def test_relative_url_joins_base_url(api: JobsApi, session: aiohttp.ClientSession) -> None:
    api.body = {"id": "j", "status": "running"}
    source = http(api, session, url="jobs", base_url=api.base_url)
    assert len((await source.poll([])).observations) == 1


async def test_push_source_applies_its_expressions_to_a_list(
        session: aiohttp.ClientSession) -> None:
    config = PushSource.model_validate({"name": "ci", "kind": "push", "id": "build.id",
                                        "state": "build.result", "progress": "build.pct",
                                        "message": "build.log"})
    push = build_source(config, session)
    assert isinstance(push, PushedJobs)
    jobs = push.parse_push([{"build": {"id": 1, "result": "failed", "pct": 90, "log": "boom"}},
                            {"build": {"id": 2, "result": "running"}}])
    assert [(j.id, j.state, j.progress, j.message) for j in jobs] == [
        ("1", JobState.FAILED, 90.0, "boom"), ("2", JobState.RUNNING, None, None)]


async def test_push_source_is_not_polled(session: aiohttp.ClientSession) -> None:
    push = build_source(PushSource.model_validate({"name": "ci", "kind": "push"}), session)
    assert push.lists_jobs is False
    assert list((await push.poll(["x"])).observations) == []


def test_push_body_that_is_not_an_object_is_drift(session: aiohttp.ClientSession) -> None:
    push = build_source(PushSource.model_validate({"name": "ci", "kind": "push"}), session)
    with pytest.raises(SourceUnavailable, match="should be an object"):
        push.parse_push(["not an object"])


# --- the shared exchange --------------------------------------------------------------


async def test_body_over_the_size_cap_is_refused(api: JobsApi,
                                                 session: aiohttp.ClientSession) -> None:
    api.body = {"data": ["x" * 100] * 100}
    with pytest.raises(SourceUnavailable, match="larger than 1000 bytes"):
        await Fetcher(session=session, time_limit=2, max_bytes=1000).fetch(
            Request(url=f"{api.base_url}/jobs"))


async def test_http_date_retry_after_becomes_seconds(api: JobsApi,
                                                     session: aiohttp.ClientSession) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    api.fail_next(Fault.RATE_LIMITED, retry_after=when)
    with pytest.raises(SourceUnavailable) as caught:
        await Fetcher(session=session, time_limit=2).fetch(Request(url=f"{api.base_url}/jobs"))
    assert caught.value.retry_after is not None
    assert 100 < caught.value.retry_after <= 120


async def test_connection_refused_is_unavailable(session: aiohttp.ClientSession) -> None:
    api = JobsApi()
    url = f"{await api.start()}/jobs"
    await api.stop()
    with pytest.raises(SourceUnavailable, match="connection failed"):
        await Fetcher(session=session, time_limit=2).fetch(Request(url=url))


async def test_html_error_page_with_5xx_is_unavailable(api: JobsApi,
                                                       session: aiohttp.ClientSession) -> None:
    api.fail_next(Fault.HTML_ERROR, status=502)
    with pytest.raises(SourceUnavailable, match="HTTP 502"):
        await Fetcher(session=session, time_limit=2).fetch(Request(url=f"{api.base_url}/jobs"))


async def test_query_string_is_left_out_of_messages(api: JobsApi,
                                                    session: aiohttp.ClientSession) -> None:
    api.fail_next(Fault.SERVER_ERROR)
    with pytest.raises(SourceUnavailable) as caught:
        url = f"{api.base_url}/jobs?api_key=hunter22"
        await Fetcher(session=session, time_limit=2).fetch(Request(url=url))
    assert "hunter22" not in str(caught.value)


def test_redact_replaces_every_secret() -> None:
    assert redact("token abc123 and abc1234", ["abc123", "abc1234"]) == "token *** and ***"


@pytest.mark.parametrize("expression", ["id", '"job-id"', "state", "a.b", "items[0]"])
@pytest.mark.parametrize("value", [
    {"id": "7", "job-id": 8, "state": None, "a": {"b": "deep"}}, {}, [1, 2], "text", 3, None,
    {"items": ["first"]},
])
def test_a_compiled_expression_answers_as_jmespath_does(expression: str, value: object) -> None:
    # A bare key is read with a dict lookup instead of the interpreter: the same answers.
    assert compile_expression(expression, "id").search(value) == jmespath.search(expression, value)
