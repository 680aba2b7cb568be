"""``shfeeds usage [--day D] [--key ID] [--agreement ID] [--format csv|json]``: usage per key, agreement and
feed (messages, records, bytes, sessions, replays) of a Shanghai day, as CSV or JSON."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

import settings as settings_mod
from schemas import DEFAULT_REDIS_PREFIX


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("usage", help="usage per key, agreement and feed (CSV/JSON)")
    parser.add_argument("--redis-prefix", default=DEFAULT_REDIS_PREFIX)
    parser.add_argument("--day", default=None, help="YYYY-MM-DD, Shanghai time (default: today)")
    parser.add_argument("--key", default=None, help="a key id (`keys list`)")
    parser.add_argument("--agreement", default=None)
    parser.add_argument("--format", choices=("csv", "json"), default="csv")
    parser.set_defaults(func=handle)


async def run(args: argparse.Namespace) -> int:
    import redis.asyncio as aioredis

    from agreements.access import shanghai_day
    from agreements.store import AgreementStore
    from agreements.usage import to_csv
    from schemas import Naming, now_ms

    client = aioredis.from_url(settings_mod.load().redis_url)
    store = AgreementStore(client, Naming(redis_prefix=args.redis_prefix), None)
    try:
        rows = await store.usage(args.day or shanghai_day(now_ms()), args.key, args.agreement)
    except (aioredis.RedisError, OSError) as err:
        print(f"shfeeds usage: Redis unavailable: {err}", file=sys.stderr)
        return 1
    finally:
        await client.aclose()
    sys.stdout.write(to_csv(rows) if args.format == "csv" else orjson.dumps(rows).decode() + "\n")
    return 0


def handle(args: argparse.Namespace) -> int:
    return asyncio.run(run(args))
