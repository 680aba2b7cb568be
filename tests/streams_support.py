"""Helpers for the streams tests: bus records, producing to raw topics, reading tier topics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas import VehiclePosition, encode_kafka

POLICY_FILE = Path(__file__).resolve().parent.parent / "streams" / "policy" / "tier_policy.toml"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
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


class TopicReader:
    """Reads every record of some topics from the beginning, collecting decoded values."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
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


class StandInEngine:
    """Same interface as streams.policy.PolicyEngine, for agent-logic tests: grid snap + delays."""

    policy_version = "test-1"

    def __init__(
        self,
        delays_ms: dict[str, int] | None = None,
        min_interval_ms: dict[str, int] | None = None,
        cells_m: dict[str, float] | None = None,
    ) -> None:
        self.delays = delays_ms or {"operator": 0, "licensed": 0, "registered": 1000, "public": 2000}
        self.intervals = min_interval_ms or {}
        self.cells = cells_m or {"registered": 10.0, "public": 50.0}

    def delay_ms(self, feed: str, tier: str) -> int:
        return self.delays[tier]

    def min_interval_ms(self, feed: str, tier: str) -> int:
        return self.intervals.get(tier, 0)

    def apply(self, feed: str, tier: str, records: list[dict[str, Any]], crs: str = "gcj02") -> list[dict[str, Any]]:
        from geo.crs import convert_arrays
        from geo.grid import snap_arrays

        out = [dict(r) for r in records]
        if tier != "operator":
            for r in out:
                r.pop("plate", None)
        if not out:
            return out
        lngs = [r["lng"] for r in out]
        lats = [r["lat"] for r in out]
        if tier in self.cells:
            lngs, lats = snap_arrays(lngs, lats, self.cells[tier])
        xs, ys = convert_arrays(lngs, lats, "wgs84", crs)
        for r, x, y in zip(out, xs, ys, strict=True):
            r["lng"], r["lat"] = float(x), float(y)
        return out
