"""A streams worker (``shfeeds streams worker``, a real process) whose Redis is killed with SIGKILL under
load and started again: it waits Redis out instead of exiting, and every record reaches the operator tier
and the snapshot. On a Redis of the test's own next to the shared Kafka."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

import settings as settings_mod
from access.setup import admin_redis_url
from kafka_admin import ensure_topics
from schemas import Naming, raw_topic
from shfeeds_cli import stack
from streams.stages.worker import worker_topics

from .conftest import _free_port
from .streams_support import (
    TopicReader,
    bus,
    now_ms,
    produce,
    topic_prefix_fixture,  # noqa: F401  (the fixture, by its name)
    write_short_policy,
)

pytestmark = pytest.mark.stack

ENTITIES = [f"rds-{i:04d}" for i in range(6)]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[stack.RedisService]:
    service = stack.RedisService(settings_mod.Settings(stack_dir=tmp_path / "stack", redis_port=_free_port()))
    service.start()
    service.wait_ready()
    try:
        yield service
    finally:
        service.stop()


async def _round(bootstrap: str, topic: str, k: int) -> set[tuple[str, int]]:
    t = now_ms()
    await produce(bootstrap, topic, [bus(e, t, lng=121.47 + k * 0.0001, lat=31.23, seq=k) for e in ENTITIES])
    return {("B-" + e[-4:], t) for e in ENTITIES}


async def _until_all(reader: TopicReader, topic: str, expected: set[tuple[str, int]]) -> list[tuple[str, int]]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = [(v["label"], v["observed_at"]) for v in await reader.wait_for(topic, 0, 0)]
        if expected <= set(got):
            return got
        await reader.poll()
    raise AssertionError(f"{len(expected - set(got))} of {len(expected)} records never reached {topic}")


async def test_a_worker_waits_out_a_redis_outage_and_loses_nothing(
    kafka_bootstrap: str,
    topic_prefix: str,
    unique_name: Callable[[str], str],
    own_redis: stack.RedisService,
    tmp_path: Path,
) -> None:
    prefix, redis_prefix = topic_prefix, unique_name("r")
    await ensure_topics(kafka_bootstrap, 4, worker_topics(Naming(prefix), ("bus",), aggregates=False))
    raw = prefix + raw_topic("bus")
    operator = Naming(prefix).tier_topic("operator", "bus")
    redis_url = admin_redis_url(own_redis.settings)  # this Redis refuses anonymous use, as every stack's
    env = {**os.environ, "SHFEEDS_POLICY_PATH": str(write_short_policy(tmp_path)), "SHFEEDS_REDIS_URL": redis_url}
    env["SHFEEDS_TOPIC_PARTITIONS"] = "4"
    args = ["--topic-prefix", prefix, "--app-id", unique_name("app"), "--redis-prefix", redis_prefix]
    worker = subprocess.Popen(
        [sys.executable, "-m", "shfeeds_cli.main", "streams", "worker", *args, "--no-aggregates"],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        async with TopicReader(kafka_bootstrap, [operator]) as reader:
            expected = await _round(kafka_bootstrap, raw, 0)
            await _until_all(reader, operator, expected)
            os.kill(int(own_redis.pid_file.read_text()), signal.SIGKILL)
            expected |= await _round(kafka_bootstrap, raw, 1)  # its delivery to Redis fails and is retried
            await asyncio.sleep(4)
            assert worker.poll() is None, "the worker exited when Redis went away"
            await asyncio.to_thread(own_redis.start)
            await asyncio.to_thread(own_redis.wait_ready)
            expected |= await _round(kafka_bootstrap, raw, 2)
            got = await _until_all(reader, operator, expected)
            await asyncio.sleep(1)
            await reader.poll()
            got = [(v["label"], v["observed_at"]) for v in await reader.wait_for(operator, 0, 0)]
        assert worker.poll() is None
        # Retrying the Redis write did not produce the batch to Kafka again.
        assert sorted(got) == sorted(expected), "records repeated in the tier topic"
        client = aioredis.Redis.from_url(redis_url)
        try:
            state = await client.hgetall(f"{redis_prefix}:state:operator:bus")
        finally:
            await client.aclose()
        assert len(state) == len(ENTITIES)  # the snapshot caught up once Redis was back
    finally:
        worker.kill()
        worker.wait()
