"""Per-feed replay bounds: the maximum event-time skew inside a tier topic partition, and how far before
``from`` the as-of snapshot looks for an entity's last record. Both default to the feed's TTL: a record
older than that when written is already stale, and an entity with no record for that long is no longer
current. ``SHFEEDS_REPLAY_MAX_SKEW_MS`` overrides the skew for every feed."""

from __future__ import annotations

import os

from schemas.validity import TTL_MS

DEFAULT_TTL_MS = 900_000  # aggregate feeds: their sources' state TTL


def max_skew_ms(feed: str) -> int:
    override = os.environ.get("SHFEEDS_REPLAY_MAX_SKEW_MS")
    if override:
        return int(override)
    return TTL_MS.get(feed, DEFAULT_TTL_MS)


def lookback_ms(feed: str) -> int:
    return TTL_MS.get(feed, DEFAULT_TTL_MS)
