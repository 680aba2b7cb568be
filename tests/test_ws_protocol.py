"""Protocol v1 core without I/O: sessions, streams, filters, resume, conflation, limits."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ws_server.districts import lookup_district
from ws_server.protocol.codec import CODECS, JSON, MSGPACK, decode_frame
from ws_server.protocol.errors import CLOSE_FLOOD, CLOSE_SLOW
from ws_server.protocol.hub import Hub
from ws_server.protocol.limits import DEFAULT_LIMITS, Limits
from ws_server.protocol.session import Session

T0 = 1_800_000_000_000


class ListSink:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.held = 0  # pretend unsent bytes, to play a slow reader
        self.closed: tuple[int, str] | None = None

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)

    def send_many(self, frames: list[bytes]) -> None:
        self.frames.extend(frames)

    def backlog(self) -> int:
        return self.held

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def take(self) -> list[dict[str, Any]]:
        out = [decode_frame(f) for f in self.frames]
        self.frames.clear()
        return out


def bus(entity_id: str, lng: float, lat: float, **extra: Any) -> bytes:
    record = {"id": entity_id, "lng": lng, "lat": lat, "crs": "gcj02", "policy_version": "p1", **extra}
    return msgpack.packb(record)


def make(
    tier: str = "public",
    codec: str = JSON,
    limits: Limits | None = None,
    buffer_frames: int = 2048,
    frame_gap_ms: int = 0,
) -> tuple[Hub, Session, ListSink]:
    hub = Hub(lookup_district, node_id="n1", buffer_frames=buffer_frames, frame_gap_ms=frame_gap_ms)
    hub.source(tier, "bus").ready = True
    sink = ListSink()
    session = Session(hub, sink, CODECS[codec], tier=tier, limits=limits or DEFAULT_LIMITS[tier], now_ms=T0)
    return hub, session, sink


def send(session: Session, message: dict[str, Any], now: int = T0) -> None:
    session.receive(orjson.dumps(message).decode(), now)


def ids_of(records: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in records}


PEOPLES_SQUARE = (121.4737, 31.2304)  # Huangpu, GCJ-02


def test_snapshot_then_deltas_with_sequence_numbers() -> None:
    hub, session, sink = make()
    hub.ingest("public", "bus", [("b1", bus("b1", *PEOPLES_SQUARE))])
    hub.tick(T0)
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"})
    subscribed, snapshot = sink.take()
    assert subscribed["type"] == "subscribed" and subscribed["seq"] == 0
    assert snapshot["type"] == "snapshot" and ids_of(snapshot["records"]) == {"b1"} and snapshot["last"]
    hub.ingest("public", "bus", [("b2", bus("b2", 121.48, 31.23))])
    hub.tick(T0 + 50)
    (delta,) = sink.take()
    assert delta["seq"] == 1 and delta["stream"] == subscribed["stream"] and ids_of(delta["upsert"]) == {"b2"}


def test_bbox_keeps_outside_entities_out_and_reports_leaving() -> None:
    hub, session, sink = make()
    send(session, {"type": "subscribe", "id": "a", "feed": "bus", "filter": {"bbox": [121.4, 31.2, 121.5, 31.3]}})
    sink.take()
    hub.ingest("public", "bus", [("in", bus("in", 121.45, 31.25)), ("out", bus("out", 121.6, 31.25))])
    hub.tick(T0 + 50)
    (delta,) = sink.take()
    assert ids_of(delta["upsert"]) == {"in"}
    hub.ingest("public", "bus", [("in", bus("in", 121.7, 31.25))])
    hub.tick(T0 + 100)
    (delta,) = sink.take()
    assert delta["remove"] == ["in"] and delta["upsert"] == []


@pytest.mark.parametrize(
    ("flt", "inside", "outside"),
    [
        ({"district": "黄浦"}, PEOPLES_SQUARE, (121.60, 31.20)),
        ({"district": ["Xuhui", "310101"]}, PEOPLES_SQUARE, (121.60, 31.20)),
        ({"near": {"lng": 121.4737, "lat": 31.2304, "radius_m": 500}}, (121.4760, 31.2320), (121.49, 31.24)),
        (
            {
                "polygon": {
                    "type": "Polygon",
                    "coordinates": [[[121.4, 31.2], [121.5, 31.2], [121.45, 31.3], [121.4, 31.2]]],
                }
            },
            (121.45, 31.22),
            (121.41, 31.29),
        ),
        ({"routes": ["71"]}, PEOPLES_SQUARE, PEOPLES_SQUARE),
        ({"ids": ["in"]}, PEOPLES_SQUARE, PEOPLES_SQUARE),
    ],
)
def test_each_filter(flt: dict[str, Any], inside: tuple[float, float], outside: tuple[float, float]) -> None:
    hub, session, sink = make()
    send(session, {"type": "subscribe", "id": "a", "feed": "bus", "filter": flt})
    assert sink.take()[0]["type"] == "subscribed"
    hub.ingest(
        "public", "bus", [("in", bus("in", *inside, route_id="71")), ("out", bus("out", *outside, route_id="49"))]
    )
    hub.tick(T0 + 50)
    (delta,) = sink.take()
    assert ids_of(delta["upsert"]) == {"in"}


def test_equal_filters_share_one_stream_and_the_same_bytes() -> None:
    hub, s1, sink1 = make()
    sink2 = ListSink()
    s2 = Session(hub, sink2, CODECS[JSON], tier="public", limits=DEFAULT_LIMITS["public"], now_ms=T0)
    send(s1, {"type": "subscribe", "id": "a", "feed": "bus", "filter": {"bbox": [121.4, 31.2, 121.5, 31.3]}})
    send(s2, {"type": "subscribe", "id": "zz", "feed": "bus", "filter": {"bbox": [121.4, 31.2, 121.5, 31.30000001]}})
    sink1.frames.clear()
    sink2.frames.clear()
    hub.ingest("public", "bus", [("b", bus("b", 121.45, 31.25))])
    assert hub.tick(T0 + 50) == 1  # one frame built
    assert sink1.frames[0] is sink2.frames[0]  # the very same bytes object for both members


def test_update_moves_the_viewport_without_resending_what_stays_inside() -> None:
    hub, session, sink = make()
    hub.ingest(
        "public",
        "bus",
        [
            ("left", bus("left", 121.41, 31.25)),
            ("mid", bus("mid", 121.45, 31.25)),
            ("right", bus("right", 121.55, 31.25)),
        ],
    )
    hub.tick(T0)
    send(session, {"type": "subscribe", "id": "a", "feed": "bus", "filter": {"bbox": [121.4, 31.2, 121.5, 31.3]}})
    snapshot = sink.take()[1]
    assert ids_of(snapshot["records"]) == {"left", "mid"}
    send(session, {"type": "update", "id": "a", "filter": {"bbox": [121.44, 31.2, 121.6, 31.3]}})
    updated, diff = sink.take()
    assert updated["type"] == "updated" and diff["diff"] is True
    assert ids_of(diff["upsert"]) == {"right"} and diff["remove"] == ["left"]
    hub.ingest("public", "bus", [("right", bus("right", 121.56, 31.25))])
    hub.tick(T0 + 50)
    (delta,) = sink.take()
    assert delta["stream"] == updated["stream"] and ids_of(delta["upsert"]) == {"right"}


def test_significance_metres_suppresses_small_moves() -> None:
    hub, session, sink = make()
    hub.ingest("public", "bus", [("b", bus("b", 121.45, 31.25))])
    hub.tick(T0)
    send(session, {"type": "subscribe", "id": "a", "feed": "bus", "options": {"significance": {"metres": 100}}})
    sink.take()
    hub.ingest("public", "bus", [("b", bus("b", 121.4501, 31.25))])  # ~10 m
    hub.tick(T0 + 50)
    assert sink.take() == []
    hub.ingest("public", "bus", [("b", bus("b", 121.4520, 31.25))])  # ~190 m from the last one sent
    hub.tick(T0 + 100)
    (delta,) = sink.take()
    assert delta["upsert"][0]["lng"] == 121.452


def test_significance_slots_and_status_only() -> None:
    hub, session, sink = make()
    lot = {"free": 50, "status": "open"}
    hub.ingest("public", "bus", [("p", bus("p", 121.45, 31.25, **lot))])
    hub.tick(T0)
    send(session, {"type": "subscribe", "id": "s", "feed": "bus", "options": {"significance": {"slots": 5}}})
    send(session, {"type": "subscribe", "id": "t", "feed": "bus", "options": {"significance": {"status_only": True}}})
    sink.take()
    hub.ingest("public", "bus", [("p", bus("p", 121.45, 31.25, free=47, status="open"))])
    hub.tick(T0 + 50)
    assert sink.take() == []
    hub.ingest("public", "bus", [("p", bus("p", 121.45, 31.25, free=44, status="open"))])
    hub.tick(T0 + 100)
    assert [d["upsert"][0]["free"] for d in sink.take()] == [44]
    hub.ingest("public", "bus", [("p", bus("p", 121.45, 31.25, free=44, status="full"))])
    hub.tick(T0 + 150)
    assert len(sink.take()) == 2  # a status change passes both


def test_min_interval_batches_and_conflates() -> None:
    hub, session, sink = make()
    send(session, {"type": "subscribe", "id": "a", "feed": "bus", "options": {"min_interval_ms": 1000}})
    sink.take()
    for n in range(5):
        hub.ingest("public", "bus", [("b", bus("b", 121.45 + n / 1000, 31.25))])
        hub.tick(T0 + 1000 + n * 100)
    frames = sink.take()
    assert len(frames) == 1  # the first tick after the window opened
    hub.tick(T0 + 2100)
    (later,) = sink.take()
    assert later["upsert"][0]["lng"] == pytest.approx(121.454)  # only the latest state of the window


def test_a_quiet_stream_sends_at_the_next_tick_and_a_busy_one_keeps_the_node_frame_gap() -> None:
    hub, session, sink = make(frame_gap_ms=50)
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"})
    sink.take()
    sent_at = []
    for n in range(10):  # a change every 20 ms tick: a busy stream (a district, the whole feed)
        hub.ingest("public", "bus", [("b", bus("b", 121.45 + n / 1000, 31.25))])
        now = T0 + 1000 + n * 20
        hub.tick(now)
        sent_at += [now for _ in sink.take()]
    assert sent_at == [T0 + 1000, T0 + 1060, T0 + 1120, T0 + 1180]  # frames at least 50 ms apart
    hub.ingest("public", "bus", [("b", bus("b", 121.46, 31.25))])
    hub.tick(T0 + 1500)  # quiet for longer than the gap: the change goes out at the very next tick
    (frame,) = sink.take()
    assert frame["upsert"][0]["lng"] == pytest.approx(121.46)


def test_stale_and_removed_states() -> None:
    hub, session, sink = make()
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"})
    hub.ingest("public", "bus", [("b", bus("b", 121.45, 31.25))])
    hub.tick(T0 + 50)
    sink.take()
    hub.ingest("public", "bus", [("b", bus("b", 121.45, 31.25, state="stale"))])
    hub.tick(T0 + 100)
    assert sink.take()[0]["stale"] == ["b"]
    hub.ingest("public", "bus", [("b", bus("b", 121.45, 31.25, state="removed"))])
    hub.tick(T0 + 150)
    assert sink.take()[0]["remove"] == ["b"]
    assert "b" not in hub.source("public", "bus").entries


def test_resume_replays_exactly_the_missed_frames() -> None:
    hub, session, sink = make()
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"})
    sub = sink.take()[0]
    for n in range(3):
        hub.ingest("public", "bus", [(f"b{n}", bus(f"b{n}", 121.45, 31.25))])
        hub.tick(T0 + 50 * (n + 1))
    seen = sink.take()
    assert [d["seq"] for d in seen] == [1, 2, 3]
    session.close(1000, "gone")  # the connection drops after seq 1 was read
    for n in range(3, 5):
        hub.ingest("public", "bus", [(f"b{n}", bus(f"b{n}", 121.45, 31.25))])
        hub.tick(T0 + 50 * (n + 1))
    _, again, sink2 = make()
    again.hub = hub
    send(again, {"type": "subscribe", "id": "a", "feed": "bus", "resume": {"epoch": sub["epoch"], "seq": 1}})
    frames = sink2.take()
    assert frames[0]["type"] == "subscribed" and frames[0]["resumed"] is True
    assert [f["seq"] for f in frames[1:]] == [2, 3, 4, 5]
    assert [ids_of(f["upsert"]) for f in frames[1:]] == [{"b1"}, {"b2"}, {"b3"}, {"b4"}]


def test_resume_too_old_or_unknown_gets_an_explicit_reset() -> None:
    hub, session, sink = make(buffer_frames=2)
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"})
    epoch = sink.take()[0]["epoch"]
    for n in range(5):
        hub.ingest("public", "bus", [(f"b{n}", bus(f"b{n}", 121.45, 31.25))])
        hub.tick(T0 + 50 * (n + 1))
    send(session, {"type": "unsubscribe", "id": "a"})
    sink.take()
    send(session, {"type": "subscribe", "id": "a", "feed": "bus", "resume": {"epoch": epoch, "seq": 1}})
    frames = sink.take()
    assert [f["type"] for f in frames] == ["subscribed", "reset", "snapshot"]
    assert frames[1]["reason"] == "cursor_too_old" and len(frames[2]["records"]) == 5
    send(session, {"type": "subscribe", "id": "b", "feed": "bus", "resume": {"epoch": "other-node-s9", "seq": 1}})
    assert [f.get("reason") for f in sink.take()] == [None, "epoch_unknown", None]


def test_slow_reader_gets_one_conflated_catch_up_then_is_closed_if_it_never_reads() -> None:
    limits = Limits(byte_budget=1000, slow_after_ms=5000)
    hub, session, sink = make(limits=limits)
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"})
    sink.take()
    sink.held = 5000  # the peer stopped reading
    for n in range(10):
        hub.ingest("public", "bus", [("b", bus("b", 121.45 + n / 1000, 31.25)), (f"x{n}", bus(f"x{n}", 121.4, 31.2))])
        hub.tick(T0 + 50 * (n + 1))
    assert sink.take() == []
    sink.held = 0
    hub.tick(T0 + 600)
    (catch_up,) = sink.take()
    assert catch_up["conflated"] is True and catch_up["from_seq"] == 1 and catch_up["seq"] == 10
    records = {r["id"]: r for r in catch_up["upsert"]}
    assert len(records) == 11 and records["b"]["lng"] == pytest.approx(121.459)  # latest state only
    assert (hub.conflated_frames, hub.slow_closes) == (1, 0)  # what /metrics reports to the operator
    sink.held = 5000
    hub.ingest("public", "bus", [("b", bus("b", 121.5, 31.25))])
    hub.tick(T0 + 700)
    hub.tick(T0 + 700 + 5001)
    assert sink.closed is not None and sink.closed[0] == CLOSE_SLOW
    assert (hub.conflated_frames, hub.slow_closes) == (1, 1)


def test_malformed_messages_get_error_codes_and_the_session_stays_usable() -> None:
    _, session, sink = make()
    cases = [
        ("{not json", "bad_encoding"),
        ('{"type": "subscribe", "id": "a"}', "invalid_message"),
        ('{"type": "teleport"}', "invalid_message"),
        ('{"type": "subscribe", "id": "a", "feed": "ferries"}', "unknown_feed"),
        ('{"type": "subscribe", "id": "a", "feed": "bus", "filter": {"district": "Atlantis"}}', "invalid_filter"),
        ('{"type": "subscribe", "id": "a", "feed": "bus", "filter": {"bbox": [2, 2, 1, 1]}}', "invalid_filter"),
        (
            '{"type": "subscribe", "id": "a", "feed": "bus", "filter": {"polygon": {"type": "Polygon", '
            '"coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}}}',
            "invalid_filter",
        ),
        ('{"type": "subscribe", "id": "a", "feed": "bus", "options": {"crs": "wgs84"}}', "crs_not_allowed"),
        ('{"type": "unsubscribe", "id": "nope"}', "unknown_subscription"),
    ]
    for n, (raw, code) in enumerate(cases):
        session.receive(raw, T0 + n * 1000)
        (error,) = sink.take()
        assert error["type"] == "error" and error["code"] == code, raw
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"}, T0 + 60_000)
    assert sink.take()[0]["type"] == "subscribed"
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"}, T0 + 61_000)
    assert sink.take()[0]["code"] == "duplicate_id"


def test_subscription_cap() -> None:
    _, session, sink = make(limits=Limits(max_subscriptions=2, burst=100))
    for n in range(3):
        send(session, {"type": "subscribe", "id": f"s{n}", "feed": "bus", "options": {"snapshot": False}})
    assert [f.get("code") for f in sink.take()] == [None, None, "too_many_subscriptions"]


def test_flooding_client_is_rate_limited_then_closed() -> None:
    _, session, sink = make(limits=Limits(messages_per_s=1, burst=3, flood_drops=20))
    for _ in range(3):
        send(session, {"type": "ping"})
    assert [f["type"] for f in sink.take()] == ["pong"] * 3
    send(session, {"type": "ping"})
    frames = sink.take()
    assert frames[0]["code"] == "rate_limited" and frames[1]["type"] == "quota"
    for _ in range(30):
        send(session, {"type": "ping"})
    assert sink.closed is not None and sink.closed[0] == CLOSE_FLOOD


def test_wgs84_for_licensed_converts_points() -> None:
    hub, session, sink = make(tier="licensed")
    hub.ingest("licensed", "bus", [("b", bus("b", 121.4737, 31.2304))])
    hub.tick(T0)
    send(session, {"type": "subscribe", "id": "a", "feed": "bus", "options": {"crs": "wgs84"}})
    record = sink.take()[1]["records"][0]
    assert record["crs"] == "wgs84"
    assert 0.003 < 121.4737 - record["lng"] < 0.006  # GCJ-02 sits a few hundred metres east of WGS-84


def test_msgpack_subprotocol_frames_decode() -> None:
    hub, session, sink = make(codec=MSGPACK)
    hub.ingest("public", "bus", [("b", bus("b", 121.45, 31.25))])
    hub.tick(T0)
    session.receive(msgpack.packb({"type": "subscribe", "id": "a", "feed": "bus"}), T0)
    frames = [msgpack.unpackb(f) for f in sink.frames]
    assert frames[0]["type"] == "subscribed" and frames[1]["records"][0]["id"] == "b"


@pytest.mark.parametrize("keys", [5, 12, 13, 20])  # 13 + 3 no longer fits a one-byte map header
def test_msgpack_and_json_frames_say_the_same_whatever_the_head_size(keys: int) -> None:
    head: dict[str, Any] = {"type": "delta", **{f"k{n}": n for n in range(keys - 1)}}
    record = {"id": "b", "lng": 121.45}
    frames = [
        decode_frame(CODECS[name].delta(head, [CODECS[name].encode(record)], ["x"], [])) for name in (JSON, MSGPACK)
    ]
    assert frames[0] == frames[1] == {**head, "upsert": [record], "remove": ["x"], "stale": []}
    listed = [decode_frame(CODECS[name].records(head, [CODECS[name].encode(record)])) for name in (JSON, MSGPACK)]
    assert listed[0] == listed[1] == {**head, "records": [record]}


def test_tier_downgrade_resubscribes_on_the_lower_tier() -> None:
    hub, session, sink = make(tier="licensed")
    hub.ingest("licensed", "bus", [("b", bus("b", 121.45, 31.25, vehicle_id="V9"))])
    hub.ingest("public", "bus", [("b", bus("b", 121.45, 31.25))])
    hub.tick(T0)
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"})
    assert sink.take()[1]["records"][0]["vehicle_id"] == "V9"
    session.change_tier("public", DEFAULT_LIMITS["public"])
    reset, snapshot = sink.take()
    assert reset["type"] == "reset" and reset["reason"] == "tier_changed"
    assert "vehicle_id" not in snapshot["records"][0]


@settings(max_examples=100, deadline=None)
@given(
    moves=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.floats(121.3, 121.7), st.floats(31.1, 31.4)),
        min_size=1,
        max_size=40,
    ),
    # Corners on a 1e-4° grid: the server rounds filters to 1e-6° (~0.1 m) so equal viewports share a stream.
    box=st.tuples(st.integers(1_213_000, 1_215_000), st.integers(311_000, 312_500)),
)
def test_client_view_always_equals_the_filter_applied_to_the_state(moves: list[Any], box: tuple[float, float]) -> None:
    """Whatever order entities move in, snapshot + deltas rebuild exactly the entities inside the bbox."""
    hub, session, sink = make()
    x0, y0 = box[0] / 10_000, box[1] / 10_000
    bbox = [x0, y0, round(x0 + 0.2, 4), round(y0 + 0.15, 4)]
    view: dict[str, dict[str, Any]] = {}
    for n, (entity_id, lng, lat) in enumerate(moves):
        hub.ingest("public", "bus", [(entity_id, bus(entity_id, lng, lat))])
        hub.tick(T0 + n)
        if n == len(moves) // 2:
            send(session, {"type": "subscribe", "id": "s", "feed": "bus", "filter": {"bbox": bbox}})
        for frame in sink.take():
            for record in frame.get("records", []) + frame.get("upsert", []):
                view[record["id"]] = record
            for entity_id_gone in frame.get("remove", []):
                view.pop(entity_id_gone, None)
    truth = {
        e.id
        for e in hub.source("public", "bus").entries.values()
        if bbox[0] <= e.x <= bbox[2] and bbox[1] <= e.y <= bbox[3]
    }
    assert set(view) == truth
