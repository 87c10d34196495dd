"""The roll-up: one channel message naming the urgent sends that Slack's budget holds back.

Slack lets about one `chat.postMessage` per second into a channel. When more failures than
that arrive, each one's own message has to wait its turn, and a person would learn of the
30th failure half a minute late. So a failure whose message would wait longer than the
sink's `overflow_after` (`slack_sender`: "overflow") gets a line here at once: the roll-up
is posted once, ahead of every other post, and then edited in place with `chat.update`
(Slack's Tier 3 budget, per workspace, separate from posts), one edit carrying every line
that arrived while the previous one was on its way. Lines are never removed; a job's line
is replaced by its newer state, never repeated. Each failure still gets its own message
when the budget allows; the roll-up only makes sure it is seen first.

A roll-up closes when every send it named has had its own first call (`drained`) or when
it holds `MAX_LINES`; the next overflow opens a new message. It lives in memory only: after
a restart the rows still in the outbox are sent again and, if the channel is still behind,
named in a new roll-up (at-least-once, like every delivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from bridge.errors import DeliveryError

log = logging.getLogger(__name__)

# About 200 characters a line: far below Slack's 40,000 per message, and a screenful.
MAX_LINES = 50
HEADLINE_CHARS = 300
HEADER = ("⏳ *Urgent first*: Slack's post budget for this channel is behind, so these are "
          "shown here now; each one's own message follows as the budget allows.")

# Posts the roll-up's text, giving a handle of the message (its channel and ts); edits
# (handle, text), False if the message was deleted in Slack.
Post = Callable[[str], Awaitable[str]]
Edit = Callable[[str, str], Awaitable[bool]]


def headline(text: str) -> str:
    """The first line of a message as its template wrote it: what the roll-up shows of it."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first) <= HEADLINE_CHARS:
        return first
    cut = first[:HEADLINE_CHARS].rsplit(" ", 1)[0]
    return cut + " …"


@dataclass(slots=True, eq=False)
class _Message:
    lines: dict[Hashable, str] = field(default_factory=dict)
    posted: str | None = None
    version: int = 0
    written: int = 0

    def text(self) -> str:
        return "\n".join([HEADER, *self.lines.values()])


class Rollup:
    """The roll-up messages of one channel. `show(key, line)` names a send; the writer task
    posts or edits the message as the budget lets it."""

    def __init__(self, *, name: str, post: Post, edit: Edit):
        self._name = name
        self._post = post
        self._edit = edit
        self._messages: list[_Message] = []
        self._closed = True
        self._writer: asyncio.Task[None] | None = None
        self.posts = 0
        self.edits = 0

    @property
    def current(self) -> str:
        """The text of the newest roll-up ("" when none was opened)."""
        return self._messages[-1].text() if self._messages else ""

    def show(self, key: Hashable, line: str) -> None:
        message = self._messages[-1] if self._messages else None
        if message is None or (key not in message.lines and (
                self._closed or len(message.lines) >= MAX_LINES)):
            message = _Message()
            self._messages.append(message)
        self._closed = False
        message.lines[key] = line
        message.version += 1
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name=f"slack-rollup:{self._name}")

    def drained(self) -> None:
        """Every send named has had its own first call: the next overflow opens a new one."""
        self._closed = True

    async def aclose(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write(self) -> None:
        while (dirty := next((m for m in self._messages if m.version != m.written), None)):
            version, text = dirty.version, dirty.text()
            try:
                if dirty.posted is not None and await self._edit(dirty.posted, text):
                    self.edits += 1
                else:  # not posted yet, or deleted in Slack: post it (again)
                    dirty.posted = await self._post(text)
                    self.posts += 1
            except DeliveryError as exc:
                # The sends it names still go out on their own; a later line tries again.
                log.warning("channel %s: could not write the roll-up (%s); its sends still "
                            "go out on their own", self._name, exc)
            dirty.written = version
            # Keep the newest message (lines may join it) and any still to be written.
            self._messages = [m for m in self._messages[:-1] if m.version != m.written] + \
                self._messages[-1:]
