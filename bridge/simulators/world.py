"""The demo world: all four seed-API simulators running and ticking together.

    async with DemoWorld(seed=7, tick_interval=2.0) as world:
        config = load_config(path, env=world.env())   # what bridge/demo.toml reads
        ...                                             # run bridge against it

`env()` gives these variables (the simulators accept exactly these credentials):

    DEMO_JTL_URL                    JTL base URL (ends in /erp)
    DEMO_JTL_TOKEN_URL              JTL OAuth2 token endpoint
    DEMO_JTL_TENANT_ID              sent as x-tenant-id
    DEMO_JTL_CLIENT_ID              OAuth2 client id
    DEMO_JTL_CLIENT_SECRET          OAuth2 client secret
    DEMO_TERMINAL_URL               Terminal base URL (ends in /tsp/v1)
    DEMO_TERMINAL_TOKEN             bearer token
    DEMO_TERMINAL_CONNECTION_TOKEN  Connection-Token header
    DEMO_ESALES_URL                 eSales base URL
    DEMO_ESALES_API_KEY             Api-Key header
    DEMO_ESALES_IDS                 the demo import ids, comma-separated (also `esales_ids()`)
    DEMO_ZENDESK_URL                Zendesk base URL
    DEMO_ZENDESK_EMAIL              basic-auth user is "{email}/token"
    DEMO_ZENDESK_TOKEN              Zendesk API token

JTL tokens live `token_ttl` seconds (short by default), so the demo also shows renewal.
Nothing here imports the pipeline: the demo command can start the world on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from bridge.simulators.base import Simulator
from bridge.simulators.esales import EsalesSimulator
from bridge.simulators.jtl import JtlSimulator
from bridge.simulators.terminal import TerminalSimulator
from bridge.simulators.zendesk import ZendeskSimulator


class DemoWorld:
    """Starts the simulators, plans their demo jobs and ticks them in the background."""

    def __init__(self, *, seed: int = 0, tick_interval: float = 2.0,
                 token_ttl: float = 120.0) -> None:
        self.tick_interval = tick_interval
        self.jtl = JtlSimulator(token_ttl=token_ttl, client_id="demo-client",
                                client_secret="demo-client-secret", seed=seed)
        self.terminal = TerminalSimulator(api_key="demo-terminal-key",
                                          connection_token="con_tkn_demo", seed=seed + 1)
        self.esales = EsalesSimulator(api_key="demo-esales-key", seed=seed + 2)
        self.zendesk = ZendeskSimulator(email="demo@example.com", api_token="demo-zendesk-token",
                                        seed=seed + 3)
        self.jtl.plan_demo()
        self._esales_ids = self.esales.plan_demo()
        self._ticker: asyncio.Task[None] | None = None

    @property
    def simulators(self) -> tuple[Simulator, ...]:
        return (self.jtl, self.terminal, self.esales, self.zendesk)

    def esales_ids(self) -> list[str]:
        """The eSales import ids a config should track (the API cannot list them)."""
        return list(self._esales_ids)

    def env(self) -> dict[str, str]:
        return {
            "DEMO_JTL_URL": self.jtl.base_url,
            "DEMO_JTL_TOKEN_URL": self.jtl.token_url,
            "DEMO_JTL_TENANT_ID": self.jtl.tenant_id,
            "DEMO_JTL_CLIENT_ID": self.jtl.client_id,
            "DEMO_JTL_CLIENT_SECRET": self.jtl.client_secret,
            "DEMO_TERMINAL_URL": self.terminal.base_url,
            "DEMO_TERMINAL_TOKEN": self.terminal.api_key,
            "DEMO_TERMINAL_CONNECTION_TOKEN": self.terminal.connection_token,
            "DEMO_ESALES_URL": self.esales.base_url,
            "DEMO_ESALES_API_KEY": self.esales.api_key,
            "DEMO_ESALES_IDS": ",".join(self._esales_ids),
            "DEMO_ZENDESK_URL": self.zendesk.base_url,
            "DEMO_ZENDESK_EMAIL": self.zendesk.email,
            "DEMO_ZENDESK_TOKEN": self.zendesk.api_token,
        }

    def tick(self) -> None:
        """Advance every simulator one step (the background task calls this)."""
        for simulator in self.simulators:
            simulator.tick()

    async def start(self) -> None:
        for simulator in self.simulators:
            await simulator.start()
        self._ticker = asyncio.create_task(self._tick_forever(), name="demo-world-ticker")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for simulator in self.simulators:
            await simulator.stop()

    async def __aenter__(self) -> DemoWorld:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            self.tick()
