"""Stage render: matches -> one notification per (match, sink), rendered by bridge.render.

Silenced matches (bridge.stages.silence) are rendered into `silenced_notifications`.
A template that fails costs only its own (rule, sink): it becomes a `RenderFailure` (logged
and counted by the pipeline, shown by `bridge test` and `bridge render`), the sink gets the
bundled template's message for the event instead (never a silent drop), and the other sinks
and rules go on. A match leaves its rule mark only if at least one sink got a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from bridge.config.schema import SinkBase
from bridge.errors import TemplateError
from bridge.model import Notification, Priority
from bridge.render import Renderer
from bridge.sinks import sink_capabilities
from bridge.stages.base import Batch, Context, Match, RenderFailure
from bridge.store.base import RuleMark


class Render:
    name = "render"

    def __init__(self, renderer: Renderer, sinks: Mapping[str, SinkBase],
                 source_kinds: Mapping[str, str] | None = None):
        self._renderer = renderer
        self._sinks = sinks
        self._kinds = dict(source_kinds or {})

    async def run(self, ctx: Context, batch: Batch) -> Batch:
        if batch.silenced:
            batch = self.render_silenced(batch)
        if not batch.matches:
            return batch
        notifications: list[Notification] = []
        marks: list[RuleMark] = []
        failures: list[RenderFailure] = []
        for match in batch.matches:
            rendered = self.render(match, failures)
            if rendered:
                notifications.extend(rendered)
                if match.mark is not None:
                    marks.append(match.mark)
        return replace(batch, notifications=(*batch.notifications, *notifications),
                       marks=(*batch.marks, *marks), failures=(*batch.failures, *failures))

    def render_silenced(self, batch: Batch) -> Batch:
        """Silenced matches are rendered too, so what was held back can be read; they leave
        no rule mark (see bridge.stages.silence)."""
        failures: list[RenderFailure] = []
        muted = [replace(n, silenced=item.reason) for item in batch.silenced
                 for n in self.render(item.match, failures)]
        return replace(batch, silenced_notifications=(*batch.silenced_notifications, *muted),
                       failures=(*batch.failures, *failures))

    def render(self, match: Match, failures: list[RenderFailure]) -> list[Notification]:
        """The notifications of one match, one per sink of its rule; failures appended."""
        rule, event = match.rule, match.event
        job = event.job
        out = []
        for sink_name in rule.notify:
            sink = self._sinks[sink_name]
            try:
                payload = self._renderer.render(rule, event, sink)
            except TemplateError as exc:
                # One broken template must not stop the other rules, sinks or the pipeline,
                # nor drop the alert: the bundled template's message goes out instead.
                try:
                    payload = self._renderer.fallback(rule, event, sink)
                except TemplateError:
                    failures.append(RenderFailure(event=event, rule=rule.name, sink=sink_name,
                                                  error=str(exc)))
                    continue
                failures.append(RenderFailure(event=event, rule=rule.name, sink=sink_name,
                                              error=str(exc), sent_default=True))
            out.append(
                Notification(
                    event_id=event.id,
                    rule=rule.name,
                    sink=sink_name,
                    source=event.source,
                    job_id=job.id if job else None,
                    payload=payload,
                    on=event.on,
                    terminal=bool(job and job.state.terminal),
                    state=str(job.state) if job else None,
                    priority=rule.priority or Priority.of(event),
                    source_kind=self._kinds.get(event.source),
                    # Slack `update` mode: a newer row of the job takes this one's place
                    # while it waits unsent (bridge.store.coalesce).
                    coalesce=job is not None and sink_capabilities(sink).edits_in_place,
                )
            )
        return out
