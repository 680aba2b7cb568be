"""Exact event-time order out of partitions whose record timestamps are only roughly ordered.

A tier topic's record timestamp is the record's event time (``observed_at``, see docs/contracts.md), which
is not monotonic inside a partition: sources report late and delayed tiers release in batches. It is
bounded, though: no record of a partition is older than ``max_skew_ms`` before the newest one already
written to that partition. So once every partition has shown a record at ``t``, nothing still to come can
be older than ``t - max_skew_ms``, and every buffered record before that is in its final place.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

NEVER = -(2**62)
# Field positions: the hot path indexes records, so a source may hand plain tuples in this layout.
TS: Final = 0
PARTITION: Final = 1
OFFSET: Final = 2
KEY: Final = 3
VALUE: Final = 4


class SourceRecord(NamedTuple):
    """One tier topic record, wherever it was read from. Ordered by (event time, partition, offset): a
    tuple, so ordering and sorting run in C (this is per record on the replay's hot path). The merge and
    the core index it (``TS``, ``KEY``, ``VALUE``), so a plain tuple of the same layout does as well."""

    timestamp: int  # event time, epoch ms
    partition: int
    offset: int
    key: str
    value: bytes


class EventTimeMerge:
    """K-way merge of partitions by event time, exact within ``max_skew_ms``.

    Feed each partition's records in offset order with ``push``, say ``finish`` when a partition has no
    more; ``pop_ready`` returns the records whose place in event-time order can no longer change. Ties
    are broken by (partition, offset), so the order is the same on every run.
    """

    def __init__(self, partitions: Iterable[int], max_skew_ms: int) -> None:
        self.max_skew_ms = max(0, int(max_skew_ms))
        self._newest: dict[int, int] = {p: NEVER for p in partitions}
        self._open: set[int] = set(self._newest)
        self._buffer: list[SourceRecord] = []  # not yet released; sorted lazily (timsort: a few sorted runs)
        self.released_to = NEVER  # every record before this event time has been popped
        self.late = 0  # records that broke the skew bound (arrived after their place was released)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def done(self) -> bool:
        return not self._open and not self._buffer

    def push(self, partition: int, records: Sequence[SourceRecord]) -> None:
        if not records:
            return
        stamps = [r[0] for r in records]
        released = self.released_to
        if min(stamps) < released:
            self.late += sum(1 for t in stamps if t < released)
        self._buffer.extend(records)
        self._newest[partition] = max(self._newest[partition], max(stamps))

    def finish(self, partition: int) -> None:
        self._open.discard(partition)

    def watermark(self) -> int:
        """Event time before which no record can still arrive (except ones that break the skew bound)."""
        if not self._open:
            return 2**62
        return min(self._newest[p] for p in self._open) - self.max_skew_ms

    def lagging(self) -> set[int]:
        """The open partitions whose newest record is the oldest: they hold the watermark back."""
        if not self._open:
            return set()
        low = min(self._newest[p] for p in self._open)
        return {p for p in self._open if self._newest[p] == low}

    def pop_ready(self, limit: int | None = None) -> list[SourceRecord]:
        mark = self.watermark()
        buffer = self._buffer
        if not buffer:
            self.released_to = max(self.released_to, min(mark, 2**62))
            return []
        buffer.sort()
        cut = bisect_left(buffer, (mark,))  # the first record at or after the mark
        if limit is not None:
            cut = min(cut, limit)
        out = buffer[:cut]
        del buffer[:cut]
        if out:
            self.released_to = max(self.released_to, out[-1][TS])
        if not buffer:
            self.released_to = max(self.released_to, min(mark, 2**62))
        return out
