"""``shfeeds feedback list | show | answer``: reports that a record is wrong or a feed broken, for the
feed's owner; ``answer`` sets the status (confirmed, fixed, rejected) and the reply the reporter reads."""

from __future__ import annotations

import argparse
import asyncio
import getpass
from typing import Any

import orjson

from schemas import DEFAULT_REDIS_PREFIX

from .agreement_store import with_store


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("feedback", help="feedback reports on feeds and records")
    parser.add_argument("--redis-prefix", default=DEFAULT_REDIS_PREFIX)
    parser.add_argument("--topic-prefix", default="")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    listing = verbs.add_parser("list", help="reports, by feed, owner (publisher) or status")
    listing.add_argument("--feed", default=None)
    listing.add_argument("--owner", default=None, help="publisher id of the catalogue (catalog/feeds.toml)")
    listing.add_argument("--status", default=None, choices=("open", "confirmed", "fixed", "rejected"))
    show = verbs.add_parser("show", help="one report as JSON")
    show.add_argument("id")
    answer = verbs.add_parser("answer", help="set a report's status and the reply its reporter reads")
    answer.add_argument("id")
    answer.add_argument("status", choices=("confirmed", "fixed", "rejected"))
    answer.add_argument("--reply", default="")
    parser.set_defaults(func=handle)


async def run(args: argparse.Namespace) -> int:
    from agreements.feedback import FeedbackError
    from agreements.store import AgreementStore

    async def act(store: AgreementStore) -> None:
        if args.verb == "list":
            for r in await store.reports(feed=args.feed, owner=args.owner, status=args.status):
                print(f"{r.id}  {r.feed:<10}  {r.owner:<9}  {r.status:<9}  {r.entity_id or '-'}  {r.problem[:60]}")
        elif args.verb == "show":
            print(orjson.dumps((await store.report(args.id)).to_json(), option=orjson.OPT_INDENT_2).decode())
        else:
            report = await store.answer_report(args.id, args.status, args.reply, f"cli:{getpass.getuser()}")
            print(f"{report.id} is {report.status}")

    return await with_store("feedback", args, act, (FeedbackError,))


def handle(args: argparse.Namespace) -> int:
    return asyncio.run(run(args))
