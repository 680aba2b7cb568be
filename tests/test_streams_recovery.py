"""Workers as real processes (``shfeeds streams worker``): kill -9 and restart, and a rebalance mid-stream.

The policy is the project's file with the delays shortened (registered 2 s, public 4 s, no throttles) so
the delayed tiers can be checked within seconds. Each test isolates itself with a unique topic prefix, app
id and Redis prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from kafka_admin import ensure_topics
from schemas import Naming, raw_topic
from streams.stages.worker import worker_topics

from .streams_support import (
    TopicReader,
    bus,
    decode_snapshot,
    now_ms,
    produce,
    topic_prefix_fixture,  # noqa: F401  (the fixture, by its name)
    write_short_policy,
)

pytestmark = pytest.mark.stack

PUBLIC_DELAY_MS = 4000


class Workers:
    def __init__(self, tmp_path: Path, prefix: str, app_id: str, redis_prefix: str) -> None:
        self.env = {
            **os.environ,
            "SHFEEDS_POLICY_PATH": str(write_short_policy(tmp_path)),
            "SHFEEDS_TOPIC_PARTITIONS": "4",
        }
        self.args = [
            "--topic-prefix",
            prefix,
            "--app-id",
            app_id,
            "--redis-prefix",
            redis_prefix,
            "--no-aggregates",
            "--log-level",
            "WARNING",
        ]
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "shfeeds_cli.main", "streams", "worker", *self.args]
        proc = subprocess.Popen(cmd, env=self.env, cwd=Path(__file__).resolve().parent.parent)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


async def stream(
    bootstrap: str, topic: str, entities: list[str], start: int, count: int, interval_s: float = 0.05
) -> list[tuple[str, int]]:
    """Send ``count`` rounds of one update per entity, each twice (a duplicate the pipeline must drop)."""
    sent = []
    for k in range(start, start + count):
        t = now_ms()
        recs = [bus(e, t, lng=121.47 + k * 0.0001, lat=31.23, seq=k) for e in entities]
        await produce(bootstrap, topic, recs + recs)
        sent += [(e, t) for e in entities]
        await asyncio.sleep(interval_s)
    return sent


def check_tier(rows: list[Any], expected: set[tuple[str, int]], delay_ms: int) -> None:
    seen: dict[str, list[int]] = {}
    for _key, value, ts, _headers, received in rows:
        assert received >= ts + delay_ms, "released before its delay"
        seen.setdefault(value["label"], []).append(value["observed_at"])
    got = {(label, t) for label, times in seen.items() for t in times}
    labels = {e: "B-" + e[-4:] for e, _ in expected}
    assert got == {(labels[e], t) for e, t in expected}, "lost or unexpected records"
    for times in seen.values():
        firsts = list(dict.fromkeys(times))
        assert firsts == sorted(firsts), "per-entity order broken"
    # Replays after a crash may repeat a batch at most; the duplicates sent on purpose never pass.
    assert len(rows) <= len(expected) * 1.5


@pytest.fixture
def names(unique_name: Any, topic_prefix: str) -> tuple[str, str, str]:
    return topic_prefix, unique_name("app"), unique_name("r")


class Reader:
    """Reads the operator and public tiers in the background, so receive times show release times."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.topics = {t: Naming(prefix).tier_topic(t, "bus") for t in ("operator", "public")}
        self.reader = TopicReader(bootstrap, list(self.topics.values()))
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Reader:
        await self.reader.__aenter__()
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            await self.reader.poll()

    async def finish(self, expected: int) -> dict[str, list[Any]]:
        for _ in range(400):
            if all(len(self.reader.records[t]) >= expected for t in self.topics.values()):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        return {t: list(self.reader.records[topic]) for t, topic in self.topics.items()}

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.reader.__aexit__()


async def test_kill_9_then_restart_loses_nothing(kafka_bootstrap, redis_url, names, tmp_path):
    prefix, app_id, redis_prefix = names
    await ensure_topics(kafka_bootstrap, 4, worker_topics(Naming(prefix), ("bus",), aggregates=False))
    raw = prefix + raw_topic("bus")
    entities = [f"kill-{i:04d}" for i in range(8)]
    workers = Workers(tmp_path, prefix, app_id, redis_prefix)
    try:
        async with Reader(kafka_bootstrap, prefix) as reader:
            first = workers.start()
            sent = await stream(kafka_bootstrap, raw, entities, 0, 40)
            first.send_signal(signal.SIGKILL)
            first.wait()
            sent += await stream(kafka_bootstrap, raw, entities, 40, 20)
            workers.start()
            sent += await stream(kafka_bootstrap, raw, entities, 60, 20)
            rows = await reader.finish(len(sent))
    finally:
        workers.close()
    expected = set(sent)
    check_tier(rows["operator"], expected, 0)
    check_tier(rows["public"], expected, PUBLIC_DELAY_MS)
    # The snapshot for new subscribers holds each bus's newest public view.
    client = aioredis.Redis.from_url(redis_url)
    try:
        state = await client.hgetall(f"{redis_prefix}:state:public:bus")
    finally:
        await client.aclose()
    views = decode_snapshot(state.values())
    newest = {v["label"]: v["observed_at"] for v in views}
    assert newest == {"B-" + e[-4:]: max(t for x, t in sent if x == e) for e in entities}


async def test_two_workers_share_partitions_through_rebalances(kafka_bootstrap, redis_url, names, tmp_path):
    prefix, app_id, redis_prefix = names
    await ensure_topics(kafka_bootstrap, 4, worker_topics(Naming(prefix), ("bus",), aggregates=False))
    raw = prefix + raw_topic("bus")
    entities = [f"reb-{i:04d}" for i in range(12)]
    workers = Workers(tmp_path, prefix, app_id, redis_prefix)
    try:
        async with Reader(kafka_bootstrap, prefix) as reader:
            first = workers.start()
            sent = await stream(kafka_bootstrap, raw, entities, 0, 30)
            workers.start()  # joins: partitions move to it mid-stream
            sent += await stream(kafka_bootstrap, raw, entities, 30, 40)
            first.send_signal(signal.SIGTERM)  # leaves: its partitions move back
            sent += await stream(kafka_bootstrap, raw, entities, 70, 30)
            rows = await reader.finish(len(sent))
            assert first.wait(timeout=30) == 0
    finally:
        workers.close()
    expected = set(sent)
    check_tier(rows["operator"], expected, 0)
    check_tier(rows["public"], expected, PUBLIC_DELAY_MS)
