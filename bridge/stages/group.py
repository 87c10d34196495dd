"""Stage group: matches of rules with `group_by` -> entries of their groups (bridge.groups).

A grouped rule's match is not rendered per event: it leaves the match list and becomes a
`GroupEntry` that the enqueue stage writes with the rest of the poll, and the flusher
renders the group's digest once `group_wait` has passed. Its rule mark is kept, so
`throttle` and `repeat` still count for a grouped rule.

Without a store (`bridge test`, `bridge render`, replay) there is nothing to wait in: each
group of the batch is rendered at once as its first digest, so a test can assert on it.
"""

from __future__ import annotations

from dataclasses import replace

from bridge.groups.digest import Digests
from bridge.groups.keys import group_key
from bridge.groups.model import GroupedEvent, GroupEntry, OpenGroup, group_id
from bridge.model import Notification
from bridge.stages.base import Batch, Context, Match, RenderFailure
from bridge.store.base import RuleMark


class Group:
    name = "group"

    def __init__(self, digests: Digests | None = None):
        """With `digests`, groups are rendered at once instead of stored."""
        self._digests = digests

    async def run(self, ctx: Context, batch: Batch) -> Batch:
        if not any(match.rule.grouped for match in batch.matches):
            return batch
        kept: list[Match] = []
        entries: list[GroupEntry] = []
        marks: list[RuleMark] = []
        for match in batch.matches:
            rule = match.rule
            if not rule.grouped:
                kept.append(match)
                continue
            entries.append(GroupEntry(rule=rule.name, key=group_key(rule, match.event),
                                      event=match.event, wait=rule.group_wait))
            if match.mark is not None:
                marks.append(match.mark)
        batch = replace(batch, matches=kept, grouped=(*batch.grouped, *entries),
                        marks=(*batch.marks, *marks))
        if self._digests is None:
            return batch
        notifications, failures = self._render_now(ctx, entries)
        return replace(batch, notifications=(*batch.notifications, *notifications),
                       failures=(*batch.failures, *failures))

    def _render_now(self, ctx: Context, entries: list[GroupEntry]
                    ) -> tuple[list[Notification], list[RenderFailure]]:
        assert self._digests is not None
        groups: dict[tuple[str, str], list[GroupEntry]] = {}
        for entry in entries:
            groups.setdefault((entry.rule, entry.key), []).append(entry)
        notifications: list[Notification] = []
        failures: list[RenderFailure] = []
        for (rule, key), members in groups.items():
            first = members[0].event
            group = OpenGroup(id=group_id(rule, key, first.id), rule=rule, key=key,
                              first_at=ctx.now, due_at=ctx.now, flushes=0,
                              events=[GroupedEvent(event=m.event) for m in members])
            rendered = self._digests.render(group, ctx.now)
            notifications.extend(rendered.notifications)
            failures.extend(RenderFailure(event=first, rule=f.rule, sink=f.sink, error=f.error)
                            for f in rendered.failures)
        return notifications, failures
