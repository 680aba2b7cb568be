"""The access log holds up: each chain's head is anchored in signed checkpoints kept in another topic, so a
chain cut short or deleted is reported by ``shfeeds audit``; licensed GTFS-Realtime deliveries are logged
like WebSocket ones; both audit topics are kept at least six months."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from websockets.asyncio.client import connect

from access.identity import kafka_options
from kafka_admin import delete_topics, ensure_topics, topic_config, topic_partitions
from schemas.topics import AUDIT_RETENTION_MS
from shfeeds_cli.cmd_audit import read_all
from ws_server.audit_chain import chain_entry
from ws_server.audit_checkpoint import sign_checkpoint, verify_anchors
from ws_server.config import Naming, ServerConfig
from ws_server.testing import TierWriter, bus_record, create_tier_topics, running_node

KEY = b"test-audit-key"
SIX_MONTHS_MS = 183 * 24 * 3600 * 1000


def chain(name: str, length: int) -> list[dict[str, Any]]:
    entries, prev = [], "0" * 64
    for n in range(length):
        entry = chain_entry(name, n, prev, {"at": n, "feed": "bus", "records": 1})
        entries.append(entry)
        prev = entry["hash"]
    return entries


def test_a_whole_anchored_chain_verifies() -> None:
    entries = chain("a", 5)
    checkpoints = [
        sign_checkpoint(KEY, "a", 2, entries[2]["hash"], 1),
        sign_checkpoint(KEY, "a", 4, entries[4]["hash"], 2),
    ]
    assert verify_anchors(entries, checkpoints, KEY) == ([], [])


def test_truncation_deletion_forgery_and_rewriting_are_problems() -> None:
    entries = chain("a", 5) + chain("b", 3)
    checkpoints = [
        sign_checkpoint(KEY, "a", 4, entries[4]["hash"], 1),
        sign_checkpoint(KEY, "b", 2, entries[7]["hash"], 1),
    ]
    problems, _ = verify_anchors(entries[:3] + entries[5:], checkpoints, KEY)
    assert problems == ["chain a: truncated (its checkpoint records 5 entries up to entry 4; the log ends at entry 2)"]
    problems, _ = verify_anchors(entries[:5], checkpoints, KEY)
    assert problems == ["chain b: deleted (its checkpoint records 3 entries, none is left)"]
    forged = {**checkpoints[0], "n": 2, "hash": entries[2]["hash"]}
    problems, _ = verify_anchors(entries, [forged], KEY)
    assert problems and "bad signature" in problems[0]
    rewritten = [*chain("a", 5)[:4], chain_entry("a", 4, entries[3]["hash"], {"at": 9, "feed": "bus", "records": 0})]
    problems, _ = verify_anchors(rewritten, checkpoints[:1], KEY)
    assert problems == ["chain a: entry 4 differs from its signed checkpoint (rewritten)"]
    assert verify_anchors(entries, [], KEY) == (
        [],
        ["chain a: no checkpoint anchors it yet", "chain b: no checkpoint anchors it yet"],
    )


def audit(prefix: str) -> tuple[int, str]:
    env = {**os.environ, "SHFEEDS_AUDIT_KEY": KEY.decode()}
    done = subprocess.run(
        [sys.executable, "-m", "shfeeds_cli.main", "audit", "--quiet", "--topic-prefix", prefix],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    return done.returncode, done.stderr


async def rewrite(bootstrap: str, topic: str, entries: list[dict[str, Any]]) -> None:
    """What a tamperer with broker access does: the topic deleted and written again with ``entries``."""
    await delete_topics(bootstrap, [topic])
    deadline = time.monotonic() + 60
    while await topic_partitions(bootstrap, topic) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    while True:
        try:
            await ensure_topics(bootstrap, 1, [topic])
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **kafka_options(), acks="all")
    await producer.start()
    try:
        for entry in entries:
            await producer.send_and_wait(topic, orjson.dumps(entry), key=str(entry["chain"]).encode())
    finally:
        await producer.stop()


@pytest.mark.stack
async def test_shfeeds_audit_reports_a_truncated_or_deleted_chain(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("anchors")
    naming = Naming(prefix + ".", prefix)
    await create_tier_topics(kafka_bootstrap, naming, [("licensed", "bus"), ("licensed", "metro")], partitions=1)
    config = ServerConfig(
        port=0,
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        naming=naming,
        audit_interval_s=0.3,
        audit_key=KEY.decode(),
    )
    async with TierWriter(kafka_bootstrap, redis_url, naming) as writer, running_node(config) as node:
        key, _ = await node.keys.issue("licensed", agreement_id="AG-anchor")
        await writer.put("licensed", "bus", [bus_record("v1", 121.47, 31.23, vehicle_id="SH-1")])
        await writer.put("licensed", "metro", [bus_record("m1", 121.48, 31.23, mode="metro")])
        url = f"ws://127.0.0.1:{node.port}/"
        async with connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
            await ws.send(orjson.dumps({"type": "subscribe", "id": "s", "feed": "bus"}).decode())
            while orjson.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "snapshot":
                pass
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"http://127.0.0.1:{node.port}/gtfs-rt/vehicle-positions.pb", headers={"X-API-Key": key}
            ) as answer,
        ):
            assert answer.status == 200 and answer.headers["X-Shfeeds-Tier"] == "licensed"
        deadline = time.monotonic() + 15
        while node.audit.checkpoints_written < 1 or node.audit.entries_written < 3:
            assert time.monotonic() < deadline, "the audit entries and their checkpoint were not written"
            await asyncio.sleep(0.1)
    entries = await read_all(kafka_bootstrap, naming.audit_topic())
    gtfs = [e for e in entries if e.get("channel") == "gtfs-rt"]
    assert {e["feed"] for e in gtfs} == {"bus", "metro"} and all(e["agreement_id"] == "AG-anchor" for e in gtfs)
    assert any(e.get("channel") is None and e["feed"] == "bus" for e in entries)
    for topic in (naming.audit_topic(), naming.audit_checkpoint_topic()):
        settings = await topic_config(kafka_bootstrap, topic)
        assert int(settings["retention.ms"]) == AUDIT_RETENTION_MS >= SIX_MONTHS_MS
        assert settings["retention.bytes"] == "-1"

    code, err = audit(prefix + ".")
    assert code == 0 and f"{len(entries)} entries in 1 chain(s)" in err, err
    entries.sort(key=lambda e: e["n"])
    await rewrite(kafka_bootstrap, naming.audit_topic(), entries[:-1])
    code, err = audit(prefix + ".")
    assert code == 3 and "truncated" in err, err
    await rewrite(kafka_bootstrap, naming.audit_topic(), [])
    code, err = audit(prefix + ".")
    assert code == 3 and "deleted" in err, err
    await delete_topics(kafka_bootstrap, [naming.audit_topic(), naming.audit_checkpoint_topic()])
