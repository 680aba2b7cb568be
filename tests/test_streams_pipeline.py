"""The stream pipeline on the real Kafka and Redis: raw.bus → every tier topic and the Redis snapshots.

Each test runs its own pipeline with a unique topic prefix, app id and Redis prefix, so it sees only its
own records (the prefix setting exists for exactly this isolation).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from kafka_admin import ensure_topics
from schemas import TIERS, StopArrival, raw_topic, to_dict
from streams.config import StreamConfig
from streams.logic.enrichment import Enricher
from streams.stages.worker import Pipeline, worker_topics

from .streams_support import (
    TopicReader,
    bus,
    decode_snapshot,
    now_ms,
    produce,
    short_policy_engine,
    topic_prefix_fixture,  # noqa: F401  (the fixture, by its name)
)

pytestmark = pytest.mark.stack


def make_config(kafka_bootstrap: str, redis_url: str, unique_name: Any, prefix: str, **kw: Any) -> StreamConfig:
    return StreamConfig(
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        partitions=2,
        app_id=unique_name("app"),
        topic_prefix=prefix,
        redis_prefix=unique_name("r"),
        poll_timeout_ms=50,
        stale_scan_interval_s=0.2,
        **{"feeds": ("bus",), **kw},
    )


async def test_bus_records_reach_every_tier_and_redis(kafka_bootstrap, redis_url, unique_name, topic_prefix):
    config = make_config(kafka_bootstrap, redis_url, unique_name, topic_prefix)
    engine = short_policy_engine()
    t0 = now_ms()
    records = [
        bus(f"bus-{i}", t0 - 500 + j * 100, 121.47 + i * 0.001 + j * 0.0001, 31.23) for i in range(5) for j in range(4)
    ]
    tier_topics = [config.naming.tier_topic(t, "bus") for t in TIERS]
    async with Pipeline(config, engine=engine, enricher=Enricher.from_geo(), aggregates=False):
        await produce(kafka_bootstrap, config.topic(raw_topic("bus")), records)
        async with TopicReader(kafka_bootstrap, tier_topics) as reader:
            for topic in tier_topics:
                await reader.wait_for(topic, len(records), timeout_s=20)
            public = reader.records[config.naming.tier_topic("public", "bus")]
            operator = reader.records[config.naming.tier_topic("operator", "bus")]
        redis = aioredis.Redis.from_url(redis_url)
        try:
            snapshot = await redis.hgetall(f"{config.redis_prefix}:state:public:bus")
            offsets = await redis.hgetall(f"{config.redis_prefix}:state:public:bus:offsets")
        finally:
            await redis.aclose()

    assert len(operator) == len(records)
    assert len(public) == len(records)
    # Public records are released only once their event time is four seconds old (the test policy's delay),
    # blurred as the real policy says: no plate, no speed, a pseudonymous id.
    version = engine.policy_version
    for key, value, ts, headers, received in public:
        assert received >= ts + 4000
        assert headers["crs"] == b"gcj02" and headers["policy_version"] == version.encode()
        assert value["policy_version"] == version and "plate" not in value and "speed_kmh" not in value
        assert not key.startswith(b"bus-") and value["bearing"] % 45 == 0
    # The operator tier keeps the plate; enrichment adds the district.
    assert all("plate" in v and v.get("district") for _, v, _, _, _ in operator)
    # Per-entity order on every tier.
    for rows in (public, operator):
        per_entity: dict[bytes, list[int]] = {}
        for key, value, _, _, _ in rows:
            per_entity.setdefault(key, []).append(value["observed_at"])
        assert len(per_entity) == 5
        assert all(seq == sorted(seq) for seq in per_entity.values())
    # The Redis snapshot holds the newest public view of each bus, and offsets to resume from.
    assert len(snapshot) == 5
    views = decode_snapshot(snapshot.values())
    latest = {v["label"]: v["observed_at"] for v in views}
    assert latest["B-us-3"] == t0 - 500 + 300
    assert sum(int(v) for v in offsets.values()) == len(records)


async def test_duplicates_and_bad_records_are_dropped(kafka_bootstrap, redis_url, unique_name, topic_prefix):
    config = make_config(kafka_bootstrap, redis_url, unique_name, topic_prefix)
    t0 = now_ms()
    good = [bus("dup-1", t0, seq=1), bus("dup-1", t0, seq=1), bus("dup-1", t0 + 1000, seq=2)]
    far = bus("far-1", t0, lng=116.40, lat=39.90)  # Beijing: not a Shanghai bus
    topic = config.topic(raw_topic("bus"))
    dlq = config.topic("dlq.bus")
    op_topic = config.naming.tier_topic("operator", "bus")
    async with Pipeline(config, engine=short_policy_engine(), enricher=Enricher({}), aggregates=False):
        await produce(kafka_bootstrap, topic, [*good, far])
        await produce(kafka_bootstrap, topic, [(b"junk", b"\x93not a record")], raw=True)
        async with TopicReader(kafka_bootstrap, [op_topic, dlq]) as reader:
            await reader.wait_for(dlq, 2, timeout_s=20)
            await reader.wait_for(op_topic, 2, timeout_s=10)
            await asyncio.sleep(1.0)
            await reader.poll()
    released = [v["observed_at"] for _, v, _, _, _ in reader.records[op_topic]]
    assert released == [t0, t0 + 1000]
    reasons = sorted(v["reason"] for _, v, _, _, _ in reader.records[dlq])
    assert any("outside Shanghai" in r for r in reasons)
    assert len(reasons) == 2


async def test_stale_marker_after_expiry(kafka_bootstrap, redis_url, unique_name, topic_prefix):
    config = make_config(kafka_bootstrap, redis_url, unique_name, topic_prefix)
    t0 = now_ms()
    op_topic = config.naming.tier_topic("operator", "bus")
    async with Pipeline(config, engine=short_policy_engine(), enricher=Enricher({}), aggregates=False):
        await produce(kafka_bootstrap, config.topic(raw_topic("bus")), [bus("stale-1", t0, expires_in_ms=1500)])
        async with TopicReader(kafka_bootstrap, [op_topic]) as reader:
            values = await reader.wait_for(op_topic, 2, timeout_s=15)
    assert [v.get("state") for v in values] == [None, "stale"]
    assert now_ms() >= t0 + 1500


def arrival(entity: str, observed_at: int, expires_in_ms: int) -> StopArrival:
    return StopArrival(
        id=entity,
        source="test",
        observed_at=observed_at,
        expires_at=observed_at + expires_in_ms,
        trip_id="71-0-0800",
        stop_id="71-0-" + entity[-2:],
        arrival_at=observed_at + 300_000,
        label="B-0042",
        vehicle_id="veh-0042",
    )


async def test_a_passed_stops_prediction_is_removed_from_every_tier_and_snapshot(
    kafka_bootstrap, redis_url, unique_name, topic_prefix
):
    # A prediction for a stop the bus has passed never comes back: at expiry it must leave every tier (a
    # removal marker, after each tier's delay) and every Redis hash, not linger there as stale for ever.
    config = make_config(kafka_bootstrap, redis_url, unique_name, topic_prefix, feeds=("arrivals",))
    t0 = now_ms()
    passed, ahead = arrival("run-1/12", t0, expires_in_ms=1500), arrival("run-1/13", t0, expires_in_ms=120_000)
    topics = {tier: config.naming.tier_topic(tier, "arrivals") for tier in TIERS}
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with Pipeline(config, engine=short_policy_engine(), enricher=Enricher({}), aggregates=False):
            await produce(kafka_bootstrap, config.topic(raw_topic("arrivals")), [passed, ahead])
            async with TopicReader(kafka_bootstrap, list(topics.values())) as reader:
                for topic in topics.values():
                    await reader.wait_for(topic, 3, timeout_s=20)
                await asyncio.sleep(0.5)  # the snapshot is written after the records are produced
                await reader.poll()
            snapshots = {tier: await redis.hgetall(config.naming.state_key(tier, "arrivals")) for tier in TIERS}
            recovery = await redis.hgetall(config.naming.last_key("arrivals"))
    finally:
        await redis.aclose()
    for tier, topic in topics.items():
        states = [(v["stop_id"], v.get("state")) for _, v, _, _, _ in reader.records[topic]]
        assert states[-1] == ("71-0-12", "removed"), tier
        assert sorted(states[:2]) == [("71-0-12", None), ("71-0-13", None)], tier
        assert len(states) == 3, f"{tier}: the passed stop is removed once, the one ahead stays"
        assert [decode_snapshot([v])[0]["stop_id"] for v in snapshots[tier].values()] == ["71-0-13"], tier
    assert set(recovery) == {b"run-1/13"}


async def test_an_arrival_an_earlier_version_kept_as_stale_is_removed_on_recovery(
    kafka_bootstrap, redis_url, unique_name, topic_prefix
):
    # Before ended entities were removed, an expired arrival stayed in the recovery state as stale; a worker
    # that recovers one must remove it, or it would be held for ever.
    from streams.logic.fanout import encode_value

    config = make_config(kafka_bootstrap, redis_url, unique_name, topic_prefix, feeds=("arrivals",))
    old = {**to_dict(arrival("run-0/07", now_ms() - 600_000, expires_in_ms=120_000)), "state": "stale"}
    op_topic = config.naming.tier_topic("operator", "arrivals")
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await redis.hset(config.naming.last_key("arrivals"), "run-0/07", encode_value(old))
        async with Pipeline(config, engine=short_policy_engine(), enricher=Enricher({}), aggregates=False):
            async with TopicReader(kafka_bootstrap, [op_topic]) as reader:
                values = await reader.wait_for(op_topic, 1, timeout_s=20)
                await asyncio.sleep(0.5)  # the recovery state is written after the records are produced
            recovery = await redis.hgetall(config.naming.last_key("arrivals"))
    finally:
        await redis.aclose()
    assert [(v["id"], v.get("state")) for v in values] == [("run-0/07", "removed")]
    assert recovery == {}


async def test_a_refresh_of_the_same_state_keeps_the_entity_from_going_stale(
    kafka_bootstrap, redis_url, unique_name, topic_prefix
):
    # A state whose last change is old but which each poll vouches for again: observed_at stays, expires_at
    # moves on. Downstream it must count as current until the later expiry, and only then go stale.
    config = make_config(kafka_bootstrap, redis_url, unique_name, topic_prefix)
    t0 = now_ms()
    op_topic = config.naming.tier_topic("operator", "bus")
    raw = config.topic(raw_topic("bus"))
    async with Pipeline(config, engine=short_policy_engine(), enricher=Enricher({}), aggregates=False):
        await produce(kafka_bootstrap, raw, [bus("held-1", t0, expires_in_ms=2000)])
        await asyncio.sleep(0.8)
        await produce(kafka_bootstrap, raw, [bus("held-1", t0, expires_in_ms=5000)])
        async with TopicReader(kafka_bootstrap, [op_topic]) as reader:
            values = await reader.wait_for(op_topic, 3, timeout_s=20)
            stale_seen_at = reader.records[op_topic][-1][4] if len(values) >= 3 else None
    assert [v.get("state") for v in values] == [None, None, "stale"]
    assert [v["expires_at"] for v in values[:2]] == [t0 + 2000, t0 + 5000]
    assert stale_seen_at is not None and stale_seen_at >= t0 + 5000


async def test_stop_while_a_poll_is_out_loses_nothing(kafka_bootstrap, redis_url, unique_name, topic_prefix):
    # A worker asked to stop while its poll is out gets that batch back after its consumer has closed. It
    # must end cleanly (not fail the worker) and leave the batch uncommitted, so the next owner delivers it.
    config = make_config(kafka_bootstrap, redis_url, unique_name, topic_prefix)
    t0 = now_ms()
    records = [bus(f"poll-{i}", t0 + i) for i in range(6)]
    public_topic = config.naming.tier_topic("public", "bus")
    await ensure_topics(kafka_bootstrap, 2, worker_topics(config.naming, ("bus",), aggregates=False))
    await produce(kafka_bootstrap, config.topic(raw_topic("bus")), records)
    first = Pipeline(config, engine=short_policy_engine(), enricher=Enricher({}), aggregates=False)
    await first.start()
    delay = next(s for s in first.stages if s.name == "delay-public")
    assert delay.consumer is not None
    consumer = delay.consumer
    real_getmany = consumer.getmany
    stopped_mid_poll = asyncio.Event()

    async def getmany_then_stop(*args: Any, **kwargs: Any) -> Any:
        batch = await real_getmany(*args, **kwargs)
        if batch and not stopped_mid_poll.is_set():
            await delay.stop()
            stopped_mid_poll.set()
        return batch

    consumer.getmany = getmany_then_stop  # type: ignore[method-assign]
    try:
        await asyncio.wait_for(stopped_mid_poll.wait(), timeout=20)
        await asyncio.sleep(0.5)
        assert not first.failed
    finally:
        await first.stop()
    second = Pipeline(config, engine=short_policy_engine(), enricher=Enricher({}), aggregates=False)
    async with second, TopicReader(kafka_bootstrap, [public_topic]) as reader:
        values = await reader.wait_for(public_topic, len(records), timeout_s=20)
    # Public ids are pseudonyms: count the distinct buses.
    assert len({v["id"] for v in values}) == len(records)
