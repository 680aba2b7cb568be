"""Reads tier topics into the hub: a Redis snapshot with its offsets first, then the topic from exactly
those offsets, so the node's state has no gap. One consumer per (tier, feed), started on first demand."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from .config import Naming
from .protocol.hub import Hub

log = logging.getLogger(__name__)


class FeedUnavailable(RuntimeError):
    """The tier topic or its snapshot cannot be read right now."""


class FeedReaders:
    def __init__(self, hub: Hub, redis: aioredis.Redis, bootstrap: str, naming: Naming) -> None:
        self.hub = hub
        self.redis = redis
        self.bootstrap = bootstrap
        self.naming = naming
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.records_read = 0

    async def ensure(self, tier: str, feed: str) -> None:
        """Return once (tier, feed) is loaded on this node and its topic is being read."""
        src = self.hub.source(tier, feed)
        if src.ready:
            return
        lock = self._locks.setdefault((tier, feed), asyncio.Lock())
        async with lock:
            if src.ready:
                return
            consumer = await self._start_consumer(tier, feed)
            try:
                values, offsets = await self._snapshot(tier, feed)
                partitions = consumer.partitions_for_topic(self.naming.tier_topic(tier, feed)) or set()
                topic = self.naming.tier_topic(tier, feed)
                tps = [TopicPartition(topic, p) for p in sorted(partitions)]
                consumer.assign(tps)
                for tp in tps:
                    if tp.partition in offsets:
                        consumer.seek(tp, offsets[tp.partition])
                    else:  # nothing of it in the snapshot: rebuild from the log
                        await consumer.seek_to_beginning(tp)
            except Exception:
                await consumer.stop()
                raise
            src.load(values)
            src.ready = True
            self._tasks[(tier, feed)] = asyncio.create_task(self._read(tier, feed, consumer))
            log.info("reading %s from %d partitions, %d entities in snapshot", topic, len(tps), len(values))

    async def _start_consumer(self, tier: str, feed: str) -> AIOKafkaConsumer:
        topic = self.naming.tier_topic(tier, feed)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
            max_partition_fetch_bytes=4 << 20,
        )
        try:
            await asyncio.wait_for(consumer.start(), 15)
            topics = await asyncio.wait_for(consumer.topics(), 15)
            if topic in topics:
                # Manual assignment needs the partition list in the consumer's own metadata cache.
                await asyncio.wait_for(consumer._client.add_topic(topic), 15)
        except (KafkaError, TimeoutError, OSError) as err:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise FeedUnavailable(f"cannot reach Kafka for {topic}: {err}") from err
        if topic not in topics or not consumer.partitions_for_topic(topic):
            await consumer.stop()
            raise FeedUnavailable(f"topic {topic} does not exist")
        return consumer

    async def _snapshot(self, tier: str, feed: str) -> tuple[dict[str, bytes], dict[int, int]]:
        # One MULTI: the values and the offsets they include are read at the same instant.
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self.naming.state_key(tier, feed))
        pipe.hgetall(self.naming.offsets_key(tier, feed))
        try:
            raw_values, raw_offsets = await asyncio.wait_for(pipe.execute(), 15)
        except (aioredis.RedisError, TimeoutError, OSError) as err:
            raise FeedUnavailable(f"cannot read the snapshot of {tier}/{feed} from Redis: {err}") from err
        values = {_text(k): bytes(v) for k, v in raw_values.items()}
        offsets = {int(_text(k)): int(_text(v)) for k, v in raw_offsets.items()}
        return values, offsets

    async def _read(self, tier: str, feed: str, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                try:
                    batches = await consumer.getmany(timeout_ms=200, max_records=20_000)
                except KafkaError as err:
                    log.warning("reading %s/%s: %s; retrying", tier, feed, err)
                    await asyncio.sleep(1)
                    continue
                for records in batches.values():
                    self.hub.ingest(
                        tier,
                        feed,
                        [(r.key.decode(), r.value) for r in records if r.key is not None and r.value is not None],
                    )
                    self.records_read += len(records)
        finally:
            await consumer.stop()

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
