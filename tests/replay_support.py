"""Helpers for the replay tests: tier-topic-like records, a list sink, writing records to a topic."""

from __future__ import annotations

from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer

from access.identity import kafka_options
from replay.merge import SourceRecord

T0 = 1_795_000_000_000  # an instant in late 2026, epoch ms
_encode = msgspec.msgpack.Encoder().encode


def tier_value(
    entity: str, t: int, *, lng: float = 121.47, lat: float = 31.23, ttl_ms: int = 120_000, **extra: Any
) -> dict[str, Any]:
    return {
        "id": entity,
        "source": "test",
        "observed_at": t,
        "expires_at": t + ttl_ms,
        "lng": lng,
        "lat": lat,
        "crs": "gcj02",
        "policy_version": "test-1",
        **extra,
    }


def source_record(partition: int, offset: int, value: dict[str, Any], timestamp: int | None = None) -> SourceRecord:
    ts = value["observed_at"] if timestamp is None else timestamp
    return SourceRecord(ts, partition, offset, value["id"], _encode(value))


class ListSink:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def emit(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    def delta_records(self) -> list[dict[str, Any]]:
        return [r for m in self.of("replay_delta") for r in m["records"]]


async def produce_values(bootstrap: str, topic: str, rows: list[tuple[int, dict[str, Any], int]]) -> None:
    """Write (partition, value, timestamp) rows in list order, keyed by entity id, as a tier topic holds."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **kafka_options(), acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, _encode(value), key=value["id"].encode(), partition=p, timestamp_ms=ts)
            for p, value, ts in rows
        ]
        for f in futures:
            await f
    finally:
        await producer.stop()
