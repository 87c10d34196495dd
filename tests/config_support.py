"""Config files for tests, built from what a test cares about.

`table` writes one TOML table from keyword fields; the builders below (`push_source`,
`slack_sink`, `rule`, `window`, ...) are tables with the values most tests share, so a test
names only what is particular to it. `write_config` puts a [bridge] table and the parts in a
rules.toml. The layout is fixed (a blank line before each table, one key a line in the
order given, sub-tables last) because tests assert the `file:line` of config errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from bridge.resources import bundled_templates
from tests.push_support import PUSH_SECRET
from tests.test_sources_jtl import TENANT, TOKEN

TEMPLATES = bundled_templates()
# The push sources' raw status -> canonical state, as most push tests send them.
RUN_BOOM = {"boom": "failed", "run": "running"}


def value(item: object) -> str:
    """`item` as a TOML value; a mapping as an inline table."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int | float):
        return str(item)
    if isinstance(item, str | Path):
        return json.dumps(str(item), ensure_ascii=False)
    if isinstance(item, Mapping):
        return "{ " + ", ".join(f"{k} = {value(v)}" for k, v in item.items()) + " }"
    if isinstance(item, list | tuple):
        return "[" + ", ".join(value(v) for v in item) + "]"
    raise TypeError(f"no TOML for {item!r}")


def table(header: str, **fields: object) -> str:
    """`[[header]]` (or `[header]` for "bridge") with a `key = value` line a field. A field
    that is None is left out; a trailing underscore is dropped (`from_`, `continue_`); a
    mapping is a sub-table `[header.key]` after the plain fields, as `[sources.auth]`."""
    keys = {name.removesuffix("_"): item for name, item in fields.items() if item is not None}
    plain = [f"{k} = {value(v)}" for k, v in keys.items() if not isinstance(v, Mapping)]
    subtables = [
        f"[{header}.{k}]\n" + "".join(f"{key} = {value(item)}\n" for key, item in v.items())
        for k, v in keys.items() if isinstance(v, Mapping)
    ]
    opening = "[bridge]" if header == "bridge" else f"[[{header}]]"
    return "\n" + "\n".join([opening, *plain]) + "\n" + "".join(subtables)


def source(name: str, kind: str, **fields: object) -> str:
    return table("sources", name=name, kind=kind, **fields)


def push_source(name: str = "hooks", *, secret: str = PUSH_SECRET,
                states: Mapping[str, str] = RUN_BOOM, **fields: object) -> str:
    """A push source whose `status` field is the raw state."""
    return source(name, "push", secret=secret, state="status", **fields, states=states)


def jtl_source(base_url: str, *, name: str = "erp", interval: str = "1h") -> str:
    """A JTL source with the credentials the JTL simulator of the tests takes."""
    return source(name, "jtl", base_url=base_url, tenant_id=TENANT, interval=interval,
                  auth={"type": "bearer", "token": TOKEN})


def basic_zendesk_source(base_url: str, *, email: str, token: str, interval: str = "1h",
                         timeout: str = "1s") -> str:
    """The source `zendesk` with the basic auth (`email/token`, API token) Zendesk takes."""
    return source("zendesk", "zendesk", base_url=base_url, interval=interval, timeout=timeout,
                  auth={"type": "basic", "username": f"{email}/token", "password": token})


def sink(name: str, kind: str, **fields: object) -> str:
    return table("sinks", name=name, kind=kind, **fields)


def pager_sink(url: str = "http://127.0.0.1:9/hook", **fields: object) -> str:
    """The webhook sink `pager`; by default at a port nothing listens on (for checks)."""
    return sink("pager", "webhook", url=url, **fields)


def slack_sink(base_url: str, *, name: str = "ops-slack", token: str = "xoxb-fake-token",
               channel: str = "#ops", mode: str = "update", min_interval: str = "0s",
               **fields: object) -> str:
    """A Slack sink that edits its messages (mode update), at the fake Slack's `base_url`."""
    return sink(name, "slack", token=token, channel=channel, mode=mode, base_url=base_url,
                min_interval=min_interval, **fields)


def rule(name: str, on: str = "transition", *, template: str = "transition.slack.j2",
         notify: tuple[str, ...] | list[str] = ("pager",), **fields: object) -> str:
    return table("rules", name=name, on=on, template=template, notify=list(notify), **fields)


def window(name: str, start: str, end: str, *, days: list[str] | None = None,
           **fields: object) -> str:
    return table("windows", name=name, days=days, start=start, end=end, **fields)


def config_text(*parts: str, state: str, listen: str | None = None,
                templates: str | Path | None = None) -> str:
    """A [bridge] table with `state` (and `listen`, `templates` when given), then `parts`."""
    return table("bridge", state=state, listen=listen, templates=templates) + "".join(parts)


def write_config(directory: Path, *parts: str, state: str | Path | None = None,
                 templates: Mapping[str, str] | None = None,
                 listen: str | None = "127.0.0.1:0", name: str = "rules.toml") -> Path:
    """`directory/rules.toml` made of `parts`, its SQLite state next to it (or at `state`)
    and, unless told otherwise, an HTTP port of its own. The templates are the bundled ones;
    given `templates` (name -> text), they are written to `directory/templates` and looked
    up there first."""
    folder: Path | str = TEMPLATES
    if templates is not None:
        folder = directory / "templates"
        folder.mkdir(parents=True, exist_ok=True)
        for template, text in templates.items():
            (folder / template).write_text(text, encoding="utf-8")
    path = directory / name
    path.write_text(config_text(*parts, state=f"sqlite:///{state or directory / 'state.db'}",
                                listen=listen, templates=folder), encoding="utf-8")
    return path
