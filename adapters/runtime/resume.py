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

from access.identity import kafka_options
from kafka_admin import topic_partitions

from .shutdown import stop_within

# Records read back per partition, step by step: the source's newest record is nearly always among the
# last few, but a busier source sharing the topic can bury it deeper.
TAILS = (200, 2_000, 20_000)


async def newest_ingested(bootstrap: str, topic: str, source: str, *, timeout_s: float = 15.0) -> int | None:
    """The newest record timestamp (ms) of ``source`` in ``topic``, looking back at most ``TAILS[-1]``
    records per partition; None when it has none there. Raises Kafka errors (the caller retries)."""
    partitions = [TopicPartition(topic, p) for p in await topic_partitions(bootstrap, topic, timeout_s)]
    if not partitions:
        return None
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **kafka_options(),
        enable_auto_commit=False,
        request_timeout_ms=int(timeout_s * 1000),
    )
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        read_from = dict(ends)  # per partition, the offset down to which it was read
        for tail in TAILS:
            ranges: dict[TopicPartition, tuple[int, int]] = {}
            for tp in partitions:
                first = max(starts[tp], ends[tp] - tail)
                if first < read_from[tp]:
                    ranges[tp] = (first, read_from[tp])
                    read_from[tp] = first
            if not ranges:
                return None  # every partition was read to its beginning
            newest = await _newest_in(consumer, ranges, source.encode(), timeout_s)
            if newest is not None:
                return newest
        return None
    finally:
        await stop_within(consumer.stop(), timeout_s, "resume consumer")


async def _newest_in(
    consumer: AIOKafkaConsumer, ranges: dict[TopicPartition, tuple[int, int]], source: bytes, timeout_s: float
) -> int | None:
    """The newest timestamp of ``source``'s records in the offset ranges ``[first, stop)`` per partition."""
    for tp, (first, _) in ranges.items():
        consumer.seek(tp, first)
    remaining = {tp: stop for tp, (_, stop) in ranges.items()}
    newest: int | None = None
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=int(timeout_s * 1000))
        if not batch:
            raise TimeoutError(f"no records within {timeout_s} s")
        for tp, messages in batch.items():
            stop = remaining[tp]  # getmany was asked for these partitions only
            for message in messages:
                if message.offset >= stop:
                    break
                if dict(message.headers).get("source") == source and (newest is None or message.timestamp > newest):
                    newest = message.timestamp
        for tp in list(remaining):
            if await consumer.position(tp) >= remaining[tp]:
                del remaining[tp]
    return newest
