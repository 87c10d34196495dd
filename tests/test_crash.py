"""Nothing lost (contract section 7): `kill -9` a running bridge at random moments.

Each iteration runs `python -m bridge run` as a child process against a Zendesk simulator
whose jobs keep changing and a webhook receiver that is down at first, kills the bridge with
SIGKILL at a random moment, restarts it on the same SQLite file and brings the receiver up.
Then every transition must have been stored once (the chain of states holds), and every one
must have reached the receiver, every attempt for one event carrying the same `webhook-id`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.crash_support import CrashReport, crash_iteration

log = logging.getLogger(__name__)


async def _iterations(tmp_path: Path, seeds: range) -> list[CrashReport]:
    reports = []
    for seed in seeds:
        directory = tmp_path / f"run-{seed}"
        directory.mkdir()
        report = await crash_iteration(directory, seed)
        log.info("seed %d: %s", seed, report)
        reports.append(report)
    return reports


async def test_kill_9_at_random_moments_loses_and_doubles_nothing(tmp_path: Path) -> None:
    reports = await _iterations(tmp_path, range(3))
    assert any(r.receiver_up_before_kill for r in reports)
    assert any(not r.receiver_up_before_kill for r in reports)
    # Each iteration checked that every repeat is a delivery the killed bridge made and
    # could not record; none of its rows was sent twice by one bridge.
    for report in reports:
        assert report.transitions > 0, report
        assert report.repeats <= report.delivered_before_kill, report


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_kill_9_twenty_times_loses_and_doubles_nothing(tmp_path: Path) -> None:
    reports = await _iterations(tmp_path, range(100, 124))
    assert all(r.transitions > 0 for r in reports)
    assert all(r.repeats <= r.delivered_before_kill for r in reports)
