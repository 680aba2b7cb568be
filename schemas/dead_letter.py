"""The dead-letter record: what could not be ingested, kept whole with the reason."""

from __future__ import annotations

from msgspec import Struct


class DeadLetter(Struct, kw_only=True):
    source: str
    feed: str
    reason: str
    received_at: int  # UTC epoch milliseconds
    original: bytes  # the upstream bytes exactly as received (a whole response or one item of it)
    locator: str | None = None  # where in the original the bad item sits, e.g. "entity[3]"
