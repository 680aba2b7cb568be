"""Which topic, key, timestamp and headers each record or dead letter goes out with (docs/contracts.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from schemas import (
    ChargingSession,
    ChargingStation,
    DeadLetter,
    ParkingLot,
    Record,
    ScenicCount,
    VehiclePosition,
    dlq_topic,
    encode_dead_letter,
    encode_kafka,
    raw_topic,
)


class OutMessage(NamedTuple):
    topic: str
    key: bytes
    value: bytes
    timestamp_ms: int
    headers: list[tuple[str, bytes]]
    # Told True once Kafka acknowledged the message, False if Kafka refused it for good.
    receipt: Callable[[bool], None] | None = None


def feed_of(record: Record) -> str:
    if isinstance(record, VehiclePosition):
        return record.mode
    if isinstance(record, ParkingLot):
        return "parking"
    if isinstance(record, ChargingStation):
        return "charging"
    if isinstance(record, ChargingSession):
        return "charging_sessions"
    if isinstance(record, ScenicCount):
        return "scenic"
    raise TypeError(f"not a canonical record: {type(record).__name__}")


def record_message(record: Record, receipt: Callable[[bool], None] | None = None) -> OutMessage:
    return OutMessage(
        topic=raw_topic(feed_of(record)),
        key=record.id.encode(),
        value=encode_kafka(record),
        timestamp_ms=record.observed_at,
        headers=[("source", record.source.encode())],
        receipt=receipt,
    )


def dead_letter_message(letter: DeadLetter) -> OutMessage:
    return OutMessage(
        topic=dlq_topic(letter.feed),
        key=letter.source.encode(),
        value=encode_dead_letter(letter),
        timestamp_ms=letter.received_at,
        headers=[("source", letter.source.encode())],
    )
