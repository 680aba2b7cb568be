"""Latest state of one tier topic (tier, feed) on this node, and the changes of the current tick.

Values are the tier topic's MessagePack dicts, kept as the original bytes (the MessagePack subprotocol can
forward them unchanged) plus the decoded dict. Each entity's point is also kept in GCJ-02 for matching.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
from numpy.typing import NDArray

from geo.crs import gcj02_to_wgs84, wgs84_to_gcj02

from .codec import Codec
from .places import record_point, record_route

UPSERT = "upsert"
STALE = "stale"
REMOVE = "remove"
REMOVED_STATE = "removed"  # the tier topic's "state" of an entity that is gone (docs/contracts.md)

NAN = float("nan")
UNKNOWN = b"\x00unknown"  # a value at a past position older than the node's history (never a tier record)


class Entry:
    """One entity's latest record as the tier sees it."""

    __slots__ = ("_encoded", "id", "raw", "record", "route", "stale", "stop", "x", "y")

    def __init__(self, entity_id: str, raw: bytes, record: dict[str, Any]) -> None:
        self.id = entity_id
        self.raw = raw
        self.record = record
        self.stale = record.get("state") == STALE
        self.route = record_route(record)
        self.x, self.y = record_point(record)  # an aggregate's is the place its group names
        self.stop = record.get("stop_id")
        self._encoded: dict[tuple[str, str], bytes] = {}

    def in_crs(self, crs: str) -> dict[str, Any]:
        """The record with its point in ``crs`` (the tier topic states which datum it holds)."""
        have = self.record.get("crs", "gcj02")
        if have == crs or not isinstance(self.record.get("lng"), int | float):
            return self.record
        lng, lat = float(self.record["lng"]), float(self.record["lat"])
        lng, lat = gcj02_to_wgs84(lng, lat) if crs == "wgs84" else wgs84_to_gcj02(lng, lat)
        converted = dict(self.record)
        converted["lng"], converted["lat"], converted["crs"] = round(lng, 7), round(lat, 7), crs
        return converted

    def encoded(self, codec: Codec, crs: str) -> bytes:
        cache_key = (codec.name, crs)
        data = self._encoded.get(cache_key)
        if data is None:
            if codec.binary and self.record.get("crs", "gcj02") == crs:
                data = self.raw
            else:
                data = codec.encode_kept(self.in_crs(crs))
            self._encoded[cache_key] = data
        return data


@dataclass(slots=True)
class Change:
    kind: str  # UPSERT, STALE or REMOVE
    entry: Entry
    # The entity's point before this tick's records (NaN if it had none): streams it may be leaving are
    # found by it (stream_index.py).
    was_x: float = NAN
    was_y: float = NAN


def offsets_tail(offsets: dict[int, int]) -> str:
    """The offsets of a position (stream.py ``format_position``): ``<partition 0>.<partition 1>...``."""
    return ".".join([str(offsets[p]) for p in sorted(offsets)])


class SourceState:
    """Latest records of one (tier, feed) and the changes since the last tick."""

    def __init__(self, tier: str, feed: str, history_records: int = 100_000) -> None:
        self.tier = tier
        self.feed = feed
        self.entries: dict[str, Entry] = {}
        self.pending: dict[str, Change] = {}
        self.offsets: dict[int, int] = {}  # partition → next offset applied to ``entries``
        self._offsets_text: str | None = None  # ``offsets`` as a position's tail, until they move
        self.incoming_offsets: dict[int, int] = {}  # the same for records waiting for the next tick
        # The node's own copy of the topic's recent records (offset, entity id, value) per partition: every
        # node reads the same topic, so any node can tell a resuming client what it missed since a position.
        self.history: dict[int, deque[tuple[int, str, bytes]]] = {}
        self.history_start: dict[int, int] = {}  # every keyed record from here up is in ``history``
        self.history_complete: dict[int, bool] = {}  # the history starts at the partition's first offset
        self.apply_from: dict[int, int] = {}  # records below are already in the snapshot: history only
        self.history_records = history_records
        self.ready = False
        self._arrays: tuple[list[Entry], NDArray[np.float64], NDArray[np.float64]] | None = None

    def load(self, values: dict[str, bytes]) -> None:
        """Seed from a Redis snapshot (entity id → MessagePack bytes) without producing changes."""
        for entity_id, raw in values.items():
            entry = _decode(entity_id, raw)
            if entry is not None and entry.record.get("state") != REMOVED_STATE:
                self.entries[entity_id] = entry
        self._arrays = None

    def apply(self, entity_id: str, raw: bytes) -> None:
        """One tier topic record; identical bytes for a known entity change nothing (replays, overlaps)."""
        old = self.entries.get(entity_id)
        if old is not None and old.raw == raw:
            return
        entry = _decode(entity_id, raw)
        if entry is None:
            return
        earlier = self.pending.get(entity_id)
        if earlier is not None:  # changed twice in one tick: the point before the tick is the first's
            was_x, was_y = earlier.was_x, earlier.was_y
        else:
            was_x, was_y = (old.x, old.y) if old is not None else (NAN, NAN)
        if entry.record.get("state") == REMOVED_STATE:
            if old is None:
                return
            del self.entries[entity_id]
            self.pending[entity_id] = Change(REMOVE, entry, was_x, was_y)
        else:
            self.entries[entity_id] = entry
            self.pending[entity_id] = Change(STALE if entry.stale else UPSERT, entry, was_x, was_y)
        self._arrays = None

    # ------------------------------------------------------------------------------------------ positions

    def start_history(self, starts: dict[int, int], snapshot: dict[int, int], beginnings: dict[int, int]) -> None:
        """The node reads partition p from ``starts[p]``; records below ``snapshot[p]`` are already applied."""
        per_partition = max(1, self.history_records // max(1, len(starts)))
        for p, start in starts.items():
            self.history[p] = deque(maxlen=per_partition)
            self.history_start[p] = start
            self.history_complete[p] = start <= beginnings.get(p, 0)
            self.apply_from[p] = snapshot[p]
            self.offsets[p] = snapshot[p]
        self._offsets_text = None

    def log(self, partition: int, records: list[tuple[int, str, bytes]], next_offset: int) -> list[tuple[str, bytes]]:
        """Keep records in the history; return those the state has yet to apply (at the next tick)."""
        history = self.history.get(partition)
        if history is not None:
            for record in records:
                if len(history) == history.maxlen:
                    self.history_start[partition] = history[0][0] + 1
                    self.history_complete[partition] = False
                history.append(record)
        floor = self.apply_from.get(partition, 0)
        if next_offset > floor:
            self.incoming_offsets[partition] = next_offset
        return [(entity_id, raw) for offset, entity_id, raw in records if offset >= floor]

    def advance(self) -> None:
        """The records taken by ``log`` were applied: the state now stands at their offsets."""
        if self.incoming_offsets:
            self.offsets.update(self.incoming_offsets)
            self.incoming_offsets.clear()
            self._offsets_text = None

    def offsets_text(self) -> str:
        """``offsets`` as ``<partition 0>.<partition 1>...``, made once per tick for every stream's position."""
        if self._offsets_text is None:
            self._offsets_text = offsets_tail(self.offsets)
        return self._offsets_text

    def covers(self, position: dict[int, int]) -> bool | None:
        """True when the history reaches back to ``position``; None when the state is not there yet."""
        if set(position) != set(self.offsets):
            return False
        if any(position[p] > self.offsets[p] for p in position):
            return None
        return all(position[p] >= self.history_start.get(p, 1 << 62) for p in position)

    def changed_since(self, position: dict[int, int]) -> list[tuple[str, bytes | None]]:
        """Entities with records between ``position`` and now, in offset order, each with its value at
        ``position``: the record bytes, None if it did not exist then, or ``UNKNOWN``. Needs ``covers``."""
        out: list[tuple[str, bytes | None]] = []
        for p, history in sorted(self.history.items()):
            start, end = position[p], self.offsets[p]
            touched: dict[str, None] = {}
            before: dict[str, bytes] = {}
            for offset, entity_id, raw in reversed(history):
                if offset >= end:
                    continue
                if offset >= start:
                    touched[entity_id] = None
                elif entity_id in touched and entity_id not in before:
                    before[entity_id] = raw
                    if len(before) == len(touched):
                        break
            unknown: bytes | None = None if self.history_complete.get(p) else UNKNOWN
            for entity_id in reversed(touched):
                value = before.get(entity_id, unknown)
                if value is not None and value != UNKNOWN and _is_removed(value):
                    value = None
                out.append((entity_id, value))
        return out

    def take_changes(self) -> list[Change]:
        changes = list(self.pending.values())
        self.pending.clear()
        return changes

    def arrays(self) -> tuple[list[Entry], NDArray[np.float64], NDArray[np.float64]]:
        """All entries with their GCJ-02 points as arrays (cached until the state changes)."""
        if self._arrays is None:
            entries = list(self.entries.values())
            xs = np.fromiter((e.x for e in entries), dtype=np.float64, count=len(entries))
            ys = np.fromiter((e.y for e in entries), dtype=np.float64, count=len(entries))
            self._arrays = (entries, xs, ys)
        return self._arrays


def _is_removed(raw: bytes) -> bool:
    entry = _decode("", raw)
    return entry is None or entry.record.get("state") == REMOVED_STATE


def decode_entry(entity_id: str, raw: bytes) -> Entry | None:
    """An entry from tier topic bytes, or None if they are not a MessagePack map."""
    return _decode(entity_id, raw)


def _decode(entity_id: str, raw: bytes) -> Entry | None:
    try:
        record = msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.UnpackException):
        return None
    if not isinstance(record, dict):
        return None
    return Entry(entity_id, raw, record)
