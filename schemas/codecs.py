"""Codecs: MessagePack for Kafka values, JSON or MessagePack for clients.

Decoding validates types and ranges (declared on the record types) plus the cross-field rules below,
and raises ``InvalidRecord`` with a human-readable reason.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .dead_letter import DeadLetter
from .records import FEED_TYPES, ChargingSession, ParkingLot, Record, ScenicCount, StopArrival


class InvalidRecord(ValueError):
    """A record that breaks the schema; ``str(err)`` is the reason."""


_msgpack_encoder = msgspec.msgpack.Encoder()
_json_encoder = msgspec.json.Encoder()
_msgpack_decoders = {feed: msgspec.msgpack.Decoder(t) for feed, t in FEED_TYPES.items()}
_dict_convert_types = FEED_TYPES
_dlq_decoder = msgspec.msgpack.Decoder(DeadLetter)


def check_rules(record: Record) -> None:
    """Cross-field rules that single-field ranges cannot express."""
    if record.expires_at < record.observed_at:
        raise InvalidRecord("expires_at is before observed_at")
    if isinstance(record, ParkingLot) and None not in (record.free, record.capacity):
        assert record.free is not None and record.capacity is not None
        if record.free > record.capacity:
            raise InvalidRecord(f"free slots {record.free} exceed capacity {record.capacity}")
    if isinstance(record, ChargingSession) and record.ended_at < record.started_at:
        raise InvalidRecord("session ended_at is before started_at")
    if isinstance(record, ScenicCount) and record.zones:
        ids = [z.id for z in record.zones]
        if len(set(ids)) != len(ids):
            raise InvalidRecord("duplicate zone ids")
    if isinstance(record, StopArrival) and None not in (record.arrival_at, record.departure_at):
        assert record.arrival_at is not None and record.departure_at is not None
        if record.departure_at < record.arrival_at:
            raise InvalidRecord("departure_at is before arrival_at")


def from_dict(feed: str, data: dict[str, Any]) -> Record:
    """Build and validate a record of ``feed`` from plain Python values (e.g. parsed JSON)."""
    try:
        record_type = _dict_convert_types[feed]
    except KeyError:
        raise InvalidRecord(f"unknown feed {feed!r}") from None
    try:
        record: Record = msgspec.convert(data, record_type)  # type: ignore[assignment]
    except msgspec.ValidationError as err:
        raise InvalidRecord(str(err)) from None
    check_rules(record)
    return record


def to_dict(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(record)
    return out


def encode_kafka(record: Record) -> bytes:
    return _msgpack_encoder.encode(record)


def decode_kafka(feed: str, data: bytes) -> Record:
    try:
        record: Record = _msgpack_decoders[feed].decode(data)  # type: ignore[assignment]
    except KeyError:
        raise InvalidRecord(f"unknown feed {feed!r}") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as err:
        raise InvalidRecord(str(err)) from None
    check_rules(record)
    return record


def encode_json(obj: Any) -> bytes:
    """JSON for clients: records, dicts and lists of them."""
    return _json_encoder.encode(obj)


def encode_msgpack(obj: Any) -> bytes:
    return _msgpack_encoder.encode(obj)


def encode_dead_letter(letter: DeadLetter) -> bytes:
    return _msgpack_encoder.encode(letter)


def decode_dead_letter(data: bytes) -> DeadLetter:
    return _dlq_decoder.decode(data)
