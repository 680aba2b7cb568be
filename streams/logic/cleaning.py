"""Per-feed validation and duplicate dropping beyond what the schema decoder checks. Pure, no I/O.

The schema decoder (``schemas.decode_kafka``) already enforces types, ranges and cross-field rules. This
stage adds what needs context: Shanghai plausibility, clocks running ahead, duplicates and out-of-order
repeats per entity, and impossible jumps between consecutive vehicle positions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geo.crs import plausibly_in_shanghai_arrays

# Fastest plausible movement per feed: buses are capped well above any urban bus, metro allows the
# Shanghai maglev (431 km/h). Anything faster between two fixes is a GPS glitch or a mixed-up id.
MAX_SPEED_KMH: dict[str, float] = {"bus": 150.0, "metro": 450.0}
# A fix this close to the previous one is accepted whatever the time gap (GPS jitter at standstill).
JUMP_TOLERANCE_M = 300.0
MAX_CLOCK_AHEAD_MS = 120_000
# Feeds whose entities end, each record its own short-lived entity rather than the changing state of a
# lasting one: a finished charging session, the prediction for a stop a vehicle has since passed. Such an
# entity never comes back, so at expiry it does not go stale: it is removed from every tier (a
# ``"state": "removed"`` marker) and forgotten, or the workers, the tier snapshots and every WebSocket node
# would grow by every session and every stop-passing ever seen. A record that arrives already expired is
# refused, so forgetting cannot let a replay through as new.
ENDING_FEEDS = frozenset({"charging_sessions", "arrivals"})
# A run of this many fixes that agree with each other but not with the remembered position wins: the
# remembered one was the glitch (a bad fix accepted after a long gap, or a stale mark after a restart),
# so the entity is re-anchored instead of being rejected until enough time has passed.
REANCHOR_FIXES = 3


@dataclass(slots=True)
class EntityMark:
    """What the cleaner remembers of the last accepted record of an entity."""

    observed_at: int
    seq: int | None
    lng: float | None
    lat: float | None
    expires_at: int

    def to_list(self) -> list[Any]:
        return [self.observed_at, self.seq, self.lng, self.lat, self.expires_at]

    @classmethod
    def from_list(cls, v: list[Any]) -> EntityMark:
        return cls(int(v[0]), v[1], v[2], v[3], int(v[4]))


@dataclass
class CleanResult:
    accepted: list[dict[str, Any]] = field(default_factory=list)
    accepted_index: list[int] = field(default_factory=list)  # position of each accepted record in the input
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (input position, reason)
    duplicates: int = 0


def haversine_m(lng1: float, lat1: float, lng2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 12_742_000.0 * math.asin(math.sqrt(min(1.0, a)))


class Cleaner:
    """Validates and deduplicates one feed's records in arrival order, remembering the last per entity."""

    def __init__(self, feed: str) -> None:
        self.feed = feed
        self.ending = feed in ENDING_FEEDS
        self.max_speed_kmh = MAX_SPEED_KMH.get(feed)
        self.marks: dict[str, EntityMark] = {}
        # Per entity: the last fix rejected as an impossible jump, and how many consecutive rejected fixes
        # agree with each other up to it.
        self.candidates: dict[str, tuple[EntityMark, int]] = {}

    def forget(self, entities: Iterable[str]) -> None:
        """Drop what is remembered of entities this worker no longer owns (after a rebalance)."""
        for e in entities:
            self.marks.pop(e, None)
            self.candidates.pop(e, None)

    def remember(self, marks: Iterable[tuple[str, EntityMark]]) -> None:
        """Merge recovered marks (e.g. after a restart), keeping the newest per entity."""
        for entity, mark in marks:
            old = self.marks.get(entity)
            if old is None or (mark.observed_at, mark.expires_at) > (old.observed_at, old.expires_at):
                self.marks[entity] = mark

    def clean(self, records: list[dict[str, Any]], now_ms: int) -> CleanResult:
        result = CleanResult()
        if not records:
            return result
        in_shanghai = self._plausible(records)
        for i, rec in enumerate(records):
            if not in_shanghai[i]:
                result.rejected.append((i, "position outside Shanghai"))
                continue
            observed = rec["observed_at"]
            if observed > now_ms + MAX_CLOCK_AHEAD_MS:
                result.rejected.append((i, f"observed_at is {(observed - now_ms) // 1000} s in the future"))
                continue
            if self.ending and rec["expires_at"] <= now_ms:
                result.rejected.append((i, "expired on arrival: a record of an ended entity is not news"))
                continue
            entity = rec["id"]
            seq = rec.get("seq")
            prev = self.marks.get(entity)
            if prev is not None:
                if observed < prev.observed_at or (
                    observed == prev.observed_at
                    and (seq is None or prev.seq is None or seq <= prev.seq)
                    and rec["expires_at"] <= prev.expires_at
                ):
                    # The same (entity, observed_at) again, or an older update arriving late: the latest
                    # state must not go backwards. The same state vouched for by a later poll (its
                    # expires_at moved on) is a refresh, not a duplicate: it keeps the entity from going stale.
                    result.duplicates += 1
                    continue
                reason = self._impossible_jump(prev, rec)
                if reason and not self._reanchors(entity, rec):
                    result.rejected.append((i, reason))
                    continue
                self.candidates.pop(entity, None)
            self.marks[entity] = EntityMark(observed, seq, rec.get("lng"), rec.get("lat"), rec["expires_at"])
            result.accepted.append(rec)
            result.accepted_index.append(i)
        return result

    def _plausible(self, records: list[dict[str, Any]]) -> np.ndarray:
        # Records without a place (some charging sessions) are plausible by definition.
        lngs = np.fromiter((r.get("lng", 121.47) or 121.47 for r in records), np.float64, len(records))
        lats = np.fromiter((r.get("lat", 31.23) or 31.23 for r in records), np.float64, len(records))
        return plausibly_in_shanghai_arrays(lngs, lats)

    def _reanchors(self, entity: str, rec: dict[str, Any]) -> bool:
        """Count ``rec`` (an impossible jump from the remembered fix) towards a re-anchoring run; True once
        ``REANCHOR_FIXES`` consecutive such fixes agree with each other."""
        fix = EntityMark(rec["observed_at"], rec.get("seq"), rec.get("lng"), rec.get("lat"), rec["expires_at"])
        run = 1
        cand = self.candidates.get(entity)
        if cand is not None and fix.observed_at > cand[0].observed_at and not self._impossible_jump(cand[0], rec):
            run = cand[1] + 1
        if run >= REANCHOR_FIXES:
            return True
        self.candidates[entity] = (fix, run)
        return False

    def _impossible_jump(self, prev: EntityMark, rec: dict[str, Any]) -> str | None:
        if self.max_speed_kmh is None or prev.lng is None or prev.lat is None:
            return None
        dist = haversine_m(prev.lng, prev.lat, rec["lng"], rec["lat"])
        if dist <= JUMP_TOLERANCE_M:
            return None
        hours = (rec["observed_at"] - prev.observed_at) / 3_600_000
        speed = dist / 1000 / hours if hours > 0 else math.inf
        if speed > self.max_speed_kmh:
            return f"impossible jump of {dist:.0f} m at {speed:.0f} km/h since the previous fix"
        return None
