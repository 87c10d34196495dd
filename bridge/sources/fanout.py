"""Per-id lookups of one poll: bounded concurrency, a lookup that fails marks only its own job
unknown this poll, and a list poll completed by lookups of the tracked ids it left out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from bridge.errors import SourceUnavailable
from bridge.model import JobStatus, PollResult

log = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K")


async def for_each_id(
    ids: Sequence[K], lookup: Callable[[K], Awaitable[T]], *, limit: int = 8
) -> list[T]:
    """`lookup` over ids with at most `limit` requests in flight. The first failure cancels
    the rest and is raised as itself, so callers see one SourceError, not a group."""
    gate = asyncio.Semaphore(limit)

    async def one(job_id: K) -> T:
        async with gate:
            return await lookup(job_id)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(job_id)) for job_id in ids]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


@dataclass(frozen=True, slots=True)
class Lookups:
    """What the per-id lookups of one poll found: jobs, ids answered as gone, ids whose
    lookup failed (neither changed nor missing this poll) and the first such failure."""

    found: list[JobStatus] = field(default_factory=list)
    missing: frozenset[str] = frozenset()
    unknown: frozenset[str] = frozenset()
    error: SourceUnavailable | None = None


async def look_up_each(
    source: str, ids: Sequence[str], lookup: Callable[[str], Awaitable[JobStatus | None]],
    *, limit: int = 8,
) -> Lookups:
    """Each id looked up (at most `limit` at a time). A lookup answering None (404,
    NOT_FOUND) is missing; one that fails passingly (a 500, a timeout, a 429 still refused
    after its wait) puts only that id in `unknown`, so one hiccup fails no other job. A
    misconfiguration (401, 403) is the source's, not the job's: it is raised."""

    async def one(job_id: str) -> JobStatus | SourceUnavailable | None:
        try:
            return await lookup(job_id)
        except SourceUnavailable as exc:
            return exc

    answers = await for_each_id(ids, one, limit=limit)
    found = [a for a in answers if isinstance(a, JobStatus)]
    missing = frozenset(i for i, a in zip(ids, answers, strict=True) if a is None)
    failed = [(i, a) for i, a in zip(ids, answers, strict=True)
              if isinstance(a, SourceUnavailable)]
    if failed:
        log.warning("source %s: %d of %d lookups failed this poll (those jobs are unknown "
                    "until the next poll): %s", source, len(failed), len(ids), failed[0][1])
    return Lookups(found=found, missing=missing, unknown=frozenset(i for i, _ in failed),
                   error=failed[0][1] if failed else None)


def raise_if_nothing_worked(lookups: Lookups, asked: int) -> None:
    """For a source without a list: when every lookup of a poll failed, the poll failed."""
    if lookups.error is not None and len(lookups.unknown) == asked:
        raise lookups.error


async def poll_by_id(
    source: str, ids: Sequence[str], lookup: Callable[[str], Awaitable[JobStatus | None]],
) -> PollResult:
    """The poll of a source without a list: each tracked id looked up once; a lookup
    answering None (404) puts the id in `missing`, a failed one in `unknown`, and when every
    lookup failed the poll failed."""
    wanted = list(dict.fromkeys(ids))
    looked = await look_up_each(source, wanted, lookup)
    raise_if_nothing_worked(looked, len(wanted))
    return PollResult(observations=looked.found, missing=looked.missing,
                      unknown=looked.unknown)


async def listed_plus_lookups(
    source: str,
    listed: Sequence[JobStatus],
    ids: Sequence[str],
    lookup: Callable[[str], Awaitable[JobStatus | None]],
) -> PollResult:
    """A complete list poll, plus a lookup of each tracked id the list left out (an API that
    lists only recent jobs, or only unfinished ones); a lookup answering None (404) puts the
    id in `missing`, a failed one in `unknown`."""
    seen = {job.id for job in listed}
    extra = list(dict.fromkeys(job_id for job_id in ids if job_id not in seen))
    looked = await look_up_each(source, extra, lookup)
    return PollResult(observations=[*listed, *looked.found], complete=True,
                      missing=looked.missing, unknown=looked.unknown)

