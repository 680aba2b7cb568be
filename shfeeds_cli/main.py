"""The one command-line entry point, ``shfeeds``.

Each subcommand lives in its own ``cmd_<name>`` module with a ``register(subparsers)`` function that adds
its parser and sets ``func`` (taking the parsed args, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from settings.environment import ConfigurationError

COMMAND_MODULES = (
    "cmd_stack",
    "cmd_run",
    "cmd_tail",
    "cmd_policy",
    "cmd_adapters",
    "cmd_simulate",
    "cmd_streams",
    "cmd_serve",
    "cmd_keys",
    "cmd_audit",
    "cmd_gtfs",
    "cmd_schemas",
    "cmd_archive",
    "cmd_replay",
    "cmd_control_plane",
    "cmd_health",
    "cmd_catalog",
    "cmd_agreements",
    "cmd_usage",
    "cmd_feedback",
    "cmd_principal",
)

# The principal each component's command connects as (access/principals.py); other commands are the
# developer's or operator's own (admin in development; production sets SHFEEDS_PRINCIPAL).
COMMAND_PRINCIPALS = {
    "adapter": "adapters",
    "streams": "streams",
    "serve": "ws-server",
    "archive": "archiver",
    "control-plane": "control-plane",
    "replay": "replay",
    "keys": "key-admin",
    "agreements": "key-admin",
    "feedback": "key-admin",
    "usage": "key-admin",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shfeeds", description="Shanghai Open Feeds")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"shfeeds_cli.{name}")
        except ModuleNotFoundError as err:
            # Only a missing command module itself is tolerated; a missing dependency inside it is a bug.
            if err.name != f"shfeeds_cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in COMMAND_PRINCIPALS:
        from access.identity import set_principal

        set_principal(COMMAND_PRINCIPALS[args.command])
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except ConfigurationError as err:  # e.g. a production secret that is not set: said plainly, no traceback
        print(f"shfeeds {args.command}: cannot start: {err}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
