"""``shfeeds stack up|down|status``: the local Kafka + Redis."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

import settings as settings_mod

from . import stack


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("stack", help="start, stop or inspect the local Kafka + Redis")
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument(
        "--brokers",
        type=int,
        choices=(1, 3),
        help="with up: Kafka nodes to run (3: replication factor 3, min.insync.replicas 2, as in production); "
        "remembered in the stack folder. Default: as last brought up, else 1",
    )
    parser.set_defaults(func=handle)
    topics: argparse.ArgumentParser = sub.add_parser("topics", help="create every service topic up front")
    topics.add_argument("action", choices=("create",))
    topics.set_defaults(func=handle_topics)


def handle_topics(args: argparse.Namespace) -> int:
    settings = settings_mod.load()
    try:
        stack.create_topics(settings)
    except Exception as err:  # an unreachable broker or a topic of the wrong shape: say which
        print(f"shfeeds topics create: {err}", file=sys.stderr)
        return 1
    print(f"every service topic exists on {settings.kafka_bootstrap}")
    return 0


def handle(args: argparse.Namespace) -> int:
    settings = settings_mod.load()
    if args.brokers:
        settings = dataclasses.replace(settings, kafka_brokers=args.brokers)
    try:
        if args.action == "up":
            stack.up(settings)
        elif args.action == "down":
            stack.down(settings)
        else:
            rows = stack.status(settings)
            for row in rows:
                print(row.describe())
            return 0 if all(row.running for row in rows) else 3
    except stack.StackError as err:
        print(f"shfeeds stack {args.action}: {err}", file=sys.stderr)
        return 1
    return 0
