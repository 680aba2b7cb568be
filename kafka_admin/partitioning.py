"""Kafka's default partitioner for keyed records (murmur2 of the key), for producers that pick partitions
themselves to send whole batches: the stream workers and the adapters. It is the one aiokafka's
``DefaultPartitioner`` and the Java client apply, so an entity's records land in one partition whoever
writes them.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka.partitioner import murmur2

_hash_cache: dict[bytes, int] = {}
_HASH_CACHE_MAX = 500_000


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for a non-null key.

    aiokafka's murmur2 is pure Python (~4 µs a key); entity ids repeat all the time, so hashes are cached.
    """
    h = _hash_cache.get(key)
    if h is None:
        if len(_hash_cache) >= _HASH_CACHE_MAX:
            _hash_cache.clear()
        h = _hash_cache[key] = murmur2(key) & 0x7FFFFFFF
    return h % partitions


Row = tuple[bytes, bytes, int]  # key, value, timestamp (ms)


def group_by_partition(records: Sequence[Row], partitions: int) -> dict[int, list[Row]]:
    """``records`` grouped by their key's partition, in order: ``partition_for`` with its cache hit inlined,
    as this runs for every record of every tier."""
    grouped: dict[int, list[Row]] = {}
    cached = _hash_cache.get
    for rec in records:
        h = cached(rec[0])
        p = h % partitions if h is not None else partition_for(rec[0], partitions)
        rows = grouped.get(p)
        if rows is None:
            rows = grouped[p] = []
        rows.append(rec)
    return grouped
