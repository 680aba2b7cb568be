"""``shfeeds audit``: read the licensed-tier access log (``schemas.AUDIT_ACCESS``), verify its hash chains, and
check each chain's head against its signed checkpoints (``audit.checkpoints``, ``ws_server/audit_checkpoint.py``),
so a chain cut short or deleted is reported too. Exit 3 when anything was tampered with."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

import settings as settings_mod
from access.identity import kafka_options


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("audit", help="print and verify the access audit log")
    parser.add_argument("--topic-prefix", default="", help="prefix of the topic name (tests)")
    parser.add_argument("--agreement", default=None, help="only entries of this agreement id")
    parser.add_argument("--key-id", default=None, help="only entries of this key id")
    parser.add_argument("--quiet", action="store_true", help="print only the verification result")
    parser.set_defaults(func=handle)


async def read_all(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from kafka_admin import topic_partitions

    tps = [TopicPartition(topic, p) for p in await topic_partitions(bootstrap, topic)]
    if not tps:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    entries: list[dict[str, Any]] = []
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while True:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    try:
                        entries.append(orjson.loads(record.value or b""))
                    except orjson.JSONDecodeError:
                        entries.append({"unreadable": True, "offset": record.offset})
    finally:
        await consumer.stop()
    return entries


def handle(args: argparse.Namespace) -> int:
    from schemas import Naming
    from settings.environment import ConfigurationError
    from settings.secret_store import AUDIT_KEY, resolve
    from ws_server.audit_chain import verify_chain
    from ws_server.audit_checkpoint import verify_anchors

    naming = Naming(topic_prefix=args.topic_prefix)
    topic, checkpoint_topic = naming.audit_topic(), naming.audit_checkpoint_topic()
    settings = settings_mod.load()
    try:
        key = resolve(AUDIT_KEY, settings).value.encode()
    except ConfigurationError as err:
        print(f"shfeeds audit: {err}", file=sys.stderr)
        return 2
    try:
        entries = asyncio.run(read_all(settings.kafka_bootstrap, topic))
        checkpoints = asyncio.run(read_all(settings.kafka_bootstrap, checkpoint_topic))
    except Exception as err:
        print(f"shfeeds audit: cannot read {topic} or {checkpoint_topic}: {err}", file=sys.stderr)
        return 1
    # Each chain lives in one partition (keyed by chain); order by position within the chain.
    entries.sort(key=lambda e: (str(e.get("chain")), e.get("n", -1)))
    problems = verify_chain(entries)
    anchor_problems, notes = verify_anchors(entries, checkpoints, key)
    problems += anchor_problems
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not args.quiet:
        for entry in entries:
            if args.agreement and entry.get("agreement_id") != args.agreement:
                continue
            if args.key_id and entry.get("key_id") != args.key_id:
                continue
            sys.stdout.buffer.write(orjson.dumps(entry) + b"\n")
    chains = len({e.get("chain") for e in entries})
    if problems:
        for problem in problems:
            print(f"BROKEN: {problem}", file=sys.stderr)
        return 3
    print(
        f"{len(entries)} entries in {chains} chain(s): every hash chain verifies and ends where its signed "
        "checkpoint says",
        file=sys.stderr,
    )
    return 0
