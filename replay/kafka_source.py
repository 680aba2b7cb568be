"""Reads a tier topic for a replay: every partition from the first offset at or after a time, up to the
end offsets it had when the read started (a replay is of history; the live protocol serves the rest)."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from kafka_admin import topic_partitions

from .merge import SourceRecord


class SourceUnavailable(RuntimeError):
    """The topic cannot be read right now; ``str(err)`` says why."""


class KafkaTierSource:
    """One tier topic's partitions, read in offset order from a start time (or explicit offsets)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions: list[int] = []
        self.end: dict[int, int] = {}  # partition → end offset when the read started
        self.stop_ms: int | None = None  # a partition is done at its first record at or after this time
        self._consumer: AIOKafkaConsumer | None = None
        self._open: set[int] = set()
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

    @property
    def exhausted(self) -> bool:
        return not self._open

    def open_partitions(self) -> set[int]:
        return set(self._open)

    def stop_partition(self, partition: int) -> None:
        """Read no more of ``partition`` (the replay's end was found elsewhere)."""
        self._open.discard(partition)
        self.consumer.pause(TopicPartition(self.topic, partition))

    async def read(
        self, timeout_ms: int = 200, max_records: int = 20_000, only: set[int] | None = None
    ) -> tuple[dict[int, list[SourceRecord]], set[int]]:
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
        out: dict[int, list[SourceRecord]] = {}
        finished: set[int] = set()
        stop = self.stop_ms
        for tp, records in batches.items():
            p = tp.partition
            if p not in active or p not in self._open:
                continue
            end = self.end[p]
            done = False
            last = records[-1]
            if last.offset < end and (stop is None or max([r.timestamp for r in records]) < stop):
                # The common case, the whole batch inside the replay: plain tuples in SourceRecord's layout
                # (per record, so the cheapest construction there is).
                kept: list[SourceRecord] = [
                    (r.timestamp, p, r.offset, r.key.decode(), r.value)  # type: ignore[misc]
                    for r in records
                    if r.key is not None and r.value is not None
                ]
            else:
                kept = []
                for r in records:
                    if r.offset >= end or (stop is not None and r.timestamp >= stop):
                        done = True
                        break
                    if r.key is not None and r.value is not None:
                        kept.append(SourceRecord(r.timestamp, p, r.offset, r.key.decode(), r.value))
            if not done and records and records[-1].offset + 1 >= end:
                done = True
            if kept:
                out[p] = kept
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
