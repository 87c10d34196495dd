"""`bridge jtl configure|restart`: act on a JTL sync through the running bridge's API.

    bridge jtl configure jtl 3c90c3cc-0d44-4b50-8888-8dd25736052a --interval PT15M
    bridge jtl configure jtl 3c90c3cc-... --set 5b1e...=250
    bridge jtl restart jtl 3c90c3cc-...

The bridge holds the JTL credentials; this command needs only `$BRIDGE_ADMIN_TOKEN` (when
the bridge sets one), like `bridge silence`. Prints the `WorkerSyncItem` JTL answered
(configure) or what it accepted (restart), as JSON with `--json`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import quote

from bridge.silence_cli import ApiError, call, target
from bridge.sources.jtl_control import ControlError, configure_body, parse_sets


def add_parser(sub: Any, config_arg: Any) -> None:
    jtl = sub.add_parser("jtl", help="configure or restart a JTL sync through a running bridge")
    actions = jtl.add_subparsers(dest="jtl_action", required=True, metavar="ACTION")
    configure = actions.add_parser("configure", help="set a sync's interval or config values "
                                   "(JTL's Configure Sync)")
    configure.add_argument("--interval", default=None,
                           help="ISO 8601 duration between runs, e.g. PT15M")
    configure.add_argument("--set", action="append", default=[], metavar="CONFIG_ID=VALUE",
                           help="a configuration value (repeatable)")
    restart = actions.add_parser("restart", help="stop a sync and start it again")
    for parser in (configure, restart):
        parser.add_argument("source", help="the jtl source's name in rules.toml")
        parser.add_argument("sync_id", help="the sync's identifier (job.id)")
        parser.add_argument("--json", action="store_true", help="print JTL's answer as JSON")
        config_arg(parser)
        parser.add_argument("--url", help="the bridge's HTTP address (default: [bridge] listen)")


def cmd_jtl(args: argparse.Namespace) -> int:
    path = f"/v1/jtl/{quote(args.source, safe='')}/syncs/{quote(args.sync_id, safe='')}"
    try:
        if args.jtl_action == "configure":
            body = configure_body(args.interval, parse_sets(args.set))
            answer = call(target(args), "POST", path + "/configure", body)
            text = describe_item(answer)
        else:
            answer = call(target(args), "POST", path + "/restart", {})
            text = (f"restart of {args.sync_id} accepted: {answer.get('actionId', 'Restart')}"
                    f" at {answer.get('requestedAt', '?')}")
    except (ControlError, ApiError) as exc:
        print(f"bridge jtl {args.jtl_action}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2) if args.json else text)
    return 0


def describe_item(item: dict[str, Any]) -> str:
    """A WorkerSyncItem for people: name, id, interval, then one line per configuration."""
    name = ": ".join(str(item[k]) for k in ("salesChannelName", "syncName") if item.get(k))
    lines = [f"{name or '(unnamed sync)'}  ({item.get('identifier', '?')})",
             f"  interval        {item.get('interval', '?')}",
             f"  sales channel   {item.get('salesChannelId', '?')}",
             f"  reports progress {'yes' if item.get('reportProgress') else 'no'}"]
    for config in item.get("configurations") or []:
        required = " (required)" if config.get("isRequired") else ""
        lines.append(f"  {config.get('displayName', '?')} = {config.get('currentValue')!r}"
                     f"{required}  [{config.get('identifier')}]")
    return "\n".join(lines)
