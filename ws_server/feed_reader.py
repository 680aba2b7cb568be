"""Reads tier topics into the hub: a Redis snapshot with its offsets first, then the topic from exactly
those offsets, so the node's state has no gap. One consumer per (tier, feed), started on first demand.

Before the snapshot's offsets the reader also reads back a window of the topic into the source's history,
so this node can tell a client that resumes with another node's position exactly what it missed.

The consumers run on a loop of their own (ws_server/loop_thread.py) so they keep fetching while a tick runs;
what they read is applied to the hub on the main loop, in the order it was read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from access.identity import kafka_options
from kafka_admin import topic_partitions
from schemas import now_ms

from .config import Naming
from .latency import LatencyHistogram
from .loop_thread import LoopThread
from .protocol.hub import Hub

log = logging.getLogger(__name__)

HISTORY_READ_TIMEOUT_S = 20.0


class FeedUnavailable(RuntimeError):
    """The tier topic or its snapshot cannot be read right now."""


class FeedReaders:
    def __init__(
        self, hub: Hub, redis: aioredis.Redis, bootstrap: str, naming: Naming, history_records: int = 100_000
    ) -> None:
        self.hub = hub
        self.redis = redis
        self.bootstrap = bootstrap
        self.naming = naming
        self.history_records = history_records
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}  # on the readers' loop
        self._thread: LoopThread | None = None  # started with the first consumer
        self.records_read = 0
        self.kafka_latency = LatencyHistogram()  # record timestamp (producer) → read by this node

    async def ensure(self, tier: str, feed: str) -> None:
        """Return once (tier, feed) is loaded on this node and its topic is being read."""
        src = self.hub.source(tier, feed)
        if src.ready:
            return
        lock = self._locks.setdefault((tier, feed), asyncio.Lock())
        async with lock:
            if src.ready:
                return
            topic = self.naming.tier_topic(tier, feed)
            partitions = await self._partitions(topic)
            if self._thread is None:
                self._thread = LoopThread("kafka-readers")
            thread = self._thread
            consumer = await thread.call(self._start_consumer(topic))
            try:
                values, offsets = await self._snapshot(tier, feed)
                tps = [TopicPartition(topic, p) for p in partitions]
                beginnings = await thread.call(_assign(consumer, tps))
                # Without a snapshot offset for a partition the state is rebuilt from the start of its log.
                snapshot = {p: offsets.get(p, beginnings[p]) for p in partitions}
                per_partition = self.history_records // max(1, len(partitions))
                starts = {p: max(beginnings[p], snapshot[p] - per_partition) for p in partitions}
                await thread.call(_seek(consumer, {tp: starts[tp.partition] for tp in tps}))
            except (KafkaError, OSError) as err:
                await thread.call(consumer.stop())
                raise FeedUnavailable(f"cannot read {topic}: {err}") from err
            except Exception:
                await thread.call(consumer.stop())
                raise
            src.start_history(starts, snapshot, beginnings)
            src.load(values)
            main = asyncio.get_running_loop()
            history_read = main.create_future()
            self._tasks[(tier, feed)] = await thread.start(
                self._read(tier, feed, consumer, dict(snapshot), main, history_read)
            )
            # Resumes need the history up to the snapshot; live records are applied meanwhile.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(history_read), HISTORY_READ_TIMEOUT_S)
            src.ready = True
            log.info("reading %s from %d partitions, %d entities in snapshot", topic, len(tps), len(values))

    async def _partitions(self, topic: str) -> list[int]:
        try:
            partitions = await topic_partitions(self.bootstrap, topic)
        except (KafkaError, TimeoutError, OSError) as err:
            raise FeedUnavailable(f"cannot reach Kafka for {topic}: {err}") from err
        if not partitions:
            raise FeedUnavailable(f"topic {topic} does not exist")
        return partitions

    async def _start_consumer(self, topic: str) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            **kafka_options(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=20,  # a quiet topic must not hold new records back for long
            max_partition_fetch_bytes=4 << 20,
        )
        try:
            await asyncio.wait_for(consumer.start(), 15)
        except (KafkaError, TimeoutError, OSError) as err:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise FeedUnavailable(f"cannot reach Kafka for {topic}: {err}") from err
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

    async def _read(
        self,
        tier: str,
        feed: str,
        consumer: AIOKafkaConsumer,
        history_to: dict[int, int],
        main: asyncio.AbstractEventLoop,
        history_read: asyncio.Future[None],
    ) -> None:
        """On the readers' loop: read the topic and hand every batch to the main loop, in order."""
        behind = {p for p, o in history_to.items() if o > 0}
        told = False
        try:
            while True:
                if not told:
                    for p in list(behind):
                        if (
                            await consumer.position(TopicPartition(self.naming.tier_topic(tier, feed), p))
                            >= (history_to[p])
                        ):
                            behind.discard(p)
                    if not behind:  # after every batch before it, as callbacks run in order
                        main.call_soon_threadsafe(_done, history_read)
                        told = True
                try:
                    batches = await consumer.getmany(timeout_ms=200, max_records=20_000)
                except KafkaError as err:
                    log.warning("reading %s/%s: %s; retrying", tier, feed, err)
                    await asyncio.sleep(1)
                    continue
                received = now_ms()
                for tp, records in batches.items():
                    if not records:
                        continue
                    kept = [
                        (r.offset, r.key.decode(), r.value)
                        for r in records
                        if r.key is not None and r.value is not None
                    ]
                    live = records[-1].offset + 1 >= history_to.get(tp.partition, 0)
                    stamps = [r.timestamp for r in records] if live else []
                    main.call_soon_threadsafe(
                        self._apply, tier, feed, tp.partition, kept, records[-1].offset + 1, received, stamps
                    )
                    self.records_read += len(records)  # a counter: read from the main loop, written here
        finally:
            if not told:
                with contextlib.suppress(RuntimeError):  # the main loop is already closed
                    main.call_soon_threadsafe(_done, history_read)
            await consumer.stop()

    def _apply(
        self,
        tier: str,
        feed: str,
        partition: int,
        kept: list[tuple[int, str, bytes]],
        next_offset: int,
        received: int,
        stamps: list[int],
    ) -> None:
        """On the main loop: one batch into the hub; producer stamps of records read live (not the history)."""
        self.hub.ingest_records(tier, feed, partition, kept, next_offset, received)
        histogram = self.kafka_latency
        for stamp in stamps:
            histogram.add(received - stamp)

    async def wait_for(self, tier: str, feed: str, position: dict[int, int], timeout_s: float) -> None:
        """Wait (bounded) until this node has applied the topic up to ``position``: a client resuming with
        another node's position must not get records it already has a second time."""
        src = self.hub.source(tier, feed)
        deadline = time.monotonic() + timeout_s
        while src.covers(position) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._thread is not None:
            await self._thread.cancel(list(self._tasks.values()))  # each consumer stopped on its own loop
            self._tasks.clear()
            await self._thread.stop()
            self._thread = None


async def _assign(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[int, int]:
    """Assign the partitions; their first offsets still in the log."""
    consumer.assign(tps)
    return {tp.partition: o for tp, o in (await consumer.beginning_offsets(tps)).items()}


async def _seek(consumer: AIOKafkaConsumer, starts: dict[TopicPartition, int]) -> None:
    for tp, offset in starts.items():
        consumer.seek(tp, offset)


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
