"""Slack buttons for JTL syncs: `jtl_restart` (Restart) and `jtl_interval` (Set interval).

They show only on messages about a `jtl` source's jobs, each with a Block Kit confirm, and
act with that source's own client (its token and tenant headers), as `bridge jtl` does:
Restart is run control (`POST /v2/worker/syncs/{syncId}/restart`), Set interval is seed
001's Configure Sync (`POST /v2/workers/{syncId}` with `{"interval": ...}`), offered as a
menu of intervals. What JTL answered, or why it did not, is the note in the message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.errors import SourceError
from bridge.model import Notification
from bridge.sinks.slack_actions import Action, Outcome, Press, Services, register
from bridge.sources.jtl import JtlWorkers
from bridge.sources.jtl_control import DURATION, ControlError

# Slack wants the answer within 3 s; the message edit and the thread reply need ~2 of them.
JTL_TIMEOUT = 1.5
INTERVALS = (("every 5 min", "PT5M"), ("every 15 min", "PT15M"), ("every 30 min", "PT30M"),
             ("every hour", "PT1H"), ("every 4 hours", "PT4H"))


def _is_jtl(notification: Notification) -> bool:
    return notification.job_id is not None and notification.source_kind == "jtl"


def _source(press: Press, services: Services) -> JtlWorkers | None:
    try:
        source = services.source(press.source)
    except KeyError:
        return None
    return source if isinstance(source, JtlWorkers) else None


def _failed(press: Press, what: str, why: str) -> Outcome:
    return Outcome(note=f"⚠️ {what} of `{press.job_id}` failed ({press.who}): {why}",
                   reply=f"⚠️ {press.who} asked to {what.lower()} this sync; it failed: {why}")


async def _ask_jtl(press: Press, services: Services, what: str,
                   call: Callable[[JtlWorkers], Awaitable[dict[str, Any]]],
                   ) -> tuple[JtlWorkers, dict[str, Any]] | Outcome:
    """The source and JTL's answer to `call`, or the Outcome saying why there is none."""
    source = _source(press, services)
    if source is None:
        return _failed(press, what, f"{press.source} is not a configured jtl source")
    try:
        async with asyncio.timeout(JTL_TIMEOUT):
            return source, await call(source)
    except TimeoutError:
        return _failed(press, what, f"JTL did not answer within {JTL_TIMEOUT:g} s "
                       "(the request may still take effect)")
    except (ControlError, SourceError) as exc:
        return _failed(press, what, str(exc))


async def restart(press: Press, services: Services) -> Outcome:
    asked = await _ask_jtl(press, services, "Restart",
                           lambda source: source.control.run(press.job_id, "restart"))
    if isinstance(asked, Outcome):
        return asked
    source, answer = asked
    name = source.names.get(press.job_id, press.job_id)
    accepted = answer.get("requestedAt", press.at.strftime("%H:%M UTC"))
    return Outcome(note=f"🔄 Restart of {name} requested by {press.who}; JTL accepted it "
                        f"at {accepted}",
                   reply=f"🔄 {press.who} restarted this sync (JTL: "
                         f"{answer.get('actionId', 'Restart')} at {accepted}).")


async def set_interval(press: Press, services: Services) -> Outcome:
    if not DURATION.match(press.choice):
        return _failed(press, "Set interval", f"{press.choice!r} is not an interval")
    asked = await _ask_jtl(press, services, "Set interval",
                           lambda source: source.configure(press.job_id,
                                                           {"interval": press.choice}))
    if isinstance(asked, Outcome):
        return asked
    source, item = asked
    name = source.names.get(press.job_id, press.job_id)
    interval = item.get("interval", press.choice)
    return Outcome(note=f"⏱️ Interval of {name} set to {interval} by {press.who}",
                   reply=f"⏱️ {press.who} set this sync's interval to {interval} (JTL "
                         "confirmed).")


register(Action(name="jtl_restart", label="Restart", confirm_title="Restart the sync?",
                confirm_text="JTL stops this sync and starts it again now.",
                handler=restart, applies=_is_jtl))
register(Action(name="jtl_interval", label="Set interval", confirm_title="Change the interval?",
                confirm_text="JTL runs this sync at the chosen interval from now on.",
                handler=set_interval, applies=_is_jtl, options=INTERVALS))
