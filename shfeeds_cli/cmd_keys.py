"""``shfeeds keys issue | revoke | tier | list``: API keys for the registered, licensed and operator tiers."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

import settings as settings_mod
from schemas import DEFAULT_REDIS_PREFIX


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("keys", help="issue, revoke, re-tier or list API keys")
    parser.add_argument("--redis-prefix", default=DEFAULT_REDIS_PREFIX)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    issue = verbs.add_parser("issue", help="issue a key (printed once; only its hash is stored)")
    issue.add_argument("tier", choices=("operator", "licensed", "registered", "public"))
    issue.add_argument("--agreement", default=None, help="data-use agreement id (required for licensed)")
    issue.add_argument("--label", default=None, help="who the key is for")
    issue.add_argument("--limits", default=None, help='JSON overrides, e.g. {"max_subscriptions": 50}')
    revoke = verbs.add_parser("revoke", help="revoke a key (open connections close within seconds)")
    revoke.add_argument("key", help="the key, or its key id from `keys list`")
    tier = verbs.add_parser("tier", help="move a key to another tier (open connections follow within seconds)")
    tier.add_argument("key", help="the key, or its key id")
    tier.add_argument("tier", choices=("operator", "licensed", "registered", "public"))
    tier.add_argument("--agreement", default=None)
    verbs.add_parser("list", help="list keys (id, tier, agreement, revoked, label)")
    parser.set_defaults(func=handle)


async def run(args: argparse.Namespace) -> int:
    import redis.asyncio as aioredis

    from schemas import Naming
    from ws_server.keys import KeyError_, KeyStore

    client = aioredis.from_url(settings_mod.load().redis_url)
    store = KeyStore(client, Naming(redis_prefix=args.redis_prefix))
    try:
        if args.verb == "issue":
            limits = orjson.loads(args.limits) if args.limits else None
            if limits is not None and not isinstance(limits, dict):
                raise KeyError_("--limits must be a JSON object")
            key, info = await store.issue(args.tier, agreement_id=args.agreement, limits=limits, label=args.label)
            print(key)
            print(f"key id {info.key_id}, tier {info.tier}; store the key now, it is not kept", file=sys.stderr)
        elif args.verb == "revoke":
            info = await store.revoke(args.key)
            print(f"revoked {info.key_id} ({info.tier})")
        elif args.verb == "tier":
            info = await store.set_tier(args.key, args.tier, args.agreement)
            print(f"{info.key_id} is now {info.tier}")
        else:
            for info in sorted(await store.list(), key=lambda k: k.created_at):
                state = "revoked" if info.revoked else "active"
                print(f"{info.key_id}  {info.tier:<10}  {state:<7}  {info.agreement_id or '-':<16}  {info.label or ''}")
    except (KeyError_, orjson.JSONDecodeError) as err:
        print(f"shfeeds keys: {err}", file=sys.stderr)
        return 2
    except (aioredis.RedisError, OSError) as err:
        print(f"shfeeds keys: Redis unavailable: {err}", file=sys.stderr)
        return 1
    finally:
        await client.aclose()
    return 0


def handle(args: argparse.Namespace) -> int:
    return asyncio.run(run(args))
