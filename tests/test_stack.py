"""The project's own local stack: real Kafka and Redis processes it starts, finds and reports."""

from __future__ import annotations

import subprocess
import sys

import settings as settings_mod
from access.identity import kafka_options
from shfeeds_cli import stack


def test_stack_up_is_idempotent_and_status_reports_both(running_stack: settings_mod.Settings) -> None:
    before = {s.name: s.pid for s in stack.status(running_stack)}
    result = subprocess.run(
        [sys.executable, "-m", "shfeeds_cli.main", "stack", "up"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout
    after = {s.name: s.pid for s in stack.status(running_stack)}
    assert before == after  # a second `up` started nothing new

    status = subprocess.run(
        [sys.executable, "-m", "shfeeds_cli.main", "stack", "status"], capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0
    assert f"127.0.0.1:{running_stack.kafka_port}" in status.stdout
    assert f"127.0.0.1:{running_stack.redis_port}" in status.stdout
    assert status.stdout.count("running (pid") == 2


def test_every_service_topic_exists_with_the_configured_partitions(kafka_bootstrap: str) -> None:
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    from schemas import all_topics

    async def partitions() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, **kafka_options())
        await admin.start()
        try:
            meta = await admin.describe_topics(all_topics())
        finally:
            await admin.close()
        return {t["topic"]: len(t["partitions"]) for t in meta if t["error_code"] == 0}

    counts = asyncio.run(partitions())
    assert set(counts) == set(all_topics())
    assert min(counts.values()) >= settings_mod.load().topic_partitions


def test_redis_is_the_real_server(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    info = client.info("server")
    assert info["redis_version"]
    assert client.ping()


def test_a_taken_port_is_reported_not_hijacked(tmp_path) -> None:
    # A Redis service pointed at Kafka's port must refuse to start instead of clashing.
    running = settings_mod.load()
    other = settings_mod.Settings(stack_dir=tmp_path, redis_port=running.kafka_port)
    service = stack.RedisService(other)
    try:
        service.start()
    except stack.StackError as err:
        assert "is taken" in str(err)
    else:  # pragma: no cover - only on failure
        service.stop()
        raise AssertionError("started on a taken port")
