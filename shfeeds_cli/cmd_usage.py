"""``shfeeds usage [--day D] [--key ID] [--agreement ID] [--format csv|json]``: usage per key, agreement and
feed (messages, records, bytes, sessions, replays) of a Shanghai day, as CSV or JSON."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from schemas import DEFAULT_REDIS_PREFIX

from .agreement_store import with_store


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("usage", help="usage per key, agreement and feed (CSV/JSON)")
    parser.add_argument("--redis-prefix", default=DEFAULT_REDIS_PREFIX)
    parser.add_argument("--day", default=None, help="YYYY-MM-DD, Shanghai time (default: today)")
    parser.add_argument("--key", default=None, help="a key id (`keys list`)")
    parser.add_argument("--agreement", default=None)
    parser.add_argument("--format", choices=("csv", "json"), default="csv")
    parser.set_defaults(func=handle)


async def run(args: argparse.Namespace) -> int:
    from agreements.access import shanghai_day
    from agreements.store import AgreementStore
    from agreements.usage import to_csv
    from schemas import now_ms

    async def act(store: AgreementStore) -> None:
        rows = await store.usage(args.day or shanghai_day(now_ms()), args.key, args.agreement)
        sys.stdout.write(to_csv(rows) if args.format == "csv" else orjson.dumps(rows).decode() + "\n")

    return await with_store("usage", args, act, logged=False)


def handle(args: argparse.Namespace) -> int:
    return asyncio.run(run(args))
