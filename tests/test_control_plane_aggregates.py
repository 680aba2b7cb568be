"""The aggregate feeds published by the control plane's leader-only Faust timer, on the real stack.

Two control-plane workers in one group: exactly one publishes (the other has published nothing), and
the aggregate topic keeps receiving figures computed by the same tier policy; kill -9 that one inside an
interval and the other takes over with no interval missed, holding the scenic history.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
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
    interval_s = 5.0  # the aggregates' interval (streams/config.py)

    async def views(http: aiohttp.ClientSession, which: list[int]) -> list[dict[str, Any]]:
        out = []
        for i in which:
            async with http.get(f"http://127.0.0.1:{ports[i]}/health/aggregates") as r:
                out.append(await r.json())
        return out

    async def feed_buses(stop: asyncio.Event) -> None:
        """A new route every second, so every publication carries a changed aggregate the reader sees."""
        k = 0
        while not stop.is_set():
            fresh = msgspec.structs.replace(bus(f"agg-feed-{k}", now_ms(), 121.4737, 31.2304), route_id=f"r{k}")
            await produce(kafka_bootstrap, config.topic(raw_topic("bus")), [fresh])
            k += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    def publications(reader: TopicReader) -> list[float]:
        """Times (s) the aggregates were published: a tick's records land within a second of each other."""
        times: list[float] = []
        for _, _, ts, _, _ in reader.records[topic]:
            if not times or ts / 1000 - times[-1] > 1.0:
                times.append(ts / 1000)
        return times

    stop = asyncio.Event()
    try:
        async with (
            Pipeline(config, engine=short_policy_engine(), enricher=Enricher.from_geo()) as pipeline,
            TopicReader(kafka_bootstrap, [topic]) as reader,
            aiohttp.ClientSession() as http,
        ):
            assert pipeline.aggregate is None  # the stream worker publishes no aggregates of its own
            t0 = now_ms()
            visitors = ScenicCount(id="SCN-YUYUAN", source="t", observed_at=t0, expires_at=t0 + 600_000,
                                   lng=121.4921, lat=31.2272, count=3712, capacity=5000)  # fmt: skip
            await produce(kafka_bootstrap, config.topic(raw_topic("scenic")), [visitors])
            feeder = asyncio.create_task(feed_buses(stop))
            deadline = time.monotonic() + 150
            while len(publications(reader)) < 3:  # both workers up, one publishing at its cadence
                assert time.monotonic() < deadline, "no aggregates published"
                await reader.poll()
                await asyncio.sleep(0.5)
            both = await views(http, [0, 1])
            leaders = [i for i, (_, log) in enumerate(workers) if LEADER_LINE in log.read_bytes()]
            assert len(leaders) == 1, leaders
            leader_i = leaders[0]
            # Exactly one publishes: the other has published nothing.
            assert [v["publishing"] for v in both] == [i == leader_i for i in range(2)], both
            assert both[leader_i]["publications"] >= 3 and both[1 - leader_i]["publications"] == 0, both
            for _ in range(60):  # the scenic history sample lands in the Faust table
                (view,) = await views(http, [leader_i])
                if view["scenic_history"].get("SCN-YUYUAN"):
                    break
                await asyncio.sleep(0.5)
            assert view["scenic_history"]["SCN-YUYUAN"][0][1] == 3712
            await asyncio.sleep(interval_s * 0.4)  # kill somewhere inside an interval, not at its start
            leader, _ = workers[leader_i]
            os.kill(leader.pid, signal.SIGKILL)
            leader.wait(30)
            killed_at = time.time()
            while len([t for t in publications(reader) if t > killed_at]) < 3:
                assert time.time() < killed_at + 90, "no aggregates after the leader was killed"
                await reader.poll()
                await asyncio.sleep(0.5)
            stop.set()
            await feeder
            times = publications(reader)
            gaps = [b - a for a, b in itertools.pairwise(times)]
            around = [b - a for a, b in itertools.pairwise(times) if a <= killed_at < b]
            survivor = workers[1 - leader_i][1]
            assert LEADER_LINE in survivor.read_bytes()
            # The survivor holds the scenic history, recovered from the table's changelog.
            (view,) = await views(http, [1 - leader_i])
            assert view["publishing"] and view["publications"] >= 3
            assert view["scenic_history"]["SCN-YUYUAN"][0][1] == 3712
            print(f"publications every {[round(g, 1) for g in gaps]} s; across the kill {around[0]:.1f} s")
            # No interval missed: the gap across the kill is at most one interval beyond the cadence.
            assert around[0] <= 2 * interval_s, around
    finally:
        stop.set()
        for proc, _ in workers:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
