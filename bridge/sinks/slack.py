"""The Slack sink: post, update or thread one message per job (contract section 5).

Messages go through slack_sdk's async clients on the shared aiohttp session, with their own
retry handlers off: the outbox owns retries, and `ChannelSender` owns pacing and 429 waits.
In `update` and `thread` modes the message of each (sink, source, job) is remembered in the
state store (`MessageRef`), so edits and replies find it again after a restart. A message
that was deleted in Slack (`message_not_found`) is replaced by a new one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from bridge.config.schema import SinkBase, SlackSink
from bridge.errors import PermanentDelivery, RetryableDelivery, StoreError
from bridge.model import Delivery, JobState, Notification
from bridge.secrets import redact, redact_url
from bridge.sinks.base import PayloadShape, SinkCapabilities
from bridge.sinks.retry import Verdict, classify_exception, classify_slack
from bridge.sinks.slack_actions import decorate
from bridge.sinks.slack_budget import Clock, Gate, Sleep, shared_gate
from bridge.sinks.slack_clients import budgets, clients, details, unreadable
from bridge.sinks.slack_message import SlackMessage, age_of, message_of, replies_of
from bridge.sinks.slack_rollup import Rollup, headline
from bridge.sinks.slack_sender import DEFAULT_MAX_WAIT, ChannelSender, Op, RateLimited
from bridge.store.base import MessageRef, Store

log = logging.getLogger(__name__)

# Errors that mean the message we meant to edit or reply to is gone from the channel.
_GONE = frozenset({"message_not_found", "thread_not_found"})
# Rows the delivery worker hands the sender at a time: about what Slack's post budget lets
# out in a few seconds. A failure committed meanwhile is claimed with the next batch (with
# its job's earlier rows, so a waiting start post is replaced by it), not after 50 posts.
SLACK_CLAIM_BATCH = 6
# Operations waiting in the channel's sender beyond which `has_room` hands over no more rows.
ROOM = 60
# The roll-up's calls wait at the gates ahead of every send (rank 0 is the most urgent one).
ROLLUP_RANK = -1
# Update mode alerts people with a threaded reply when a job ends in one of these.
_ALERT_STATES = frozenset({JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True, slots=True, kw_only=True)
class _Posted:
    channel: str
    ts: str


class _MessageGone(Exception):
    """The message to edit or reply to no longer exists."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Send:
    """What one queued operation sends; a newer one of the same job may take its place."""

    notification: Notification
    job_id: str | None
    message: SlackMessage
    # The outbox superseded waiting rows of this message in its favour (bridge.store.coalesce).
    replaced: bool = False


_Op = Op[_Send]


class SlackNotifier:
    """Sends notifications to one Slack channel, through the Web API or an incoming webhook."""

    def __init__(
        self,
        config: SlackSink,
        session: aiohttp.ClientSession,
        store: Store,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ):
        self.config: SinkBase = config
        self._config = config
        self._store = store
        self._clients = clients(config, session)
        self._timeout = config.timeout.total_seconds()
        self._max_retry_after = config.max_retry_after.total_seconds()
        self._clock, self._sleep = clock, sleep
        lane = config.channel if self._clients.web is not None else "incoming-webhook"
        self._rollup = Rollup(name=f"{config.name}:{lane}", post=self._post_rollup,
                              edit=self._edit_rollup)
        overflow = config.overflow_after.total_seconds() if self._clients.web else 0.0
        self._sender: ChannelSender[_Send] = ChannelSender(
            f"{config.name}:{lane}", gate_of=self._gate_of, max_wait=max_wait,
            max_retry_after=self._max_retry_after, overflow_after=overflow,
            on_overflow=self._overflowed, on_drained=self._rollup.drained,
            clock=clock, sleep=sleep,
        )

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def sender(self) -> ChannelSender[_Send]:
        """The channel's queue (its counters show coalesced sends and rate limits)."""
        return self._sender

    @property
    def rollup(self) -> Rollup:
        return self._rollup

    def has_room(self) -> bool:
        """While the channel is behind and every urgent send waiting is named in the
        roll-up, the delivery worker may hand over more rows (the next failures) before the
        waiting ones had their own calls: they would otherwise wait in the outbox."""
        sender = self._sender
        return sender.parked > 0 and sender.unshown == 0 and sender.pending < ROOM

    async def send(self, delivery: Delivery) -> None:
        n = delivery.notification
        message = message_of(delivery)
        if self._config.actions and self._config.signing_secret is not None:
            # Buttons (opt-in, verified presses only): bridge.sinks.slack_actions.
            message = SlackMessage(text=message.text, blocks=await decorate(
                self._store, self.name, self._config.actions, n, message.text,
                message.blocks))
        send = _Send(notification=n, job_id=n.job_id, message=message,
                     replaced=delivery.replaced > 0)
        mode = self._config.mode
        run: Callable[[_Op], Awaitable[None]]
        key: tuple[str, str] | None = None
        final = n.terminal
        if self._clients.webhook is not None:
            run = self._post_webhook
        elif n.thread_reply:
            # One reply under a digest's message, a row of its own: after the digest's row
            # in the lane, never replaced by another send.
            run, final = self._post_thread_reply, True
        elif n.job_id is None or mode == "post":
            run = self._post_standalone
        elif mode == "update":
            run, key = self._update, (n.source, n.job_id)
        else:
            run = self._thread
        # A job's sends keep their order, and so do a source's own events (down, then up).
        lane = (n.source, n.job_id)
        # Urgent sends may be named in the roll-up first; a digest names its own jobs (and
        # its thread replies are about them).
        overflow = n.priority.rank == 0 and not n.digest and not n.thread_reply
        await self._sender.submit(run, send, lane=lane, key=key, final=final,
                                  rank=n.priority.rank, overflow=overflow,
                                  age=age_of(delivery))

    async def aclose(self) -> None:
        await self._rollup.aclose()
        await self._sender.aclose()

    async def call_api(self, method: str, fields: dict[str, Any], *,
                       rank: int = 0) -> Mapping[str, Any]:
        """One Web API call outside the outbox (a button press shown in its message), at the
        gate of `method`'s budget the sink's own calls wait at (429s waited out the same
        way); `rank` 0: ahead of queued notifications. Raises as a send would."""
        async def call() -> Mapping[str, Any]:
            try:
                return await self._web_call(method, fields)
            except _MessageGone as exc:
                raise PermanentDelivery(f"Slack {method} on sink {self.name!r}: {exc}") from None

        return await self._sender.call(call, method=method, rank=rank)

    # --- the roll-up (bridge.sinks.slack_rollup) ---------------------------------------------

    def _overflowed(self, op: _Op) -> None:
        n = op.payload.notification
        self._rollup.show((n.source, n.job_id), headline(op.payload.message.text))

    async def _post_rollup(self, text: str) -> str:
        async def call() -> Mapping[str, Any]:
            return await self._web_call("chat.postMessage",
                                        {"channel": self._config.channel, "text": text})

        # Ahead of every other post: it names the urgent ones.
        data = await self._sender.call(call, method="chat.postMessage", rank=ROLLUP_RANK)
        return f"{data.get('channel')}:{data.get('ts')}"  # chat.update needs the channel id

    async def _edit_rollup(self, posted: str, text: str) -> bool:
        channel, ts = posted.split(":", 1)

        async def call() -> Mapping[str, Any]:
            return await self._web_call("chat.update",
                                        {"channel": channel, "ts": ts, "text": text})

        try:
            await self._sender.call(call, method="chat.update", rank=ROLLUP_RANK)
        except _MessageGone:
            return False
        return True

    def _gate_of(self, method: str) -> Gate:
        """The budget `method` spends, shared with every sink using the same token (edits)
        or the same token and channel (posts)."""
        post, update = budgets(self._config)
        clients, base = self._clients, self._config.base_url
        if clients.webhook is not None:
            return shared_gate(("incoming-webhook",), clients.webhook.url, post,
                               clock=self._clock, sleep=self._sleep)
        if method == "chat.update":
            return shared_gate((method, base), clients.secrets[0], update,
                               clock=self._clock, sleep=self._sleep)
        return shared_gate((method, base, str(self._config.channel)), clients.secrets[0], post,
                           clock=self._clock, sleep=self._sleep)

    # --- modes ------------------------------------------------------------------------------

    async def _post_standalone(self, op: _Op) -> None:
        await self._post(op)

    async def _update(self, op: _Op) -> None:
        n, job_id = op.payload.notification, str(op.payload.job_id)
        ref = await self._ref(n, job_id)
        if ref is None:
            ref = await self._post_root(op)
            if op.replaced or op.payload.replaced:
                # The failure took the place of a waiting post (say "started"), here or in
                # the outbox: without coalescing that post and then an edit and a reply
                # would have gone out, so the reply that alerts people still does.
                await self._alert(op, ref)
            await self._replies(op, ref)
            return
        try:
            await self._call("chat.update", op, channel=ref.channel, ts=ref.ts)
        except _MessageGone:
            log.info("sink %s: message %s for job %s/%s was deleted; posting a new one",
                     self.name, ref.ts, n.source, job_id)
            ref = await self._post_root(op)
            await self._replies(op, ref)
            return
        await self._alert(op, ref)
        await self._replies(op, ref)

    async def _post_thread_reply(self, op: _Op) -> None:
        """One thread reply of a digest (bridge.groups.digest.outbox_rows), under the
        digest's message, which the row before it in the lane posted."""
        n, group_id = op.payload.notification, str(op.payload.job_id)
        ref = await self._ref(n, group_id)
        if ref is None:
            # The digest's own row failed before posting: this one waits for it.
            raise RetryableDelivery(f"the digest message of group {group_id} is not posted "
                                    "yet; its thread reply waits for it")
        try:
            await self._reply(op, ref)
        except _MessageGone:
            log.info("sink %s: digest %s vanished before its thread reply", self.name, ref.ts)

    async def _replies(self, op: _Op, ref: MessageRef) -> None:
        """The thread replies a digest row queued by an earlier release carries in its
        payload (digests now queue each reply as a row of its own)."""
        for reply in replies_of(op.payload.notification):
            try:
                await self._call("chat.postMessage", op, message=reply, channel=ref.channel,
                                 thread_ts=ref.ts, **self._broadcast())
            except _MessageGone:
                log.info("sink %s: digest %s vanished before its thread replies", self.name,
                         ref.ts)
                return

    async def _alert(self, op: _Op, ref: MessageRef) -> None:
        if op.payload.notification.state not in _ALERT_STATES:
            return
        try:
            await self._reply(op, ref)
        except _MessageGone:  # deleted between the edit and the reply: the edit stands
            log.info("sink %s: message %s vanished before the failure reply", self.name, ref.ts)

    async def _thread(self, op: _Op) -> None:
        n, job_id = op.payload.notification, str(op.payload.job_id)
        ref = await self._ref(n, job_id)
        if ref is None:
            await self._post_root(op)
            return
        try:
            await self._reply(op, ref)
        except _MessageGone:
            log.info("sink %s: thread %s for job %s/%s is gone; starting a new one",
                     self.name, ref.ts, n.source, job_id)
            await self._post_root(op)

    async def _post_root(self, op: _Op) -> MessageRef:
        posted = await self._post(op)
        n, job_id = op.payload.notification, str(op.payload.job_id)
        ref = MessageRef(channel=posted.channel, ts=posted.ts)
        try:
            await self._store.set_message_ref(self.name, n.source, job_id, ref)
        except StoreError as exc:
            # Posted but not remembered: the retry posts again (at-least-once), so say so.
            raise RetryableDelivery(f"posted to Slack but could not remember message {ref.ts} "
                                    f"in the state store: {exc}") from exc
        return ref

    async def _ref(self, n: Notification, job_id: str) -> MessageRef | None:
        try:
            return await self._store.get_message_ref(self.name, n.source, job_id)
        except StoreError as exc:
            raise RetryableDelivery(f"could not read the Slack message of job "
                                    f"{n.source}/{job_id} from the state store: {exc}") from exc

    async def _reply(self, op: _Op, ref: MessageRef) -> None:
        await self._call("chat.postMessage", op, channel=ref.channel, thread_ts=ref.ts,
                         **self._broadcast())

    def _broadcast(self) -> dict[str, Any]:
        """`reply_broadcast`: failure replies in a thread also show in the channel."""
        return {"reply_broadcast": True} if self._config.reply_broadcast else {}

    async def _post(self, op: _Op) -> _Posted:
        data = await self._call("chat.postMessage", op, channel=self._config.channel)
        channel, ts = data.get("channel"), data.get("ts")
        if not isinstance(channel, str) or not isinstance(ts, str):
            raise PermanentDelivery(
                f"Slack chat.postMessage on sink {self.name!r} answered ok without channel "
                "and ts; is base_url a Slack-compatible API?"
            )
        return _Posted(channel=channel, ts=ts)

    # --- calls ------------------------------------------------------------------------------

    async def _call(self, method: str, op: _Op, *, message: SlackMessage | None = None,
                    **where: Any) -> Mapping[str, Any]:
        """Call `method` with the op's message as it is when the gate lets the call in (a
        newer send of the same job may have replaced it while it waited), or `message`
        (a digest's thread reply)."""
        async def call() -> Mapping[str, Any]:
            shown = message if message is not None else op.payload.message
            return await self._web_call(method, where | shown.fields())

        return await self._sender.call(call, method=method, op=op)

    async def _web_call(self, method: str, fields: dict[str, Any]) -> Mapping[str, Any]:
        client = self._clients.web
        assert client is not None  # the webhook client never reaches the Web API paths
        try:
            async with asyncio.timeout(self._timeout):
                response = await client.api_call(method, json=fields)
        except SlackApiError as exc:
            raise self._api_error(method, exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome = classify_exception(exc, secrets=self._clients.secrets)
            raise outcome.error(f"Slack {method}") from None
        except (AttributeError, TypeError, ValueError) as exc:
            # slack_sdk reads the answer itself and fails this way on a body that is JSON
            # but not an object (AttributeError), or not UTF-8 (UnicodeDecodeError).
            raise unreadable(f"Slack {method} on sink {self.name!r}", exc) from None
        data = response.data
        return data if isinstance(data, dict) else {}

    def _api_error(self, method: str, exc: SlackApiError) -> Exception:
        status, headers, error = details(exc.response)
        if error in _GONE:
            return _MessageGone(error)
        if error is not None:
            # A Slack-compatible server may quote the request, token and all, in `error`.
            error = redact(error, self._clients.secrets)
        data = getattr(exc.response, "data", None)
        needed = data.get("needed") if isinstance(data, dict) else None
        outcome = classify_slack(error, status, headers, max_retry_after=self._max_retry_after,
                                 needed=redact(str(needed), self._clients.secrets)
                                 if needed else None)
        if status == 429 or error in {"ratelimited", "rate_limited"}:
            return RateLimited(outcome.reason, outcome.retry_after)
        return outcome.error(f"Slack {method} on sink {self.name!r}")

    async def _post_webhook(self, op: _Op) -> None:
        async def call() -> None:
            await self._webhook_call(op.payload.message)

        await self._sender.call(call, method="incoming-webhook", op=op)

    async def _webhook_call(self, message: SlackMessage) -> None:
        client = self._clients.webhook
        assert client is not None
        where = f"Slack incoming webhook {redact_url(client.url)}"
        try:
            async with asyncio.timeout(self._timeout):
                response = await client.send(text=message.text, blocks=message.blocks)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise classify_exception(exc, secrets=self._clients.secrets).error(where) from None
        except ValueError as exc:  # slack_sdk decodes the body as UTF-8 and may fail
            raise unreadable(where, exc) from None
        status = response.status_code
        # The answer may quote the webhook URL, whose path is the secret: scrub, then cut.
        said = redact((response.body or "").strip(), self._clients.secrets)
        error = None if 200 <= status < 300 else said[:60] or None
        outcome = classify_slack(error, status, response.headers,
                                 max_retry_after=self._max_retry_after)
        if status == 429:
            raise RateLimited(outcome.reason, outcome.retry_after)
        if outcome.verdict is not Verdict.OK:
            raise outcome.error(where)


def capabilities(config: SlackSink) -> SinkCapabilities:
    """The channel sender keeps order and coalesces edits itself; `update` mode edits one
    message per job in place."""
    return SinkCapabilities(orders_itself=True, edits_in_place=config.mode == "update",
                            payload=PayloadShape.SLACK, claim_batch=SLACK_CLAIM_BATCH)
