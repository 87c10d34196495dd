"""Per-id lookups of one poll: bounded concurrency, and a list poll completed by lookups of
the tracked ids it left out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from bridge.model import JobStatus, PollResult

T = TypeVar("T")


async def for_each_id(
    ids: Sequence[str], lookup: Callable[[str], Awaitable[T]], *, limit: int = 8
) -> list[T]:
    """`lookup` over ids with at most `limit` requests in flight. The first failure cancels
    the rest and is raised as itself, so callers see one SourceError, not a group."""
    gate = asyncio.Semaphore(limit)

    async def one(job_id: str) -> T:
        async with gate:
            return await lookup(job_id)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(job_id)) for job_id in ids]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def listed_plus_lookups(
    listed: Sequence[JobStatus],
    ids: Sequence[str],
    lookup: Callable[[str], Awaitable[JobStatus | None]],
) -> PollResult:
    """A complete list poll, plus a lookup of each tracked id the list left out (an API that
    lists only recent jobs); a lookup answering None (404) puts the id in `missing`."""
    seen = {job.id for job in listed}
    extra = list(dict.fromkeys(job_id for job_id in ids if job_id not in seen))
    found = await for_each_id(extra, lookup)
    observations = [*listed, *(job for job in found if job is not None)]
    missing = frozenset(job_id for job_id, job in zip(extra, found, strict=True) if job is None)
    return PollResult(observations=observations, complete=True, missing=missing)
