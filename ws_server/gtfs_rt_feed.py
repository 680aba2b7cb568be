"""The latest rendering of a GTFS-Realtime feed per tier, with what conditional requests need.

A rendering is rebuilt at most every ``max_age_ms``. Its entity tag and ``Last-Modified`` change only when
the entities change: the header's timestamp is left out of the comparison, and it says when the content
last changed (GTFS-RT: "the moment where the content of this feed has been created"). So a consumer
polling an unchanged feed gets ``304 Not Modified``. The JSON rendering (``?format=json``) is made on
first demand from the same message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson
from google.protobuf.json_format import MessageToDict
from google.transit import gtfs_realtime_pb2

from .protocol.state import Entry

FeedBuilder = Callable[[Iterable[Entry], int], gtfs_realtime_pb2.FeedMessage]


@dataclass
class Rendering:
    message: gtfs_realtime_pb2.FeedMessage
    body: bytes  # the serialised FeedMessage
    fingerprint: str  # hash of the message without its header timestamp
    modified_ms: int  # when the content last changed (also the header's timestamp, in seconds)
    built_ms: int
    _json: bytes | None = field(default=None, repr=False)

    @property
    def etag(self) -> str:
        return f'"{self.fingerprint}"'

    @property
    def json_etag(self) -> str:
        return f'"{self.fingerprint}-json"'

    def json(self) -> bytes:
        """The message as JSON (protobuf's canonical JSON mapping, field names as in the .proto)."""
        if self._json is None:
            self._json = orjson.dumps(MessageToDict(self.message, preserving_proto_field_name=True))
        return self._json


def _fingerprint(message: gtfs_realtime_pb2.FeedMessage) -> str:
    timestamp = message.header.timestamp
    message.header.timestamp = 0
    try:
        return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()[:32]
    finally:
        message.header.timestamp = timestamp


class FeedRenderings:
    """One feed's renderings, per tier."""

    def __init__(self, build: FeedBuilder, max_age_ms: int = 1000) -> None:
        self.build = build
        self.max_age_ms = max_age_ms
        self._by_tier: dict[str, Rendering] = {}

    def fresh(self, tier: str, now_ms: int) -> Rendering | None:
        """The tier's rendering if it is recent enough to serve as it is."""
        rendering = self._by_tier.get(tier)
        if rendering is None or now_ms - rendering.built_ms > self.max_age_ms:
            return None
        return rendering

    def render(self, tier: str, entries: Iterable[Entry], now_ms: int) -> Rendering:
        """Build from ``entries``; an unchanged content keeps its previous timestamp, bytes and tag."""
        message = self.build(entries, now_ms)
        fingerprint = _fingerprint(message)
        previous = self._by_tier.get(tier)
        if previous is not None and previous.fingerprint == fingerprint:
            previous.built_ms = now_ms
            return previous
        message.header.timestamp = now_ms // 1000
        rendering = Rendering(message, message.SerializeToString(), fingerprint, now_ms, now_ms)
        self._by_tier[tier] = rendering
        return rendering
