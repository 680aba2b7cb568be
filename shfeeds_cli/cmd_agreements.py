"""``shfeeds agreements apply | list | show | approve | reject | withdraw | claim``: data-use agreements
behind registered and licensed keys (docs/agreements.md). Every decision is written to ``audit.operator``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
from datetime import datetime
from typing import Any

import orjson

from schemas import DEFAULT_REDIS_PREFIX

from .agreement_store import with_store


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("agreements", help="data-use agreements and key requests")
    parser.add_argument("--redis-prefix", default=DEFAULT_REDIS_PREFIX)
    parser.add_argument("--topic-prefix", default="")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    apply = verbs.add_parser("apply", help="apply for a key (registered: at once; licensed: a request)")
    apply.add_argument("tier", choices=("registered", "licensed"))
    apply.add_argument("--applicant", required=True, help="who is asking, with a contact")
    apply.add_argument("--purpose", default="")
    apply.add_argument("--feeds", default="", help="comma-separated feeds")
    apply.add_argument("--term-days", type=int, default=None)
    apply.add_argument("--allow-ip", action="append", default=[], help="IP address or CIDR (repeatable)")
    verbs.add_parser("list", help="every agreement: id, tier, state, expiry, applicant")
    show = verbs.add_parser("show", help="one agreement as JSON, with its history")
    show.add_argument("id")
    for name, what in (("approve", "approve a pending request"), ("reject", "reject a pending request"),
                       ("withdraw", "withdraw an agreement (its key is revoked; connections close)")):  # fmt: skip
        verb = verbs.add_parser(name, help=what)
        verb.add_argument("id")
        verb.add_argument("--reason", default="")
        if name == "approve":
            verb.add_argument("--expires", default=None, help="ISO time or epoch ms (default: the term)")
    claim = verbs.add_parser("claim", help="an applicant's request status, and its key once approved")
    claim.add_argument("id")
    claim.add_argument("token", help="the claim token given at application")
    parser.set_defaults(func=handle)


def _when(text: str | None) -> int | None:
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    return int(datetime.fromisoformat(text).timestamp() * 1000)


async def run(args: argparse.Namespace) -> int:
    from agreements import model
    from agreements.policy import load_policy
    from agreements.store import AgreementStore
    from schemas import FEEDS, now_ms

    actor = f"cli:{getpass.getuser()}"

    async def act(store: AgreementStore) -> None:
        if args.verb == "apply":
            agreement = model.apply(
                load_policy(), tier=args.tier, applicant=args.applicant, purpose=args.purpose,
                feeds=[f for f in args.feeds.split(",") if f], known_feeds=FEEDS, term_days=args.term_days,
                allow_ips=args.allow_ip, now_ms=now_ms(),
            )  # fmt: skip
            token = await store.submit(agreement)
            print(orjson.dumps({"id": agreement.id, "state": agreement.state, "claim_token": token}).decode())
        elif args.verb == "list":
            now = now_ms()
            for a in await store.all_agreements():
                until = (
                    datetime.fromtimestamp(a.expires_at / 1000).isoformat(timespec="minutes") if a.expires_at else "-"
                )
                print(f"{a.id}  {a.tier:<10}  {a.state_at(now):<9}  {until:<16}  {a.applicant}")
        elif args.verb == "show":
            print(orjson.dumps((await store.get(args.id)).to_json(now_ms()), option=orjson.OPT_INDENT_2).decode())
        elif args.verb == "claim":
            agreement, key = await store.claim(args.id, args.token)
            print(orjson.dumps({"id": agreement.id, "state": agreement.state_at(now_ms()), "reason": agreement.reason,
                                "expires_at": agreement.expires_at, "key": key}).decode())  # fmt: skip
        else:
            expires = _when(getattr(args, "expires", None))
            agreement = await store.decide(args.id, args.verb, actor, reason=args.reason, expires_at=expires)
            print(f"{agreement.id} is {agreement.state_at(now_ms())}")

    return await with_store("agreements", args, act, (model.AgreementError, ValueError))


def handle(args: argparse.Namespace) -> int:
    return asyncio.run(run(args))
