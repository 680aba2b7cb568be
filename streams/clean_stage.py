"""raw.<feed> → clean.<feed> (+ dlq.<feed>) and the undelayed tiers, in batches.

Per batch and feed: decode and validate (bad input → dead letters with the original bytes), drop
duplicates, enrich with vectorised place lookups, publish the clean records, release them at once to
every tier whose delay is zero (throttled per entity), and update the Redis state. Delayed tiers are
released by ``DelayStage`` from ``clean.<feed>``. Entities that outlive ``expires_at`` without a newer
record get a ``"state": "stale"`` marker, published the same way.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from schemas import DeadLetter, InvalidRecord, decode_kafka, dlq_topic, encode_dead_letter, raw_topic, to_dict

from . import metrics
from .aggregate_topics import clean_topic, pipeline_tier_topic
from .batch_producer import BatchProducer, partition_for
from .cleaning import Cleaner, EntityMark
from .config import StreamConfig
from .enrichment import Enricher
from .fanout import TierFanout, TierPolicy, TierRecord, TierRelease, decode_value, encode_value
from .stage import Batch, BatchStage, StageOutput
from .state_store import StateStore

log = logging.getLogger(__name__)

KafkaRecord = tuple[bytes, bytes, int]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class FeedState:
    """What the clean stage keeps for one feed: cleaner marks, last clean values, stale entities."""

    def __init__(self, feed: str, fanouts: dict[str, TierFanout]) -> None:
        self.feed = feed
        self.cleaner = Cleaner(feed)
        self.fanouts = fanouts  # undelayed tiers only
        self.last: dict[str, bytes] = {}
        self.stale: set[str] = set()

    def forget(self, entities: set[str]) -> None:
        self.cleaner.forget(entities)
        for e in entities:
            self.last.pop(e, None)
            self.stale.discard(e)
        for fanout in self.fanouts.values():
            fanout.forget(entities)


class CleanStage(BatchStage):
    name = "clean"

    def __init__(
        self,
        config: StreamConfig,
        engine: TierPolicy,
        producer: BatchProducer,
        store: StateStore,
        enricher: Enricher,
        tiers: tuple[str, ...],
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.feed_of_topic = {config.topic(raw_topic(f)): f for f in config.feeds}
        super().__init__(config, list(self.feed_of_topic))
        self.engine = engine
        self.producer = producer
        self.store = store
        self.enricher = enricher
        self.clock = clock
        self.feeds: dict[str, FeedState] = {}
        for feed in config.feeds:
            fanouts = {
                tier: TierFanout(engine, feed, tier, config.tier_crs[tier], persist_marks=False)
                for tier in tiers
                if engine.delay_ms(feed, tier) == 0
            }
            self.feeds[feed] = FeedState(feed, fanouts)
        self.expiry: list[tuple[int, str, str]] = []  # heap of (expires_at, feed, entity)

    # ------------------------------------------------------------------------------------ per batch

    async def process(self, batch: Batch) -> StageOutput:
        by_feed: dict[str, list[ConsumerRecord[bytes, bytes]]] = {}
        commit: dict[TopicPartition, int] = {}
        for tp, recs in batch.items():
            by_feed.setdefault(self.feed_of_topic[tp.topic], []).extend(recs)
            commit[tp] = recs[-1].offset + 1
        now = self.clock()
        out = _Outputs()
        for feed, recs in by_feed.items():
            self._process_feed(self.feeds[feed], recs, now, out)
        return StageOutput(deliveries=out.deliveries(self), commit=commit)

    def _process_feed(
        self, state: FeedState, recs: list[ConsumerRecord[bytes, bytes]], now: int, out: _Outputs
    ) -> None:
        feed = state.feed
        decoded: list[dict[str, Any]] = []
        origin: list[ConsumerRecord[bytes, bytes]] = []
        for rec in recs:
            try:
                if rec.value is None:
                    raise InvalidRecord("empty value")
                decoded.append(to_dict(decode_kafka(feed, rec.value)))
                origin.append(rec)
            except InvalidRecord as err:
                out.dead_letter(feed, rec, str(err), now)
        result = state.cleaner.clean(decoded, now)
        for i, reason in result.rejected:
            out.dead_letter(feed, origin[i], reason, now)
        metrics.RECORDS.labels(self.name, feed, "duplicate").inc(result.duplicates)
        metrics.RECORDS.labels(self.name, feed, "rejected").inc(len(result.rejected))
        accepted = result.accepted
        if not accepted:
            return
        metrics.RECORDS.labels(self.name, feed, "accepted").inc(len(accepted))
        self.enricher.enrich(feed, accepted)
        for rec in accepted:
            value = encode_value(rec)
            entity = rec["id"]
            state.last[entity] = value
            state.stale.discard(entity)
            out.clean(feed, (entity.encode(), value, rec["observed_at"]))
            out.last(feed, entity, value)
            heapq.heappush(self.expiry, (rec["expires_at"], feed, entity))
        for tier, fanout in state.fanouts.items():
            out.tier(tier, feed, fanout.release(accepted), fanout)

    # ------------------------------------------------------------------------------------ stale markers

    async def periodic(self) -> StageOutput | None:
        now = self.clock()
        due: dict[str, list[dict[str, Any]]] = {}
        while self.expiry and self.expiry[0][0] <= now:
            expires_at, feed, entity = heapq.heappop(self.expiry)
            state = self.feeds[feed]
            mark = state.cleaner.marks.get(entity)
            if mark is None or mark.expires_at != expires_at or entity in state.stale:
                continue  # superseded by a newer record, already stale, or no longer ours
            value = state.last.get(entity)
            if value is None:
                continue
            marker = decode_value(value)
            marker["state"] = "stale"
            due.setdefault(feed, []).append(marker)
            state.stale.add(entity)
        if not due:
            return None
        out = _Outputs()
        for feed, markers in due.items():
            state = self.feeds[feed]
            metrics.RECORDS.labels(self.name, feed, "stale").inc(len(markers))
            for m in markers:
                value = encode_value(m)
                state.last[m["id"]] = value
                out.clean(feed, (m["id"].encode(), value, m["expires_at"]))
                out.last(feed, m["id"], value)
            for tier, fanout in state.fanouts.items():
                out.tier(tier, feed, fanout.release(markers), fanout)
        return StageOutput(deliveries=out.deliveries(self))

    # ------------------------------------------------------------------------------------ rebalancing

    def _partition_count(self, topic: str) -> int:
        assert self.consumer is not None
        parts = self.consumer.partitions_for_topic(topic)
        return len(parts) if parts else self.config.partitions

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        await super().on_assigned(assigned)
        for topic, feed in self.feed_of_topic.items():
            mine = {tp.partition for tp in assigned if tp.topic == topic}
            if mine:
                await self._recover(feed, topic, mine)

    async def _recover(self, feed: str, topic: str, partitions: set[int]) -> None:
        """Reload duplicate detection, stale marking and tier throttles for newly owned entities."""
        count = self._partition_count(topic)
        state = self.feeds[feed]
        last = await self.store.load(self.store.last_key(feed))
        recovered = 0
        for entity, value in last.items():
            if partition_for(entity.encode(), count) not in partitions:
                continue
            rec = decode_value(value)
            mark = EntityMark(rec["observed_at"], rec.get("seq"), rec.get("lng"), rec.get("lat"), rec["expires_at"])
            state.cleaner.remember([(entity, mark)])
            state.last[entity] = value
            if rec.get("state") == "stale":
                state.stale.add(entity)
            else:
                heapq.heappush(self.expiry, (rec["expires_at"], feed, entity))
            recovered += 1
        for tier, fanout in state.fanouts.items():
            marks = await self.store.load(self.store.released_key(tier, feed))
            fanout.remember((e, v) for e, v in marks.items() if partition_for(e.encode(), count) in partitions)
        if recovered:
            log.info("clean: recovered %d %s entities for partitions %s", recovered, feed, sorted(partitions))

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        await super().on_revoked(revoked)
        for topic, feed in self.feed_of_topic.items():
            gone = {tp.partition for tp in revoked if tp.topic == topic}
            if not gone:
                continue
            count = self._partition_count(topic)
            state = self.feeds[feed]
            state.forget({e for e in state.last if partition_for(e.encode(), count) in gone})


class _Outputs:
    """Collects a batch's outputs, then turns them into deliveries: Kafka first, Redis after."""

    def __init__(self) -> None:
        self.dlq: dict[str, list[KafkaRecord]] = {}
        self.clean_records: dict[str, list[KafkaRecord]] = {}
        self.tier_records: dict[tuple[str, str], tuple[list[TierRecord], TierFanout]] = {}
        self.release_marks: dict[tuple[str, str], dict[str, bytes]] = {}
        self.last_values: dict[str, dict[str, bytes]] = {}

    def dead_letter(self, feed: str, rec: ConsumerRecord[bytes, bytes], reason: str, now: int) -> None:
        source = dict(rec.headers or ()).get("source", b"unknown")
        source_name = source.decode(errors="replace") if isinstance(source, bytes) else str(source)
        letter = DeadLetter(
            source=source_name,
            feed=feed,
            reason=reason,
            received_at=now,
            original=rec.value or b"",
            locator=f"{rec.topic}:{rec.partition}:{rec.offset}",
        )
        self.dlq.setdefault(feed, []).append((source_name.encode(), encode_dead_letter(letter), now))

    def clean(self, feed: str, record: KafkaRecord) -> None:
        self.clean_records.setdefault(feed, []).append(record)

    def last(self, feed: str, entity: str, value: bytes) -> None:
        self.last_values.setdefault(feed, {})[entity] = value

    def tier(self, tier: str, feed: str, release: TierRelease, fanout: TierFanout) -> None:
        if release.records:
            prev = self.tier_records.get((tier, feed))
            self.tier_records[(tier, feed)] = ((prev[0] if prev else []) + release.records, fanout)
        if release.marks:
            self.release_marks.setdefault((tier, feed), {}).update(release.marks)

    def deliveries(self, stage: CleanStage) -> list[Callable[[], Awaitable[None]]]:
        return [lambda: self._deliver(stage)]

    async def _deliver(self, stage: CleanStage) -> None:
        config, producer = stage.config, stage.producer
        # Queue everything, then wait once: one round of produce requests per batch.
        pending = []
        for feed, dead in self.dlq.items():
            pending.append(producer.deliver(config.topic(dlq_topic(feed)), dead))
        for feed, clean in self.clean_records.items():
            pending.append(producer.deliver(config.topic(clean_topic(feed)), clean))
        tiers = list(self.tier_records.items())
        for (tier, feed), (recs, fanout) in tiers:
            headers = [
                ("policy_version", fanout.engine.policy_version.encode()),
                ("crs", fanout.crs.encode()),
            ]
            topic = config.topic(pipeline_tier_topic(tier, feed))
            pending.append(producer.deliver(topic, [(r.key, r.value, r.timestamp_ms) for r in recs], headers))
        ends = await asyncio.gather(*pending)
        tier_ends = ends[len(ends) - len(tiers) :]
        tier_values: dict[tuple[str, str], dict[str, bytes]] = {}
        tier_offsets: dict[tuple[str, str], dict[int, int]] = {}
        for ((tier, feed), (released, _)), offsets in zip(tiers, tier_ends, strict=True):
            tier_offsets[(tier, feed)] = offsets
            tier_values[(tier, feed)] = {r.entity: r.value for r in released}
            metrics.RECORDS.labels(stage.name, feed, f"released_{tier}").inc(len(released))
        await stage.store.write(tier_values, tier_offsets, self.last_values, self.release_marks)
