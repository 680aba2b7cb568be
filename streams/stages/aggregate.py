"""Publishes the aggregate feeds (``agg_*``) every few seconds from the latest state in Redis.

Each source feed's aggregates are computed by one worker: the owner of partition 0 of ``raw.<feed>`` in
the clean stage's consumer group, so adding workers never duplicates the work and a worker that dies
hands it over with its partitions. The input is the latest clean value of every entity
(``<prefix>:streams:last:<feed>``, written by every worker's clean stage), so the figures cover all
partitions and a new owner recomputes them at once. During a rebalance two workers may briefly both
publish, or neither: releases are snapshots with an ``observed_at``, so a repeat is dropped downstream
and a gap lasts one interval.

Releases go through the tier policy like a source feed's records: straight to the undelayed tiers with the
Redis tier state, and to ``pending.<tier>.<agg>`` for the delayed ones, as the clean stage does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from schemas import now_ms
from streams.config import StreamConfig
from streams.io import metrics
from streams.io.batch_producer import BatchProducer
from streams.io.state_store import StateStore
from streams.logic.aggregation import AGGREGATES_OF, Aggregator, NearScenic, Place, places_from_geo, source_of
from streams.logic.fanout import FeedFanout, TierFanout, TierPolicy, decode_value
from streams.stages.outputs import StageOutputs

log = logging.getLogger(__name__)

_history_encoder = msgspec.msgpack.Encoder()
_history_decoder = msgspec.msgpack.Decoder(list[tuple[int, int]])


def aggregate_feeds_for(feeds: tuple[str, ...]) -> tuple[str, ...]:
    """The aggregate feeds the given source feeds make."""
    return tuple(dict.fromkeys(a for f in feeds for a in AGGREGATES_OF.get(f, ())))


def _crs_for(engine: TierPolicy, feed: str, tier: str, wanted: str) -> str:
    allowed: tuple[str, ...] = getattr(engine, "allowed_crs", lambda f, t: (wanted,))(feed, tier)
    return wanted if wanted in allowed else allowed[0]


class HistoryStore(Protocol):
    async def load(self) -> dict[str, list[tuple[int, int]]]: ...
    async def save(self, changed: dict[str, list[tuple[int, int]]]) -> None: ...


class RedisHistory:
    """The scenic history as a Redis hash (code → msgpack rows)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def load(self) -> dict[str, list[tuple[int, int]]]:
        out = {}
        for code, data in (await self.store.load(self.store.naming.history_key("scenic"))).items():
            try:
                out[code] = _history_decoder.decode(data)
            except msgspec.DecodeError:
                log.warning("aggregate: unreadable scenic history for %s ignored", code)
        return out

    async def save(self, changed: dict[str, list[tuple[int, int]]]) -> None:
        await self.store.put(
            self.store.naming.history_key("scenic"), {c: _history_encoder.encode(r) for c, r in changed.items()}
        )


class AggregateStage:
    name = "aggregate"

    def __init__(
        self,
        config: StreamConfig,
        engine: TierPolicy,
        producer: BatchProducer,
        store: StateStore,
        leads: Callable[[str], bool],
        tiers: tuple[str, ...],
        places: dict[str, Place] | None = None,
        clock: Callable[[], int] = now_ms,
        history: HistoryStore | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.producer = producer
        self.store = store
        self.leads = leads
        self.clock = clock
        self.sources = tuple(f for f in config.feeds if f in AGGREGATES_OF)
        self.feeds = aggregate_feeds_for(self.sources)
        places = places if places is not None else places_from_geo()
        self.aggregator = Aggregator(NearScenic(list(places.values())), places)
        self.fanouts = {
            feed: FeedFanout(
                engine,
                feed,
                {
                    tier: TierFanout(
                        engine, feed, tier, _crs_for(engine, feed, tier, config.tier_crs[tier]), persist_marks=False
                    )
                    for tier in tiers
                },
            )
            for feed in self.feeds
        }
        self.delayed = {feed: {t for t in tiers if engine.delay_ms(feed, t) > 0} for feed in self.feeds}
        self.leading: set[str] = set()
        self._stopping = asyncio.Event()
        # Where the scenic history lives between owners: a Redis hash by default, a Faust table when the
        # control plane publishes (control_plane/aggregates.py).
        self.history = history or RedisHistory(store)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.config.aggregate_interval_s)
            if self._stopping.is_set():
                return
            try:
                await self.tick()
            except (OSError, TimeoutError, ConnectionError) as err:
                # Kafka/Redis trouble: the next tick recomputes from the state and publishes again.
                log.warning("aggregate: tick failed (%s); retrying next interval", err)
                metrics.DELIVERY_RETRIES.labels(self.name).inc()

    async def tick(self) -> dict[str, int]:
        """Compute and publish the aggregates of every source feed this worker leads; returns counts."""
        now = self.clock()
        lead = {f for f in self.sources if self.leads(f)}
        for source in sorted(lead - self.leading):
            await self._take_over(source)
        for source in self.leading - lead:
            self.aggregator.forget_source(source)
        self.leading = lead
        published: dict[str, int] = {}
        for source in sorted(lead):
            values = await self.store.load(self.store.naming.last_key(source))
            records = [decode_value(v) for v in values.values()]
            computed, changed = self.aggregator.compute_source(source, records, now)
            releases = self.aggregator.releases(source, computed, now)
            await self._publish(releases)
            if changed:
                hist = self.aggregator.history.samples
                await self.history.save({c: hist[c] for c in changed})
            self.aggregator.emitted_ok(source, releases, now)
            for feed, recs in releases.items():
                published[feed] = published.get(feed, 0) + len(recs)
                metrics.RECORDS.labels(self.name, feed, "published").inc(len(recs))
        return published

    async def _take_over(self, source: str) -> None:
        """Adopt what the previous owner published and its scenic history, so nothing restarts from zero."""
        for feed in AGGREGATES_OF[source]:
            snapshot = await self.store.load(self.store.naming.state_key("operator", feed))
            previous = [decode_value(v) for v in snapshot.values()]
            self.aggregator.adopt(source, feed, (a for a in previous if source_of(feed, a) == source))
        if source == "scenic":
            for code, rows in (await self.history.load()).items():
                self.aggregator.history.merge(code, rows)
        log.info("aggregate: now publishing the aggregates of %s", source)

    async def _publish(self, releases: dict[str, list[dict[str, Any]]]) -> None:
        out = StageOutputs()
        for feed, recs in releases.items():
            fanout = self.fanouts[feed]
            for tier, release in fanout.release(recs).items():
                out.tier(tier, feed, release, fanout.fanouts[tier], tier in self.delayed[feed])
        await out.deliver(self.config, self.producer, self.store, self.name)
