"""Reading history for a replay: the archive's files, then Kafka from where the archive ends, per
partition, so a range across the boundary has no gap and no duplicate.

Per partition: if Kafka still holds the replay's start offset, Kafka alone is read. Otherwise the archive
is read from the start offset up to the offset it covers to, then Kafka from exactly there. Start offsets
come from the same rule as Kafka's ``offsets_for_times``: the first offset whose timestamp is at or after
the time, looked up in the archive's ``timestamp`` column for the part of the log Kafka no longer holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from replay.batch import RecordBatch
from replay.kafka_source import KafkaTierSource
from replay.runner import READ_RECORDS, PartitionsToRead

from .layout import ArchiveFile, archived_to, files_of


class ArchiveThenKafkaSource(PartitionsToRead):
    """A ``replay.runner.RecordSource`` over one feed and tier: archive files, then the tier topic."""

    def __init__(self, root: Path, feed: str, tier: str, kafka: KafkaTierSource) -> None:
        super().__init__()
        self.root, self.feed, self.tier = root, feed, tier
        self.kafka = kafka
        self.partitions: list[int] = []
        self._pending: dict[int, list[ArchiveFile]] = {}  # archive files still to read, per partition
        self._from: dict[int, int] = {}  # first offset wanted, per partition
        self._handover: dict[int, int] = {}  # Kafka takes over at this offset
        self._stop_ms = 0
        self.read_from_archive = 0  # records, for tests and figures

    async def open(self) -> list[int]:
        self.partitions = await self.kafka.open()
        return self.partitions

    async def seek(self, from_ms: int, stop_ms: int, offsets: dict[int, int] | None = None) -> dict[int, int]:
        files = files_of(self.root, self.feed, self.tier)
        covered = archived_to(files)
        kafka_first = await self.kafka.beginning_offsets()
        kafka_at = await self.kafka.offsets_at(from_ms)
        starts: dict[int, int] = {}
        handover: dict[int, int] = {}
        self._pending = {}
        for p in self.partitions:
            mine = [f for f in files if f.partition == p]
            if offsets is not None and p in offsets:
                start = offsets[p]
            elif mine and kafka_first[p] > 0 and (kafka_at[p] <= kafka_first[p]):
                # Kafka's answer may be its first offset only because older records are gone: ask the archive.
                start = _archive_offset_at(mine, from_ms, default=kafka_at[p])
            else:
                start = kafka_at[p]
            starts[p] = start
            if start < kafka_first[p] and mine:
                handover[p] = max(covered.get(p, 0), start)
                self._pending[p] = [f for f in mine if f.last >= start and f.first < handover[p]]
            else:
                handover[p] = start
        self._from, self._handover, self._stop_ms = starts, handover, stop_ms
        await self.kafka.seek(from_ms, stop_ms, offsets=handover)
        self.kafka.held = {p for p, pending in self._pending.items() if pending}
        self._open = {p for p in self.partitions if self._pending.get(p) or p in self.kafka.open_partitions()}
        return starts

    async def read(
        self, timeout_ms: int = 200, max_records: int = READ_RECORDS, only: set[int] | None = None
    ) -> tuple[dict[int, RecordBatch], set[int]]:
        out: dict[int, RecordBatch] = {}
        finished: set[int] = set()
        for p, pending in self._pending.items():
            if not pending or (only is not None and p not in only):
                continue
            f = pending.pop(0)  # one file per partition and call, so the merge gets every partition's
            recs, stopped = self._read_file(f, p)
            if len(recs):
                out[p] = recs
                self.read_from_archive += len(recs)
            if stopped:
                pending.clear()
                self.kafka.stop_partition(p)
            if not pending:
                self.kafka.held.discard(p)  # the archive is read up to the handover: Kafka goes on from there
        batches, done = await self.kafka.read(timeout_ms=0 if out else timeout_ms, max_records=max_records, only=only)
        out.update(batches)
        finished |= done
        kafka_open = self.kafka.open_partitions()
        for p in self._open:
            if not self._pending.get(p) and p not in kafka_open:
                finished.add(p)
        self._open -= finished
        return out, finished

    def _read_file(self, f: ArchiveFile, partition: int) -> tuple[RecordBatch, bool]:
        table = pq.read_table(f.path, columns=["offset", "timestamp", "key", "value"])
        lo, hi = self._from[partition], self._handover[partition]
        mask = pc.and_(pc.greater_equal(table["offset"], lo), pc.less(table["offset"], hi))
        table = table.filter(mask).sort_by("offset")
        stamps = table["timestamp"].cast("int64").to_numpy()
        offsets = table["offset"].cast("int64").to_numpy()
        past = stamps >= self._stop_ms  # the partition ends at its first record at or after the stop time
        cut = int(np.argmax(past)) if past.any() else len(stamps)
        table = table.slice(0, cut)
        batch = RecordBatch.of_partition(
            partition, stamps[:cut], offsets[:cut], table["key"].to_pylist(), table["value"].to_pylist()
        )
        return batch, cut < len(stamps)


def _archive_offset_at(files: list[ArchiveFile], from_ms: int, default: int) -> int:
    """The first archived offset whose timestamp is at or after ``from_ms`` (``offsets_for_times`` on the
    archive), else ``default``."""
    best: int | None = None
    for f in files:
        meta = pq.read_metadata(f.path).metadata or {}
        max_ts = int(meta.get(b"shfeeds.max_timestamp", b"0"))
        if max_ts < from_ms:
            continue
        table = pq.read_table(f.path, columns=["offset", "timestamp"])
        hits = table.filter(pc.greater_equal(table["timestamp"].cast("int64"), from_ms))
        if hits.num_rows:
            first = pc.min(hits["offset"]).as_py()
            best = first if best is None else min(best, first)
    return best if best is not None else default
