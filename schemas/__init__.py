"""Canonical records, their codecs, topic and Redis key names, and the clock in epoch ms.

The bottom of the project: imports nothing from the rest of it.
"""

from .aggregates import AGGREGATE_TYPES
from .clock import now_ms
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
from .feed_registry import CLIENT_FEEDS, FEED_REGISTRY, FeedInfo, is_client_feed, unknown_feed_message
from .naming import DEFAULT_REDIS_PREFIX, Naming
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
    StopArrival,
    VehiclePosition,
    ZoneCount,
)
from .topics import (
    AGGREGATE_FEEDS,
    AUDIT_ACCESS,
    DELAYABLE_TIERS,
    PIPELINE_FEEDS,
    TIERS,
    all_topics,
    dlq_topic,
    pending_topic,
    raw_topic,
    tier_topic,
)

__all__ = [
    "AGGREGATE_FEEDS",
    "AGGREGATE_TYPES",
    "AUDIT_ACCESS",
    "CLIENT_FEEDS",
    "DEFAULT_REDIS_PREFIX",
    "DELAYABLE_TIERS",
    "FEEDS",
    "FEED_REGISTRY",
    "FEED_TYPES",
    "PIPELINE_FEEDS",
    "SCHEMA_VERSION",
    "TIERS",
    "ChargingSession",
    "ChargingStation",
    "Connector",
    "DeadLetter",
    "FeedInfo",
    "InvalidRecord",
    "Naming",
    "ParkingLot",
    "Record",
    "ScenicCount",
    "StopArrival",
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
    "is_client_feed",
    "now_ms",
    "pending_topic",
    "raw_topic",
    "tier_topic",
    "to_dict",
    "unknown_feed_message",
]
