"""Slack buttons on job messages (Block Kit `actions`), and what pressing one does.

Opt-in per Slack sink: `actions = ["ack", "mute_1h", "mute_until_resolved"]` (`"mute"` is
both mutes), and only with a `signing_secret`, without which the press could not be
verified (`POST /v1/slack/interactions`, bridge.server.slack_interactions). Every button
asks for confirmation (Block Kit `confirm`). Its `value` names the job (`source`, `job`),
so a press needs nothing from the message but where it is.

Actions are a registry (`ACTIONS`): a name, a button, and a handler that gets the press
(`Press`: who, which job, which message) and the bridge's services (`Services`), and returns
an `Outcome`: a line shown in the message, a reply in its thread. A new action (JTL
`restart`, `set_interval`) is one `register(Action(...))` with its handler; `bridge check`
and the endpoint read the registry, nothing else names actions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import aiohttp

from bridge.config.schema import Config
from bridge.errors import RetryableDelivery, StoreError
from bridge.model import Notification
from bridge.silences import new_silence
from bridge.sources.base import Source
from bridge.store.base import Store

log = logging.getLogger(__name__)

ACTION_ID_PREFIX = "bridge."
BLOCK_ID = "bridge_actions"
NOTES_BLOCK_ID = "bridge_action_notes"
# Slack caps a section's text at 3000 characters.
_SECTION_LIMIT = 3000


@dataclass(frozen=True, slots=True, kw_only=True)
class Press:
    """One verified button press: who pressed what, about which job, on which message."""

    sink: str
    action: str
    user_id: str
    user_name: str
    source: str
    job_id: str
    channel: str
    message_ts: str
    at: datetime
    # What was chosen, for a select menu (JTL's Set interval: "PT1H"); "" for a button.
    choice: str = ""

    @property
    def who(self) -> str:
        return f"<@{self.user_id}>"

    @property
    def author(self) -> str:
        """How silences made by this press name their author."""
        return f"slack:{self.user_name or self.user_id} ({self.user_id})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What a press did: `note` goes into the message, `reply` into its thread."""

    note: str
    reply: str


class Services(Protocol):
    """What action handlers may use: the store (silences, the action record), the config
    (a source's settings, for an action that calls the source's API) and the shared HTTP
    session to call it with."""

    @property
    def store(self) -> Store: ...

    @property
    def config(self) -> Config: ...

    @property
    def session(self) -> aiohttp.ClientSession: ...

    def source(self, name: str) -> Source:
        """The running source (KeyError: unknown), for actions on its API (JTL)."""


Handler = Callable[[Press, Services], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    name: str
    label: str
    confirm_title: str
    confirm_text: str
    handler: Handler
    style: str | None = None
    # Done once pressed (the button goes): an acknowledgement is given once.
    once: bool = False
    # Whether the button belongs on a message about this notification's job.
    applies: Callable[[Notification], bool] = lambda n: n.job_id is not None
    # A select menu instead of a button: (label, value) options; the press's `choice`.
    options: tuple[tuple[str, str], ...] = ()


ACTIONS: dict[str, Action] = {}
# Names that stand for several actions in `actions = [...]`.
ALIASES: dict[str, tuple[str, ...]] = {"mute": ("mute_1h", "mute_until_resolved")}


def register(action: Action) -> None:
    ACTIONS[action.name] = action


def known_names() -> list[str]:
    return [*ACTIONS, *ALIASES]


def expand(names: Sequence[str]) -> list[str]:
    """Config names -> action names, aliases expanded, each once, in order."""
    out: list[str] = []
    for name in names:
        for one in ALIASES.get(name, (name,)):
            if one not in out:
                out.append(one)
    return out


# --- buttons ------------------------------------------------------------------------------


def button(action: Action, value: str) -> dict[str, Any]:
    """The action's element: a button, or a select menu when it has options (each option's
    value names the job too, as a menu sends only the chosen option)."""
    element: dict[str, Any] = {
        "type": "button",
        "action_id": ACTION_ID_PREFIX + action.name,
        "text": {"type": "plain_text", "text": action.label},
        "value": value,
    }
    if action.options:
        job = json.loads(value)
        element = {
            "type": "static_select",
            "action_id": ACTION_ID_PREFIX + action.name,
            "placeholder": {"type": "plain_text", "text": action.label},
            "options": [{"text": {"type": "plain_text", "text": label},
                         "value": json.dumps({**job, "choice": choice}, separators=(",", ":"))}
                        for label, choice in action.options],
        }
    element |= {
        "confirm": {
            "title": {"type": "plain_text", "text": action.confirm_title},
            "text": {"type": "mrkdwn", "text": action.confirm_text},
            "confirm": {"type": "plain_text", "text": action.label},
            "deny": {"type": "plain_text", "text": "Cancel"},
        },
    }
    if action.style and not action.options:
        element["style"] = action.style
    return element


def job_value(source: str, job_id: str) -> str:
    return json.dumps({"source": source, "job": job_id}, separators=(",", ":"))


def buttons_for(names: Sequence[str], notification: Notification,
                done: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The actions block for a message about `notification`'s job; [] when it has none."""
    if notification.job_id is None:
        return []
    value = job_value(notification.source, notification.job_id)
    elements = [button(ACTIONS[name], value) for name in expand(names)
                if name in ACTIONS and name not in done and ACTIONS[name].applies(notification)]
    return [{"type": "actions", "block_id": BLOCK_ID, "elements": elements}] if elements else []


def with_buttons(text: str, blocks: Sequence[dict[str, Any]] | None, names: Sequence[str],
                 notification: Notification, *, notes: Sequence[str] = (),
                 done: frozenset[str] = frozenset()) -> list[dict[str, Any]] | None:
    """The message's blocks with the notes of earlier presses and the buttons appended (a
    plain-text message becomes one section first); `blocks` unchanged when there are none."""
    extra = buttons_for(names, notification, done)
    if notes:
        extra = [{"type": "context", "block_id": NOTES_BLOCK_ID,
                  "elements": [{"type": "mrkdwn", "text": n} for n in notes[-10:]]}, *extra]
    if not extra:
        return list(blocks) if blocks else None
    base = list(blocks) if blocks else [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:_SECTION_LIMIT]}}]
    return [*base, *extra]


async def decorate(store: Store, sink: str, names: Sequence[str], notification: Notification,
                   text: str, blocks: Sequence[dict[str, Any]] | None
                   ) -> list[dict[str, Any]] | None:
    """`with_buttons`, keeping what earlier presses on this job said: a later edit of the
    message (update mode) still shows "Acknowledged by ..." and no second Acknowledge."""
    notes: list[str] = []
    done: set[str] = set()
    if notification.job_id is not None:
        try:
            records = await store.list_actions(notification.source, notification.job_id,
                                               limit=10)
        except StoreError as exc:
            raise RetryableDelivery(f"could not read the Slack actions of job "
                                    f"{notification.source}/{notification.job_id}: {exc}"
                                    ) from exc
        for record in reversed(records):  # oldest first
            if record.sink == sink:
                notes.append(record.note)
                action = ACTIONS.get(record.action)
                if action is not None and action.once:
                    done.add(record.action)
    return with_buttons(text, blocks, names, notification, notes=notes, done=frozenset(done))


def after_press(blocks: Sequence[Mapping[str, Any]], outcome: Outcome,
                pressed: str) -> list[dict[str, Any]]:
    """The message's blocks once a press is done: its note added (notes collect in one
    context block above the buttons), the pressed button gone if it is pressed `once`."""
    once = pressed in ACTIONS and ACTIONS[pressed].once
    kept: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    actions: dict[str, Any] | None = None
    for block in blocks:
        if block.get("block_id") == NOTES_BLOCK_ID:
            notes = list(block.get("elements") or [])
        elif block.get("block_id") == BLOCK_ID:
            actions = dict(block)
        else:
            kept.append(dict(block))
    notes.append({"type": "mrkdwn", "text": outcome.note})
    kept.append({"type": "context", "block_id": NOTES_BLOCK_ID, "elements": notes[-10:]})
    if actions is not None:
        elements = [e for e in actions.get("elements") or []
                    if not (once and e.get("action_id") == ACTION_ID_PREFIX + pressed)]
        if elements:
            kept.append({**actions, "elements": elements})
    return kept


# --- the built-in actions ---------------------------------------------------------------------


async def acknowledge(press: Press, services: Services) -> Outcome:
    when = press.at.strftime("%H:%M UTC")
    return Outcome(note=f"✅ Acknowledged by {press.who} at {when}",
                   reply=f"✅ {press.who} acknowledged this at {when}.")


def _mute(span: timedelta | None) -> Handler:
    async def mute(press: Press, services: Services) -> Outcome:
        body: dict[str, Any] = {"matchers": {"source": literal(press.source),
                                             "job.id": literal(press.job_id)},
                                "author": press.author, "comment": "muted from Slack"}
        if span is None:
            body["until_resolved"] = True
        else:
            body["ends"] = (press.at + span).isoformat()
        silence = new_silence(body, press.at)
        await services.store.add_silence(silence)
        until = "until it succeeds" if span is None else f"for {_hours(span)}"
        return Outcome(note=f"🔕 Muted {until} by {press.who} (`{silence.id}`)",
                       reply=f"🔕 {press.who} muted this job {until} (silence `{silence.id}`).")

    return mute


def literal(value: str) -> str:
    """A glob matching exactly `value` (an id may hold `*`, `?` or `[`)."""
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in value)


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} h"


register(Action(name="ack", label="Acknowledge", style="primary", once=True,
                confirm_title="Acknowledge?",
                confirm_text="Tell the channel you are on it.", handler=acknowledge))
register(Action(name="mute_1h", label="Mute 1 h", confirm_title="Mute for an hour?",
                confirm_text="No notifications about this job for one hour.",
                handler=_mute(timedelta(hours=1))))
register(Action(name="mute_until_resolved", label="Mute until resolved",
                confirm_title="Mute until resolved?",
                confirm_text="No notifications about this job until it succeeds.",
                handler=_mute(None)))

# The JTL actions register themselves (they need the registry above).
from bridge.sinks import slack_jtl_actions  # noqa: E402, F401
