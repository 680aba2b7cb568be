"""A batch's outputs, collected while computing and then delivered: Kafka first, Redis after.

Undelayed tiers go to ``tier.<tier>.<feed>`` with their Redis snapshot; delayed tiers go to
``pending.<tier>.<feed>`` in envelopes (``streams.logic.envelope``; the delay stage forwards them when due and
writes the snapshot then).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import ConsumerRecord

from schemas import DeadLetter, encode_dead_letter
from streams.config import StreamConfig
from streams.io import metrics
from streams.io.batch_producer import BatchProducer
from streams.io.state_store import Snapshot, StateStore
from streams.logic.fanout import TierFanout, TierRecord, TierRelease

KafkaRecord = tuple[bytes, bytes, int]


class StageOutputs:
    def __init__(self) -> None:
        self.dlq: dict[str, list[KafkaRecord]] = {}
        self.tier_records: dict[tuple[str, str], tuple[list[TierRecord], TierFanout, bool]] = {}
        self.release_marks: dict[tuple[str, str], dict[str, bytes]] = {}
        self.last_values: dict[str, dict[str, bytes]] = {}
        self.forgotten: dict[str, list[str]] = {}  # feed → ended entities to drop from the recovery state
        self.forgotten_marks: dict[tuple[str, str], list[str]] = {}  # the same for persisted release marks
        self.removed: dict[tuple[str, str], list[bytes]] = {}  # undelayed tier → keys to drop from its snapshot
        self._sent: list[dict[int, int]] | None = None  # the tier topics' end offsets, once produced

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

    def last(self, feed: str, entity: str, value: bytes) -> None:
        self.last_values.setdefault(feed, {})[entity] = value

    def last_many(self, feed: str, pairs: Iterable[tuple[str, bytes]]) -> None:
        """``last`` for many entities, in order (the last value per entity wins)."""
        self.last_values.setdefault(feed, {}).update(pairs)

    def forget(self, feed: str, entities: list[str], marked_tiers: Iterable[str] = ()) -> None:
        """Drop ended entities from the recovery state, and their release marks at ``marked_tiers``."""
        self.forgotten.setdefault(feed, []).extend(entities)
        for tier in marked_tiers:
            self.forgotten_marks.setdefault((tier, feed), []).extend(entities)

    def tier(
        self, tier: str, feed: str, release: TierRelease, fanout: TierFanout, delayed: bool, removals: bool = False
    ) -> None:
        """A tier's release; ``removals``: its records are all removal markers, whose keys leave the snapshot
        (a delayed tier's leave it when the delay stage forwards them)."""
        if removals and not delayed:
            self.removed.setdefault((tier, feed), []).extend(key for key, _, _ in release.records)
        if release.records:
            prev = self.tier_records.get((tier, feed))
            records = (prev[0] + release.records) if prev else release.records
            self.tier_records[(tier, feed)] = (records, fanout, delayed)
        if release.marks:
            self.release_marks.setdefault((tier, feed), {}).update(release.marks)

    async def _produce(
        self, config: StreamConfig, producer: BatchProducer, tiers: list[tuple[tuple[str, str], Any]]
    ) -> list[dict[int, int]]:
        # Queue everything, then wait once: one round of produce requests per batch.
        other = []
        for feed, dead in self.dlq.items():
            other.append(producer.deliver(config.naming.dlq_topic(feed), dead))
        sends = []
        for (tier, feed), (recs, fanout, delayed) in tiers:
            headers = [
                ("policy_version", fanout.engine.policy_version.encode()),
                ("crs", fanout.crs.encode()),
            ]
            if delayed:
                sends.append(producer.deliver_envelopes(config.naming.pending_topic(tier, feed), recs, headers))
            else:
                sends.append(producer.deliver(config.naming.tier_topic(tier, feed), recs, headers))
        _, ends = await asyncio.gather(asyncio.gather(*other), asyncio.gather(*sends))
        return list(ends)

    def deliveries(
        self, config: StreamConfig, producer: BatchProducer, store: StateStore, stage: str
    ) -> list[Callable[[], Awaitable[None]]]:
        return [lambda: self.deliver(config, producer, store, stage)]

    async def deliver(self, config: StreamConfig, producer: BatchProducer, store: StateStore, stage: str) -> None:
        tiers = list(self.tier_records.items())
        if self._sent is None:
            # Produced once: a retry after Redis failed writes the state again, not the batch to Kafka.
            self._sent = await self._produce(config, producer, tiers)
        ends = self._sent
        tier_values: dict[tuple[str, str], Snapshot] = {}
        tier_offsets: dict[tuple[str, str], dict[int, int]] = {}
        for ((tier, feed), (released, _, delayed)), offsets in zip(tiers, ends, strict=True):
            if delayed:
                metrics.TIER_RECORDS.labels(stage, feed, tier, "pending").inc(len(released))
                continue
            tier_offsets[(tier, feed)] = offsets
            # The records as they are: keyed by the Kafka key (the entity id's bytes), the last value per entity
            # wins (see Snapshot), no re-encoding.
            tier_values[(tier, feed)] = released
            metrics.TIER_RECORDS.labels(stage, feed, tier, "released").inc(len(released))
        await store.write(
            tier_values,
            tier_offsets,
            self.last_values,
            self.release_marks,
            forget=self.forgotten,
            forget_marks=self.forgotten_marks,
            removed=self.removed,
        )
