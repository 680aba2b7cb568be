"""The aggregate feeds published by the control plane's leader-only Faust timer, on the real stack.

Two control-plane workers in one group: exactly one says it publishes, and the aggregate topic keeps
receiving figures computed by the same tier policy; kill -9 that one and the other takes over.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

import settings as settings_mod
from kafka_admin import ensure_topics
from schemas import ScenicCount, raw_topic, tier_topic
from streams.logic.enrichment import Enricher
from streams.stages.worker import Pipeline, worker_topics

from .conftest import settings_env
from .streams_support import (
    TopicReader,
    bus,
    now_ms,
    produce,
    short_policy_engine,
    topic_prefix_fixture,  # noqa: F401  (the fixture, by its name)
)
from .test_control_plane_health import free_port
from .test_streams_pipeline import make_config

pytestmark = [pytest.mark.stack, pytest.mark.timeout(400)]

LEADER_LINE = b"now publishes the aggregate feeds"


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


async def test_one_leader_publishes_the_aggregates_and_another_takes_over_after_kill_9(
    kafka_bootstrap: str,
    redis_url: str,
    running_stack: settings_mod.Settings,
    topic_prefix: str,
    tmp_path: Path,
    unique_name: Callable[[str], str],
) -> None:
    config = make_config(kafka_bootstrap, redis_url, unique_name, topic_prefix, aggregate_publisher=False)
    config = dataclasses.replace(config, feeds=("bus", "scenic"))
    await ensure_topics(kafka_bootstrap, 2, worker_topics(config.naming, config.feeds))
    app_id = unique_name("cp")
    env = {**settings_env(running_stack), "SHFEEDS_TOPIC_PARTITIONS": "2"}
    workers: list[tuple[subprocess.Popen[bytes], Path]] = []
    ports = [free_port(), free_port()]
    for i in range(2):
        argv = [sys.executable, "-m", "shfeeds_cli.main", "control-plane", "--web-port", str(ports[i])]
        argv += ["--app-id", app_id, "--topic-prefix", topic_prefix, "--feeds", "bus", "--publish-aggregates"]
        argv += ["--redis-prefix", config.redis_prefix, "--data-dir", str(tmp_path / f"control-plane-{i}-data")]
        log = tmp_path / f"control-plane-{i}.log"
        workers.append((start(argv, env, log), log))
    topic = config.topic(tier_topic("operator", "agg_vehicles"))
    try:
        async with (
            Pipeline(config, engine=short_policy_engine(), enricher=Enricher.from_geo()) as pipeline,
            TopicReader(kafka_bootstrap, [topic]) as reader,
        ):
            assert pipeline.aggregate is None  # the stream worker publishes no aggregates of its own
            t0 = now_ms()
            buses = [bus(f"agg-{i}", t0 - 200, 121.4737 + i * 0.001, 31.2304) for i in range(3)]
            await produce(kafka_bootstrap, config.topic(raw_topic("bus")), buses)
            visitors = ScenicCount(id="SCN-YUYUAN", source="t", observed_at=t0, expires_at=t0 + 600_000,
                                   lng=121.4921, lat=31.2272, count=3712, capacity=5000)  # fmt: skip
            await produce(kafka_bootstrap, config.topic(raw_topic("scenic")), [visitors])
            await reader.wait_for(topic, 2, timeout_s=120)
            leaders = [i for i, (_, log) in enumerate(workers) if LEADER_LINE in log.read_bytes()]
            assert len(leaders) == 1, leaders
            async with aiohttp.ClientSession() as http:
                for _ in range(60):  # the scenic history sample lands in the Faust table
                    async with http.get(f"http://127.0.0.1:{ports[leaders[0]]}/health/aggregates") as r:
                        view = await r.json()
                    if view["scenic_history"].get("SCN-YUYUAN"):
                        break
                    await asyncio.sleep(0.5)
            assert view["publishing"] and view["scenic_history"]["SCN-YUYUAN"][0][1] == 3712
            # Keep the fleet alive and watch the aggregates keep coming after the leader is killed.
            leader, _ = workers[leaders[0]]
            os.kill(leader.pid, signal.SIGKILL)
            leader.wait(30)
            killed_at = time.monotonic()
            seen = len(reader.records[topic])
            deadline = killed_at + 90
            while True:
                assert time.monotonic() < deadline, "no aggregates after the leader was killed"
                fresh = [bus(f"agg-{i}", now_ms(), 121.4737 + i * 0.001, 31.2304) for i in range(4)]
                await produce(kafka_bootstrap, config.topic(raw_topic("bus")), fresh)
                await reader.poll()
                rows = [v for _, v, _, _, _ in reader.records[topic][seen:]]
                if any(r["id"] == "bus:route:71" and r["vehicles"] == 4 for r in rows):
                    break
                await asyncio.sleep(1.0)
            gap = time.monotonic() - killed_at
            other = workers[1 - leaders[0]][1]
            assert LEADER_LINE in other.read_bytes()
            # The new leader holds the scenic history, recovered from the table's changelog.
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{ports[1 - leaders[0]]}/health/aggregates") as r,
            ):
                view = await r.json()
            assert view["publishing"] and view["scenic_history"]["SCN-YUYUAN"][0][1] == 3712
            print(f"aggregates resumed {gap:.1f} s after the leader was killed")
            assert gap < 60
    finally:
        for proc, _ in workers:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
