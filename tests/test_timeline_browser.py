"""The dashboard's timeline in a real headless Chromium: a source's job runs render as
SVG bars in their state colours with the failure marked, and its polls/errors chart.
`BRIDGE_SCREENSHOT=1` saves docs/timeline.png."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bridge.server.timeline import COLOURS
from tests.server_support import harness
from tests.test_dashboard_browser import CHROMIUM, browser

pytestmark = pytest.mark.browser
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "timeline.png"

# The shared Chromium fixture (and its skip when Chromium or playwright is missing).
__all__ = ["CHROMIUM", "browser"]


async def test_the_timeline_shows_runs_failures_and_polls(tmp_path: Path, browser: Any) -> None:
    await _timeline(tmp_path, browser)


async def _timeline(tmp_path: Path, browser: Any) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        h.upstream.zendesk.add_job("job-night", status="working")
        await h.poll("zd")
        h.upstream.zendesk.set_job("job-night", status="failed")
        await h.poll("zd")
        page = await browser.new_page(viewport={"width": 1440, "height": 1100})
        await page.goto(h.url + "/")
        svg = page.locator('#timeline svg.timeline[data-source="zd"]')
        await svg.wait_for()
        states = [await r.get_attribute("data-state")
                  for r in await svg.locator("rect[data-state]").all()]
        assert states == ["running", "failed"]
        fills = [await r.get_attribute("fill")
                 for r in await svg.locator("rect[data-state]").all()]
        assert fills == [COLOURS["running"], COLOURS["failed"]]
        assert await svg.locator("path.tl-failure").count() == 1
        assert await svg.locator("rect.tl-poll").count() >= 1
        label = await svg.locator("text.tl-label").first.text_content()
        assert label == "job-night"
        box = await svg.bounding_box()
        assert box is not None and box["width"] > 300  # drawn, not collapsed
        if os.environ.get("BRIDGE_SCREENSHOT") == "1":
            await page.locator("#timeline").screenshot(path=str(SCREENSHOT))
