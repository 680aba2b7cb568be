"""Skip records that repeat the entity's last content (only the timestamps or sequence moved).

A repeat is still sent once it would keep the entity current past the copy downstream's next refresh
mark: an entity that keeps reporting the same content (a parked bus, a full car park, a charging station
whose status has not changed for hours, a prediction that holds) is alive, and without a fresh copy the
stream workers would mark it stale (an arrival: remove it) at its expiry. The marks come every half
validity period (the feed's TTL), so a copy is renewed at most half a period after the last, at a phase
of each entity's own: entities first sent together (a whole feed at start-up) are then refreshed spread
over the polls of a half period. With one mark for all, the city's ~88,000 predicted arrivals were re-sent
in one poll a minute, and the buses' positions queued behind them in the stream worker for seconds.

A record counts as sent only once Kafka acknowledged it: ``claim`` hands out a receipt, and until the
receipt says "delivered" the content is merely pending. Pending content still suppresses repeats (it is on
its way), but if Kafka refuses it for good the next poll sends the entity again.

Each claim may bring the JSON of the source item the record was built from. The filter then remembers the
item with the record's fingerprint and expiry, and ``unchanged`` answers, for a later item, whether it is
that same item and a claim of its record would be turned down: the parser then skips building it
(adapters/formats/sh_envelope.py). The answer applies the claim's own rule to the remembered record, so it
changes exactly when a claim's would: a refused record is built and sent again at the next poll.

Memory stays bounded: an entity whose last content expired more than ``horizon_ms`` before the newest
record the filter has seen is forgotten (a fleet's vehicles stay, but finished charging sessions, each its
own entity, would otherwise pile up by the hundred thousand a day). Times are the records' own, so a
simulated clock behaves like a real one.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import zlib
from collections.abc import Callable

import msgspec

from schemas import Record, encode_kafka
from schemas.validity import TTL_MS

_UNSET_TIME = 946_684_800_000  # a valid placeholder: fingerprints must ignore event and expiry times

Receipt = Callable[[bool], None]
_Key = tuple[str, str]
# (claim number, fingerprint, expires_at, refresh_at: the expires_at a repeat needs to be sent); later
# claims win over earlier ones
_Mark = tuple[int, bytes, int, int]
HORIZON_MS = 2 * 86_400_000
_SWEEP_EVERY = 10_000  # claims between sweeps


def fingerprint(record: Record) -> bytes:
    fields: dict[str, object] = {"observed_at": _UNSET_TIME, "expires_at": _UNSET_TIME}
    if getattr(record, "seq", None) is not None:
        fields["seq"] = None
    stripped = msgspec.structs.replace(record, **fields)
    return hashlib.blake2b(encode_kafka(stripped), digest_size=16).digest()


def next_refresh(entity: str, expires_at: int, ttl_ms: int) -> int:
    """The first of ``entity``'s refresh marks after ``expires_at``, the expiry of the copy sent: marks come
    every half ``ttl_ms`` at a phase of the entity's own, so the next is at most half a period on."""
    half = max(1, ttl_ms // 2)
    phase = zlib.crc32(entity.encode()) % half
    return expires_at - (expires_at - phase) % half + half


class ChangeFilter:
    """Per-entity fingerprints, per feed: the last acknowledged one and the last one on its way."""

    def __init__(self, horizon_ms: int = HORIZON_MS) -> None:
        self.horizon_ms = horizon_ms
        self._acknowledged: dict[_Key, _Mark] = {}
        self._pending: dict[_Key, _Mark] = {}
        self._claims = itertools.count()
        self._newest = 0  # the latest observed_at claimed so far
        # entity → (its last source item's JSON, that item's record's fingerprint and expires_at)
        self._items: dict[_Key, tuple[bytes, bytes, int]] = {}

    def claim(self, feed: str, record: Record, item_json: bytes = b"") -> Receipt | None:
        """None if the record repeats the entity's latest content; otherwise a receipt to settle it with.
        ``item_json``: the source item the record was built from, remembered for ``unchanged``."""
        key = (feed, record.id)
        mark = fingerprint(record)
        self._newest = max(self._newest, record.observed_at)
        if item_json:
            self._items[key] = (item_json, mark, record.expires_at)
        latest = self._pending.get(key) or self._acknowledged.get(key)
        if latest is not None and latest[1] == mark and record.expires_at < latest[3]:
            return None
        ttl = TTL_MS.get(feed, record.expires_at - record.observed_at)
        refresh_at = next_refresh(record.id, record.expires_at, ttl)
        claimed = (next(self._claims), mark, record.expires_at, refresh_at)
        if claimed[0] % _SWEEP_EVERY == _SWEEP_EVERY - 1:
            self.sweep()
        self._pending[key] = claimed
        return functools.partial(self._settle, key, claimed)

    def unchanged(self, feed: str, entity: str, item_json: bytes) -> bool:
        """True when ``item_json`` is the entity's last claimed item and a claim of its record now would return
        None. Called from the parser's thread: it only reads, one dictionary lookup at a time."""
        key = (feed, entity)
        item = self._items.get(key)
        if item is None or item[0] != item_json:
            return False
        latest = self._pending.get(key) or self._acknowledged.get(key)
        return latest is not None and latest[1] == item[1] and item[2] < latest[3]

    def sweep(self) -> int:
        """Forget acknowledged entities whose content expired ``horizon_ms`` before the newest record; how
        many were forgotten."""
        cutoff = self._newest - self.horizon_ms
        gone = [key for key, mark in self._acknowledged.items() if mark[2] < cutoff]
        for key in gone:
            del self._acknowledged[key]
            self._items.pop(key, None)
        return len(gone)

    def _settle(self, key: _Key, claimed: _Mark, delivered: bool) -> None:
        if self._pending.get(key) == claimed:
            del self._pending[key]
        if delivered:
            known = self._acknowledged.get(key)
            if known is None or known[0] < claimed[0]:
                self._acknowledged[key] = claimed

    @property
    def pending(self) -> int:
        return len(self._pending)

    def __len__(self) -> int:
        return len(self._acknowledged.keys() | self._pending.keys())
