"""Writes one tier topic's records into archive files, durably: each file is written under a temporary
name, synced, renamed into place and its folder synced, so once ``flush`` returns the records are on disk
and their offsets may be committed. The file's key-value metadata states what it holds (topic, partition,
first and last offset, record count, event-time range, policy versions)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from replay.merge import SourceRecord

from .columns import RecordColumns
from .layout import day_folder, day_of, file_name

COMPRESSION = "zstd"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TopicArchiveWriter:
    def __init__(self, root: Path, feed: str, tier: str, topic: str, record_schema: dict[str, Any]) -> None:
        self.root = root
        self.feed, self.tier, self.topic = feed, tier, topic
        self.columns = RecordColumns(record_schema)
        self._buffer: dict[int, list[SourceRecord]] = defaultdict(list)
        self._next: dict[int, int] = {}  # partition → offset after the last record read (keyed or not)
        self.files_written = 0
        self.bytes_written = 0

    @property
    def pending(self) -> int:
        return sum(len(b) for b in self._buffer.values())

    def add(self, partition: int, records: Sequence[SourceRecord], next_offset: int) -> None:
        """Records of one partition in offset order; ``next_offset`` is the offset after the last one read."""
        self._buffer[partition].extend(records)
        self._next[partition] = max(self._next.get(partition, 0), next_offset)

    def flush(self) -> dict[int, int]:
        """Write every buffered record; returns partition → the offset to commit (all before it are safe)."""
        for partition, records in self._buffer.items():
            by_day: dict[Any, list[SourceRecord]] = defaultdict(list)
            for rec in records:
                by_day[day_of(rec.timestamp)].append(rec)
            for day, recs in by_day.items():
                self._write(partition, day, recs)
        self._buffer.clear()
        done = dict(self._next)
        return done

    def _write(self, partition: int, day: Any, records: list[SourceRecord]) -> None:
        folder = day_folder(self.root, self.feed, self.tier, day)
        folder.mkdir(parents=True, exist_ok=True)
        first, last = records[0].offset, records[-1].offset
        final = folder / file_name(partition, first, last)
        tmp = folder / (final.name + ".tmp")
        table = self.columns.table(records)
        versions = (
            sorted({str(v) for v in table.column("policy_version").to_pylist() if v is not None})
            if ("policy_version" in table.column_names)
            else []
        )
        meta = {
            "shfeeds.topic": self.topic,
            "shfeeds.feed": self.feed,
            "shfeeds.tier": self.tier,
            "shfeeds.partition": str(partition),
            "shfeeds.first_offset": str(first),
            "shfeeds.last_offset": str(last),
            "shfeeds.records": str(len(records)),
            "shfeeds.min_timestamp": str(min(r.timestamp for r in records)),
            "shfeeds.max_timestamp": str(max(r.timestamp for r in records)),
            "shfeeds.policy_versions": ",".join(versions),
        }
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression=COMPRESSION)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(folder)
        self.files_written += 1
        self.bytes_written += final.stat().st_size
