"""Reads a tier topic for a replay: every partition from the first offset at or after a time, up to the
end offsets it had when the read started (a replay is of history; the live protocol serves the rest)."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from access.identity import kafka_options
from kafka_admin import topic_partitions

from .batch import RecordBatch
from .runner import READ_RECORDS, PartitionsToRead


class SourceUnavailable(RuntimeError):
    """The topic cannot be read right now; ``str(err)`` says why."""


class KafkaTierSource(PartitionsToRead):
    """One tier topic's partitions, read in offset order from a start time (or explicit offsets)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions: list[int] = []
        self.end: dict[int, int] = {}  # partition → end offset when the read started
        self.stop_ms: int | None = None  # a partition is done at its first record at or after this time
        self._consumer: AIOKafkaConsumer | None = None
        self.held: set[int] = set()  # open partitions not to fetch for now (e.g. still read from the archive)

    async def open(self) -> list[int]:
        try:
            self.partitions = await topic_partitions(self.bootstrap, self.topic)
        except (KafkaError, TimeoutError, OSError) as err:
            raise SourceUnavailable(f"cannot reach Kafka for {self.topic}: {err}") from err
        if not self.partitions:
            raise SourceUnavailable(f"topic {self.topic} does not exist")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            **kafka_options(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
            max_partition_fetch_bytes=4 << 20,
        )
        try:
            await asyncio.wait_for(consumer.start(), 15)
        except (KafkaError, TimeoutError, OSError) as err:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise SourceUnavailable(f"cannot reach Kafka for {self.topic}: {err}") from err
        consumer.assign([TopicPartition(self.topic, p) for p in self.partitions])
        self._consumer = consumer
        return self.partitions

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("open() first")
        return self._consumer

    async def beginning_offsets(self) -> dict[int, int]:
        tps = [TopicPartition(self.topic, p) for p in self.partitions]
        return {tp.partition: o for tp, o in (await self.consumer.beginning_offsets(tps)).items()}

    async def offsets_at(self, from_ms: int) -> dict[int, int]:
        """Per partition, the first offset whose timestamp is at or after ``from_ms`` (its end if none)."""
        consumer = self.consumer
        tps = [TopicPartition(self.topic, p) for p in self.partitions]
        found = await consumer.offsets_for_times({tp: max(0, from_ms) for tp in tps})
        ends = await consumer.end_offsets(tps)
        return {tp.partition: (hit.offset if hit is not None else ends[tp]) for tp, hit in found.items()}

    async def seek(self, from_ms: int, stop_ms: int, offsets: dict[int, int] | None = None) -> dict[int, int]:
        """Position every partition at ``offsets`` (default: the first record at or after ``from_ms``)."""
        consumer = self.consumer
        tps = [TopicPartition(self.topic, p) for p in self.partitions]
        starts = dict(offsets) if offsets is not None else await self.offsets_at(from_ms)
        self.end = {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
        self.stop_ms = stop_ms
        self._open = set()
        self.held = set()
        consumer.resume(*tps)
        for tp in tps:
            start = starts.get(tp.partition, self.end[tp.partition])
            consumer.seek(tp, start)
            if start < self.end[tp.partition]:
                self._open.add(tp.partition)
            else:
                consumer.pause(tp)
        return starts

    def stop_partition(self, partition: int) -> None:
        """Read no more of ``partition`` (the replay's end was found elsewhere)."""
        self._open.discard(partition)
        self.consumer.pause(TopicPartition(self.topic, partition))

    async def read(
        self, timeout_ms: int = 200, max_records: int = READ_RECORDS, only: set[int] | None = None
    ) -> tuple[dict[int, RecordBatch], set[int]]:
        """The next records per partition (of ``only``, if given), and the partitions that have just
        finished. Fetching only the partitions that hold the merge back keeps its buffer bounded."""
        active = self._open - self.held
        if only is not None:
            active &= only
        if not active:
            if self._open:  # open but nothing to fetch now (held, or not asked for): no busy loop
                await asyncio.sleep(min(timeout_ms, 20) / 1000)
            return {}, set()
        consumer = self.consumer
        for p in self._open:
            tp = TopicPartition(self.topic, p)
            if p in active:
                consumer.resume(tp)
            else:
                consumer.pause(tp)
        try:
            batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as err:
            raise SourceUnavailable(f"reading {self.topic}: {err}") from err
        out: dict[int, RecordBatch] = {}
        finished: set[int] = set()
        stop = self.stop_ms
        for tp, records in batches.items():
            p = tp.partition
            if p not in active or p not in self._open:
                continue
            # Columns, not a Python object per record: the merge sorts and slices them with numpy.
            stamps = np.array([r.timestamp for r in records], dtype=np.int64)
            offsets = np.array([r.offset for r in records], dtype=np.int64)
            keys = [r.key for r in records]
            values = [r.value for r in records]
            past = offsets >= self.end[p]
            if stop is not None:
                past |= stamps >= stop
            done = bool(offsets[-1] + 1 >= self.end[p])
            if past.any():  # the first record past the read's end offset or stop time ends the partition
                cut = int(np.argmax(past))
                stamps, offsets, keys, values = stamps[:cut], offsets[:cut], keys[:cut], values[:cut]
                done = True
            if None in keys or None in values:  # tombstones and keyless records are no tier records
                kept = [i for i, (k, v) in enumerate(zip(keys, values, strict=True)) if k is not None and v is not None]
                stamps, offsets = stamps[kept], offsets[kept]
                keys, values = [keys[i] for i in kept], [values[i] for i in kept]
            if len(stamps):
                out[p] = RecordBatch.of_partition(p, stamps, offsets, keys, values)
            if done:
                finished.add(p)
                self._open.discard(p)
                consumer.pause(tp)
        if not batches:
            # Offsets without a record (transaction markers, compaction) end a partition quietly.
            for p in list(active & self._open):
                tp = TopicPartition(self.topic, p)
                if await consumer.position(tp) >= self.end[p]:
                    finished.add(p)
                    self._open.discard(p)
                    consumer.pause(tp)
        return out, finished

    async def close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._consumer = None
