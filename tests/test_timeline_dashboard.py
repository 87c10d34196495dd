"""The timeline card over a real socket with the real SQLite store: its range comes from
`?range=`, and its poll chart is read from the store, so a restarted bridge still shows the
polls (and failed polls) of before."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from tests.server_support import harness
from tests.test_server_dashboard import _section
from tests.test_server_push import BODY, signed
from tests.test_shared_api import two_bridges


def poll_totals(card: str, source: str) -> tuple[int, int]:
    """(polls, failed polls) as the source's chart says."""
    match = re.search(rf'<div class="tl-source" data-source="{source}">.*?'
                      r'(\d+) polls?, (\d+) failed</text>', card, re.S)
    assert match, f"no poll totals for {source}"
    return int(match.group(1)), int(match.group(2))


def failed_polls(card: str, source: str) -> int:
    return poll_totals(card, source)[1]


async def test_the_poll_chart_survives_a_restart_of_the_bridge(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        await h.fail_polls_of_imports(3)
        before = failed_polls(_section((await h.get("/")).text, "timeline"), "imports")
    assert before == 3
    # The same state file, a new process: the store had the counts, memory had nothing.
    async with harness(tmp_path, with_rows=False) as again:
        card = _section((await again.get("/")).text, "timeline")
    assert failed_polls(card, "imports") == 3
    assert "3 failed polls" in card


async def test_the_range_comes_from_the_query_and_defaults_to_six_hours(
        tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        week = _section((await h.get("/?range=7d")).text, "timeline")
        junk = _section((await h.get("/?range=1y")).text, "timeline")
    assert set(re.findall(r'<svg class="timeline"[^>]* data-range="(\w+)"', week)) == {"7d"}
    assert re.search(r'<a href="/\?range=7d#timeline" data-range="7d" aria-current="page"',
                     week)
    assert set(re.findall(r'<svg class="timeline"[^>]* data-range="(\w+)"', junk)) == {"6h"}
    assert 'Timeline <span class="muted">last 6h' in junk


async def test_the_job_filters_keep_the_timeline_range(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        page = (await h.get("/?range=24h&source=zd")).text
    jobs = _section(page, "jobs")
    assert '<input type="hidden" name="range" value="24h">' in jobs
    card = _section(page, "timeline")
    assert 'href="/?source=zd&amp;range=7d#timeline"' in card


async def test_pushed_observations_are_not_counted_as_polls(tmp_path: Path) -> None:
    async with harness(tmp_path, with_rows=False) as h:
        reply = await h.post("/v1/events/hooks", data=BODY, headers=signed())
        assert reply.status == 202
        since = h.bridge.clock() - timedelta(hours=1)
        counted = {b.source for b in await h.bridge.poll_buckets(since)}
        card = _section((await h.get("/")).text, "timeline")
    assert "zd" in counted and "hooks" not in counted
    # Its job's run is drawn all the same; only the poll chart has nothing to count.
    assert re.search(r'data-source="hooks".*?0 polls, 0 failed', card, re.S)


@pytest.mark.postgres
async def test_an_instance_that_polls_nothing_shows_the_polls_of_the_one_that_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with two_bridges(tmp_path, monkeypatch) as (bridges, urls, http):
        assert not bridges[1].leases.held()  # the first instance polls every source
        async with http.get(urls[0] + "/") as reply:
            polled, _ = poll_totals(_section(await reply.text(), "timeline"), "zd")
        async with http.get(urls[1] + "/") as reply:
            shown, _ = poll_totals(_section(await reply.text(), "timeline"), "zd")
    assert polled >= 1
    assert shown >= polled  # the first may have polled again in between
