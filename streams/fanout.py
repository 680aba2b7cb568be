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
_decoder = msgspec.msgpack.Decoder(dict)


class TierPolicy(Protocol):
    """The part of ``streams.policy.PolicyEngine`` the pipeline uses (docs/contracts.md)."""

    policy_version: str

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
    entity: str


@dataclass(slots=True)
class Released:
    observed_at: int
    stale: bool


def encode_value(obj: dict[str, Any]) -> bytes:
    return _encoder.encode(obj)


def decode_value(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = _decoder.decode(data)
    return out


class TierFanout:
    """Releases one feed's clean records to one tier."""

    def __init__(self, engine: TierPolicy, feed: str, tier: str, crs: str) -> None:
        self.engine = engine
        self.feed = feed
        self.tier = tier
        self.crs = crs
        self.min_interval_ms = engine.min_interval_ms(feed, tier)
        self.released: dict[str, Released] = {}

    def remember(self, values: Iterable[dict[str, Any]]) -> None:
        """Recover what was released before (e.g. the tier's latest state in Redis after a restart)."""
        for v in values:
            entity, observed = v.get("id"), v.get("observed_at")
            if isinstance(entity, str) and isinstance(observed, int):
                old = self.released.get(entity)
                if old is None or observed >= old.observed_at:
                    self.released[entity] = Released(observed, v.get("state") == "stale")

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
                    if last.stale or observed < last.observed_at:
                        continue
                elif observed <= last.observed_at or observed - last.observed_at < interval:
                    continue
            released[entity] = Released(observed, stale)
            out.append(rec)
        return out

    def release(self, records: list[dict[str, Any]]) -> list[TierRecord]:
        admitted = self.admit(records)
        if not admitted:
            return []
        views = self.engine.apply(self.feed, self.tier, admitted, crs=self.crs)
        aligned = len(views) == len(admitted)
        by_id = {} if aligned else {r["id"]: r for r in admitted}
        version = self.engine.policy_version
        out: list[TierRecord] = []
        for i, view in enumerate(views):
            source = admitted[i] if aligned else by_id.get(view.get("id"), {})
            if "state" in source and "state" not in view:
                view["state"] = source["state"]
            view.setdefault("crs", self.crs)
            view.setdefault("policy_version", version)
            entity = str(view.get("id", source.get("id", "")))
            ts = view.get("observed_at", source.get("observed_at", 0))
            if source.get("state") == "stale":
                ts = max(int(ts), int(source.get("expires_at", ts)))
            out.append(TierRecord(entity.encode(), _encoder.encode(view), int(ts), entity))
        return out
