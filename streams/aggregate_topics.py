"""Topic names owned by ``streams/`` on top of the contract's (``schemas/topics.py``).

- ``clean.<feed>``: validated, deduplicated, enriched canonical dicts at operator precision (MessagePack),
  key = entity id, timestamp = event time. The delayed tiers read it, so a delay survives a crash: a
  record is only released (and its offset committed) once its event time is old enough.
- aggregate feeds (``agg_*``): continuously updated aggregates, published like any feed to
  ``clean.<agg>`` and, through the tier policy, to ``tier.<tier>.<agg>``.
- ``aggparts.<agg>``: partial aggregates from each source partition, keyed by aggregate key, so one
  worker owns each aggregate key and sums the parts.
"""

from __future__ import annotations

from schemas import FEEDS, TIERS

from .aggregate_records import AGGREGATE_TYPES

# agg_vehicles: vehicles per route and per district (bus + metro); agg_parking: free slots and occupancy per
# district and near each scenic area; agg_charging: connector availability per district and per connector
# type; agg_scenic: crowding level against capacity with a 15-minute trend.
AGGREGATE_FEEDS: tuple[str, ...] = tuple(AGGREGATE_TYPES)

PIPELINE_FEEDS: tuple[str, ...] = FEEDS + AGGREGATE_FEEDS


def _check(feed: str) -> str:
    if feed not in PIPELINE_FEEDS:
        raise ValueError(f"unknown feed {feed!r}; known: {', '.join(PIPELINE_FEEDS)}")
    return feed


def clean_topic(feed: str) -> str:
    return f"clean.{_check(feed)}"


def pipeline_tier_topic(tier: str, feed: str) -> str:
    """``tier.<tier>.<feed>`` for source and aggregate feeds alike (same format as ``schemas.tier_topic``)."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; known tiers: {', '.join(TIERS)}")
    return f"tier.{tier}.{_check(feed)}"


def aggregate_parts_topic(feed: str) -> str:
    if feed not in AGGREGATE_FEEDS:
        raise ValueError(f"not an aggregate feed: {feed!r}")
    return f"aggparts.{feed}"


def all_aggregate_topics() -> list[str]:
    """Every topic streams/ adds to the contract's list (ensure_topics creates these too)."""
    names = [clean_topic(f) for f in PIPELINE_FEEDS]
    names += [aggregate_parts_topic(f) for f in AGGREGATE_FEEDS]
    names += [pipeline_tier_topic(t, f) for f in AGGREGATE_FEEDS for t in TIERS]
    return names
