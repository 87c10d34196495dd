"""The fake Slack's channels: messages as people see them, and Slack's checks on content.

`Channels` holds every message (roots, edits, thread replies) under the channel ids, maps
channel names to ids, and answers `chat.postMessage` / `chat.update` bodies the way Slack
does (`SlackError` with Slack's error code). The HTTP side lives in `slack.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WEBHOOK_CHANNEL = "C0WEBHOOK"
_TS_SECONDS = 1_700_000_000


@dataclass(slots=True, kw_only=True)
class FakeMessage:
    """One message as the channel shows it now."""

    channel: str
    ts: str
    text: str | None
    blocks: list[Any] | None = None
    thread_ts: str | None = None
    edits: int = 0
    replies: list[str] = field(default_factory=list)


class SlackError(Exception):
    def __init__(self, code: str, status: int = 200, **extra: str):
        self.code = code
        self.status = status
        # Slack adds fields to some errors: `missing_scope` says `needed` and `provided`.
        self.extra = extra
        super().__init__(code)


class Channels:
    """The messages of every channel, keyed by (channel id, ts), oldest first."""

    def __init__(self, channels: Mapping[str, str] | None, *, strict: bool):
        """`channels` maps names ("#ops") to ids ("C0OPS"); with `strict`, any other channel
        answers `channel_not_found`, else a new id is made up for it."""
        self.ids = dict(channels or {})
        self._strict = strict
        self.messages: dict[tuple[str, str], FakeMessage] = {}
        self._ts_seq = 0

    # --- views ------------------------------------------------------------------------------

    def channel_id(self, channel: str) -> str:
        return self.ids.get(channel, channel if channel.startswith("C") else "")

    def roots(self, channel: str) -> list[FakeMessage]:
        cid = self.channel_id(channel)
        return [m for (c, _), m in self.messages.items() if c == cid and m.thread_ts is None]

    def replies(self, channel: str, ts: str) -> list[FakeMessage]:
        root = self.messages[(self.channel_id(channel), ts)]
        return [self.messages[(root.channel, r)] for r in root.replies]

    def render(self) -> str:
        names = {cid: name for name, cid in self.ids.items()}
        lines: list[str] = []
        for (cid, _), message in self.messages.items():
            if message.thread_ts is not None:
                continue
            edited = " (edited)" if message.edits else ""
            lines.append(f"{names.get(cid, cid)} {message.ts}: {message.text}{edited}")
            lines.extend(f"    ↳ {reply.text}" for reply in self.replies(cid, message.ts))
        return "\n".join(lines)

    def delete(self, channel: str, ts: str) -> None:
        del self.messages[(self.channel_id(channel), ts)]

    # --- methods ----------------------------------------------------------------------------

    def post(self, body: Mapping[str, Any]) -> dict[str, Any]:
        channel = self.resolve(body.get("channel"))
        check_content(body)
        thread_ts = body.get("thread_ts")
        if thread_ts is not None:
            root = self.messages.get((channel, str(thread_ts)))
            if root is None:
                raise SlackError("thread_not_found")
            if root.thread_ts is not None:  # replying to a reply joins the root's thread
                thread_ts = root.thread_ts
        message = self.store(channel, body, thread_ts=thread_ts)
        return {"channel": channel, "ts": message.ts, "message": _shown(message)}

    def update(self, body: Mapping[str, Any]) -> dict[str, Any]:
        channel = self.resolve(body.get("channel"))
        if not channel.startswith("C"):
            raise SlackError("channel_not_found")  # chat.update takes ids, not names
        check_content(body)
        message = self.messages.get((channel, str(body.get("ts"))))
        if message is None:
            raise SlackError("message_not_found")
        message.text = body.get("text")
        message.blocks = _blocks(body)
        message.edits += 1
        return {"channel": channel, "ts": message.ts, "text": message.text,
                "message": _shown(message)}

    def resolve(self, channel: object) -> str:
        if not isinstance(channel, str) or not channel:
            raise SlackError("channel_not_found")
        if channel in self.ids:
            return self.ids[channel]
        if channel in self.ids.values():
            return channel
        if self._strict:
            raise SlackError("channel_not_found")
        made_up = "C" + "".join(ch for ch in channel.upper() if ch.isalnum())[:10]
        self.ids[channel] = made_up
        return made_up

    def store(self, channel: str, body: Mapping[str, Any], *, thread_ts: Any) -> FakeMessage:
        self._ts_seq += 100
        ts = f"{_TS_SECONDS + self._ts_seq // 1_000_000}.{self._ts_seq % 1_000_000:06d}"
        message = FakeMessage(channel=channel, ts=ts, text=body.get("text"), blocks=_blocks(body),
                              thread_ts=str(thread_ts) if thread_ts is not None else None)
        self.messages[(channel, ts)] = message
        if message.thread_ts is not None:
            self.messages[(channel, message.thread_ts)].replies.append(ts)
        return message


def check_content(body: Mapping[str, Any]) -> None:
    text, blocks = body.get("text"), body.get("blocks")
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except ValueError:
            raise SlackError("invalid_blocks_format") from None
    if blocks is not None and not isinstance(blocks, list):
        raise SlackError("invalid_blocks_format")
    if blocks is not None and not all(isinstance(b, dict) and "type" in b for b in blocks):
        raise SlackError("invalid_blocks")
    if not text and not blocks:
        raise SlackError("no_text")


def _blocks(body: Mapping[str, Any]) -> list[Any] | None:
    blocks = body.get("blocks")
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return blocks if isinstance(blocks, list) else None


def _shown(message: FakeMessage) -> dict[str, Any]:
    shown: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text}
    if message.blocks is not None:
        shown["blocks"] = message.blocks
    if message.thread_ts is not None:
        shown["thread_ts"] = message.thread_ts
    return shown
