"""Where a restarted query-window source resumes: its newest record in Kafka, even under a busier source."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from access.identity import kafka_options
from adapters.runtime.resume import newest_ingested
from kafka_admin import delete_topics, ensure_topics

pytestmark = pytest.mark.stack

T0 = 1_795_000_000_000


async def _produce(bootstrap: str, topic: str, rows: list[tuple[bytes, str, int]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **kafka_options(), linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, b"x", key=key, timestamp_ms=ts, headers=[("source", source.encode())])
            for key, source, ts in rows
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def test_the_newest_record_of_a_source_is_found_under_a_busier_one(kafka_bootstrap, unique_name):
    topic = unique_name("raw-resume")
    await ensure_topics(kafka_bootstrap, 2, [topic])
    try:
        assert await newest_ingested(kafka_bootstrap, topic, "quiet") is None  # nothing yet
        quiet = [(b"q-%d" % i, "quiet", T0 + i * 1000) for i in range(6)]
        # Then a busier source writes far more than the first look-back per partition.
        busy = [(b"b-%d" % i, "busy", T0 + 10_000_000 + i) for i in range(1500)]
        await _produce(kafka_bootstrap, topic, quiet + busy)
        assert await newest_ingested(kafka_bootstrap, topic, "quiet") == T0 + 5000
        assert await newest_ingested(kafka_bootstrap, topic, "busy") == T0 + 10_000_000 + 1499
        assert await newest_ingested(kafka_bootstrap, topic, "nobody") is None
    finally:
        await delete_topics(kafka_bootstrap, [topic])
    assert await newest_ingested(kafka_bootstrap, unique_name("no-such-topic"), "quiet") is None
