"""clean.<feed> → tier.<tier>.<feed> for one tier whose policy delays a feed.

The pending records stay in Kafka, not in memory: a partition is read in offset order, the records
whose event time plus the tier's delay has passed are released, and at the first record that is not
due yet the consumer seeks back to it and pauses the partition until it is due. Offsets are committed
only up to what was released, so after a crash the restarted worker resumes from there: nothing is
released early and nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from . import metrics
from .aggregate_topics import clean_topic, pipeline_tier_topic
from .batch_producer import BatchProducer, partition_for
from .config import StreamConfig
from .fanout import TierFanout, TierPolicy, decode_value
from .stage import Batch, BatchStage, StageOutput
from .state_store import StateStore

log = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def due_prefix(timestamps: list[int], delay_ms: int, now: int) -> int:
    """How many leading records (in offset order) are due for release at ``now``.

    Stops at the first record not yet due even if later ones are: a partition is released in order, so
    one entity's updates never overtake each other.
    """
    for i, ts in enumerate(timestamps):
        if ts + delay_ms > now:
            return i
    return len(timestamps)


class DelayStage(BatchStage):
    def __init__(
        self,
        config: StreamConfig,
        engine: TierPolicy,
        producer: BatchProducer,
        store: StateStore,
        tier: str,
        feeds: list[str],
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.name = f"delay-{tier}"
        self.tier = tier
        self.feed_of_topic = {config.topic(clean_topic(f)): f for f in feeds}
        super().__init__(config, list(self.feed_of_topic))
        self.engine = engine
        self.producer = producer
        self.store = store
        self.clock = clock
        self.delays = {f: engine.delay_ms(f, tier) for f in feeds}
        self.fanouts = {f: TierFanout(engine, f, tier, config.tier_crs[tier]) for f in feeds}
        self.paused_until: dict[TopicPartition, int] = {}

    def poll_timeout_ms(self) -> int:
        if not self.paused_until:
            return self.config.poll_timeout_ms
        wait = min(self.paused_until.values()) - self.clock()
        return max(5, min(self.config.poll_timeout_ms, wait))

    def before_poll(self) -> None:
        if not self.paused_until or self.consumer is None:
            return
        now = self.clock()
        ready = [tp for tp, due in self.paused_until.items() if due <= now]
        for tp in ready:
            del self.paused_until[tp]
        ready = [tp for tp in ready if tp in self.assigned]
        if ready:
            self.consumer.resume(*ready)

    async def process(self, batch: Batch) -> StageOutput:
        now = self.clock()
        commit: dict[TopicPartition, int] = {}
        releases: dict[str, list[dict[str, Any]]] = {}
        assert self.consumer is not None
        for tp, recs in batch.items():
            feed = self.feed_of_topic[tp.topic]
            delay = self.delays[feed]
            n = due_prefix([r.timestamp for r in recs], delay, now)
            if n < len(recs):
                held = recs[n]
                self.consumer.seek(tp, held.offset)
                self.consumer.pause(tp)
                self.paused_until[tp] = held.timestamp + delay
                self.positions[tp] = held.offset
            if n:
                commit[tp] = recs[n - 1].offset + 1
                releases.setdefault(feed, []).extend(decode_value(r.value) for r in recs[:n] if r.value)
        tier_records = {feed: self.fanouts[feed].release(recs) for feed, recs in releases.items()}

        async def deliver() -> None:
            tier_values: dict[tuple[str, str], dict[str, bytes]] = {}
            tier_offsets: dict[tuple[str, str], dict[int, int]] = {}
            pending = []
            feeds = [f for f, rel in tier_records.items() if rel.records]
            for feed in feeds:
                fanout = self.fanouts[feed]
                headers = [
                    ("policy_version", self.engine.policy_version.encode()),
                    ("crs", fanout.crs.encode()),
                ]
                topic = self.config.topic(pipeline_tier_topic(self.tier, feed))
                recs = [(r.key, r.value, r.timestamp_ms) for r in tier_records[feed].records]
                pending.append(self.producer.deliver(topic, recs, headers))
            ends = await asyncio.gather(*pending)
            for feed, offsets in zip(feeds, ends, strict=True):
                tier_offsets[(self.tier, feed)] = offsets
                tier_values[(self.tier, feed)] = {r.entity: r.value for r in tier_records[feed].records}
                n = len(tier_records[feed].records)
                metrics.RECORDS.labels(self.name, feed, f"released_{self.tier}").inc(n)
            marks = {(self.tier, f): rel.marks for f, rel in tier_records.items()}
            await self.store.write(tier_values, tier_offsets, {}, marks)

        return StageOutput(deliveries=[deliver], commit=commit)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        await super().on_assigned(assigned)
        for topic, feed in self.feed_of_topic.items():
            mine = {tp.partition for tp in assigned if tp.topic == topic}
            if not mine:
                continue
            count = self._partition_count(topic)
            marks = await self.store.load(self.store.released_key(self.tier, feed))
            self.fanouts[feed].remember((e, v) for e, v in marks.items() if partition_for(e.encode(), count) in mine)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        await super().on_revoked(revoked)
        for tp in revoked:
            self.paused_until.pop(tp, None)
        # Forget the throttle and replay marks of entities that moved to another worker: if they come back
        # later, the marks in Redis (written by whoever owned them meanwhile) are the truth, not ours.
        for topic, feed in self.feed_of_topic.items():
            gone = {tp.partition for tp in revoked if tp.topic == topic}
            if not gone:
                continue
            fanout = self.fanouts[feed]
            count = self._partition_count(topic)
            fanout.forget([e for e in fanout.released if partition_for(e.encode(), count) in gone])

    def _partition_count(self, topic: str) -> int:
        parts = self.consumer.partitions_for_topic(topic) if self.consumer is not None else None
        return len(parts) if parts else self.config.partitions
