"""The dashboard in a real headless Chromium (Debian's), driven by Playwright.

Needs the `playwright` Python package and /usr/bin/chromium (`apt-get install chromium`);
skips with a message saying which is missing. `BRIDGE_SCREENSHOT=1` saves docs/dashboard.png.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.model import DeliveryStatus
from tests.server_support import harness

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "dashboard.png"

async_api: Any = pytest.importorskip(
    "playwright.async_api",
    reason="the browser test needs the `playwright` package (pip install playwright)",
)
if not CHROMIUM.exists():
    pytest.skip("the browser test needs Debian's Chromium at /usr/bin/chromium "
                "(apt-get install chromium)", allow_module_level=True)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with async_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=FLAGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def test_dashboard_shows_sources_and_jobs_and_retries_a_dead_letter(
    tmp_path: Path, browser: Any
) -> None:
    async with harness(tmp_path) as h:
        assert h.seeded is not None
        dead_id = h.seeded.dead_id
        await h.fail_polls_of_imports(2)
        # The sink is still failing: the retried letter waits in pending for its next attempt.
        h.receiver.script([], then=503)
        page = await browser.new_page(viewport={"width": 1440, "height": 1100})
        await page.goto(h.url + "/")

        assert await page.locator('#sources tr[data-source="zd"]').count() == 1
        assert "down" in await page.locator('#sources tr[data-source="imports"]').inner_text()
        running = page.locator('#jobs tr[data-job="zd/job-running"]')
        assert await running.locator(".badge").inner_text() == "running"
        if os.environ.get("BRIDGE_SCREENSHOT") == "1":
            SCREENSHOT.parent.mkdir(exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT), full_page=True)

        dead_row = page.locator(f'#outbox table.dead tr[data-delivery="{dead_id}"]')
        await dead_row.get_by_role("button", name="Retry").click()
        await page.locator(
            f'#outbox table.pending tr[data-delivery="{dead_id}"]'
        ).wait_for()
        assert "Re-queued 1 delivery." in await page.locator(".banner.info").inner_text()
        await h.receiver.wait_for(lambda: dead_id in [r.webhook_id for r in h.receiver.requests])
        assert await h.outbox_status(dead_id) is DeliveryStatus.PENDING


async def test_dashboard_refreshes_itself_when_a_job_appears(
    tmp_path: Path, browser: Any
) -> None:
    async with harness(tmp_path) as h:
        page = await browser.new_page()
        await page.goto(h.url + "/")
        h.upstream.zendesk.add_job("job-new", status="queued")
        await h.poll("zd")
        await page.locator('#jobs tr[data-job="zd/job-new"]').wait_for(timeout=10_000)
