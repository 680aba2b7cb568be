"""The clean stage on the real stack reports each batch to ops.stats: records in and out, duplicates,
rejects by reason, event-time lag and per-partition lag, per feed, as the control plane folds them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from access.identity import kafka_options
from control_plane.figures import decode_stats, merge, percentile_ms, split
from schemas import raw_topic
from schemas.topics import OPS_STATS
from streams.logic.enrichment import Enricher
from streams.stages.worker import Pipeline

from .streams_support import (
    bus,
    now_ms,
    produce,
    short_policy_engine,
    topic_prefix_fixture,  # noqa: F401  (the fixture, by its name)
)
from .test_streams_pipeline import make_config

pytestmark = pytest.mark.stack


async def read_stats(bootstrap: str, topic: str, until: Any, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, **kafka_options(), auto_offset_reset="earliest")
    await consumer.start()
    got: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                got += [r for m in messages for r in decode_stats(m.value or b"")]  # bundles of records
            if until(got):
                return got
        raise AssertionError(f"ops.stats did not show it within {timeout_s:.0f} s: {got[-3:]}")
    finally:
        await consumer.stop()


async def test_the_clean_stage_reports_each_batch(kafka_bootstrap, redis_url, unique_name, topic_prefix):
    config = make_config(kafka_bootstrap, redis_url, unique_name, topic_prefix)
    t0 = now_ms()
    good = [bus(f"bus-{i}", t0 - 3_000, 121.47 + i * 0.001, 31.23) for i in range(10)]
    repeated = good[:3]  # the same (entity, observed_at) again: duplicates
    garbage = [(b"bus-x", b"\x00not a record")]
    async with Pipeline(config, engine=short_policy_engine(), enricher=Enricher.from_geo(), aggregates=False):
        topic = config.topic(raw_topic("bus"))
        await produce(kafka_bootstrap, topic, good)
        await produce(kafka_bootstrap, topic, repeated)
        await produce(kafka_bootstrap, topic, garbage, raw=True)

        def seen_all(records: list[dict[str, Any]]) -> bool:
            bucket = merge(d for r in records for k, d in split(r) if k == "feed:bus")
            return int(bucket.get("in", 0)) >= 14

        stats = await read_stats(kafka_bootstrap, config.topic(OPS_STATS), seen_all)
        await asyncio.sleep(0)

    clean = [r for r in stats if r["kind"] == "stage" and r["stage"] == "clean"]
    assert clean and all(r["worker"] and r["at"] >= t0 for r in clean)
    bucket = merge(d for r in clean for k, d in split(r) if k == "feed:bus")
    assert bucket["in"] == 14 and bucket["out"] == 10 and bucket["dup"] == 3
    assert sum(bucket["rej"].values()) == 1
    p50 = percentile_ms(bucket["lag"], 0.5)
    assert p50 is not None and 2_000 <= p50 <= 60_000  # observed three seconds before the test produced it
    assert bucket["active"] and max(bucket["active"].values()) >= 1
    assert all(tp.startswith(topic) for tp in bucket.get("partitions", {}))
