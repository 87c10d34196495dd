"""`bridge demo`: the whole pipeline against built-in simulators, no credentials needed.

Starts simulators of the four seed APIs, a fake Slack and a webhook receiver on 127.0.0.1,
points the bundled config (`bridge/demo.toml`, package data) at them through `${DEMO_*}`
variables passed to the loader (never through os.environ), and prints one line per event
as it happens, under it each rendered notification (its first line; in full with
`--verbose`), and one line per delivery
that failed for good. The dashboard shows the same live. The demo's state is temporary, so
the hint for a dead letter points at the dashboard's retry button, not `bridge outbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, TextIO

from bridge.config import load_config
from bridge.model import Delivery, DeliveryStatus, Event, EventKind, Notification
from bridge.pipeline import PollOutcome
from bridge.resources import demo_config
from bridge.store.base import Store

# How often the demo looks for deliveries that were dead-lettered.
DEAD_LETTER_POLL = 0.5
# A message's first line is cut here, so one notification stays one terminal line.
NOTIFICATION_LINE_WIDTH = 120

_COLOURS = {
    "succeeded": "32", "failed": "31", "cancelled": "35", "running": "36", "pending": "33",
    "blocked": "33", "unknown": "37", "source_down": "31", "source_up": "32",
}
_EMOJI = {"succeeded": "✅", "failed": "❌", "cancelled": "🚫", "pending": "⏳", "running": "🔄",
          "blocked": "⛔", "unknown": "❔"}


class Printer:
    """Prints events and rendered notifications readably (colour only on a terminal)."""

    def __init__(self, out: TextIO, *, verbose: bool = False, quiet: bool = False):
        self.out = out
        self.verbose = verbose
        self.quiet = quiet
        self.colour = out.isatty() and "NO_COLOR" not in os.environ
        # Held back until the banner is out, so the dashboard URL comes first.
        self._held: list[PollOutcome] | None = []

    def release(self) -> None:
        held, self._held = self._held or [], None
        for outcome in held:
            self(outcome)

    def paint(self, text: str, key: str) -> str:
        code = _COLOURS.get(key)
        return f"\033[{code}m{text}\033[0m" if self.colour and code else text

    def dim(self, text: str) -> str:
        return f"\033[2m{text}\033[0m" if self.colour else text

    def __call__(self, outcome: PollOutcome) -> None:
        if self._held is not None:
            self._held.append(outcome)
            return
        sent: dict[str, list[Notification]] = {}
        for notification in outcome.notifications:
            sent.setdefault(notification.event_id, []).append(notification)
        for event in outcome.events:
            self.out.write(self.event_line(event) + "\n")
            # The contract shows every rendered notification: by default as the first line
            # of its message under its event, in full with --verbose.
            for notification in [] if self.quiet else sent.get(event.id, []):
                self.out.write(self.notification_block(notification) if self.verbose
                               else self.notification_line(notification))
        self.out.flush()

    def notification_line(self, notification: Notification) -> str:
        """One line per rendered notification: its sink and the message's first line."""
        lines = [line for line in render_payload(notification.payload) if line.strip()]
        first = terminal_mrkdwn(lines[0]).strip() if lines else ""
        if len(first) > NOTIFICATION_LINE_WIDTH:
            first = first[:NOTIFICATION_LINE_WIDTH - 1] + "…"
        return self.dim(f"   ↳ {notification.sink}: ") + first + "\n"

    def event_line(self, event: Event) -> str:
        at = event.at.strftime("%H:%M:%S")
        kind = f"{event.on!s:<11}"
        job = event.job
        if event.on is EventKind.TRANSITION and job:
            change = (f"{_EMOJI.get(str(event.from_state), '')} {event.from_state} → "
                      f"{_EMOJI.get(str(event.to_state), '')} {event.to_state}")
            detail = f"{job.id}  {self.paint(change, str(event.to_state))}"
        elif job:
            progress = f" {job.progress:.0f}%" if job.progress is not None else ""
            detail = f"{job.id}  {self.paint(str(job.state), str(job.state))}{progress}"
        else:
            detail = self.paint(event.reason or "", str(event.on))
        if job and job.message and event.on is not EventKind.PROGRESS:
            detail += self.dim(f"  “{job.message}”")
        return f"{self.dim(at)} {self.paint(kind, str(event.on))} {event.source:<9} {detail}"

    def dead_letter_line(self, delivery: Delivery, dashboard: str) -> str:
        """A delivery that failed for good, with where it can be retried in the demo."""
        n = delivery.notification
        at = datetime.now(UTC).strftime("%H:%M:%S")  # when it was noticed, a moment after
        error = " ".join((delivery.last_error or "").split("; fix the sink's config")[0].split())
        failed = self.paint(f"{'FAILED':<11}", "failed")
        return (f"{self.dim(at)} {failed} {n.source:<9} "
                f"{n.job_id or '-'}  {n.rule} → {n.sink}: {error}; dead-lettered, "
                f"retry it from the dashboard's outbox at {dashboard}")

    def notification_block(self, notification: Notification) -> str:
        # Queued, not yet delivered: a failed delivery gets its own FAILED line later.
        head = self.dim(f"   ┌─ {notification.rule} → {notification.sink} (queued)")
        lines = [head]
        lines.extend(self.dim("   │ ") + terminal_mrkdwn(line)
                     for line in render_payload(notification.payload))
        lines.append(self.dim("   └─"))
        return "\n".join(lines) + "\n"


_SLACK_DATE = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")
_SLACK_LINK = re.compile(r"<(?:https?://|mailto:)[^|>]*\|([^>]*)>")


def terminal_mrkdwn(line: str) -> str:
    """Slack markup as a person would read it: dates and links show their text."""
    line = _SLACK_DATE.sub(r"\1", line)
    line = _SLACK_LINK.sub(r"\1", line)
    return line.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render_payload(payload: Mapping[str, Any]) -> list[str]:
    """A terminal rendering of a Slack message (text or Block Kit) or a webhook body."""
    if "body" in payload:
        try:
            body = json.loads(payload["body"])
        except (TypeError, ValueError):
            return str(payload["body"]).splitlines()
        return json.dumps(body, indent=None, ensure_ascii=False)[:400].splitlines()
    blocks = payload.get("blocks")
    if isinstance(blocks, list) and blocks:
        return _blocks_text(blocks)
    return str(payload.get("text", "")).splitlines()


def _blocks_text(blocks: list[Any]) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in {"header", "section"} and isinstance(block.get("text"), dict):
            lines.extend(str(block["text"].get("text", "")).splitlines())
        if kind == "section" and isinstance(block.get("fields"), list):
            lines.append("  ".join(str(f.get("text", "")) for f in block["fields"]
                                   if isinstance(f, dict)))
        if kind == "context" and isinstance(block.get("elements"), list):
            lines.append("  ".join(str(e.get("text", "")) for e in block["elements"]
                                   if isinstance(e, dict)))
        if kind == "divider":
            lines.append("─" * 30)
    return lines


async def run_demo(
    *,
    listen: str = "127.0.0.1:8080",
    tick: float = 2.0,
    seed: int = 7,
    duration: float | None = None,
    verbose: bool = False,
    quiet: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    from bridge.app import Bridge
    from bridge.cli import install_stop_signals
    from bridge.simulators.slack import FakeSlack
    from bridge.simulators.webhook_receiver import WebhookReceiver
    from bridge.simulators.world import DemoWorld

    async with AsyncExitStack() as stack:
        world = await stack.enter_async_context(DemoWorld(seed=seed, tick_interval=tick))
        slack = await stack.enter_async_context(FakeSlack(token=DEMO_SLACK_TOKEN))
        receiver = await stack.enter_async_context(WebhookReceiver())
        # The pager endpoint refuses the first page for good (HTTP 410), so the demo shows a
        # dead letter on the dashboard and in `bridge outbox`, ready to be retried.
        receiver.script([410])
        state_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bridge-demo-"))
        # Only the simulators' addresses: the bundled config gives every other variable a
        # default, and the user's own environment neither leaks in nor gets changed.
        env = {
            **world.env(),
            "DEMO_SLACK_URL": slack.api_url,
            "DEMO_SLACK_TOKEN": DEMO_SLACK_TOKEN,
            "DEMO_SLACK_MIN_INTERVAL": "50ms",
            "DEMO_WEBHOOK_URL": receiver.url,
            "DEMO_WEBHOOK_SECRET": DEMO_WEBHOOK_SECRET,
            "DEMO_ESALES_IDS": ",".join(world.esales_ids()),
        }
        config = load_config(stack.enter_context(demo_config()), env=env)
        settings = config.bridge.model_copy(
            update={"state": f"sqlite:///{state_dir}/state.db", "listen": listen}
        )
        config = config.model_copy(update={"bridge": settings})
        printer = Printer(out, verbose=verbose, quiet=quiet)
        # Dead letters get the demo's own line (the log's `bridge outbox retry` hint does
        # not work against the demo's temporary state).
        # The fake Slack's budgets make the sender wait now and then; that is handled, quietly.
        # Restored when the demo ends: a demo run in-process leaves logging as it found it.
        stack.enter_context(_quieter({"bridge.deliver": logging.CRITICAL,
                                      "bridge.sinks.slack_sender": logging.ERROR}))
        async with Bridge(config, observers=[printer], drain_timeout=2.0) as bridge:
            for import_id in world.esales_ids():
                await bridge.watch("esales", import_id)
            out.write(_banner(bridge.http_url or "", config.path))
            out.flush()
            printer.release()
            install_stop_signals(bridge.stop)
            if duration is not None:
                asyncio.get_running_loop().call_later(duration, bridge.stop)
            watcher = asyncio.create_task(_print_dead_letters(bridge.store, printer,
                                                              bridge.http_url or ""))
            try:
                await bridge.wait()
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        out.write(_slack_summary(slack.render()))
        out.write("\nstopped cleanly; the demo's state was temporary.\n")
    return 0


@contextlib.contextmanager
def _quieter(levels: Mapping[str, int]) -> Iterator[None]:
    loggers = {name: logging.getLogger(name) for name in levels}
    before = {name: logger.level for name, logger in loggers.items()}
    for name, logger in loggers.items():
        logger.setLevel(levels[name])
    try:
        yield
    finally:
        for name, logger in loggers.items():
            logger.setLevel(before[name])


async def _print_dead_letters(store: Store, printer: Printer, dashboard: str) -> None:
    seen: set[str] = set()
    while True:
        await asyncio.sleep(DEAD_LETTER_POLL)
        for delivery in await store.list_outbox(DeliveryStatus.DEAD, limit=100):
            if delivery.id not in seen:
                seen.add(delivery.id)
                printer.out.write(printer.dead_letter_line(delivery, dashboard) + "\n")
                printer.out.flush()


DEMO_SLACK_TOKEN = "xoxb-demo-token"
DEMO_WEBHOOK_SECRET = "whsec_ZGVtby13ZWJob29rLXNlY3JldC0xMjM0NTY="


def _slack_summary(channels: str, most: int = 40) -> str:
    """The fake Slack's channels at the end: `update` mode kept one message per job."""
    lines = [terminal_mrkdwn(line) for line in channels.splitlines()]
    if not lines:
        return ""
    shown = lines[-most:]
    more = f"  ({len(lines) - len(shown)} earlier lines not shown)\n" if len(lines) > most else ""
    return ("\nThe fake Slack now shows (one message per job, edited in place; failures "
            "also replied in a thread):\n" + more + "\n".join(f"  {line}" for line in shown)
            + "\n")


def _banner(url: str, config: str) -> str:
    return (
        "bridge demo: simulated JTL, Terminal, Voyado eSales and Zendesk APIs on 127.0.0.1\n"
        f"  config     {config}\n"
        f"  dashboard  {url}\n"
        "  Ctrl-C to stop. One line per event, under it each message's first line\n"
        "  (--verbose: whole messages);\n"
        "  a delivery that fails for good shows as FAILED.\n\n"
    )
