"""Two bridges on one PostgreSQL database, each with its own HTTP API: a replayed push is
refused by the instance that did not accept it first, a watch added through one reaches the
instance that polls the source, and both show the health of every source (from the store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.server.app import create_app
from tests.server_support import POLLED, PollLog, make_config, serve, upstreams
from tests.store_fixtures import store_url
from tests.test_server_push import BODY, signed

pytestmark = pytest.mark.postgres


@asynccontextmanager
async def two_bridges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[list[Bridge], list[str], aiohttp.ClientSession]]:
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(store_url("postgresql", tmp_path))
        up = await stack.enter_async_context(upstreams())
        config = make_config(tmp_path, up)
        config = config.model_copy(
            update={"bridge": config.bridge.model_copy(update={"state": url})})
        bridges, urls = [], []
        for name in ("first", "second"):
            monkeypatch.setenv("BRIDGE_INSTANCE", name)
            polls = PollLog()
            bridge = await stack.enter_async_context(
                Bridge(config, serve_http=False, observers=[polls], drain_timeout=1.0))
            if name == "first":  # it takes every lease, being alone; wait for its polls
                await polls.wait_for(lambda log=polls: set(POLLED) <= set(log.sources))
            bridges.append(bridge)
            app = create_app(bridge, admin_token=None)
            urls.append(await stack.enter_async_context(serve(app)))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        yield bridges, urls, http


async def test_a_replayed_push_is_refused_by_every_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = signed(msg_id="msg_shared")
    async with two_bridges(tmp_path, monkeypatch) as (bridges, urls, http):
        async with http.post(urls[0] + "/v1/events/hooks", data=BODY, headers=headers) as r:
            assert r.status == 202
        async with http.post(urls[1] + "/v1/events/hooks", data=BODY, headers=headers) as r:
            assert r.status == 409, await r.text()
        events = [e for _, e in await bridges[1].store.recent_events(source="hooks")]
    assert len(events) == 1


async def test_a_push_to_either_instance_starts_from_the_shared_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved = BODY.replace(b'"running", "percent": 30', b'"succeeded", "percent": 100')
    async with two_bridges(tmp_path, monkeypatch) as (bridges, urls, http):
        async with http.post(urls[0] + "/v1/events/hooks", data=BODY,
                             headers=signed(msg_id="m1")) as r:
            assert r.status == 202
        async with http.post(urls[1] + "/v1/events/hooks", data=moved,
                             headers=signed(moved, msg_id="m2")) as r:
            assert r.status == 202
        events = [e for _, e in await bridges[0].store.recent_events(source="hooks")]
    # The second instance knew the job (appeared on the first): a transition, no new sighting.
    assert [str(e.on) for e in reversed(events)] == ["appeared", "transition"]


async def test_a_watch_added_anywhere_reaches_the_owner_and_health_is_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with two_bridges(tmp_path, monkeypatch) as (bridges, urls, http):
        owner, other = bridges
        assert owner.leases.holds("source:imports") and not other.leases.holds("source:imports")
        async with http.post(urls[1] + "/v1/watches",
                             json={"source": "imports", "id": "imp-watched"}) as r:
            assert r.status in (200, 201), await r.text()
        await owner.pipeline.poll("imports")
        assert "imp-watched" in owner.pipeline.ids_to_poll("imports")
        stored = {h.source: h for h in await owner.store.list_health()}
        async with http.get(urls[1] + "/v1/sources") as r:
            shown = {s["name"]: s for s in (await r.json())["sources"]}
    assert stored["imports"].last_poll_at is not None
    assert shown["imports"]["health"]["last_poll_at"] == stored["imports"].last_poll_at.isoformat()
