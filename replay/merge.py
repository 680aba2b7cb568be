"""Exact event-time order out of partitions whose record timestamps are only roughly ordered.

A tier topic's record timestamp is the record's event time (``observed_at``, see docs/contracts.md), which
is not monotonic inside a partition: sources report late and delayed tiers release in batches. It is
bounded, though: no record of a partition is older than ``max_skew_ms`` before the newest one already
written to that partition. So once every partition has shown a record at ``t``, nothing still to come can
be older than ``t - max_skew_ms``, and every buffered record before that is in its final place.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NEVER = -(2**62)


@dataclass(frozen=True, slots=True, order=True)
class SourceRecord:
    """One tier topic record, wherever it was read from. Ordered by (event time, partition, offset)."""

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
        self._heap: list[SourceRecord] = []
        self.released_to = NEVER  # every record before this event time has been popped
        self.late = 0  # records that broke the skew bound (arrived after their place was released)

    @property
    def buffered(self) -> int:
        return len(self._heap)

    @property
    def done(self) -> bool:
        return not self._open and not self._heap

    def push(self, partition: int, records: Sequence[SourceRecord]) -> None:
        newest = self._newest[partition]
        heap = self._heap
        for rec in records:
            if rec.timestamp < self.released_to:
                self.late += 1
            heapq.heappush(heap, rec)
            if rec.timestamp > newest:
                newest = rec.timestamp
        self._newest[partition] = newest

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
        heap = self._heap
        out: list[SourceRecord] = []
        while heap and heap[0].timestamp < mark and (limit is None or len(out) < limit):
            out.append(heapq.heappop(heap))
        if out:
            self.released_to = max(self.released_to, out[-1].timestamp)
        if not heap:
            self.released_to = max(self.released_to, min(mark, 2**62))
        return out
