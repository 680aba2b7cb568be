"""A node's /healthz says when Redis is down (new snapshots and key checks wait for it) and when it is back:
on a Redis of the test's own, killed with SIGKILL and started again, next to the shared Kafka."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import settings as settings_mod
from access.setup import admin_redis_url
from shfeeds_cli import stack
from tests.conftest import _free_port
from ws_server.config import Naming, ServerConfig
from ws_server.redis_health import RedisHealth
from ws_server.testing import create_tier_topics, running_node

pytestmark = pytest.mark.stack


def test_the_state_changes_once_per_outage_and_says_since_when() -> None:
    health = RedisHealth()
    health.observe(True, 1_000)
    assert health.to_json() == {"state": "up", "since_ms": 1_000, "outages": 0}
    health.observe(False, 2_000, "ConnectionError: refused")
    health.observe(False, 3_000, "ConnectionError: refused")
    assert health.to_json() == {"state": "down", "since_ms": 2_000, "outages": 1, "error": "ConnectionError: refused"}
    health.observe(True, 4_000)
    assert health.to_json() == {"state": "up", "since_ms": 4_000, "outages": 1}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[stack.RedisService]:
    service = stack.RedisService(settings_mod.Settings(stack_dir=tmp_path / "stack", redis_port=_free_port()))
    service.start()
    service.wait_ready()
    try:
        yield service
    finally:
        service.stop()


async def _health(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    answer: dict[str, Any] = orjson.loads(data.split(b"\r\n\r\n", 1)[1])
    return answer


async def _until(port: int, state: str, timeout_s: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await _health(port)
        if answer["state"] == state or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.2)


async def test_healthz_says_degraded_while_redis_is_down_and_ok_once_it_is_back(
    kafka_bootstrap: str, own_redis: stack.RedisService, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("wsredis")
    naming = Naming(prefix + ".", prefix)
    await create_tier_topics(kafka_bootstrap, naming, [("public", "bus")])
    redis_url = admin_redis_url(own_redis.settings)  # this Redis refuses anonymous use, as every stack's
    config = ServerConfig(port=0, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, naming=naming)
    async with running_node(config) as node:
        up = await _until(node.port, "ok")
        assert up["redis"]["state"] == "up"
        os.kill(int(own_redis.pid_file.read_text()), signal.SIGKILL)
        down = await _until(node.port, "degraded")
        assert down["state"] == "degraded" and down["redis"]["state"] == "down" and down["redis"]["error"]
        await asyncio.to_thread(own_redis.start)
        await asyncio.to_thread(own_redis.wait_ready)
        back = await _until(node.port, "ok")
        assert back["redis"] == {"state": "up", "since_ms": back["redis"]["since_ms"], "outages": 1}
        assert back["redis"]["since_ms"] > down["redis"]["since_ms"]
