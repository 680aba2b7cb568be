"""What docs/protocol.md tells a client about ids, options, stale entities, record seq and resets holds
for the protocol core (no I/O: a list sink stands for the connection)."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson

from ws_server.districts import lookup_district
from ws_server.protocol.codec import CODECS, JSON, decode_frame
from ws_server.protocol.hub import Hub
from ws_server.protocol.limits import DEFAULT_LIMITS
from ws_server.protocol.session import Session

T0 = 1_800_000_000_000
PEOPLES_SQUARE = (121.4737, 31.2304)  # Huangpu, GCJ-02


class ListSink:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)

    def send_many(self, frames: list[bytes]) -> None:
        self.frames.extend(frames)

    def backlog(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        raise AssertionError(f"closed {code} {reason}")

    def take(self) -> list[dict[str, Any]]:
        out = [decode_frame(f) for f in self.frames]
        self.frames.clear()
        return out


def bus(entity_id: str, **extra: Any) -> bytes:
    lng, lat = PEOPLES_SQUARE
    record = {"id": entity_id, "lng": lng, "lat": lat, "crs": "gcj02", "policy_version": "p1", **extra}
    return msgpack.packb(record)


def make() -> tuple[Hub, Session, ListSink]:
    hub = Hub(lookup_district, node_id="n1")
    hub.source("public", "bus").ready = True
    sink = ListSink()
    session = Session(hub, sink, CODECS[JSON], tier="public", limits=DEFAULT_LIMITS["public"], now_ms=T0)
    return hub, session, sink


def send(session: Session, message: dict[str, Any]) -> None:
    session.receive(orjson.dumps(message).decode(), T0)


def test_ids_in_filters_are_strings_and_numbers_are_refused() -> None:
    _hub, session, sink = make()
    for n, flt in enumerate(({"district": 310101}, {"district": [310101]}, {"routes": [71]}, {"ids": [42]})):
        send(session, {"type": "subscribe", "id": f"n{n}", "feed": "bus", "filter": flt})
        (error,) = sink.take()
        assert error["type"] == "error" and error["code"] == "invalid_filter", error
        assert "got `int`" in error["message"] and "$.filter." in error["message"]
    send(session, {"type": "subscribe", "id": "s", "feed": "bus", "filter": {"district": "310101", "routes": ["71"]}})
    assert [m["type"] for m in sink.take()] == ["subscribed", "snapshot"]


def test_options_change_by_unsubscribe_then_subscribe_with_the_same_id() -> None:
    _hub, session, sink = make()
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"})
    first = sink.take()[0]
    send(session, {"type": "update", "id": "a", "filter": {}, "options": {"min_interval_ms": 5000}})
    (error,) = sink.take()
    assert error["code"] == "invalid_message" and "options" in error["message"]
    send(session, {"type": "unsubscribe", "id": "a"})
    send(session, {"type": "subscribe", "id": "a", "feed": "bus", "options": {"min_interval_ms": 5000}})
    unsubscribed, subscribed, snapshot = sink.take()
    assert unsubscribed["type"] == "unsubscribed" and subscribed["type"] == "subscribed"
    assert subscribed["stream"] != first["stream"] and snapshot["type"] == "snapshot"


def test_stale_is_an_id_in_live_deltas_and_a_state_in_snapshots() -> None:
    hub, session, sink = make()
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"})
    sink.take()
    hub.ingest("public", "bus", [("b1", bus("b1", seq=88213))])
    hub.tick(T0 + 50)
    (delta,) = sink.take()
    # The record's own seq is the source's report number; the frame's seq counts the stream's deltas.
    assert delta["seq"] == 1 and delta["upsert"][0]["seq"] == 88213
    hub.ingest("public", "bus", [("b1", bus("b1", seq=88213, state="stale"))])
    hub.tick(T0 + 100)
    (delta,) = sink.take()
    assert delta["stale"] == ["b1"] and delta["upsert"] == []
    send(session, {"type": "subscribe", "id": "b", "feed": "bus"})
    _, snapshot = sink.take()
    assert [(r["id"], r["state"]) for r in snapshot["records"]] == [("b1", "stale")]


def test_reset_reasons() -> None:
    _hub, session, sink = make()
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"})
    subscribed = sink.take()[0]
    # Another epoch and no pos: nothing to rebuild from.
    send(session, {"type": "subscribe", "id": "b", "feed": "bus", "resume": {"epoch": "elsewhere", "seq": 3}})
    answer, reset, snapshot = sink.take()
    assert answer["resumed"] is False and reset["reason"] == "epoch_unknown" and snapshot["type"] == "snapshot"
    # This stream's epoch, but a seq it never reached: the cursor is not usable.
    resume = {"epoch": subscribed["epoch"], "seq": 99}
    send(session, {"type": "subscribe", "id": "c", "feed": "bus", "resume": resume})
    answer, reset, _ = sink.take()
    assert answer["resumed"] is False and reset["reason"] == "cursor_too_old"
    # A pos of another stream (here: another feed's, with another filter) is no cursor for this one.
    resume = {"epoch": "elsewhere", "seq": 3, "pos": "0c77e9a1.19102.18876"}
    send(session, {"type": "subscribe", "id": "d", "feed": "bus", "resume": resume})
    answer, reset, _ = sink.take()
    assert answer["resumed"] is False and reset["reason"] == "cursor_too_old"
