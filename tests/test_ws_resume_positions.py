"""Resume across nodes, without I/O: a client's position (tier topic offsets) taken on node A is resumed
on node B, which read the same topic, with exactly what the client missed, or an explicit reset."""

from __future__ import annotations

import zlib
from typing import Any

import msgpack
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from client.resume import StreamPosition
from ws_server.districts import lookup_district
from ws_server.protocol.codec import CODECS, JSON, decode_frame
from ws_server.protocol.hub import Hub
from ws_server.protocol.limits import DEFAULT_LIMITS
from ws_server.protocol.session import Session

T0 = 1_800_000_000_000
PARTITIONS = 2
BBOX = [121.40, 31.20, 121.50, 31.30]


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
        pass

    def take(self) -> list[dict[str, Any]]:
        out = [decode_frame(f) for f in self.frames]
        self.frames.clear()
        return out


class Topic:
    """A tier topic as Kafka keeps it: keyed records in partitions, each with its offset."""

    def __init__(self) -> None:
        self.log: list[tuple[int, int, str, bytes]] = []  # (partition, offset, id, value)
        self.ends = dict.fromkeys(range(PARTITIONS), 0)

    def append(self, entity_id: str, lng: float, lat: float, state: str | None = None) -> None:
        p = zlib.crc32(entity_id.encode()) % PARTITIONS
        record: dict[str, Any] = {"id": entity_id, "lng": lng, "lat": lat, "crs": "gcj02"}
        if state:
            record["state"] = state
        self.log.append((p, self.ends[p], entity_id, msgpack.packb(record)))
        self.ends[p] += 1


class Node:
    """A hub reading ``topic`` from where it stands, as the feed reader would."""

    def __init__(self, topic: Topic, history_records: int = 10_000, start_at: int = 0) -> None:
        self.topic = topic
        self.hub = Hub(lookup_district, node_id=f"n{id(self)}")
        src = self.hub.source("public", "bus")
        src.history_records = history_records
        self.read = start_at  # index into topic.log
        self.now = T0
        # A node that starts late: Redis snapshot at that point, history read back from the start.
        snapshot = dict.fromkeys(range(PARTITIONS), 0)
        values: dict[str, bytes] = {}
        for p, offset, entity_id, raw in topic.log[:start_at]:
            snapshot[p] = offset + 1
            if msgpack.unpackb(raw).get("state") == "removed":
                values.pop(entity_id, None)
            else:
                values[entity_id] = raw
        src.start_history(dict.fromkeys(range(PARTITIONS), 0), snapshot, dict.fromkeys(range(PARTITIONS), 0))
        src.load(values)
        for p, offset, entity_id, raw in topic.log[:start_at]:
            self.hub.ingest_records("public", "bus", p, [(offset, entity_id, raw)], offset + 1)
        src.ready = True

    def catch_up(self) -> None:
        """Read every record appended since, one tick per record."""
        while self.read < len(self.topic.log):
            p, offset, entity_id, raw = self.topic.log[self.read]
            self.hub.ingest_records("public", "bus", p, [(offset, entity_id, raw)], offset + 1)
            self.read += 1
            self.now += 50
            self.hub.tick(self.now)

    def session(self) -> tuple[Session, ListSink]:
        sink = ListSink()
        session = Session(self.hub, sink, CODECS[JSON], tier="public", limits=DEFAULT_LIMITS["public"], now_ms=self.now)
        return session, sink

    def truth(self) -> dict[str, dict[str, Any]]:
        out = {}
        for e in self.hub.source("public", "bus").entries.values():
            if BBOX[0] <= e.x <= BBOX[2] and BBOX[1] <= e.y <= BBOX[3]:
                out[e.id] = e.record
        return out


class Client:
    """A client's view of one subscription, built only from what the server sent."""

    def __init__(self) -> None:
        self.position = StreamPosition()
        self.upserted: list[str] = []
        self.kinds: list[str] = []

    def apply(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            kind = message["type"]
            self.kinds.append(kind)
            if kind == "subscribed":
                self.position.on_subscribed(message)
            elif kind == "reset":
                self.position.on_reset(message)
            elif kind == "snapshot":
                self.position.on_snapshot(message)
            elif kind == "delta":
                self.position.on_delta(message)  # raises GapError on a silent gap
                self.upserted += [r["id"] for r in message["upsert"]]

    def subscribe(self, session: Session, sink: ListSink) -> None:
        message: dict[str, Any] = {"type": "subscribe", "id": "s", "feed": "bus", "filter": {"bbox": BBOX}}
        token = self.position.resume_token()
        if token is not None:
            message["resume"] = token
        session.receive(orjson.dumps(message), session.bucket.at)
        self.apply(sink.take())


def test_resume_on_another_node_sends_exactly_what_changed_and_removes_what_left() -> None:
    topic = Topic()
    for n in range(6):
        topic.append(f"b{n}", 121.45, 31.25)  # all inside
    a, b = Node(topic), Node(topic)
    a.catch_up()
    b.catch_up()
    client = Client()
    session, sink = a.session()
    client.subscribe(session, sink)
    assert {r for r in client.position.entities} == {f"b{n}" for n in range(6)}
    # Node A dies. Meanwhile: b0 moves inside, b1 leaves the area, b2 is removed, n1 appears, x1 stays outside.
    topic.append("b0", 121.46, 31.26)
    topic.append("b1", 121.70, 31.25)
    topic.append("b2", 121.45, 31.25, state="removed")
    topic.append("n1", 121.41, 31.21)
    topic.append("x1", 121.90, 31.90)
    b.catch_up()
    client.upserted.clear()
    session, sink = b.session()
    client.subscribe(session, sink)
    assert client.kinds[-2:] == ["subscribed", "delta"] and "reset" not in client.kinds
    assert sorted(client.upserted) == ["b0", "n1"]  # nothing the client already had is sent again
    assert client.position.entities.keys() == b.truth().keys()
    assert client.position.entities["b0"]["lng"] == 121.46
    # And it continues live on B without a gap.
    topic.append("b3", 121.47, 31.27)
    b.catch_up()
    client.apply(sink.take())
    assert client.position.entities["b3"]["lng"] == 121.47


def test_a_record_repeated_in_the_topic_after_the_position_is_not_sent_again_on_another_node() -> None:
    """A streams worker killed between producing and committing produces its batch again (at-least-once):
    the tier topic then holds the same record twice. A client resuming on another node past the first copy
    must not get it a second time."""
    topic = Topic()
    for n in range(3):
        topic.append(f"b{n}", 121.45, 31.25)
    a, b = Node(topic), Node(topic)
    a.catch_up()
    client = Client()
    session, sink = a.session()
    client.subscribe(session, sink)
    topic.append("b0", 121.46, 31.26)
    topic.append("b1", 121.47, 31.27)
    a.catch_up()
    client.apply(sink.take())
    assert client.position.entities["b1"]["lng"] == 121.47
    # The worker's replay: the same two records again, then one new one. Node A dies; B read all of it.
    for p, _, entity_id, raw in topic.log[-2:]:
        topic.log.append((p, topic.ends[p], entity_id, raw))
        topic.ends[p] += 1
    topic.append("b2", 121.48, 31.28)
    b.catch_up()
    client.upserted.clear()
    session, sink = b.session()
    client.subscribe(session, sink)
    assert "reset" not in client.kinds
    assert client.upserted == ["b2"]  # b0 and b1 are only repeats of what the client has
    assert client.position.entities.keys() == b.truth().keys()


def test_node_that_started_after_the_position_reads_it_back_from_its_history() -> None:
    topic = Topic()
    for n in range(4):
        topic.append(f"b{n}", 121.45, 31.25)
    a = Node(topic)
    a.catch_up()
    client = Client()
    session, sink = a.session()
    client.subscribe(session, sink)
    topic.append("b1", 121.80, 31.25)  # leaves, while no node serves the client
    topic.append("b5", 121.45, 31.25)
    b = Node(topic, start_at=len(topic.log))  # restarted: snapshot after the client's position
    session, sink = b.session()
    client.subscribe(session, sink)
    assert "reset" not in client.kinds
    assert client.position.entities.keys() == b.truth().keys() == {"b0", "b2", "b3", "b5"}


def test_position_older_than_the_history_gets_an_explicit_reset() -> None:
    topic = Topic()
    topic.append("b0", 121.45, 31.25)
    a = Node(topic)
    a.catch_up()
    client = Client()
    session, sink = a.session()
    client.subscribe(session, sink)
    for n in range(40):
        topic.append(f"m{n}", 121.45, 31.25)
    b = Node(topic, history_records=10)  # keeps 5 records per partition: the position is gone
    b.catch_up()
    session, sink = b.session()
    client.subscribe(session, sink)
    assert "reset" in client.kinds
    assert client.position.entities.keys() == b.truth().keys()


def test_position_of_a_different_filter_is_not_resumed() -> None:
    topic = Topic()
    topic.append("b0", 121.45, 31.25)
    a = Node(topic)
    a.catch_up()
    client = Client()
    session, sink = a.session()
    client.subscribe(session, sink)
    token = client.position.resume_token()
    assert token is not None
    session, sink = a.session()
    message = {"type": "subscribe", "id": "s", "feed": "bus", "filter": {"bbox": [121.0, 31.0, 121.9, 31.9]}}
    session.receive(orjson.dumps({**message, "resume": {**token, "epoch": "gone"}}), T0)
    assert [f["type"] for f in sink.take()] == ["subscribed", "reset", "snapshot"]


@settings(max_examples=150, deadline=None)
@given(
    moves=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d", "e", "f"]),
            st.sampled_from([121.35, 121.42, 121.45, 121.48, 121.55]),
            st.sampled_from([31.15, 31.22, 31.25, 31.35]),
            st.booleans(),
        ),
        min_size=2,
        max_size=40,
    ),
    cut=st.floats(0.0, 1.0),
    late_start=st.booleans(),
    history=st.sampled_from([4, 10_000]),
)
def test_resumed_view_always_equals_the_other_nodes_state(
    moves: list[tuple[str, float, float, bool]], cut: float, late_start: bool, history: int
) -> None:
    """Wherever node A dies, the client's view after resuming on B is B's state through the filter, and
    every entity is sent at most once by the catch-up, or the client got an explicit reset."""
    topic = Topic()
    split = int(len(moves) * cut)
    for entity_id, lng, lat, removed in moves[:split]:
        topic.append(entity_id, lng, lat, "removed" if removed else None)
    a = Node(topic)
    a.catch_up()
    client = Client()
    session, sink = a.session()
    client.subscribe(session, sink)
    for entity_id, lng, lat, removed in moves[split:]:
        topic.append(entity_id, lng, lat, "removed" if removed else None)
    b = Node(topic, history_records=history, start_at=len(topic.log) if late_start else 0)
    b.catch_up()
    client.upserted.clear()
    session, sink = b.session()
    client.subscribe(session, sink)
    assert client.position.entities == b.truth()
    if "reset" not in client.kinds:
        assert len(client.upserted) == len(set(client.upserted))
        changed = {entity_id for entity_id, *_ in moves[split:]}
        assert set(client.upserted) <= changed
