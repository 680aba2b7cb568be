"""Tier fan-out: throttle per entity, apply the policy engine, encode. Pure, no I/O.

``TierFanout`` serves one feed and tier; ``FeedFanout`` serves every tier of a feed at once, computing the
tiers in one chained pass of the engine (each tier one step from the tier above) instead of one pass per
tier from the operator record.

The output value is MessagePack of the tier's dict plus ``crs`` and ``policy_version`` (docs/contracts.md).
A tier never releases an entity update older than (or equal to) the last one it released for that
entity, so replays are dropped here instead of reaching clients twice; state markers
(``"state": "stale"``) pass for the record they mark, removal markers (``"state": "removed"``) always.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec

from schemas.validity import VOUCHED_FEEDS, known_since
from streams.policy import Window

_encoder = msgspec.msgpack.Encoder()
REMOVED = "removed"  # the ``state`` of a record that marks an entity gone (docs/contracts.md)
# How a removal marker's ``state`` looks in a tier value: a bytes search finds the few candidates among
# forwarded records without decoding every one (``removed_keys``).
_REMOVED_BYTES = _encoder.encode("state") + _encoder.encode(REMOVED)
_V = TypeVar("_V")
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

    def views_by_tier(
        self, feed: str, records: list[dict[str, Any]], crs_for_tier: dict[str, str] | None = None
    ) -> dict[str, list[dict[str, Any] | None]] | None: ...

    def encoded_by_tier(
        self, feed: str, records: list[dict[str, Any]], crs_for_tier: dict[str, str] | None = None
    ) -> dict[str, list[tuple[Any, Any, bytes] | None]] | None: ...

    def window(self, feed: str, tier: str) -> Window | None: ...


# One record of a tier topic: (key, value, timestamp_ms). The key is the id the tier sees (maybe a
# pseudonym): the Kafka key and the Redis state field. A plain tuple, as it is made per record and tier and
# goes to the producer as it is.
TierRecord = tuple[bytes, bytes, int]


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
        # A delayed tier of a state feed counts its delay from when a record's state was last vouched for.
        self.vouched_delay = feed in VOUCHED_FEEDS and engine.delay_ms(feed, tier) > 0
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
        return [records[i] for i in self.admit_indices(records)]

    def admit_indices(self, records: list[dict[str, Any]]) -> list[int]:
        """Positions of the records ``admit`` would return."""
        out: list[int] = []
        interval = self.min_interval_ms
        released = self.released
        for i, rec in enumerate(records):
            entity, observed = rec["id"], rec["observed_at"]
            state = rec.get("state")
            if state == REMOVED:
                # Always passes, and leaves nothing behind: the entity has ended (cleaning.ENDING_FEEDS).
                released.pop(entity, None)
                out.append(i)
                continue
            stale = state == "stale"
            last = released.get(entity)
            if last is not None:
                if stale:
                    if last[1] or observed < last[0]:
                        continue
                elif observed <= last[0] or observed - last[0] < interval:
                    continue
            released[entity] = (observed, stale)
            out.append(i)
        return out

    def to_record(self, view: dict[str, Any], source: dict[str, Any]) -> TierRecord:
        """Encode one tier view of ``source`` (the operator record) as the tier topic's record."""
        if "crs" not in view:
            view["crs"] = self.crs
        if "policy_version" not in view:
            view["policy_version"] = self.engine.policy_version
        ts = view.get("observed_at") or source.get("observed_at", 0)
        if self.vouched_delay and "expires_at" in source:
            ts = max(ts, known_since(self.feed, source))
        state = source.get("state")
        if state is not None:
            view.setdefault("state", state)
            if state == "stale" or state == REMOVED:
                # A state marker is news at expiry time: delayed tiers count their delay from then.
                ts = max(ts, source.get("expires_at", ts))
        entity = view.get("id") or source.get("id", "")
        if type(entity) is not str:
            entity = str(entity)
        return (entity.encode(), _encoder.encode(view), int(ts))

    def release(self, records: list[dict[str, Any]]) -> TierRelease:
        """The tier's records for ``records`` plus the release marks to persist with them."""
        admitted = self.admit(records)
        if not admitted:
            return TierRelease([], {})
        views = self.engine.apply(self.feed, self.tier, admitted, crs=self.crs)
        aligned = len(views) == len(admitted)
        by_id = {} if aligned else {r["id"]: r for r in admitted}
        to_record = self.to_record
        out = [
            to_record(view, admitted[i] if aligned else by_id.get(view.get("id"), view)) for i, view in enumerate(views)
        ]
        return TierRelease(out, self.release_marks(admitted) if self.persist_marks else {})


class FeedFanout:
    """Every tier of one feed: one chained engine pass, then each tier's admitted records are encoded.

    Its input must already be deduplicated per entity (each record strictly newer than the entity's last,
    as the clean stage's cleaner guarantees); tiers without a throttle release all of it."""

    def __init__(self, engine: TierPolicy, feed: str, fanouts: dict[str, TierFanout]) -> None:
        self.engine = engine
        self.feed = feed
        self.fanouts = fanouts  # tier → its fan-out (its throttle state and CRS)
        self.crs_for_tier = {tier: f.crs for tier, f in fanouts.items()}

    def forget(self, entities: Iterable[str]) -> None:
        gone = list(entities)
        for fanout in self.fanouts.values():
            fanout.forget(gone)

    def release(self, records: list[dict[str, Any]]) -> dict[str, TierRelease]:
        if not records:
            return {}
        # Ordinary updates take the engine's encoded path; state markers need to_record's rules.
        if not any("state" in r for r in records):
            encoded = self.engine.encoded_by_tier(self.feed, records, self.crs_for_tier)
            if encoded is not None:
                return self._release(records, encoded, _rows_of_encoded)
        by_tier = self.engine.views_by_tier(self.feed, records, self.crs_for_tier)
        if by_tier is None:
            # The policy aggregates this feed's records: views do not map to records, go tier by tier.
            return {tier: fanout.release(records) for tier, fanout in self.fanouts.items()}
        return self._release(records, by_tier, _rows_of_views)

    def _release(
        self,
        records: list[dict[str, Any]],
        by_tier: dict[str, list[_V | None]],
        rows: Callable[[TierFanout, list[_V | None], list[dict[str, Any]], Iterable[int]], list[TierRecord]],
    ) -> dict[str, TierRelease]:
        out: dict[str, TierRelease] = {}
        everything = range(len(records))
        for tier, fanout in self.fanouts.items():
            # The input is already one strictly newer record per entity update (the cleaner, the aggregate
            # snapshots), so only a throttled tier needs per-entity bookkeeping.
            idx = fanout.admit_indices(records) if fanout.min_interval_ms else everything
            if not idx:
                continue
            recs = rows(fanout, by_tier[tier], records, idx)
            marks = fanout.release_marks([records[i] for i in idx]) if fanout.persist_marks else {}
            out[tier] = TierRelease(recs, marks)
        return out


def _rows_of_views(
    fanout: TierFanout, views: list[dict[str, Any] | None], records: list[dict[str, Any]], idx: Iterable[int]
) -> list[TierRecord]:
    to_record = fanout.to_record
    return [to_record(view, records[i]) for i in idx if (view := views[i]) is not None]


def _rows_of_encoded(
    fanout: TierFanout, views: list[tuple[Any, Any, bytes] | None], records: list[dict[str, Any]], idx: Iterable[int]
) -> list[TierRecord]:
    """``TierFanout.to_record`` for views the engine encoded, of records without a state marker; this loop
    runs per record and tier, so it does only what those need."""
    out: list[TierRecord] = []
    append = out.append
    vouched = fanout.vouched_delay
    feed = fanout.feed
    for i in idx:
        view = views[i]
        if view is None:
            continue
        entity, ts, value = view
        if type(entity) is not str or type(ts) is not int or not entity or not ts:
            source = records[i]
            entity = str(entity or source.get("id", ""))
            ts = int(ts or source.get("observed_at", 0))
        if vouched:
            ts = max(ts, known_since(feed, records[i]))
        append((entity.encode(), value, ts))
    return out


def removed_keys(records: Iterable[TierRecord]) -> list[bytes]:
    """Keys whose last record in ``records`` (in offset order) marks the entity removed: the fields to delete
    from the tier's snapshot after writing the records' values."""
    last: dict[bytes, bool] = {}
    for key, value, _ in records:
        if _REMOVED_BYTES in value:
            last[key] = decode_value(value).get("state") == REMOVED
        elif key in last:
            last[key] = False
    return [key for key, gone in last.items() if gone]
