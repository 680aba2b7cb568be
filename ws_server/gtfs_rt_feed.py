"""The latest rendering of a GTFS-Realtime feed per view (a tier, or a tier's agreement subset of feeds),
with what conditional requests need.

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

from .gtfs_rt import feed_message_bytes
from .protocol.state import Entry

EntityEncoder = Callable[[Iterable[Entry], int], list[bytes]]
"""Entries of one tier and the time → the serialised ``FeedEntity`` messages of the feed, in a stable order
(``ws_server.gtfs_rt.VehicleEntities`` is one). One encoder per tier, so it may keep what it built."""


@dataclass
class Rendering:
    body: bytes  # the serialised FeedMessage
    fingerprint: str  # hash of the entities (the header's timestamp left out)
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
        """The message as JSON (protobuf's JSON mapping, field names as in the .proto). Slow for a full
        feed (pure Python): call it off the event loop."""
        if self._json is None:
            message = gtfs_realtime_pb2.FeedMessage.FromString(self.body)
            self._json = orjson.dumps(MessageToDict(message, preserving_proto_field_name=True))
        return self._json


class FeedRenderings:
    """One feed's renderings, per view: a tier, or a tier read through an agreement naming some of the feed's
    sources (``ws_server.http_routes`` names such a view ``licensed:bus``)."""

    def __init__(self, new_encoder: Callable[[], EntityEncoder], max_age_ms: int = 1000) -> None:
        self.new_encoder = new_encoder
        self.max_age_ms = max_age_ms
        self._by_view: dict[str, Rendering] = {}
        self._encoders: dict[str, EntityEncoder] = {}

    def fresh(self, view: str, now_ms: int) -> Rendering | None:
        """The view's rendering if it is recent enough to serve as it is."""
        rendering = self._by_view.get(view)
        if rendering is None or now_ms - rendering.built_ms > self.max_age_ms:
            return None
        return rendering

    def render(self, view: str, entries: Iterable[Entry], now_ms: int) -> Rendering:
        """Build from ``entries``; an unchanged content keeps its previous timestamp, bytes and tag."""
        encoder = self._encoders.get(view)
        if encoder is None:
            encoder = self._encoders[view] = self.new_encoder()
        entities = encoder(entries, now_ms)
        digest = hashlib.sha256()
        for entity in entities:
            digest.update(len(entity).to_bytes(4, "big"))
            digest.update(entity)
        fingerprint = digest.hexdigest()[:32]
        previous = self._by_view.get(view)
        if previous is not None and previous.fingerprint == fingerprint:
            previous.built_ms = now_ms
            return previous
        rendering = Rendering(feed_message_bytes(now_ms // 1000, entities), fingerprint, now_ms, now_ms)
        self._by_view[view] = rendering
        return rendering
