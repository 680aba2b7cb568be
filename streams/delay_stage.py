"""pending.<tier>.<feed> → tier.<tier>.<feed> for one tier whose policy delays some feeds.

The clean stage has already applied the policy and the tier's throttle; this stage only waits. The
pending records (in envelopes, see ``streams.envelope``) stay in Kafka, not in memory: a partition is read
in offset order, the envelopes whose timestamp plus the tier's delay has passed are unpacked and their
records forwarded as they are (key, value, timestamp, headers), and at the first envelope that is not
due yet the consumer seeks back to it and pauses the partition until it is due. Offsets are committed
only up to what was forwarded, so after a crash the restarted worker resumes from there: nothing is
released early and nothing is lost. The offsets forwarded so far are written to Redis with the tier
snapshot in one transaction, so a batch forwarded but not yet committed when a worker died is skipped,
not sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import ConsumerRecord, TopicPartition

from . import envelope, metrics
from .aggregate_topics import pending_topic, pipeline_tier_topic
from .batch_producer import BatchProducer
from .config import StreamConfig
from .fanout import TierPolicy
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


Headers = tuple[tuple[str, bytes], ...]


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
        self.feed_of_topic = {config.topic(pending_topic(tier, f)): f for f in feeds}
        super().__init__(config, list(self.feed_of_topic))
        self.producer = producer
        self.store = store
        self.clock = clock
        self.delays = {f: engine.delay_ms(f, tier) for f in feeds}
        self.paused_until: dict[TopicPartition, int] = {}
        # Next pending offset not yet forwarded, per partition, as recorded in Redis: replays below it are
        # skipped.
        self.forwarded: dict[TopicPartition, int] = {}

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

    def split_due(
        self, batch: Batch, now: int
    ) -> tuple[
        dict[str, list[ConsumerRecord[bytes, bytes]]], dict[TopicPartition, int], dict[TopicPartition, tuple[int, int]]
    ]:
        """(feed → records to forward, offsets to commit, partition → (first held offset, its due time))."""
        forward: dict[str, list[ConsumerRecord[bytes, bytes]]] = {}
        commit: dict[TopicPartition, int] = {}
        held: dict[TopicPartition, tuple[int, int]] = {}
        for tp, recs in batch.items():
            feed = self.feed_of_topic[tp.topic]
            delay = self.delays[feed]
            n = due_prefix([r.timestamp for r in recs], delay, now)
            if n < len(recs):
                held[tp] = (recs[n].offset, recs[n].timestamp + delay)
            if n:
                commit[tp] = recs[n - 1].offset + 1
                done = self.forwarded.get(tp, 0)
                due = recs[:n] if done <= recs[0].offset else [r for r in recs[:n] if r.offset >= done]
                if due:
                    forward.setdefault(feed, []).extend(due)
        return forward, commit, held

    async def process(self, batch: Batch) -> StageOutput:
        forward, commit, held = self.split_due(batch, self.clock())
        assert self.consumer is not None
        for tp, (offset, due_at) in held.items():
            self.consumer.seek(tp, offset)
            self.consumer.pause(tp)
            self.paused_until[tp] = due_at
            self.positions[tp] = offset
        marks: dict[tuple[str, str], dict[int, int]] = {}
        for tp, end in commit.items():
            self.forwarded[tp] = max(self.forwarded.get(tp, 0), end)
            marks.setdefault((self.tier, self.feed_of_topic[tp.topic]), {})[tp.partition] = end

        # feed → headers → pending partition → records, in offset order
        rows: dict[str, dict[Headers, dict[int, list[envelope.Row]]]] = {}
        for feed, envelopes in forward.items():
            groups = rows.setdefault(feed, {})
            for env in envelopes:
                if env.value is None:
                    continue
                try:
                    group = groups.setdefault(tuple(env.headers or ()), {})
                    group.setdefault(env.partition, []).extend(envelope.unpack(env.value))
                except envelope.EnvelopeError as err:
                    # Only the clean stage writes here; a foreign message must not stop the tier.
                    log.error("%s: skipping %s:%d:%d: %s", self.name, env.topic, env.partition, env.offset, err)

        async def deliver() -> None:
            feeds = list(rows)
            ends = await asyncio.gather(*(self._send(feed, rows[feed]) for feed in feeds))
            # Snapshot keyed by the Kafka key (entity id bytes); the last value per entity wins.
            values = {
                (self.tier, f): {k: v for g in rows[f].values() for part in g.values() for k, v, _ in part}
                for f in feeds
            }
            offsets = {(self.tier, f): e for f, e in zip(feeds, ends, strict=True)}
            await self.store.write(values, offsets, {}, forwarded=marks)
            for feed in feeds:
                n = sum(len(part) for g in rows[feed].values() for part in g.values())
                metrics.RECORDS.labels(self.name, feed, f"released_{self.tier}").inc(n)

        return StageOutput(deliveries=[deliver] if commit else [], commit=commit)

    async def _send(self, feed: str, groups: dict[Headers, dict[int, list[envelope.Row]]]) -> dict[int, int]:
        """Forward records as they are, one produce round per headers group (policy version and CRS).

        Pending and tier topics are keyed and partitioned alike, so with equal partition counts a pending
        partition's records go to the same tier partition as they are, without hashing every key again."""
        topic = self.config.topic(pipeline_tier_topic(self.tier, feed))
        source = self.config.topic(pending_topic(self.tier, feed))
        same = await self.producer.partitions(topic) == await self.producer.partitions(source)
        ends: dict[int, int] = {}
        for headers, parts in groups.items():
            if same:
                sent = await self.producer.send_partitioned(topic, parts, list(headers))
                got = await self.producer.ends(sent)
            else:
                flat = [row for part in parts.values() for row in part]
                got = await self.producer.deliver(topic, flat, list(headers))
            for partition, end in got.items():
                ends[partition] = max(end, ends.get(partition, 0))
        return ends

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        await super().on_assigned(assigned)
        for topic, feed in self.feed_of_topic.items():
            mine = {tp for tp in assigned if tp.topic == topic}
            if not mine:
                continue
            done = await self.store.load(self.store.forwarded_key(self.tier, feed))
            for tp in mine:
                if str(tp.partition) in done:
                    self.forwarded[tp] = int(done[str(tp.partition)])

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        await super().on_revoked(revoked)
        # Whoever owns these partitions next records its own progress in Redis; ours would go stale.
        for tp in revoked:
            self.paused_until.pop(tp, None)
            self.forwarded.pop(tp, None)
