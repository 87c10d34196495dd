"""The dashboard's timeline in a real headless Chromium: a source's job runs render as SVG
bars in their state colours, one per run on the job's row, the failed run marked and named
in its tooltip; a source's failed polls show in its chart; the range links switch the
range; the table fallback lists the runs. `BRIDGE_SCREENSHOT=1` saves docs/timeline.png."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.model import Event, EventKind, JobState, JobStatus
from bridge.server.timeline import COLOURS
from bridge.store import open_store
from bridge.store.base import PollCommit
from bridge.store.poll_buckets import BUCKET, PollBucket, bucket_of
from tests.server_support import harness
from tests.test_dashboard_browser import CHROMIUM, browser

pytestmark = pytest.mark.browser
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "timeline.png"

# The shared Chromium fixture (and its skip when Chromium or playwright is missing).
__all__ = ["CHROMIUM", "browser"]


async def test_the_timeline_shows_runs_failures_polls_and_switches_range(
        tmp_path: Path, browser: Any) -> None:
    await _timeline(tmp_path, browser)


async def _timeline(tmp_path: Path, browser: Any) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        # Two runs of one job: the first fails, the second (a retry) succeeds.
        h.upstream.zendesk.add_job("job-night", status="working")
        await h.poll("zd")
        for status in ("failed", "working", "completed"):
            h.upstream.zendesk.set_job("job-night", status=status)
            await h.poll("zd")
        await h.fail_polls_of_imports(2)
        page = await browser.new_page(viewport={"width": 1440, "height": 1100})
        await page.goto(h.url + "/")
        svg = page.locator('#timeline svg.timeline[data-source="zd"]')
        await svg.wait_for()
        assert await svg.get_attribute("data-range") == "6h"
        row = svg.locator('g.tl-row[data-job="job-night"]')
        runs = await row.locator("rect.tl-run").all()
        assert [await r.get_attribute("data-state") for r in runs] == ["failed", "succeeded"]
        assert [await r.get_attribute("fill") for r in runs] == [COLOURS["failed"],
                                                                COLOURS["succeeded"]]
        assert [await r.get_attribute("data-run") for r in runs] == ["1", "2"]
        tip = await runs[0].locator("title").text_content()
        assert tip is not None and tip.startswith("job-night · run 1: failed · started ")
        assert await row.locator('path.tl-mark[data-mark="failed"]').count() == 1
        assert await svg.locator("text.tl-label").first.text_content() == "job-night"
        box = await svg.bounding_box()
        assert box is not None and box["width"] > 300  # drawn, not collapsed

        imports = page.locator('#timeline svg.timeline[data-source="imports"]')
        assert await imports.locator('rect.tl-poll[data-kind="error"]').count() >= 1
        heading = await page.locator(
            '#timeline .tl-source[data-source="imports"] h3').text_content()
        assert heading is not None and "2 failed polls" in heading

        # The table fallback lists the same runs.
        table = page.locator('#timeline .tl-source[data-source="zd"] details.tl-table')
        await table.locator("summary").click()
        assert await table.locator("tbody tr").count() == 2
        assert "failed" in await table.locator("tbody tr").last.inner_text()
        # The live refresh replaces the card every few seconds: an opened table stays open.
        updated = await page.locator("#live .updated").get_attribute("title")
        await page.wait_for_function(
            "(before) => document.querySelector('#live .updated').title !== before", arg=updated)
        assert await table.get_attribute("open") is not None

        for key in ("24h", "7d", "6h"):
            await page.locator(f'#timeline .tl-ranges a[data-range="{key}"]').click()
            await page.locator(f'#timeline svg.timeline[data-range="{key}"]').first.wait_for()
            assert (key == "6h") != (f"range={key}" in page.url)
            current = page.locator('#timeline .tl-ranges a[aria-current="page"]')
            assert await current.text_content() == key
            assert await page.locator("#timeline h2").inner_text() == f"Timeline last {key}"
            # Still the same runs: all of them happened within the last minutes.
            assert await page.locator(
                '#timeline svg[data-source="zd"] rect.tl-run').count() == 2


# A day of a source's history, as a bridge would have stored it: three jobs running every
# hour, the orders sync failing from 01:00 to 04:00 UTC (the harness shows UTC).
NIGHT_FAILING = {1, 2, 3, 4}
JOBS = {"sync-orders": ("Amazon DE: orders", 11), "sync-stock": ("eBay: stock", 4),
        "sync-prices": ("Shop: prices", 22)}


def _day_of_runs(now: datetime) -> tuple[list[Event], list[PollBucket]]:
    events = []
    top = now.replace(minute=0, second=0, microsecond=0)
    for hours_ago in range(23, 0, -1):
        slot = top - timedelta(hours=hours_ago)
        run = 24 - hours_ago
        for job_id, (name, minutes) in JOBS.items():
            start = slot + timedelta(minutes=5 * list(JOBS).index(job_id))
            end = start + timedelta(minutes=minutes)
            state = JobState.SUCCEEDED
            if job_id == "sync-orders" and slot.hour in NIGHT_FAILING:
                state = JobState.FAILED
            elif job_id == "sync-prices" and hours_ago == 7:
                state = JobState.CANCELLED
            message = "Provider API returned 503 (Samsara)" if state == "failed" else None
            for at, now_state, on in ((start, JobState.RUNNING, EventKind.APPEARED),
                                      (end, state, EventKind.TRANSITION)):
                events.append(Event(
                    id=f"{job_id}-{run}-{now_state}", on=on, source="syncs", at=at,
                    job=JobStatus(id=job_id, state=now_state, raw_state=str(now_state),
                                  run=run, name=name, message=message),
                    to_state=now_state))
            if job_id == "sync-stock" and hours_ago == 10:
                events.append(Event(
                    id=f"{job_id}-{run}-stalled", on=EventKind.STALLED, source="syncs",
                    at=start + timedelta(minutes=2), reason="no progress for 2m",
                    job=JobStatus(id=job_id, state=JobState.RUNNING, raw_state="running",
                                  run=run, name=name)))
    buckets = []
    at = bucket_of(now - timedelta(hours=24))
    while at <= now:
        errors = 2 if at.hour in NIGHT_FAILING else 0
        buckets.append(PollBucket(source="syncs", start=at, ok=10 - errors, errors=errors,
                                  last_error="HTTP 503 from the API" if errors else None))
        at += BUCKET
    return sorted(events, key=lambda e: e.at), buckets


async def test_a_stored_day_shows_night_failures_inside_the_night_band(
        tmp_path: Path, browser: Any) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")  # the harness's state file
    await store.open()
    events, buckets = _day_of_runs(datetime.now(UTC))
    await store.commit_poll(PollCommit(source="syncs", events=events))
    await store.add_poll_counts(buckets)
    await store.close()
    async with harness(tmp_path, with_rows=False) as h:
        page = await browser.new_page(viewport={"width": 1440, "height": 1400})
        await page.goto(h.url + "/?range=24h")
        svg = page.locator('#timeline svg.timeline[data-source="syncs"]')
        await svg.wait_for()
        nights = [(float(await r.get_attribute("x") or 0),
                   float(await r.get_attribute("width") or 0))
                  for r in await svg.locator("rect.tl-night").all()]
        failed = await svg.locator('g.tl-row[data-job="sync-orders"] '
                                   'rect.tl-run[data-state="failed"]').all()
        assert 1 <= len(failed) <= len(NIGHT_FAILING)
        for bar in failed:
            x = float(await bar.get_attribute("x") or 0)
            assert any(left <= x <= left + width for left, width in nights)
            tip = await bar.locator("title").text_content()
            assert tip is not None and tip.startswith("Amazon DE: orders · run ")
            assert tip.endswith("· 11m · Provider API returned 503 (Samsara)")
        # The job with the most flagged runs first: the orders sync failed several times.
        first = svg.locator("g.tl-row").first
        assert await first.get_attribute("data-job") == "sync-orders"
        assert await svg.locator('path.tl-mark[data-mark="stalled"]').count() == 1
        assert await svg.locator('rect.tl-poll[data-kind="error"]').count() >= 1
        if os.environ.get("BRIDGE_SCREENSHOT") == "1":
            await page.locator("#timeline").screenshot(path=str(SCREENSHOT))
