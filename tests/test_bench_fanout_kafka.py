"""The fan-out benchmarks prime a fresh prefix for every run; what a run made must be gone after it, or a
ramp's dozens of runs pile up topics and Redis state on the developer's stack (900 topics once)."""

from __future__ import annotations

import asyncio

import pytest
import redis

import settings
from bench.fanout.run import primed
from kafka_admin import topics_under

pytestmark = pytest.mark.stack


def test_a_primed_fleet_leaves_no_topic_or_key_behind(running_stack: settings.Settings) -> None:
    bootstrap, url = running_stack.kafka_bootstrap, running_stack.redis_url
    client = redis.Redis.from_url(url)
    try:
        with primed(bootstrap, url, "test-primed") as naming:
            made = asyncio.run(topics_under(bootstrap, naming.topic_prefix))
            keys = list(client.scan_iter(match=naming.redis_prefix + ":*", count=1000))
            assert naming.tier_topic("public", "bus") in made
            assert client.hlen(naming.redis_prefix + ":state:public:bus") > 1000  # the fleet is there
        assert asyncio.run(topics_under(bootstrap, naming.topic_prefix)) == []
        assert keys and list(client.scan_iter(match=naming.redis_prefix + ":*", count=1000)) == []
    finally:
        client.close()
