"""The stream index (ws_server/protocol/stream_index.py) asks only the streams a tick's changes can concern:
clients must get exactly the frames they got when every stream was asked about every change."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgpack
import msgspec
import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_ws_protocol import ListSink
from ws_server.districts import lookup_district
from ws_server.protocol.codec import CODECS, JSON, decode_frame
from ws_server.protocol.filters import PairTests, compile_filter
from ws_server.protocol.hub import Hub
from ws_server.protocol.limits import DEFAULT_LIMITS
from ws_server.protocol.messages import Filter
from ws_server.protocol.session import Session
from ws_server.protocol.stream import Stream
from ws_server.protocol.stream_index import StreamIndex

T0 = 1_800_000_000_000
FILTERS: list[dict[str, Any]] = [
    {"bbox": [121.40, 31.20, 121.44, 31.23]},
    {"bbox": [121.43, 31.22, 121.47, 31.26]},
    {"near": {"lng": 121.45, "lat": 31.22, "radius_m": 1500}},
    {"district": "310101"},
    {
        "polygon": {
            "type": "Polygon",
            "coordinates": [[[121.41, 31.19], [121.47, 31.19], [121.44, 31.25], [121.41, 31.19]]],
        }
    },
    {},
    {"routes": ["r1"]},
    {"bbox": [121.40, 31.18, 121.48, 31.26], "routes": ["r2"]},
]


class EveryStreamHub(Hub):
    """The reference: every stream is asked about every change."""

    def index_streams(self, streams: Iterable[Stream]) -> StreamIndex:
        return StreamIndex(streams, envelopes=False)


def record(entity: int, place: tuple[float, float] | None, route: int, state: str | None) -> bytes:
    value: dict[str, Any] = {"id": f"e{entity}", "route_id": f"r{route}", "crs": "gcj02", "policy_version": "p"}
    if place is not None:
        value["lng"], value["lat"] = place
    if state is not None:
        value["state"] = state
    return msgpack.packb(value)


def seen(sink: ListSink) -> list[dict[str, Any]]:
    """What the client saw, without the node's random stream names."""
    out = []
    for frame in sink.frames:
        message = decode_frame(frame)
        message.pop("epoch", None)
        message.pop("stream", None)
        out.append(message)
    return out


Change = tuple[int, tuple[float, float] | None, int, str | None]  # entity, point, route, state


def replay(hub: Hub, ticks: list[list[Change]]) -> list[Any]:
    source = hub.source("public", "bus")
    source.ready = True
    hub.ingest("public", "bus", [(f"e{n}", record(n, (121.40 + n / 200, 31.20 + n / 300), 1, None)) for n in range(12)])
    hub.tick(T0)
    sinks = []
    for n, flt in enumerate(FILTERS):
        sink = ListSink()
        session = Session(hub, sink, CODECS[JSON], tier="public", limits=DEFAULT_LIMITS["public"], now_ms=T0)
        message = {"type": "subscribe", "id": f"s{n}", "feed": "bus", "filter": flt, "options": {"snapshot": True}}
        session.receive(orjson.dumps(message), T0)
        sinks.append(sink)
    for t, batch in enumerate(ticks, start=1):
        hub.ingest("public", "bus", [(f"e{n}", record(n, place, route, state)) for n, place, route, state in batch])
        hub.tick(T0 + 50 * t)
    return [seen(sink) for sink in sinks]


places = st.one_of(
    st.none(),
    st.tuples(st.floats(121.38, 121.50), st.floats(31.17, 31.28)).map(lambda p: (round(p[0], 4), round(p[1], 4))),
)
changes = st.tuples(st.integers(0, 15), places, st.integers(1, 2), st.sampled_from([None, None, "stale", "removed"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(changes, max_size=12), min_size=1, max_size=8))
def test_clients_get_the_same_frames_as_when_every_stream_is_asked(ticks: list[list[Any]]) -> None:
    indexed = replay(Hub(lookup_district, node_id="n1"), ticks)
    assert indexed == replay(EveryStreamHub(lookup_district, node_id="n1"), ticks)
    assert all(client[0]["type"] == "subscribed" for client in indexed)


def test_a_bus_leaving_a_viewport_is_removed_for_it_and_far_streams_are_not_asked() -> None:
    hub = Hub(lookup_district, node_id="n1")
    ticks: list[list[Change]] = [
        [(3, (121.49, 31.27), 1, None)]
    ]  # e3 starts inside the first bbox and drives out of every area
    out = replay(hub, ticks)
    first_bbox = out[0]
    assert first_bbox[-1]["type"] == "delta" and first_bbox[-1]["remove"] == ["e3"]
    index = hub.index_streams(hub.by_source[hub.source("public", "bus")])
    far = np.array([121.60]), np.array([31.40])
    nowhere = index.candidates(*far, *far)
    assert {s.filter.key for s, _, _ in nowhere} == {(), (("routes", ("r1",)),)}  # only the streams without an area


def test_a_large_batch_taken_in_steps_gives_the_same_frames(monkeypatch: Any) -> None:
    from ws_server.protocol import stream_index

    monkeypatch.setattr(stream_index, "PAIRS_PER_STEP", 40)  # a few changes per step: every step boundary is hit
    ticks: list[list[Change]] = [
        [(n % 16, (121.38 + n * 0.004, 31.17 + (n * 7 % 30) * 0.0035), 1 + n % 2, None) for n in range(40)]
    ] * 3
    indexed = replay(Hub(lookup_district, node_id="n1"), ticks)
    assert indexed == replay(EveryStreamHub(lookup_district, node_id="n1"), ticks)
    assert sum(len(client) for client in indexed) > 3 * len(FILTERS)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.floats(121.38, 121.52), st.floats(31.15, 31.30)), min_size=1, max_size=60),
    st.floats(100, 3000),
)
def test_pair_tests_admit_what_each_filter_mask_admits(points: list[tuple[float, float]], radius: float) -> None:
    """The twin of CompiledFilter.mask made for (filter, point) pairs of many filters at once (PairTests)."""
    specs = [*FILTERS, {"near": {"lng": 121.44, "lat": 31.22, "radius_m": radius}}]
    filters = [compile_filter(msgspec.convert(spec, Filter), "gcj02", lookup_district) for spec in specs]
    bounded = [f for f in filters if f.bounds is not None]
    xs = np.array([p[0] for p in points])
    ys = np.array([p[1] for p in points])
    rows = np.repeat(np.arange(len(bounded)), xs.size)
    lng, lat = np.tile(xs, len(bounded)), np.tile(ys, len(bounded))
    x0, y0, x1, y1 = (np.array([f.bounds[i] for f in bounded])[rows] for i in range(4))  # type: ignore[index]
    in_envelope = (lng >= x0) & (lng <= x1) & (lat >= y0) & (lat <= y1)
    admitted = PairTests(bounded).admitted(rows, lng, lat, in_envelope)
    expected = np.concatenate([f.mask(xs, ys) for f in bounded])
    assert admitted.tolist() == expected.tolist()
