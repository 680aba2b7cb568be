"""Helpers for tests and benchmarks that run a real node against the real Kafka and Redis: create
namespaced tier topics, write tier records exactly as the contract says streams/ does, run a node."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import msgpack
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from access.identity import kafka_options
from kafka_admin import ensure_topics
from schemas import now_ms

from .config import Naming, ServerConfig
from .server import Node


async def create_tier_topics(
    bootstrap: str, naming: Naming, pairs: Iterable[tuple[str, str]], partitions: int = 2
) -> None:
    names = [naming.tier_topic(tier, feed) for tier, feed in pairs] + [
        naming.audit_topic(),
        naming.audit_checkpoint_topic(),
    ]
    await ensure_topics(bootstrap, partitions, names)


def bus_record(entity_id: str, lng: float, lat: float, **extra: Any) -> dict[str, Any]:
    now = now_ms()
    record: dict[str, Any] = {
        "id": entity_id,
        "source": "test",
        "observed_at": now,
        "expires_at": now + 120_000,
        "lng": lng,
        "lat": lat,
        "mode": "bus",
        "crs": "gcj02",
        "policy_version": "test-1",
    }
    record.update(extra)
    return record


class TierWriter:
    """Produces tier records and keeps the Redis snapshot (values + next offsets) as streams/ does."""

    def __init__(self, bootstrap: str, redis_url: str, naming: Naming) -> None:
        self.bootstrap = bootstrap
        self.naming = naming
        self.redis = aioredis.from_url(redis_url)
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **kafka_options(), linger_ms=2, acks="all")

    async def __aenter__(self) -> TierWriter:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()
        await self.redis.aclose()

    async def put(
        self, tier: str, feed: str, records: list[dict[str, Any]], *, to_redis: bool = True
    ) -> dict[int, int]:
        """Produce ``records`` (dicts keyed by their "id") in order; returns partition → next offset."""
        topic = self.naming.tier_topic(tier, feed)
        futures = []
        values: dict[str, bytes] = {}
        for record in records:
            value = msgpack.packb(record)
            values[str(record["id"])] = value
            # The contract's record timestamp: observed_at (replays seek and order by it).
            observed = record.get("observed_at")
            ts = observed if isinstance(observed, int) else None
            futures.append(await self.producer.send(topic, value, key=str(record["id"]).encode(), timestamp_ms=ts))
        offsets: dict[int, int] = {}
        for future in futures:
            meta = await future
            offsets[meta.partition] = max(offsets.get(meta.partition, 0), meta.offset + 1)
        if to_redis and values:
            pipe = self.redis.pipeline(transaction=True)
            removed = [k for k, v in values.items() if msgpack.unpackb(v).get("state") == "removed"]
            kept = {k: v for k, v in values.items() if k not in removed}
            if kept:
                pipe.hset(self.naming.state_key(tier, feed), mapping=kept)  # type: ignore[arg-type]
            if removed:
                pipe.hdel(self.naming.state_key(tier, feed), *removed)
            pipe.hset(self.naming.offsets_key(tier, feed), mapping=offsets)  # type: ignore[arg-type]
            await pipe.execute()
        return offsets


@contextlib.asynccontextmanager
async def running_node(config: ServerConfig) -> AsyncIterator[Node]:
    """A node on a free port (``config.port`` 0), running until the block ends (on loopback, the default)."""
    node = Node(config)
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(node.run(started))
    waiting: list[asyncio.Future[Any]] = [task, started]
    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises why it could not start
    try:
        yield node
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
