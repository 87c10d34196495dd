"""Stage detect: a poll's outcome -> source health, events and job records (bridge.detect).

A failed poll changes no job, and gives `source_down` (once) when it is the source's
`down_after`-th failure in a row (the first, for a misconfigured source); a successful one
may give `source_up`, then detection over the observations; pushed observations are
detected the same way but say nothing about the source's health. A batch with neither (an
event given by `bridge test`) passes through untouched.
"""

from __future__ import annotations

import logging
from collections import ChainMap
from collections.abc import Collection, Mapping, MutableMapping
from dataclasses import replace
from typing import cast

from bridge.detect import DetectSettings, detect, finished_ids
from bridge.errors import SourceMisconfigured
from bridge.logs import for_source
from bridge.model import Event, TrackedJob
from bridge.source_health import source_failed, source_succeeded
from bridge.stages.base import Batch, Context

log = logging.getLogger(__name__)


class Detect:
    name = "detect"

    def __init__(self, settings: Mapping[str, DetectSettings],
                 keep: Mapping[str, Collection[str]], down_after: Mapping[str, int]):
        self._settings = settings
        self._down_after = down_after
        # Jobs named in a source's `ids` are kept once finished: forgetting one would make
        # the next poll look it up again and announce it as new every `retain`.
        self._keep = {name: frozenset(ids) for name, ids in keep.items()}

    async def run(self, ctx: Context, batch: Batch) -> Batch:
        if batch.error is not None:
            return self._failed(ctx, batch)
        if batch.poll is None:
            return batch
        events: list[Event] = []
        health = None
        if not batch.pushed:
            health, up = source_succeeded(
                source=ctx.source, health=ctx.health, now=ctx.now, latency=batch.latency
            )
            if up:
                for_source(log, ctx.source).info("source %s is up again", ctx.source)
            events.extend(up)
        settings = self._settings[ctx.source]
        expiring = None
        if ctx.finish_times is not None:
            expiring = ctx.finish_times.due(ctx.now - settings.retain, ctx.jobs)
        detection = detect(source=ctx.source, known=ctx.jobs, poll=batch.poll, now=ctx.now,
                           settings=settings, expiring=expiring)
        events.extend(detection.events)
        keep = self._keep.get(ctx.source)
        removals = detection.removals
        if keep and removals:
            removals = tuple(i for i in removals if i not in keep)
        finished: tuple[str, ...] = ()
        if ctx.watches:
            upserted = {job.id: job for job in detection.upserts}
            # ChainMap writes only to its first map; the committed jobs are only read.
            jobs = cast("MutableMapping[str, TrackedJob]", ctx.jobs)
            finished = tuple(finished_ids(ctx.watches, ChainMap(upserted, jobs)))
        return replace(batch, health=health, events=tuple(events), upserts=detection.upserts,
                       removals=removals, finished_watches=finished)

    def _failed(self, ctx: Context, batch: Batch) -> Batch:
        # Hysteresis is for passing failures; a refused configuration will not heal itself.
        down_after = 1 if isinstance(batch.error, SourceMisconfigured) else \
            self._down_after.get(ctx.source, 1)
        health, events = source_failed(source=ctx.source, health=ctx.health,
                                       reason=str(batch.error), now=ctx.now,
                                       down_after=down_after)
        said = for_source(log, ctx.source)
        if health.up:
            said.warning("source %s: poll failed (%d of %d before it counts as down): %s",
                        ctx.source, health.failures, down_after, batch.error)
        elif events or ctx.health is None or ctx.health.up:
            said.warning("source %s is down: %s", ctx.source, batch.error)
        else:
            said.debug("source %s still down: %s", ctx.source, batch.error)
        return replace(batch, health=health, events=events)
