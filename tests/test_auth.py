"""Source auth: static headers, and OAuth2 client credentials against the JTL token endpoint."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import TypeAdapter

from bridge.config.schema import Auth, JtlSource
from bridge.errors import ConfigError, SourceMisconfigured
from bridge.simulators.base import Fault
from bridge.simulators.jtl import JtlSimulator
from bridge.sources.auth import OAuth2ClientCredentials, build_auth
from bridge.sources.jtl import JtlWorkers

TENANT = "0b9f4a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
CLIENT_ID = "bridge-client"
CLIENT_SECRET = "s3cr3t-client-secret-value"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[JtlSimulator]:
    async with JtlSimulator(tenant_id=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                            token_ttl=60, clock=clock) as s:
        yield s


def jtl(sim: JtlSimulator, session: aiohttp.ClientSession, clock: FakeClock,
        secret: str = CLIENT_SECRET) -> JtlWorkers:
    config = JtlSource.model_validate({
        "name": "jtl", "kind": "jtl", "base_url": sim.base_url, "tenant_id": TENANT,
        "timeout": "2s",
        "auth": {"type": "oauth2", "token_url": sim.token_url, "client_id": CLIENT_ID,
                 "client_secret": secret},
    })
    return JtlWorkers(config, session, clock=clock)


def auth_config(data: dict[str, Any]) -> Any:
    return TypeAdapter(Auth).validate_python(data)


async def test_token_is_reused_until_shortly_before_expiry(
        sim: JtlSimulator, session: aiohttp.ClientSession, clock: FakeClock) -> None:
    source = jtl(sim, session, clock)
    await source.poll([])
    clock.now += 50  # 60 s token, renewed 6 s before expiry
    await source.poll([])
    assert sim.token_requests == 1
    clock.now += 5
    await source.poll([])
    assert sim.token_requests == 2
    assert sim.request_count("/workers/status") == 3


async def test_token_request_uses_client_credentials_grant(
        sim: JtlSimulator, session: aiohttp.ClientSession, clock: FakeClock) -> None:
    await jtl(sim, session, clock).poll([])
    [token_request] = [r for r in sim.requests if r.path == "/oauth2/token"]
    scheme, _, encoded = token_request.headers["Authorization"].partition(" ")
    assert (scheme, base64.b64decode(encoded).decode()) == ("Basic",
                                                           f"{CLIENT_ID}:{CLIENT_SECRET}")
    api_request = sim.requests[-1]
    assert api_request.headers["Authorization"].startswith("Bearer ")


async def test_revoked_token_is_renewed_and_the_request_retried_once(
        sim: JtlSimulator, session: aiohttp.ClientSession, clock: FakeClock) -> None:
    source = jtl(sim, session, clock)
    sim.add_sync(state=2)
    await source.poll([])
    sim.revoke_tokens()
    result = await source.poll([])
    assert len(result.observations) == 1
    assert sim.token_requests == 2
    assert sim.request_count("/workers/status") == 3


async def test_second_401_after_renewal_is_misconfigured(
        sim: JtlSimulator, session: aiohttp.ClientSession, clock: FakeClock) -> None:
    source = jtl(sim, session, clock)
    sim.fail_next(Fault.UNAUTHORIZED, times=2)
    with pytest.raises(SourceMisconfigured, match="HTTP 401"):
        await source.poll([])
    assert sim.token_requests == 2
    assert sim.request_count("/workers/status") == 2


async def test_rejected_client_secret_is_misconfigured_and_not_shown(
        sim: JtlSimulator, session: aiohttp.ClientSession, clock: FakeClock) -> None:
    wrong = "wrong-client-secret-123"
    with pytest.raises(SourceMisconfigured) as caught:
        await jtl(sim, session, clock, secret=wrong).poll([])
    message = str(caught.value)
    assert "check client_id and client_secret" in message
    assert wrong not in message
    assert base64.b64encode(f"{CLIENT_ID}:{wrong}".encode()).decode() not in message


async def test_concurrent_polls_share_one_token_request(
        sim: JtlSimulator, session: aiohttp.ClientSession, clock: FakeClock) -> None:
    source = jtl(sim, session, clock)
    await asyncio.gather(*(source.poll([]) for _ in range(5)))
    assert sim.token_requests == 1


async def test_token_without_expires_in_is_kept_until_a_401(
        session: aiohttp.ClientSession, clock: FakeClock) -> None:
    async with JtlSimulator(tenant_id=TENANT, client_id=CLIENT_ID,
                            client_secret=CLIENT_SECRET) as sim:
        sim.announce_expiry = False
        oauth = OAuth2ClientCredentials(session, token_url=sim.token_url, client_id=CLIENT_ID,
                                        client_secret=CLIENT_SECRET, clock=clock)
        first = await oauth.token()
        clock.now += 86400
        assert await oauth.token() == first
        oauth.invalidate()
        assert await oauth.token() != first
        assert oauth.token_requests == 2


async def test_basic_auth_header(session: aiohttp.ClientSession) -> None:
    auth = build_auth(auth_config({"type": "basic", "username": "a@b.c/token",
                                   "password": "pw"}), session)
    header = (await auth.headers())["Authorization"]
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == "a@b.c/token:pw"
    assert "pw" in auth.secrets


async def test_bearer_and_header_auth(session: aiohttp.ClientSession) -> None:
    bearer = build_auth(auth_config({"type": "bearer", "token": "t0k"}), session)
    keyed = build_auth(auth_config({"type": "header", "header": "X-Key", "value": "v4l"}),
                       session)
    assert await bearer.headers() == {"Authorization": "Bearer t0k"}
    assert await keyed.headers() == {"X-Key": "v4l"}


async def test_none_auth_sends_nothing(session: aiohttp.ClientSession) -> None:
    assert await build_auth(auth_config({"type": "none"}), session).headers() == {}
    assert await build_auth(None, session).headers() == {}


def test_oauth2_without_token_url_is_a_config_error(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ConfigError, match="token_url"):
        build_auth(auth_config({"type": "oauth2", "client_id": "c", "client_secret": "s"}),
                   session)
