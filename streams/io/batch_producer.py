"""One produce call per (topic, partition) and batch instead of one per record.

Records are partitioned with Kafka's default key partitioner (kafka_admin/partitioning.py), the same one
every other producer of these topics uses, so one entity's records always land in one partition and keep
order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from kafka_admin.partitioning import group_by_partition
from streams.logic import envelope

Header = tuple[str, bytes]


class BatchProducer:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._partitions: dict[str, int] = {}

    async def partitions(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            parts = await self.producer.partitions_for(topic)
            count = len(parts)
            self._partitions[topic] = count
        return count

    async def send_all(
        self,
        topic: str,
        records: Sequence[tuple[bytes, bytes, int]],
        headers: Sequence[Header] = (),
    ) -> list[tuple[asyncio.Future[Any], int]]:
        """Queue ``(key, value, timestamp_ms)`` records; returns (delivery future, record count) per batch."""
        if not records:
            return []
        return await self.send_partitioned(topic, group_by_partition(records, await self.partitions(topic)), headers)

    async def send_partitioned(
        self,
        topic: str,
        by_partition: Mapping[int, Sequence[tuple[bytes | None, bytes, int]]],
        headers: Sequence[Header] = (),
    ) -> list[tuple[asyncio.Future[Any], int]]:
        """Queue records to the given partitions (one produce batch per partition where they fit)."""
        futures: list[tuple[asyncio.Future[Any], int]] = []
        hdrs = list(headers)
        for partition, items in by_partition.items():
            batch = self.producer.create_batch()
            for key, value, ts in items:
                if batch.append(key=key, value=value, timestamp=ts, headers=hdrs) is None:
                    n = batch.record_count()
                    futures.append((await self.producer.send_batch(batch, topic, partition=partition), n))
                    batch = self.producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=ts, headers=hdrs) is None:
                        raise ValueError(f"record of {len(value)} bytes exceeds the producer's batch size")
            if batch.record_count():
                n = batch.record_count()
                futures.append((await self.producer.send_batch(batch, topic, partition=partition), n))
        return futures

    @staticmethod
    async def ends(sent: list[tuple[asyncio.Future[Any], int]]) -> dict[int, int]:
        metas = await asyncio.gather(*(f for f, _ in sent))
        ends: dict[int, int] = {}
        for meta, (_, count) in zip(metas, sent, strict=True):
            end = meta.offset + count
            if end > ends.get(meta.partition, -1):
                ends[meta.partition] = end
        return ends

    async def deliver(
        self,
        topic: str,
        records: Sequence[tuple[bytes, bytes, int]],
        headers: Sequence[Header] = (),
    ) -> dict[int, int]:
        """Send and wait for acknowledgement; returns partition → next offset after what was written."""
        return await self.ends(await self.send_all(topic, records, headers))

    async def deliver_envelopes(
        self, topic: str, records: Sequence[tuple[bytes, bytes, int]], headers: Sequence[Header] = ()
    ) -> dict[int, int]:
        """Send records packed in envelopes (``streams.logic.envelope``), each to its key's partition."""
        if not records:
            return {}
        rows = group_by_partition(records, await self.partitions(topic))
        packed: dict[int, list[tuple[bytes | None, bytes, int]]] = {
            p: [(None, env, ts) for ts, env in envelope.pack(part)] for p, part in rows.items()
        }
        return await self.ends(await self.send_partitioned(topic, packed, headers))
