"""Tier topic records as columns: the replay's hot path moves, sorts and slices whole batches with numpy
instead of one Python object per record (see docs/benchmarks-replay.md for what that bought).

A batch holds event times, partitions and offsets as int64 arrays, and keys and values as object arrays of
the records' bytes (keys may also be ``str``). Iterating a batch yields ``SourceRecord`` tuples, for the
paths that want one record at a time (the as-of snapshot, filtered deltas, tests).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

# Field positions of a ``SourceRecord``: code that takes one record at a time indexes it.
TS: Final = 0
PARTITION: Final = 1
OFFSET: Final = 2
KEY: Final = 3
VALUE: Final = 4


class SourceRecord(NamedTuple):
    """One tier topic record, wherever it was read from; ordered by (event time, partition, offset)."""

    timestamp: int  # event time, epoch ms
    partition: int
    offset: int
    key: str
    value: bytes


Ints = NDArray[np.int64]
Objects = NDArray[np.object_]


def _objects(items: Sequence[Any]) -> Objects:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def key_text(key: bytes | str) -> str:
    return key if isinstance(key, str) else key.decode()


class RecordBatch:
    __slots__ = ("keys", "offset", "partition", "ts", "values")

    def __init__(self, ts: Ints, partition: Ints, offset: Ints, keys: Objects, values: Objects) -> None:
        self.ts, self.partition, self.offset, self.keys, self.values = ts, partition, offset, keys, values

    @classmethod
    def of_partition(
        cls,
        partition: int,
        ts: Sequence[int] | Ints,
        offsets: Sequence[int] | Ints,
        keys: Sequence[Any] | Objects,
        values: Sequence[bytes] | Objects,
    ) -> RecordBatch:
        """One partition's records, from plain columns (lists or arrays) in offset order."""
        n = len(ts)
        return cls(
            np.asarray(ts, dtype=np.int64),
            np.full(n, partition, dtype=np.int64),
            np.asarray(offsets, dtype=np.int64),
            keys if isinstance(keys, np.ndarray) else _objects(keys),
            values if isinstance(values, np.ndarray) else _objects(values),
        )

    @classmethod
    def from_records(cls, records: Sequence[SourceRecord]) -> RecordBatch:
        if not records:
            return EMPTY
        ts, partition, offset, keys, values = zip(*records, strict=True)
        return cls(
            np.asarray(ts, dtype=np.int64),
            np.asarray(partition, dtype=np.int64),
            np.asarray(offset, dtype=np.int64),
            _objects(keys),
            _objects(values),
        )

    @classmethod
    def concat(cls, batches: Sequence[RecordBatch]) -> RecordBatch:
        if len(batches) == 1:
            return batches[0]
        return cls(*(np.concatenate([getattr(b, f) for b in batches]) for f in _FIELDS))

    def __len__(self) -> int:
        return len(self.ts)

    def __getitem__(self, index: slice) -> RecordBatch:
        return RecordBatch(
            self.ts[index], self.partition[index], self.offset[index], self.keys[index], self.values[index]
        )

    def take(self, order: Ints) -> RecordBatch:
        return RecordBatch(
            self.ts[order], self.partition[order], self.offset[order], self.keys[order], self.values[order]
        )

    def sorted(self) -> RecordBatch:
        """In (event time, partition, offset) order: the same on every run, ties included."""
        return self.take(np.lexsort((self.offset, self.partition, self.ts)))

    def __iter__(self) -> Iterator[SourceRecord]:
        for t, p, o, k, v in zip(
            self.ts.tolist(),
            self.partition.tolist(),
            self.offset.tolist(),
            self.keys.tolist(),
            self.values.tolist(),
            strict=True,
        ):
            yield SourceRecord(t, p, o, key_text(k), v)


_FIELDS = ("ts", "partition", "offset", "keys", "values")  # the constructor's order
_NONE = np.empty(0, dtype=np.int64)
EMPTY = RecordBatch(_NONE, _NONE, _NONE, np.empty(0, dtype=object), np.empty(0, dtype=object))
