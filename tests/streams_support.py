"""Helpers for the streams tests: bus records, producing to raw topics, reading tier topics."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from access.identity import kafka_options
from schemas import VehiclePosition, encode_kafka, now_ms
from streams.policy import PolicyEngine, load_policy, parse_policy

POLICY_FILE = Path(__file__).resolve().parent.parent / "streams" / "policy" / "tier_policy.toml"


def bus(
    entity: str,
    observed_at: int,
    lng: float = 121.4737,
    lat: float = 31.2304,
    seq: int | None = None,
    expires_in_ms: int = 120_000,
) -> VehiclePosition:
    return VehiclePosition(
        id=entity,
        source="test",
        observed_at=observed_at,
        expires_at=observed_at + expires_in_ms,
        lng=lng,
        lat=lat,
        route_id="71",
        label="B-" + entity[-4:],
        plate="沪A12345",
        speed_kmh=31.0,
        bearing=93.0,
        seq=seq,
    )


async def produce(bootstrap: str, topic: str, records: Iterable[Any], raw: bool = False) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **kafka_options(), linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = []
        for rec in records:
            if raw:
                key, value = rec
                futures.append(await producer.send(topic, value=value, key=key, headers=[("source", b"test")]))
            else:
                futures.append(
                    await producer.send(
                        topic,
                        value=encode_kafka(rec),
                        key=rec.id.encode(),
                        timestamp_ms=rec.observed_at,
                        headers=[("source", b"test")],
                    )
                )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def decode_snapshot(values: Iterable[Any]) -> list[dict[str, Any]]:
    """The tier views of a Redis snapshot hash's values (MessagePack bytes)."""
    return [msgspec.msgpack.decode(v) for v in values]


class TopicReader:
    """Reads every record of some topics from the beginning, collecting decoded values."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            **kafka_options(),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.records: dict[str, list[tuple[bytes, dict[str, Any], int, dict[str, bytes], int]]] = {
            t: [] for t in topics
        }

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self) -> None:
        batch = await self.consumer.getmany(timeout_ms=200)
        for tp, recs in batch.items():
            for r in recs:
                value = msgspec.msgpack.decode(r.value) if r.value else {}
                self.records[tp.topic].append((r.key, value, r.timestamp, dict(r.headers), now_ms()))

    async def wait_for(self, topic: str, count: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.records[topic]) < count and time.monotonic() < deadline:
            await self.poll()
        return [v for _, v, _, _, _ in self.records[topic]]


# Shortened release delays and throttles per tier for tests: each tier's delay becomes min(its delay, cap),
# which keeps the policy's order (a lower tier never faster) since both sequences only grow down the tiers.
TEST_DELAY_CAPS_S = {"operator": 0, "licensed": 1, "registered": 2, "public": 4}
TEST_INTERVAL_CAPS_S = {"operator": 0, "licensed": 0, "registered": 0, "public": 0}


def short_policy_text(
    delay_caps_s: dict[str, float] | None = None, interval_caps_s: dict[str, float] | None = None
) -> str:
    """The project's policy file with every feed's delays and throttles capped per tier (the policy is data:
    the tests run the real engine on it)."""
    delays = TEST_DELAY_CAPS_S if delay_caps_s is None else delay_caps_s
    intervals = TEST_INTERVAL_CAPS_S if interval_caps_s is None else interval_caps_s
    out = []
    tier: str | None = None
    for line in POLICY_FILE.read_text(encoding="utf-8").splitlines():
        header = re.fullmatch(r"\[feeds\.\w+\.(\w+)\]", line)
        if header:
            tier = header.group(1)
        elif line.startswith("["):
            tier = None
        m = re.fullmatch(r"(delay_s|min_interval_s) = (\d+)", line)
        if m and tier is not None:
            caps = delays if m.group(1) == "delay_s" else intervals
            line = f"{m.group(1)} = {min(float(m.group(2)), caps.get(tier, float(m.group(2)))):g}"
        out.append(line)
    return "\n".join(out) + "\n"


def write_short_policy(directory: Path, **caps: dict[str, float]) -> Path:
    path = directory / "short_policy.toml"
    path.write_text(short_policy_text(caps.get("delays"), caps.get("intervals")), encoding="utf-8")
    return path


def short_policy_engine(path: Path | None = None) -> PolicyEngine:
    """The real policy engine on the shortened policy, with a fixed test secret."""
    policy = load_policy(path) if path is not None else parse_policy(short_policy_text(), source="short_policy.toml")
    return PolicyEngine(policy, secret=b"streams-test-secret")


async def drop_prefixed_topics(bootstrap: str, prefix: str) -> None:
    """Delete every topic whose name starts with ``prefix``: a test's topics must not pile up on the shared
    development broker (each partition holds open files there)."""
    from kafka_admin import delete_topics_under

    await delete_topics_under(bootstrap, prefix)


@pytest.fixture(name="topic_prefix")
async def topic_prefix_fixture(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> AsyncIterator[str]:
    """A unique topic-name prefix for one test; its topics are deleted afterwards."""
    prefix = unique_name("t") + "."
    yield prefix
    await drop_prefixed_topics(kafka_bootstrap, prefix)
