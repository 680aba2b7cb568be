"""A WebSocket node tells the control plane its clients: connections and subscriptions per tier on
``ops.stats``, on the real Kafka, and they fold into the report's ``websocket`` totals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from websockets.asyncio.client import connect

from access.identity import kafka_options
from control_plane.figures import decode_stats, fold_bundle
from control_plane.health.report import websocket
from kafka_admin import ensure_topics
from schemas import now_ms
from ws_server.config import Naming, ServerConfig
from ws_server.testing import TierWriter, bus_record, create_tier_topics, running_node

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]
INSIDE = (121.4737, 31.2304)


async def test_a_node_reports_its_clients_per_tier_to_the_control_plane(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("wsops")
    naming = Naming(prefix + ".", prefix)
    await create_tier_topics(kafka_bootstrap, naming, [("public", "bus"), ("public", "metro")])
    await ensure_topics(kafka_bootstrap, 1, [naming.ops_stats_topic()])
    config = ServerConfig(
        port=0, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, naming=naming, ops_stats_every_s=0.2
    )
    consumer = AIOKafkaConsumer(
        naming.ops_stats_topic(), bootstrap_servers=kafka_bootstrap, **kafka_options(), auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        async with TierWriter(kafka_bootstrap, redis_url, naming) as writer, running_node(config) as node:
            await writer.put("public", "bus", [bus_record("b1", *INSIDE)])
            async with connect(f"ws://127.0.0.1:{node.port}/", subprotocols=["shfeeds.v1.json"]) as ws:  # type: ignore[list-item]
                for sub, feed in (("s1", "bus"), ("s2", "metro")):
                    await ws.send(orjson.dumps({"type": "subscribe", "id": sub, "feed": feed}).decode())
                subscribed_at = now_ms()
                seen: dict[str, object] = {}
                deadline = time.monotonic() + 60
                while not (seen and seen["connections"] == {"public": 1} and seen["subscriptions"] == {"public": 2}):
                    assert time.monotonic() < deadline, f"no report of one public client with two subscriptions: {seen}"
                    batch = await consumer.getmany(timeout_ms=500)
                    for messages in batch.values():
                        for m in messages:
                            folded = fold_bundle(decode_stats(m.value or b""))
                            nodes = {k: v for k, v in folded.items() if k.startswith("ws:")}
                            if nodes and max(int(v["last_at"]) for v in nodes.values()) > subscribed_at:
                                totals = websocket(nodes, now_ms())
                                seen = {k: {t: n for t, n in v.items() if n} for k, v in totals.items() if k != "nodes"}
                    await asyncio.sleep(0)
    finally:
        await consumer.stop()
