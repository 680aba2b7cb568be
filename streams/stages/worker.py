"""A stream worker: every stage of the pipeline in one process, sharing one producer and Redis client.

Stages (each its own consumer group ``<app_id>-<stage>``, so workers scale by partitions):
``clean`` (raw → clean, dead letters, undelayed tiers), one ``delay-<tier>`` per tier that delays some
feed, and the ``aggregate`` publisher (the aggregate feeds, see ``streams/stages/aggregate.py``). Run several workers
with the same app id to share the partitions; kill one and the others take over from the last committed
offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer, TopicPartition

from access.identity import kafka_options
from control_plane.emitter import StatsEmitter
from control_plane.stage_stats import StageStats
from kafka_admin import ensure_topics
from schemas import DELAYABLE_TIERS, TIERS, Naming
from streams.config import StreamConfig
from streams.io.batch_producer import BatchProducer
from streams.io.stage import BatchStage
from streams.io.state_store import StateStore
from streams.logic.enrichment import Enricher
from streams.logic.fanout import TierPolicy
from streams.stages.aggregate import AggregateStage, aggregate_feeds_for
from streams.stages.clean import CleanStage
from streams.stages.delay import DelayStage

log = logging.getLogger(__name__)


def load_engine(policy_path: str | None = None) -> TierPolicy:
    from streams.policy import PolicyEngine, load_policy  # type: ignore[attr-defined]

    policy = load_policy(policy_path) if policy_path else load_policy()
    engine: TierPolicy = PolicyEngine(policy)
    return engine


def tune_gc() -> None:
    """Fewer garbage-collector passes for a long-running worker. Each batch allocates tens of thousands of
    short-lived dicts and tuples, which the default thresholds answer with dozens of young collections per
    batch; the start-up objects (geometry, policy, caches) are moved out of the collector's way for good."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def worker_topics(naming: Naming, feeds: tuple[str, ...], aggregates: bool = True) -> list[str]:
    """The topics a worker for ``feeds`` writes: each feed's dead letters, and the tier and pending topics
    of the feeds and of the aggregates they make. Also the raw topics it reads, although the adapters
    write them: a consumer group subscribed to a missing topic notices it only at its next metadata
    refresh, minutes later, so a worker started before its adapters would sit idle that long."""
    out = [name for feed in feeds for name in (naming.raw_topic(feed), naming.dlq_topic(feed))]
    for feed in (*feeds, *(aggregate_feeds_for(feeds) if aggregates else ())):
        out += [naming.tier_topic(tier, feed) for tier in TIERS]
        out += [naming.pending_topic(tier, feed) for tier in DELAYABLE_TIERS]
    return out


class Pipeline:
    def __init__(
        self,
        config: StreamConfig,
        engine: TierPolicy | None = None,
        enricher: Enricher | None = None,
        aggregates: bool = True,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.config = config
        self.engine = engine if engine is not None else load_engine(config.policy_path)
        self.enricher = enricher if enricher is not None else Enricher.from_geo()
        self.aggregates = aggregates
        self.stages: list[BatchStage] = []
        self.aggregate: AggregateStage | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._producer: AIOKafkaProducer | None = None
        self._redis: aioredis.Redis | None = None
        self._ops: StatsEmitter | None = None
        self._stop_event = stop or asyncio.Event()
        self.failed = False

    async def start(self) -> None:
        cfg = self.config
        await ensure_topics(cfg.bootstrap, cfg.partitions, worker_topics(cfg.naming, cfg.feeds, self.aggregates))
        self._producer = AIOKafkaProducer(
            bootstrap_servers=cfg.bootstrap,
            **kafka_options(),
            client_id=f"{cfg.app_id}-producer",
            acks="all",
            linger_ms=cfg.producer_linger_ms,
            max_batch_size=1024 * 1024,
            max_request_size=8 * 1024 * 1024,
            request_timeout_ms=30_000,
        )
        await self._producer.start()
        self._redis = aioredis.Redis.from_url(cfg.redis_url, socket_timeout=cfg.redis_timeout_s)
        producer = BatchProducer(self._producer)
        store = StateStore(self._redis, cfg.naming, cfg.redis_timeout_s)
        clean = CleanStage(cfg, self.engine, producer, store, self.enricher, TIERS)
        self.stages.append(clean)
        agg_feeds = aggregate_feeds_for(cfg.feeds) if self.aggregates else ()
        for tier in TIERS:
            delayed = [
                f
                for f in (*cfg.feeds, *agg_feeds)
                if self.engine.delay_ms(f, tier) > 0 or self.engine.window(f, tier) is not None
            ]
            if delayed:
                self.stages.append(DelayStage(cfg, self.engine, producer, store, tier, delayed))
        if cfg.ops_stats:
            self._ops = StatsEmitter(cfg.bootstrap, cfg.topic_prefix)
            await self._ops.start()
            for stage in self.stages:
                stage.ops = StageStats(self._ops)
        for stage in self.stages:
            await stage.start()
        self._tasks = [asyncio.create_task(self._run(s), name=f"stage-{s.name}") for s in self.stages]
        if agg_feeds and cfg.aggregate_publisher:

            def leads(feed: str) -> bool:
                # The owner of partition 0 of the feed's raw topic computes its aggregates.
                return TopicPartition(cfg.naming.raw_topic(feed), 0) in clean.assigned

            self.aggregate = AggregateStage(cfg, self.engine, producer, store, leads, TIERS)
            self._tasks.append(asyncio.create_task(self._run(self.aggregate), name="stage-aggregate"))
        names = [s.name for s in self.stages] + (["aggregate"] if self.aggregate else [])
        log.info("stream worker %s started: %s", cfg.app_id, ", ".join(names))

    async def _run(self, stage: BatchStage | AggregateStage) -> None:
        try:
            await stage.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            # A stage that dies silently would stop consuming while the worker looks alive
            # (docs/design-notes.md): log it and stop the whole worker so its supervisor restarts it.
            log.exception("stage %s failed; stopping the worker", stage.name)
            self.failed = True
            self._stop_event.set()

    async def wait(self) -> None:
        await self._stop_event.wait()

    async def stop(self) -> None:
        if self.aggregate is not None:
            await self.aggregate.stop()
        for stage in self.stages:
            with contextlib.suppress(Exception):
                await stage.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._ops is not None:
            await self._ops.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._redis is not None:
            await self._redis.aclose()
        self.stages.clear()

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


async def run_worker(config: StreamConfig, stop: asyncio.Event | None = None, aggregates: bool = True) -> int:
    """Run a worker until ``stop`` is set, SIGTERM/SIGINT arrives or a stage fails; returns an exit code."""
    if config.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(config.metrics_port, addr="127.0.0.1")
    stop = stop or asyncio.Event()
    pipeline = Pipeline(config, stop=stop, aggregates=aggregates)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await pipeline.start()
    tune_gc()
    try:
        await pipeline.wait()
    finally:
        await pipeline.stop()
    return 1 if pipeline.failed else 0
