"""A batch stage: consume a batch, compute its outputs, deliver them, then commit. At-least-once.

Offsets are committed only after every output of the batch is acknowledged by Kafka and written to
Redis, so a crash anywhere replays the batch (duplicates, dropped downstream) and never loses it.
Delivery is retried with the computed outputs until it succeeds: the in-memory state already advanced
past those inputs, so recomputing them would wrongly drop them as duplicates.

Batch N's delivery (waiting for Kafka's acks, the Redis round trip, the commit) overlaps with fetching and
computing batch N+1; deliveries still run one at a time in batch order, so per-partition order and
commit-after-delivery hold. A rebalance or stop waits for the delivery in flight first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from redis.exceptions import RedisError

from access.identity import kafka_options
from streams.config import StreamConfig
from streams.io import metrics

if TYPE_CHECKING:
    from control_plane.stage_stats import StageStats

log = logging.getLogger(__name__)

Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


@dataclass
class StageOutput:
    """What a batch produced: deliveries to run (Kafka then Redis) and offsets to commit after them."""

    deliveries: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    commit: dict[TopicPartition, int] = field(default_factory=dict)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, stage: BatchStage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Wait for the batch in flight so its offsets are committed before another worker takes over.
        async with self.stage.lock:
            await self.stage.drain()
            await self.stage.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self.stage.lock:
            await self.stage.on_assigned(set(assigned))


class BatchStage(ABC):
    name: str = "stage"
    # What one fetch may bring per partition. The consumer keeps what it fetched for a partition until the
    # stage takes it, so a stage may hold up to this much for every partition it reads.
    fetch_bytes_per_partition: int = 2 * 1024 * 1024
    ops: StageStats | None = None  # per-batch stats for the control plane (ops.stats), when set

    def __init__(self, config: StreamConfig, topics: list[str]) -> None:
        self.config = config
        self.topics = topics
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.assigned: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}  # next offset to process, for the lag metric
        self._stopping = asyncio.Event()
        self._inflight: asyncio.Task[None] | None = None  # the previous batch's delivery
        self._failure: Exception | None = None

    # ----------------------------------------------------------------------------------- to implement

    @abstractmethod
    async def process(self, batch: Batch) -> StageOutput: ...

    async def periodic(self) -> StageOutput | None:
        """Work not driven by input (stale markers, aggregates); called between batches."""
        return None

    def periodic_backlog(self) -> bool:
        """True when ``periodic`` left due work for its next call, which then comes right after the next
        poll (one that does not wait for input) instead of a scan interval later."""
        return False

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned |= assigned

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        self.assigned -= revoked
        for tp in revoked:
            self.positions.pop(tp, None)

    def partition_count(self, topic: str) -> int:
        """Partitions of a topic this stage reads (the configured count until the consumer knows)."""
        parts = self.consumer.partitions_for_topic(topic) if self.consumer is not None else None
        return len(parts) if parts else self.config.partitions

    def poll_timeout_ms(self) -> int:
        return self.config.poll_timeout_ms

    def before_poll(self) -> None:
        """Hook run before each fetch (the delay stage resumes partitions that became due)."""
        return None

    # ----------------------------------------------------------------------------------- machinery

    async def start(self) -> None:
        if not self.topics:
            return
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.config.bootstrap,
            **kafka_options(),
            group_id=self.config.group(self.name),
            client_id=f"{self.config.app_id}-{self.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.config.max_poll_records,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=self.fetch_bytes_per_partition,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            rebalance_timeout_ms=30_000,
        )
        self.consumer.subscribe(self.topics, listener=_Listener(self))
        await self.consumer.start()

    async def stop(self) -> None:
        self._stopping.set()
        if self.consumer is not None:
            async with self.lock:
                await self.drain()
                await self.consumer.stop()
                self.consumer = None

    async def run(self) -> None:
        if self.consumer is None:
            return
        consumer = self.consumer
        next_periodic = time.monotonic()
        while not self._stopping.is_set():
            if self._failure is not None:
                raise self._failure
            self.before_poll()
            backlog = self.periodic_backlog()
            try:
                batch: Batch = await consumer.getmany(
                    timeout_ms=0 if backlog else self.poll_timeout_ms(), max_records=self.config.max_poll_records
                )
            except IllegalStateError:
                # Raised while the consumer is being stopped.
                if self._stopping.is_set():
                    return
                raise
            async with self.lock:
                if self._stopping.is_set():
                    # stop() closed the consumer while this poll was out: leave the batch uncommitted
                    # for the partitions' next owner rather than process it without a consumer.
                    return
                if batch:
                    batch = {tp: recs for tp, recs in batch.items() if tp in self.assigned and recs}
                    for tp, recs in batch.items():
                        self.positions[tp] = recs[-1].offset + 1
                    output = await self.process(batch)
                    await self._deliver_after_previous(output)
                    metrics.observe_lag(self.name, consumer, self.positions)
                    if self.ops is not None:
                        self.ops.batch_done(self.name, sum(map(len, batch.values())), consumer, self.positions)
                elif self._inflight is not None:
                    await self.drain()  # idle: nothing to overlap with, finish (and commit) now
                if backlog or time.monotonic() >= next_periodic:
                    next_periodic = time.monotonic() + self.config.stale_scan_interval_s
                    extra = await self.periodic()
                    if extra is not None:
                        await self._deliver_after_previous(extra)
        await self.drain()

    async def drain(self) -> None:
        """Wait for the delivery in flight (and its commit); re-raises its failure."""
        task, self._inflight = self._inflight, None
        if task is not None:
            try:
                await task
            except Exception as err:
                # Raised here may mean inside a rebalance callback, where aiokafka only logs it: keep it
                # for the run loop too, so the stage fails instead of consuming on without that batch.
                self._failure = err
                raise

    async def _deliver_after_previous(self, output: StageOutput) -> None:
        await self.drain()
        if output.deliveries or output.commit:
            self._inflight = asyncio.create_task(self._deliver(output), name=f"{self.name}-deliver")

    async def _deliver(self, output: StageOutput) -> None:
        delay = 0.2
        for deliver in output.deliveries:
            while True:
                try:
                    await deliver()
                    break
                except (KafkaError, RedisError, OSError, TimeoutError, ConnectionError) as err:
                    # Keep the computed outputs and retry: nothing is committed until they are out. Redis
                    # going away (its own error classes) is waited out like Kafka, not a crash.
                    metrics.DELIVERY_RETRIES.labels(self.name).inc()
                    log.warning("%s: delivery failed (%s), retrying in %.1f s", self.name, err, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        commit = {tp: off for tp, off in output.commit.items() if tp in self.assigned}
        if commit and self.consumer is not None:
            try:
                await self.consumer.commit(commit)
            except (CommitFailedError, IllegalStateError) as err:
                # The group rebalanced under us: the new owner replays these records; sinks dedupe.
                log.warning("%s: commit failed after a rebalance: %s", self.name, err)
