"""The event loop `bridge run` runs on: uvloop when it is installed, else asyncio's own.

uvloop (libuv) schedules callbacks, runs the selector and writes to sockets in C; on the
push -> webhook path, where every notification is a few callbacks, an HTTP request and a
store round trip, that is CPU per notification the bridge does not spend (`make
bench-peer` measures it). Nothing in bridge depends on it: `bridge run --loop asyncio` (or
`BRIDGE_LOOP=asyncio`) runs on the standard loop, and where uvloop cannot be imported
(Windows, PyPy) the standard loop is used without a word.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from bridge.errors import BridgeError

T = TypeVar("T")

CHOICES = ("uvloop", "asyncio")
ENV = "BRIDGE_LOOP"


def choose(flag: str | None) -> str:
    """The loop `bridge run` runs on: `--loop`, else `$BRIDGE_LOOP`, else uvloop. A
    `$BRIDGE_LOOP` that names no loop is refused (argparse checks `--loop` itself): running
    on another loop than the one asked for would go unnoticed."""
    name = flag or os.environ.get(ENV) or "uvloop"
    if name not in CHOICES:
        raise BridgeError(f"${ENV}={name!r} is not an event loop bridge runs on: set it to "
                          f"{' or '.join(CHOICES)}, or unset it")
    return name


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the loop `name` asks for; asyncio's when uvloop is asked for but absent."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            return asyncio.new_event_loop
        return uvloop.new_event_loop
    return asyncio.new_event_loop


# Objects allocated minus freed before the youngest generation is collected (CPython's
# default is 700). Every notification allocates a few hundred short-lived objects that
# reference counting frees anyway; collecting every 700 allocations walked them (and the
# young tracked jobs) ~every notification: ~7-14% of `bridge run`'s CPU per notification in
# `make bench-peer`. The older generations keep their defaults.
GC_YOUNG = 10_000


def tune_gc() -> None:
    """Collect cycles less often, and never walk what start-up made (config, templates,
    modules: `gc.freeze` moves them out of the collector's sight)."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, middle, old)


def run(main: Coroutine[Any, Any, T], name: str = "uvloop") -> T:
    """`asyncio.run(main)` on the loop `name` names ("uvloop" or "asyncio"), with the
    collector tuned for a long-running server (`tune_gc`)."""
    tune_gc()
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)
