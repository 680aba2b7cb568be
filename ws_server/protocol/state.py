"""Latest state of one tier topic (tier, feed) on this node, and the changes of the current tick.

Values are the tier topic's MessagePack dicts, kept as the original bytes (the MessagePack subprotocol can
forward them unchanged) plus the decoded dict. Each entity's point is also kept in GCJ-02 for matching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
from numpy.typing import NDArray

from geo.crs import gcj02_to_wgs84, wgs84_to_gcj02

from .codec import Codec

UPSERT = "upsert"
STALE = "stale"
REMOVE = "remove"
REMOVED_STATE = "removed"  # the tier topic's "state" of an entity that is gone (docs/contracts.md)

NAN = float("nan")


class Entry:
    """One entity's latest record as the tier sees it."""

    __slots__ = ("_encoded", "id", "raw", "record", "route", "stale", "x", "y")

    def __init__(self, entity_id: str, raw: bytes, record: dict[str, Any]) -> None:
        self.id = entity_id
        self.raw = raw
        self.record = record
        self.stale = record.get("state") == STALE
        self.route = record.get("route_id")
        lng, lat = record.get("lng"), record.get("lat")
        if isinstance(lng, int | float) and isinstance(lat, int | float):
            if record.get("crs", "gcj02") == "wgs84":
                lng, lat = wgs84_to_gcj02(float(lng), float(lat))
            self.x, self.y = float(lng), float(lat)
        else:
            self.x = self.y = NAN
        self._encoded: dict[tuple[str, str], bytes] = {}

    def in_crs(self, crs: str) -> dict[str, Any]:
        """The record with its point in ``crs`` (the tier topic states which datum it holds)."""
        have = self.record.get("crs", "gcj02")
        if have == crs or math.isnan(self.x):
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
                data = codec.encode(self.in_crs(crs))
            self._encoded[cache_key] = data
        return data


@dataclass(slots=True)
class Change:
    kind: str  # UPSERT, STALE or REMOVE
    entry: Entry


class SourceState:
    """Latest records of one (tier, feed) and the changes since the last tick."""

    def __init__(self, tier: str, feed: str) -> None:
        self.tier = tier
        self.feed = feed
        self.entries: dict[str, Entry] = {}
        self.pending: dict[str, Change] = {}
        self.offsets: dict[int, int] = {}  # partition → next offset to read
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
        if entry.record.get("state") == REMOVED_STATE:
            if old is None:
                return
            del self.entries[entity_id]
            self.pending[entity_id] = Change(REMOVE, entry)
        else:
            self.entries[entity_id] = entry
            self.pending[entity_id] = Change(STALE if entry.stale else UPSERT, entry)
        self._arrays = None

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


def _decode(entity_id: str, raw: bytes) -> Entry | None:
    try:
        record = msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.UnpackException):
        return None
    if not isinstance(record, dict):
        return None
    return Entry(entity_id, raw, record)
