"""The dashboard's silence form in a real headless Chromium (as test_dashboard_browser.py):
add a silence, see the failure it mutes listed as silenced (and not delivered), expire it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bridge.model import DeliveryStatus
from tests.server_support import harness
from tests.test_dashboard_browser import CHROMIUM, browser

pytestmark = pytest.mark.browser
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "silences.png"

# The shared Chromium fixture (and its skip when Chromium or playwright is missing).
__all__ = ["CHROMIUM", "browser"]


async def test_the_silence_form_adds_mutes_and_expires(tmp_path: Path, browser: Any) -> None:
    await _add_mute_expire(tmp_path, browser)


async def _add_mute_expire(tmp_path: Path, browser: Any) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        store = h.bridge.store
        page = await browser.new_page(viewport={"width": 1440, "height": 1100})
        await page.goto(h.url + "/")
        assert "No silences in force." in await page.locator("#silences").inner_text()

        form = page.locator("#silence-form")
        await form.get_by_label("Matchers").fill("source=zd job.id=job-muted")
        await form.get_by_label("For").fill("2h")
        await form.get_by_label("Comment").fill("ERP upgrade")
        await form.get_by_label("Author").fill("ana")
        await form.get_by_role("button", name="Silence").click()
        await page.locator("#silences tr[data-silence]").wait_for()
        assert "Silence added." in await page.locator(".banner.info").inner_text()
        [silence] = await store.list_silences(h.bridge.clock())
        assert dict(silence.matchers) == {"source": "zd", "job.id": "job-muted"}
        assert (silence.comment, silence.author) == ("ERP upgrade", "ana")
        row = page.locator(f'#silences tr[data-silence="{silence.id}"]')
        assert "source=zd" in await row.inner_text()
        assert "active" in await row.inner_text()

        # Two jobs fail; only the silenced one is held back, and the page says so.
        for job_id in ("job-muted", "job-loud"):
            h.upstream.zendesk.add_job(job_id, status="working")
        await h.poll("zd")
        for job_id in ("job-muted", "job-loud"):
            h.upstream.zendesk.set_job(job_id, status="failed")
        await h.poll("zd")
        await page.reload()
        held = page.locator("#silences ul.silenced li")
        await held.first.wait_for()
        assert "zd/job-muted" in await held.first.inner_text()
        assert f"silence {silence.id} (ERP upgrade)" in await held.first.inner_text()
        if os.environ.get("BRIDGE_SCREENSHOT") == "1":
            await page.locator("#silences").screenshot(path=str(SCREENSHOT))
        [muted] = await store.list_outbox(DeliveryStatus.SILENCED)
        assert muted.notification.job_id == "job-muted"
        await h.receiver.wait_for(lambda: len(h.receiver.requests) == 1)
        assert h.receiver.requests[0].json()["data"]["job"]["id"] == "job-loud"

        await row.get_by_role("button", name="Expire").click()
        await page.locator(".banner.info").wait_for()
        assert "Silence expired." in await page.locator(".banner.info").inner_text()
        assert await page.locator("#silences tr[data-silence]").count() == 0
        assert await store.list_silences(h.bridge.clock()) == []
