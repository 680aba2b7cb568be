"""Canonical records, their codecs and topic names. Imports nothing from the rest of the project."""

from .codecs import (
    InvalidRecord,
    decode_dead_letter,
    decode_kafka,
    encode_dead_letter,
    encode_json,
    encode_kafka,
    encode_msgpack,
    from_dict,
    to_dict,
)
from .dead_letter import DeadLetter
from .records import (
    FEED_TYPES,
    FEEDS,
    SCHEMA_VERSION,
    ChargingSession,
    ChargingStation,
    Connector,
    ParkingLot,
    Record,
    ScenicCount,
    VehiclePosition,
    ZoneCount,
)
from .topics import AUDIT_ACCESS, TIERS, all_topics, dlq_topic, raw_topic, tier_topic

__all__ = [
    "AUDIT_ACCESS",
    "FEEDS",
    "FEED_TYPES",
    "SCHEMA_VERSION",
    "TIERS",
    "ChargingSession",
    "ChargingStation",
    "Connector",
    "DeadLetter",
    "InvalidRecord",
    "ParkingLot",
    "Record",
    "ScenicCount",
    "VehiclePosition",
    "ZoneCount",
    "all_topics",
    "decode_dead_letter",
    "decode_kafka",
    "dlq_topic",
    "encode_dead_letter",
    "encode_json",
    "encode_kafka",
    "encode_msgpack",
    "from_dict",
    "raw_topic",
    "tier_topic",
    "to_dict",
]
