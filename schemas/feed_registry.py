"""Every feed a client can receive, in one registry: the source feeds and the aggregate feeds alike.

A client reaches each of them the same ways (a WebSocket ``subscribe`` or ``replay``, ``shfeeds tail`` and
``shfeeds replay``, the HTTP endpoints that serve feeds) at its tier's precision, from ``tier.<tier>.<feed>``.
What differs is only what a record is: a source feed's entity (a bus, a car park...) or an aggregate's group
(a district's free parking slots...). Code that lists or checks client feeds asks this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from msgspec import Struct

from .aggregates import AGGREGATE_TYPES
from .records import FEED_TYPES
from .topics import PIPELINE_FEEDS

FeedKind = Literal["source", "aggregate"]


@dataclass(frozen=True)
class FeedInfo:
    name: str
    kind: FeedKind  # "source": from upstream systems; "aggregate": computed by the stream layer (agg_*)
    record_type: type[Struct]  # the canonical record (schemas/records.py or schemas/aggregates.py)

    @property
    def summary(self) -> str:
        """One line on what the feed's records are (from the record type's docstring)."""
        doc = (self.record_type.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else self.name


def _registry() -> dict[str, FeedInfo]:
    out = {name: FeedInfo(name, "source", kind) for name, kind in FEED_TYPES.items()}
    out.update({name: FeedInfo(name, "aggregate", kind) for name, kind in AGGREGATE_TYPES.items()})
    return out


FEED_REGISTRY: dict[str, FeedInfo] = _registry()
CLIENT_FEEDS: tuple[str, ...] = PIPELINE_FEEDS  # every feed with tier topics: a client may subscribe, replay...


def is_client_feed(name: str) -> bool:
    return name in FEED_REGISTRY


def unknown_feed_message(name: str) -> str:
    return f"unknown feed {name!r}; feeds: {', '.join(CLIENT_FEEDS)}"
