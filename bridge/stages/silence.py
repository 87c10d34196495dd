"""Stage silence: matches -> the ones to send, and the ones a silence or a window mutes.

Between route and render: it decides per match (an event and the rule that fired), so a
silence can name the `rule`, and what it mutes never reaches grouping or the sinks. A muted
match is not dropped: render renders it as usual and enqueue records it in the outbox with
status `silenced` and the reason, so the dashboard, `GET /v1/outbox?status=silenced` and
`bridge_silenced_total` show what was held back. A muted match leaves no rule mark: once a
silence ends, the next event notifies as if the silence had never been.

Two kinds of mute:
- silences (bridge.silences), made at run time and kept in the store so every instance
  sees the same ones; asked for once per batch that has something to decide, never per
  event. An `until_resolved` silence ends when a job it names reaches `succeeded`: that
  event is let through (the all-clear), and the silence's end is committed with the batch.
- maintenance windows of the config (bridge.windows), named by a rule's `mute_during` or
  `active_during`, opened and closed by the clock (`Context.now`), so `bridge test` and a
  replay see them as a live run would.

A window with `summary = true` also collects what it mutes that failed or cancelled a job:
such a match joins a group keyed by the window and the moment this occurrence ends, due at
that end, so the groups' flusher (bridge.groups) delivers one digest per (rule, sink)
through the outbox when the window closes. The group is in the store: a restart keeps it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from bridge.config.schema import Rule
from bridge.groups.model import GroupEntry, key_text
from bridge.model import EventKind, JobState
from bridge.silences import Silence, event_fields
from bridge.stages.base import Batch, Context, Match, Silenced
from bridge.windows import Window

# The active silences at a moment (the store's `active_silences`).
SilenceLookup = Callable[[datetime], Awaitable[Sequence[Silence]]]


def window_reason(rule: Rule, source: str, windows: Mapping[str, Window],
                  now: datetime) -> str | None:
    """Why `rule`'s windows mute a notification about `source` now, or None."""
    if rule.mute_during:
        for name in rule.mute_during:
            window = windows[name]
            if window.applies_to(source) and window.is_open(now):
                return f"window {name}"
    if rule.active_during and not any(
            windows[name].applies_to(source) and windows[name].is_open(now)
            for name in rule.active_during):
        return f"outside window {', '.join(rule.active_during)}"
    return None


def summary_entry(match: Match, windows: Mapping[str, Window], now: datetime
                  ) -> GroupEntry | None:
    """The window-summary group a muted match joins, or None (no open summary window of
    its rule mutes it, or it is not a failure)."""
    job = match.event.job
    if (job is None or job.state not in (JobState.FAILED, JobState.CANCELLED)
            or match.event.on not in (EventKind.TRANSITION, EventKind.APPEARED)):
        return None
    for name in match.rule.mute_during or ():
        window = windows[name]
        if window.summary and window.applies_to(match.event.source) and window.is_open(now):
            ends = window.ends_after(now)
            key = key_text({"window": name,
                            "ends": ends.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
            return GroupEntry(rule=match.rule.name, key=key, event=match.event,
                              wait=ends - now)
    return None


def silence_reason(match: Match, silences: Sequence[Silence], now: datetime) -> str | None:
    """The first active silence that mutes `match`, described, or None."""
    if not silences:
        return None
    fields = event_fields(match.event, match.rule.name)
    for silence in silences:
        if silence.active(now) and silence.matches(fields):
            return silence.describe()
    return None


class Silencing:
    name = "silence"

    def __init__(self, windows: Sequence[Window], lookup: SilenceLookup | None = None):
        self._windows = {window.name: window for window in windows}
        self._lookup = lookup

    async def run(self, ctx: Context, batch: Batch) -> Batch:
        if not batch.matches and not self._may_resolve(batch):
            return batch
        silences = await self._lookup(ctx.now) if self._lookup is not None else ()
        ended = [s.id for s in silences
                 if s.until_resolved and any(s.resolved_by(e) for e in batch.events)]
        if ended:
            silences = [s for s in silences if s.id not in ended]
        keep: list[Match] = []
        muted: list[Silenced] = []
        summaries: list[GroupEntry] = []
        for match in batch.matches:
            reason = (window_reason(match.rule, match.event.source, self._windows, ctx.now)
                      or silence_reason(match, silences, ctx.now))
            if reason is None:
                keep.append(match)
            else:
                muted.append(Silenced(match=match, reason=reason))
                entry = summary_entry(match, self._windows, ctx.now)
                if entry is not None:
                    summaries.append(entry)
        if not muted and not ended:
            return batch
        return replace(batch, matches=keep, silenced=(*batch.silenced, *muted),
                       grouped=(*batch.grouped, *summaries),
                       ended_silences=(*batch.ended_silences, *ended))

    def _may_resolve(self, batch: Batch) -> bool:
        # Only a success can end an until_resolved silence; most batches have none.
        return self._lookup is not None and any(
            e.job is not None and e.job.state is JobState.SUCCEEDED for e in batch.events)
