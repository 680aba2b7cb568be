"""The node's tier topic readers keep fetching while the main loop is busy (a long tick): what they read is
waiting to be applied the moment the loop is free, instead of a fetch starting only then. Real Kafka."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from ws_server.config import Naming
from ws_server.districts import lookup_district
from ws_server.feed_reader import FeedReaders
from ws_server.protocol.hub import Hub
from ws_server.testing import TierWriter, create_tier_topics

pytestmark = pytest.mark.stack


async def test_records_produced_during_a_long_tick_are_read_by_its_end(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("wsread")
    naming = Naming(prefix + ".", prefix)
    await create_tier_topics(kafka_bootstrap, naming, [("public", "bus")])
    hub = Hub(lookup_district, node_id="n1")
    redis = aioredis.from_url(redis_url)
    readers = FeedReaders(hub, redis, kafka_bootstrap, naming)
    try:
        await readers.ensure("public", "bus")
        now = int(time.time() * 1000)
        buses = [{"id": f"b{n}", "lng": 121.47, "lat": 31.23, "observed_at": now} for n in range(50)]
        async with TierWriter(kafka_bootstrap, redis_url, naming) as writer:
            await writer.put("public", "bus", buses, to_redis=False)
            time.sleep(1.5)  # the main loop stuck in a tick: nothing else runs on it meanwhile
            for _ in range(3):  # the loop free again: only callbacks already waiting run, no network round trip
                await asyncio.sleep(0)
            waiting = sum(len(items) for items in hub.incoming.values())
        assert waiting == len(buses)
        assert readers.kafka_latency.total == len(buses)
    finally:
        await readers.close()
        await redis.aclose()
