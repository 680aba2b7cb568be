"""Tier fan-out for one feed and tier: throttle per entity, apply the policy engine, encode. Pure, no I/O.

The output value is MessagePack of the tier's dict plus ``crs`` and ``policy_version`` (docs/contracts.md).
A tier never releases an entity update older than (or equal to) the last one it released for that
entity, so replays after a crash are dropped here instead of reaching clients twice; state markers
(``"state": "stale"``) pass for the record they mark.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class TierPolicy(Protocol):
    """The part of ``streams.policy.PolicyEngine`` the pipeline uses (docs/contracts.md)."""

    @property
    def policy_version(self) -> str: ...

    def apply(
        self, feed: str, tier: str, records: list[dict[str, Any]], crs: str = "gcj02"
    ) -> list[dict[str, Any]]: ...

    def delay_ms(self, feed: str, tier: str) -> int: ...

    def min_interval_ms(self, feed: str, tier: str) -> int: ...


@dataclass(slots=True)
class TierRecord:
    key: bytes
    value: bytes
    timestamp_ms: int
    entity: str  # the id the tier sees (may be a pseudonym): the Kafka key and the Redis state field


@dataclass(slots=True)
class TierRelease:
    records: list[TierRecord]
    marks: dict[str, bytes]  # source entity id → release mark, for recovery


def encode_value(obj: dict[str, Any]) -> bytes:
    return _encoder.encode(obj)


_dict_decoder = msgspec.msgpack.Decoder(dict)


def decode_value(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = _dict_decoder.decode(data)
    return out


class TierFanout:
    """Releases one feed's clean records to one tier."""

    def __init__(self, engine: TierPolicy, feed: str, tier: str, crs: str, persist_marks: bool = True) -> None:
        self.engine = engine
        self.feed = feed
        self.tier = tier
        self.crs = crs
        self.min_interval_ms = engine.min_interval_ms(feed, tier)
        # source entity id → (observed_at, stale) of its last release; tuples, as this is touched per record
        self.released: dict[str, tuple[int, bool]] = {}
        # Marks are persisted where a restart needs them: a throttle to keep, or replays to drop (the
        # delay stages; the clean stage drops replays already through its recovered cleaner).
        self.persist_marks = persist_marks or self.min_interval_ms > 0

    def remember(self, marks: Iterable[tuple[str, bytes]]) -> None:
        """Recover what was released before (see ``release_marks``), e.g. from Redis after a restart."""
        for entity, data in marks:
            observed, stale = _decoder.decode(data)
            old = self.released.get(entity)
            if old is None or observed >= old[0]:
                self.released[entity] = (int(observed), bool(stale))

    def release_marks(self, records: list[dict[str, Any]]) -> dict[str, bytes]:
        """What to persist so a restarted worker neither repeats nor throttles wrongly: source id → mark."""
        out: dict[str, bytes] = {}
        released = self.released
        encode = _encoder.encode
        for rec in records:
            entity = rec["id"]
            mark = released.get(entity)
            if mark is not None:
                out[entity] = encode(mark)
        return out

    def forget(self, entities: Iterable[str]) -> None:
        for e in entities:
            self.released.pop(e, None)

    def admit(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records this tier should see now: newer than what it saw, and not more often than allowed."""
        out: list[dict[str, Any]] = []
        interval = self.min_interval_ms
        released = self.released
        for rec in records:
            entity, observed = rec["id"], rec["observed_at"]
            stale = rec.get("state") == "stale"
            last = released.get(entity)
            if last is not None:
                if stale:
                    if last[1] or observed < last[0]:
                        continue
                elif observed <= last[0] or observed - last[0] < interval:
                    continue
            released[entity] = (observed, stale)
            out.append(rec)
        return out

    def release(self, records: list[dict[str, Any]]) -> TierRelease:
        """The tier's records for ``records`` plus the release marks to persist with them."""
        admitted = self.admit(records)
        if not admitted:
            return TierRelease([], {})
        views = self.engine.apply(self.feed, self.tier, admitted, crs=self.crs)
        version = self.engine.policy_version
        crs = self.crs
        encode = _encoder.encode
        out: list[TierRecord] = []
        aligned = len(views) == len(admitted)
        by_id = {} if aligned else {r["id"]: r for r in admitted}
        for i, view in enumerate(views):
            if "crs" not in view:
                view["crs"] = crs
            if "policy_version" not in view:
                view["policy_version"] = version
            source = admitted[i] if aligned else by_id.get(view.get("id"), view)
            ts = view.get("observed_at") or source.get("observed_at", 0)
            state = source.get("state")
            if state is not None:
                view.setdefault("state", state)
                if state == "stale":
                    ts = max(ts, source.get("expires_at", ts))
            entity = view.get("id") or source.get("id", "")
            if type(entity) is not str:
                entity = str(entity)
            out.append(TierRecord(entity.encode(), encode(view), int(ts), entity))
        return TierRelease(out, self.release_marks(admitted) if self.persist_marks else {})
