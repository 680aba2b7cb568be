"""Which topic, key, timestamp and headers each record or dead letter goes out with (docs/contracts.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, cast

from schemas import (
    FEED_TYPES,
    DeadLetter,
    Record,
    VehiclePosition,
    dlq_topic,
    encode_dead_letter,
    encode_kafka,
    now_ms,
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


def _feeds_by_type() -> dict[type, str | None]:
    """``FEED_TYPES`` reversed; None for a type several feeds share (vehicles: bus and metro), whose record's
    ``mode`` names its feed."""
    feeds: dict[type, str | None] = {}
    for feed, record_type in FEED_TYPES.items():
        feeds[record_type] = None if record_type in feeds else feed
    return feeds


_FEED_OF_TYPE = _feeds_by_type()


def feed_of(record: Record) -> str:
    try:
        feed = _FEED_OF_TYPE[type(record)]
    except KeyError:
        raise TypeError(f"not a canonical record: {type(record).__name__}") from None
    return feed if feed is not None else cast(VehiclePosition, record).mode  # only vehicles share a type


def record_message(record: Record, receipt: Callable[[bool], None] | None = None) -> OutMessage:
    return OutMessage(
        topic=raw_topic(feed_of(record)),
        key=record.id.encode(),
        value=encode_kafka(record),
        timestamp_ms=record.observed_at,
        # When the platform took the record in: the control plane's ingest → tier-topic lag starts here.
        headers=[("source", record.source.encode()), ("ingested_at", str(now_ms()).encode())],
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
