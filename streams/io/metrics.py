"""Prometheus metrics of the stream workers: per-partition lag, record outcomes, retries."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Counter, Gauge

CONSUMER_LAG = Gauge(
    "shfeeds_streams_consumer_lag",
    "Records between the partition's high watermark and the stage's position",
    ["stage", "topic", "partition"],
)
CONSUMER_POSITION = Gauge(
    "shfeeds_streams_consumer_position",
    "Next offset the stage reads; alert when it stops advancing while lag is above zero",
    ["stage", "topic", "partition"],
)
RECORDS = Counter(
    "shfeeds_streams_records_total",
    "Records handled by outcome (accepted, duplicate, rejected, late, published, stale, removed, forgotten)",
    ["stage", "feed", "outcome"],
)
TIER_RECORDS = Counter(
    "shfeeds_streams_tier_records_total",
    "Records sent on per tier: released to tier.<tier>.<feed>, or pending (parked for a delayed tier)",
    ["stage", "feed", "tier", "outcome"],
)
DELIVERY_RETRIES = Counter(
    "shfeeds_streams_delivery_retries_total", "Failed Kafka/Redis deliveries that were retried", ["stage"]
)


def observe_lag(stage: str, consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]) -> None:
    """``positions``: next offset the stage will process per partition (after its last batch)."""
    for tp, position in positions.items():
        high = consumer.highwater(tp)
        if high is None:
            continue
        labels = (stage, tp.topic, str(tp.partition))
        CONSUMER_LAG.labels(*labels).set(max(0, high - position))
        CONSUMER_POSITION.labels(*labels).set(position)
