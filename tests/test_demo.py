"""`bridge demo` as a new user runs it: a subprocess, events from all four APIs, Ctrl-C."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.demo import run_demo

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
EVENT_LINE = re.compile(r"^\d\d:\d\d:\d\d (\w+)\s+(\w+)\s")


class Demo:
    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.lines: list[str] = []
        self.url = ""

    async def read_until(self, predicate: Any, within: float) -> None:
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(within):
                while not predicate():
                    raw = await self.process.stdout.readline()
                    if not raw:
                        raise AssertionError("demo exited early:\n" + self.tail())
                    line = raw.decode(errors="replace").rstrip("\n")
                    self.lines.append(line)
                    if "dashboard" in line and "http://" in line:
                        self.url = line.split()[-1]
        except TimeoutError:
            raise AssertionError(f"not seen within {within}s; the demo printed:\n"
                                 + self.tail()) from None

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])

    def sources_with_events(self) -> set[str]:
        return {m.group(2) for line in self.lines if (m := EVENT_LINE.match(line))}


@asynccontextmanager
async def demo(*args: str) -> AsyncIterator[Demo]:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "demo", "--listen", "127.0.0.1:0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT, env=env,
    )
    try:
        yield Demo(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.timeout(90)
async def test_demo_shows_events_from_all_four_apis_within_30s_and_stops_on_ctrl_c() -> None:
    async with demo("--tick", "1", "--verbose") as run:
        await run.read_until(
            lambda: {"jtl", "terminal", "esales", "zendesk"} <= run.sources_with_events(),
            within=30,
        )
        await run.read_until(lambda: any("┌─" in line for line in run.lines), within=60)
        assert run.url.startswith("http://127.0.0.1:")
        run.process.send_signal(signal.SIGINT)
        assert run.process.stdout is not None
        rest = await asyncio.wait_for(run.process.stdout.read(), 40)
        code = await asyncio.wait_for(run.process.wait(), 10)
    assert code == 0
    assert "stopped cleanly" in rest.decode()
    assert "Traceback" not in "\n".join(run.lines) + rest.decode()


@pytest.mark.browser
@pytest.mark.timeout(120)
async def test_dashboard_during_the_demo_shows_sources_jobs_and_retries_a_dead_letter() -> None:
    async_api: Any = pytest.importorskip("playwright.async_api")
    chromium = CHROMIUM
    if not HAVE_CHROMIUM:
        pytest.skip("the browser test needs Debian's Chromium at /usr/bin/chromium "
                    "(apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]
    async with demo("--tick", "1") as run, async_api.async_playwright() as playwright:
        await run.read_until(lambda: "dead-lettered" in "\n".join(run.lines), within=60)
        browser = await playwright.chromium.launch(executable_path=str(chromium),
                                                   headless=True, args=flags)
        try:
            page = await browser.new_page(viewport={"width": 1440, "height": 1100})
            await page.goto(run.url)
            for name in ("jtl", "terminal", "esales", "zendesk"):
                assert await page.locator(f'#sources tr[data-source="{name}"]').count() == 1
            assert await page.locator("#jobs tr[data-job]").count() > 0
            dead = page.locator("#outbox table.dead tr[data-delivery]").first
            delivery_id = await dead.get_attribute("data-delivery")
            if os.environ.get("BRIDGE_SCREENSHOT") == "1":
                await page.screenshot(path=str(ROOT / "docs" / "dashboard.png"), full_page=True)
            await dead.get_by_role("button", name="Retry").click()
            await page.locator(".banner.info").wait_for()
            assert "Re-queued 1 delivery." in await page.locator(".banner.info").inner_text()
            await page.goto(run.url)
            dead_rows = page.locator(f'#outbox table.dead tr[data-delivery="{delivery_id}"]')
            assert await dead_rows.count() == 0
        finally:
            await browser.close()


@pytest.mark.timeout(60)
async def test_demo_in_process_leaves_the_environment_as_it_found_it() -> None:
    """The simulators' addresses reach the config loader, never os.environ."""
    before = dict(os.environ)
    levels = {name: logging.getLogger(name).level for name in ("bridge.deliver",
                                                              "bridge.sinks.slack_sender")}
    out = io.StringIO()
    assert await run_demo(listen="127.0.0.1:0", tick=0.5, duration=3, out=out) == 0
    printed = out.getvalue()
    assert dict(os.environ) == before
    # The demo quiets two loggers while it runs, and gives them back as they were.
    assert {name: logging.getLogger(name).level for name in levels} == levels
    assert not [name for name in os.environ if name.startswith("DEMO_")]
    assert any(EVENT_LINE.match(line) for line in printed.splitlines()), printed
    assert "stopped cleanly" in printed
    # Quiet by default: one line per event, no message blocks.
    assert "┌─" not in printed
