"""The aggregate feeds (``agg_*``) published by the control plane: a Faust timer on every worker, and
only the holder of the publishing lease (``control_plane/lease.py``) publishes.

With several control-plane workers exactly one publishes: the Faust group's leader takes the lease
first; when the holder dies, a standby takes the lease within seconds (before Kafka's group even notices
the dead member) and publishes, continuing the cadence from the last publication's time kept in Redis.
This replaces the stream worker's "owner of partition 0 of the clean group" election (the worker runs with
``--aggregates-on-control-plane``). The figures are computed as before by ``streams/stages/aggregate.py``
from the latest clean state in Redis, and released through the same tier policy engine; the scenic
history used for trends lives in the Faust table ``scenic_history`` (changelog-backed) instead of a
Redis hash.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

import faust
from faust.web import Request, Response, View
from redis.exceptions import RedisError

from access.identity import kafka_options
from schemas import TIERS, now_ms
from streams.config import StreamConfig

from .lease import RedisLease, due

log = logging.getLogger("shfeeds.control_plane.aggregates")


class TableHistory:
    """The scenic history in a Faust table (code → [[t, count], ...]); written from a timer, so the table
    uses the partitioner rather than the current event's partition."""

    def __init__(self, table: Any) -> None:
        self.table = table

    async def load(self) -> dict[str, list[tuple[int, int]]]:
        return {code: [(int(t), int(c)) for t, c in rows] for code, rows in self.table.items() if rows}

    async def save(self, changed: dict[str, list[tuple[int, int]]]) -> None:
        for code, rows in changed.items():
            self.table[code] = [[t, c] for t, c in rows]


LEASE_CHECK_S = 0.5
LEASE_TTL_S = 2.5


def attach_aggregate_publisher(app: faust.App, config: StreamConfig, schema: Any) -> None:
    from aiokafka import AIOKafkaProducer
    from redis import asyncio as aioredis

    from streams.io.batch_producer import BatchProducer
    from streams.io.state_store import StateStore
    from streams.stages.aggregate import AggregateStage
    from streams.stages.worker import load_engine

    history_table = app.Table("scenic_history", default=list, schema=schema, partitions=1, use_partitioner=True)
    parts: dict[str, Any] = {}
    last_tick = [0.0]
    ticks = [0]  # publications by this worker

    async def stage() -> AggregateStage:
        if "stage" not in parts:
            producer = AIOKafkaProducer(
                bootstrap_servers=config.bootstrap, client_id=f"{config.app_id}-aggregates", acks="all",
                linger_ms=config.producer_linger_ms, **kafka_options(),
            )  # fmt: skip
            await producer.start()
            redis = aioredis.Redis.from_url(config.redis_url, socket_timeout=config.redis_timeout_s)
            store = StateStore(redis, config.naming, config.redis_timeout_s)
            parts.update(producer=producer, redis=redis)
            parts["stage"] = AggregateStage(
                config, load_engine(config.policy_path), BatchProducer(producer), store, lambda feed: True, TIERS,
                history=TableHistory(history_table),
            )  # fmt: skip
        stage: AggregateStage = parts["stage"]
        return stage

    me = f"{socket.gethostname()}:{os.getpid()}"
    lease_key, published_key = config.naming.lease_key("aggregates"), config.naming.published_key("aggregates")
    interval_ms = int(config.aggregate_interval_s * 1000)

    @app.timer(LEASE_CHECK_S)
    async def publish_aggregates() -> None:
        """Every worker checks the lease; its holder publishes once per interval (by whichever worker)."""
        publisher = await stage()
        redis = parts["redis"]
        lease: RedisLease = parts.setdefault("lease", RedisLease(redis, lease_key, me, LEASE_TTL_S))
        was_held = lease.held
        try:
            if not await lease.check(app.is_leader()):
                if was_held:
                    log.warning("control plane: this worker lost the publishing lease; another publishes")
                return
            if not was_held:
                # Holder again after a while (or for the first time): adopt what was published meanwhile.
                publisher.leading = set()
                log.warning("control plane: this worker is the leader and now publishes the aggregate feeds")
            published = await redis.get(published_key)
            now = now_ms()
            if not due(now, int(published) if published else None, interval_ms):
                return
            await publisher.tick()
            await redis.set(published_key, str(now))
            last_tick[0] = time.monotonic()
            ticks[0] += 1
        except (OSError, TimeoutError, ConnectionError, RedisError) as err:
            log.warning("aggregates: tick failed (%s); the next check retries", err)

    @app.page("/health/aggregates")
    async def aggregates_view(self: View, request: Request) -> Response:
        """Whether this worker publishes (it is the leader) and the scenic history it holds."""
        return self.json(
            {
                "publishing": bool(parts.get("lease") and parts["lease"].held),
                "faust_leader": app.is_leader(),
                "publications": ticks[0],
                "last_tick_s_ago": round(time.monotonic() - last_tick[0], 1) if last_tick[0] else None,
                "scenic_history": {k: v for k, v in history_table.items() if v},
            }
        )

    @app.service
    class Closer(faust.Service):
        async def on_stop(self) -> None:
            if "producer" in parts:
                if "lease" in parts and parts["lease"].held:
                    await parts["lease"].release()  # a standby takes over on its next check
                await parts["producer"].stop()
                await parts["redis"].aclose()
