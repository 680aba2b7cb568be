"""Where a query-window source resumes after a restart: the newest record it already has in Kafka.

The cursor of a query-window poller (OCPI CDRs' ``date_from``) lives in memory. Restarted, it would look back
only its format's ``lookback_s``, and sessions billed during a longer outage would never be asked for. Kafka
already holds what was delivered, with ``observed_at`` as each record's timestamp, so the newest timestamp
among the source's records in ``raw.<feed>`` is exactly where to resume (the window is inclusive: the one
record at the cursor comes again and is skipped downstream as a duplicate).
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.topics_admin import topic_partitions

TAIL = 200  # records read back per partition: other sources may share the topic


async def newest_ingested(bootstrap: str, topic: str, source: str, *, timeout_s: float = 15.0) -> int | None:
    """The newest record timestamp (ms) of ``source`` among the last ``TAIL`` records of each partition of
    ``topic``; None when it has none there. Raises Kafka errors (the caller retries)."""
    partitions = [TopicPartition(topic, p) for p in await topic_partitions(bootstrap, topic, timeout_s)]
    if not partitions:
        return None
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=int(timeout_s * 1000)
    )
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        remaining: dict[TopicPartition, int] = {}
        for tp in partitions:
            first = max(starts[tp], ends[tp] - TAIL)
            if first < ends[tp]:
                consumer.seek(tp, first)
                remaining[tp] = ends[tp]
        wanted = source.encode()
        newest: int | None = None
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=int(timeout_s * 1000))
            if not batch:
                raise TimeoutError(f"no records from {topic} within {timeout_s} s")
            for messages in batch.values():
                for message in messages:
                    if dict(message.headers).get("source") == wanted and (newest is None or message.timestamp > newest):
                        newest = message.timestamp
            for tp in list(remaining):
                if await consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
        return newest
    finally:
        await consumer.stop()
