"""Exact event-time order out of partitions whose record timestamps are only roughly ordered.

A tier topic's record timestamp is the record's event time (``observed_at``, see docs/contracts.md), which
is not monotonic inside a partition: sources report late and delayed tiers release in batches. It is
bounded, though: no record of a partition is older than ``max_skew_ms`` before the newest one already
written to that partition. So once every partition has shown a record at ``t``, nothing still to come can
be older than ``t - max_skew_ms``, and every buffered record before that is in its final place.

The merge works on whole batches (``RecordBatch``): what is held back is sorted with one numpy ``lexsort``
per release and cut at the watermark with a binary search, so no Python code runs per record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .batch import EMPTY, KEY, OFFSET, PARTITION, TS, VALUE, RecordBatch, SourceRecord

NEVER = -(2**62)
ALWAYS = 2**62

__all__ = ["KEY", "OFFSET", "PARTITION", "TS", "VALUE", "EventTimeMerge", "RecordBatch", "SourceRecord"]


def as_batch(records: RecordBatch | Sequence[SourceRecord]) -> RecordBatch:
    return records if isinstance(records, RecordBatch) else RecordBatch.from_records(records)


class EventTimeMerge:
    """K-way merge of partitions by event time, exact within ``max_skew_ms``.

    Feed each partition's records in offset order with ``push``, say ``finish`` when a partition has no
    more; ``pop_ready`` returns the records whose place in event-time order can no longer change, as one
    batch in (event time, partition, offset) order, so the order is the same on every run.
    """

    def __init__(self, partitions: Iterable[int], max_skew_ms: int) -> None:
        self.max_skew_ms = max(0, int(max_skew_ms))
        self._newest: dict[int, int] = {p: NEVER for p in partitions}
        self._open: set[int] = set(self._newest)
        self._held: list[RecordBatch] = []  # not yet released: a sorted rest, then batches as pushed
        self._count = 0
        self.released_to = NEVER  # every record before this event time has been popped
        self.late = 0  # records that broke the skew bound (arrived after their place was released)

    @property
    def buffered(self) -> int:
        return self._count

    @property
    def done(self) -> bool:
        return not self._open and not self._count

    def push(self, partition: int, records: RecordBatch | Sequence[SourceRecord]) -> None:
        batch = as_batch(records)
        if not len(batch):
            return
        stamps = batch.ts
        released = self.released_to
        if int(stamps.min()) < released:
            self.late += int(np.count_nonzero(stamps < released))
        self._held.append(batch)
        self._count += len(batch)
        self._newest[partition] = max(self._newest[partition], int(stamps.max()))

    def finish(self, partition: int) -> None:
        self._open.discard(partition)

    def watermark(self) -> int:
        """Event time before which no record can still arrive (except ones that break the skew bound)."""
        if not self._open:
            return ALWAYS
        return min(self._newest[p] for p in self._open) - self.max_skew_ms

    def lagging(self) -> set[int]:
        """The open partitions whose newest record is the oldest: they hold the watermark back."""
        if not self._open:
            return set()
        low = min(self._newest[p] for p in self._open)
        return {p for p in self._open if self._newest[p] == low}

    def pop_ready(self) -> RecordBatch:
        mark = self.watermark()
        if not self._count:
            self.released_to = max(self.released_to, mark)
            return EMPTY
        held = RecordBatch.concat(self._held).sorted()
        cut = int(np.searchsorted(held.ts, mark, side="left"))  # the first record at or after the mark
        out = held[:cut]
        rest = held[cut:]
        self._held = [rest] if len(rest) else []
        self._count = len(rest)
        if cut:
            self.released_to = max(self.released_to, int(held.ts[cut - 1]))
        if not self._count:
            self.released_to = max(self.released_to, mark)
        return out
