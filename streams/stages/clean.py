"""raw.<feed> → every tier (+ dlq.<feed>), in batches.

Per batch and feed: decode and validate (bad input → dead letters with the original bytes), drop
duplicates, enrich with vectorised place lookups, compute every tier's view in one chained pass of the
policy engine, throttle per entity and tier, then publish: undelayed tiers straight to their tier topics
(with the Redis snapshot), delayed tiers to ``pending.<tier>.<feed>``, which ``DelayStage`` forwards when
due. The latest clean value of each entity goes to Redis (recovery, aggregates). Entities that outlive
``expires_at`` without a newer record get a ``"state": "stale"`` marker, published the same way; those of
feeds whose entities end (``cleaning.ENDING_FEEDS``) get a ``"state": "removed"`` marker instead, which
also deletes them from the tier snapshots, and are forgotten.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from kafka_admin.partitioning import partition_for
from schemas import InvalidRecord, decode_kafka, now_ms, to_dict
from streams.config import StreamConfig
from streams.io import metrics
from streams.io.batch_producer import BatchProducer
from streams.io.stage import Batch, BatchStage, StageOutput
from streams.io.state_store import StateStore
from streams.logic.cleaning import Cleaner, EntityMark
from streams.logic.enrichment import Enricher
from streams.logic.fanout import REMOVED, FeedFanout, TierFanout, TierPolicy, TierRelease, decode_value, encode_value
from streams.logic.windows import pending_row
from streams.policy import Window
from streams.stages.outputs import StageOutputs

log = logging.getLogger(__name__)


class FeedState:
    """What the clean stage keeps for one feed: cleaner marks, last clean values, stale entities."""

    def __init__(
        self,
        feed: str,
        fanout: FeedFanout,
        delayed: set[str],
        windowed: dict[str, tuple[Window, TierFanout]] | None = None,
    ) -> None:
        self.feed = feed
        self.cleaner = Cleaner(feed)
        self.fanout = fanout
        self.fanouts = fanout.fanouts  # tier → its fan-out
        self.delayed = delayed  # tiers released through pending topics
        # Tiers whose view needs whole time windows (streams/logic/windows.py): their clean records go to the
        # pending topic as they are, and the delay stage applies the policy per complete window.
        self.windowed = windowed or {}
        self.last: dict[str, bytes] = {}
        self.stale: set[str] = set()
        # Tiers whose release marks are kept in Redis: a forgotten entity's mark is deleted there too.
        self.marked_tiers = [tier for tier, f in self.fanouts.items() if f.persist_marks]

    def forget(self, entities: set[str]) -> None:
        self.cleaner.forget(entities)
        for e in entities:
            self.last.pop(e, None)
            self.stale.discard(e)
        self.fanout.forget(entities)


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
        self.feed_of_topic = {config.naming.raw_topic(f): f for f in config.feeds}
        super().__init__(config, list(self.feed_of_topic))
        self.engine = engine
        self.producer = producer
        self.store = store
        self.enricher = enricher
        self.clock = clock
        self.feeds: dict[str, FeedState] = {}
        for feed in config.feeds:
            # Marks are persisted only for throttled tiers: replays are dropped by the recovered cleaner
            # here and by offset in the delay stages.
            fanouts = {
                tier: TierFanout(engine, feed, tier, config.tier_crs[tier], persist_marks=False) for tier in tiers
            }
            windowed = {}
            for tier in tiers:
                window = engine.window(feed, tier)
                if window is not None:
                    windowed[tier] = (window, fanouts.pop(tier))
            delayed = {tier for tier in tiers if engine.delay_ms(feed, tier) > 0 or tier in windowed}
            self.feeds[feed] = FeedState(feed, FeedFanout(engine, feed, fanouts), delayed, windowed)
        # Heap of (expires_at, feed, entity), one entry per entity: a newer record with a later expiry does
        # not add one (the entry is moved on when it comes due), so the heap stays as big as the fleet.
        self.expiry: list[tuple[int, str, str]] = []
        self.scheduled: dict[tuple[str, str], int] = {}

    # ------------------------------------------------------------------------------------ per batch

    async def process(self, batch: Batch) -> StageOutput:
        by_feed: dict[str, list[ConsumerRecord[bytes, bytes]]] = {}
        commit: dict[TopicPartition, int] = {}
        for tp, recs in batch.items():
            by_feed.setdefault(self.feed_of_topic[tp.topic], []).extend(recs)
            commit[tp] = recs[-1].offset + 1
        now = self.clock()
        out = StageOutputs()
        for feed, recs in by_feed.items():
            self._process_feed(self.feeds[feed], recs, now, out)
        return StageOutput(deliveries=out.deliveries(self.config, self.producer, self.store, self.name), commit=commit)

    def _process_feed(
        self, state: FeedState, recs: list[ConsumerRecord[bytes, bytes]], now: int, out: StageOutputs
    ) -> None:
        feed = state.feed
        decoded: list[dict[str, Any]] = []
        origin: list[ConsumerRecord[bytes, bytes]] = []
        bad: list[str] = []
        for rec in recs:
            try:
                if rec.value is None:
                    raise InvalidRecord("empty value")
                decoded.append(to_dict(decode_kafka(feed, rec.value)))
                origin.append(rec)
            except InvalidRecord as err:
                out.dead_letter(feed, rec, str(err), now)
                bad.append(str(err))
        result = state.cleaner.clean(decoded, now)
        for i, reason in result.rejected:
            out.dead_letter(feed, origin[i], reason, now)
        metrics.RECORDS.labels(self.name, feed, "duplicate").inc(result.duplicates)
        metrics.RECORDS.labels(self.name, feed, "rejected").inc(len(result.rejected))
        accepted = result.accepted
        if accepted:
            metrics.RECORDS.labels(self.name, feed, "accepted").inc(len(accepted))
            self.enricher.enrich(feed, accepted)
            # Per record, so whole-batch steps: encode once, then the same (entity, value) pairs for the local
            # state and for Redis.
            values = list(map(encode_value, accepted))
            entities = [rec["id"] for rec in accepted]
            state.last.update(zip(entities, values, strict=True))
            if state.stale:
                state.stale.difference_update(entities)
            out.last_many(feed, zip(entities, values, strict=True))
            self._schedule_many(feed, entities, [rec["expires_at"] for rec in accepted])
        if self.ops is not None:
            bad += [reason for _, reason in result.rejected]
            # Counted once the batch is in the state: every entity known and not stale (no per-record set).
            active = len(state.last) - len(state.stale)
            self.ops.note(feed, records_in=len(recs), accepted=accepted, duplicates=result.duplicates,
                          rejects=bad, raw=origin, active=active,
                          now_ms=now)  # fmt: skip
        if not accepted:
            return
        self._release(state, accepted, out)
        for tier, (window, fanout) in state.windowed.items():
            rows = [
                row for rec, value in zip(accepted, values, strict=True) if (row := pending_row(window, rec, value))
            ]
            out.tier(tier, feed, TierRelease(rows, {}), fanout, True)

    def _schedule_many(self, feed: str, entities: list[str], expiries: list[int]) -> None:
        """``_schedule`` for a batch, in order; the usual case (an entity already scheduled no later than its
        new expiry) costs one lookup."""
        scheduled = self.scheduled
        for entity, expires_at in zip(entities, expiries, strict=True):
            key = (feed, entity)
            when = scheduled.get(key)
            if when is None or expires_at < when:
                scheduled[key] = expires_at
                heapq.heappush(self.expiry, (expires_at, feed, entity))

    def _schedule(self, feed: str, entity: str, expires_at: int) -> None:
        key = (feed, entity)
        when = self.scheduled.get(key)
        if when is None or expires_at < when:
            self.scheduled[key] = expires_at
            heapq.heappush(self.expiry, (expires_at, feed, entity))

    def _release(
        self, state: FeedState, records: list[dict[str, Any]], out: StageOutputs, removals: bool = False
    ) -> None:
        for tier, release in state.fanout.release(records).items():
            out.tier(tier, state.feed, release, state.fanouts[tier], tier in state.delayed, removals)

    # ------------------------------------------------------------------------------------ stale markers

    def periodic_backlog(self) -> bool:
        """Entities past their expiry that the last scan left for the next (see ``periodic``)."""
        return bool(self.expiry) and self.expiry[0][0] <= self.clock()

    async def periodic(self) -> StageOutput | None:
        """Stale and removal markers for the entities past their expiry, at most a batch's worth
        (``max_poll_records``) per call: the rest stay due and the stage scans again after its next poll.
        All at once, a city's worth of predictions expiring together (a worker recovering them after a
        pause) made one batch of ~120,000 tier records and one Redis transaction of ~100 MB: ~700 MiB of the
        worker's memory at once, with the live records waiting behind it (docs/benchmarks-soak.md)."""
        now = self.clock()
        room = self.config.max_poll_records
        due: dict[str, list[dict[str, Any]]] = {}  # feed → stale markers
        removed: dict[str, list[dict[str, Any]]] = {}  # feed → removal markers of ended entities
        forgotten: dict[str, list[str]] = {}
        while self.expiry and self.expiry[0][0] <= now and room > 0:
            expires_at, feed, entity = heapq.heappop(self.expiry)
            if self.scheduled.get((feed, entity)) == expires_at:
                del self.scheduled[(feed, entity)]
            state = self.feeds[feed]
            mark = state.cleaner.marks.get(entity)
            if mark is None or entity in state.stale:
                continue  # no longer ours, or already marked
            if mark.expires_at > expires_at:
                self._schedule(feed, entity, mark.expires_at)  # a newer record moved the expiry on
                continue
            if mark.expires_at != expires_at:
                continue
            value = state.last.get(entity)
            if state.cleaner.ending:
                # An ended entity does not go stale: it is removed and forgotten (see cleaning.ENDING_FEEDS).
                if value is not None:
                    removed.setdefault(feed, []).append({**decode_value(value), "state": REMOVED})
                else:
                    state.forget({entity})
                    forgotten.setdefault(feed, []).append(entity)
                room -= 1
                continue
            if value is None:
                continue
            marker = decode_value(value)
            marker["state"] = "stale"
            due.setdefault(feed, []).append(marker)
            state.stale.add(entity)
            room -= 1
        if not due and not removed and not forgotten:
            return None
        out = StageOutputs()
        for feed, markers in removed.items():
            state = self.feeds[feed]
            metrics.RECORDS.labels(self.name, feed, "removed").inc(len(markers))
            self._release(state, markers, out, removals=True)
            # After the release, which needs the tiers' marks: nothing of these entities is kept.
            entities = [m["id"] for m in markers]
            state.forget(set(entities))
            forgotten.setdefault(feed, []).extend(entities)
        for feed, entities in forgotten.items():
            metrics.RECORDS.labels(self.name, feed, "forgotten").inc(len(entities))
            out.forget(feed, entities, self.feeds[feed].marked_tiers)
        for feed, markers in due.items():
            state = self.feeds[feed]
            metrics.RECORDS.labels(self.name, feed, "stale").inc(len(markers))
            for m in markers:
                value = encode_value(m)
                state.last[m["id"]] = value
                out.last(feed, m["id"], value)
            self._release(state, markers, out)
        return StageOutput(deliveries=out.deliveries(self.config, self.producer, self.store, self.name))

    # ------------------------------------------------------------------------------------ rebalancing

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        await super().on_assigned(assigned)
        for topic, feed in self.feed_of_topic.items():
            mine = {tp.partition for tp in assigned if tp.topic == topic}
            if mine:
                await self._recover(feed, topic, mine)

    async def _recover(self, feed: str, topic: str, partitions: set[int]) -> None:
        """Reload duplicate detection, stale marking and tier throttles for newly owned entities."""
        count = self.partition_count(topic)
        state = self.feeds[feed]
        last = await self.store.load(self.store.naming.last_key(feed))
        recovered = 0
        for entity, value in last.items():
            if partition_for(entity.encode(), count) not in partitions:
                continue
            rec = decode_value(value)
            mark = EntityMark(rec["observed_at"], rec.get("seq"), rec.get("lng"), rec.get("lat"), rec["expires_at"])
            state.cleaner.remember([(entity, mark)])
            state.last[entity] = value
            if rec.get("state") == "stale" and not state.cleaner.ending:
                state.stale.add(entity)
            else:
                # An ended entity kept as stale by an earlier version is removed at the first scan.
                self._schedule(feed, entity, rec["expires_at"])
            recovered += 1
        for tier, fanout in state.fanouts.items():
            marks = await self.store.load(self.store.naming.released_key(tier, feed))
            fanout.remember((e, v) for e, v in marks.items() if partition_for(e.encode(), count) in partitions)
        if recovered:
            log.info("clean: recovered %d %s entities for partitions %s", recovered, feed, sorted(partitions))

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        await super().on_revoked(revoked)
        for topic, feed in self.feed_of_topic.items():
            gone = {tp.partition for tp in revoked if tp.topic == topic}
            if not gone:
                continue
            count = self.partition_count(topic)
            state = self.feeds[feed]
            known = set(state.last) | set(state.cleaner.marks)
            for fanout in state.fanouts.values():
                known.update(fanout.released)
            state.forget({e for e in known if partition_for(e.encode(), count) in gone})
