"""Idle streams do not exhaust memory: a stream is freed soon after its last member leaves (a quick resume
still replays exactly), the replay buffers of the whole process stay under one byte bound, and an IP
address or key can keep only so many distinct streams alive. Sans-I/O, with a fake clock."""

from __future__ import annotations

import gc
import tracemalloc
import weakref
from typing import Any

from tests.test_ws_protocol import T0, ListSink, bus, send
from ws_server.districts import lookup_district
from ws_server.protocol import stream as stream_module
from ws_server.protocol.codec import CODECS, JSON
from ws_server.protocol.hub import Hub
from ws_server.protocol.limits import Limits
from ws_server.protocol.session import Session

GRACE_MS = 10_000
OPEN = Limits(messages_per_s=1e9, burst=10**9, max_subscriptions=10)


def new_hub(**kwargs: Any) -> Hub:
    hub = Hub(lookup_district, node_id="n1", idle_grace_ms=GRACE_MS, **kwargs)
    hub.source("public", "bus").ready = True
    return hub


def connect(hub: Hub, principal: str, limits: Limits = OPEN, now: int = T0) -> tuple[Session, ListSink]:
    sink = ListSink()
    session = Session(hub, sink, CODECS[JSON], tier="public", limits=limits, now_ms=now, principal=principal)
    return session, sink


def buffered_bytes(hub: Hub) -> int:
    return sum(len(frame) for stream in hub.streams.values() for _, frame, _ in stream.buffer)


def test_a_stream_is_freed_soon_after_its_last_member_leaves_and_a_quick_resume_still_replays() -> None:
    hub = new_hub()
    session, sink = connect(hub, "ip:1")
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"})
    subscribed = sink.take()[0]
    hub.ingest("public", "bus", [("b1", bus("b1", 121.45, 31.25))])
    hub.tick(T0 + 50)
    delta = sink.take()[0]
    session.close(1000, "bye")
    hub.ingest("public", "bus", [("b1", bus("b1", 121.46, 31.25))])
    hub.tick(T0 + 100)  # built while nobody listens: kept for a resume
    assert len(hub.streams) == 1 and hub.replay.used > 0
    # A client back within the grace period gets exactly the frame it missed.
    again, sink2 = connect(hub, "ip:1", now=T0 + 5_000)
    resume = {"epoch": subscribed["epoch"], "seq": delta["seq"]}
    send(again, {"type": "subscribe", "id": "a", "feed": "bus", "resume": resume}, T0 + 5_000)
    head, missed = sink2.take()
    assert head["resumed"] is True and missed["seq"] == delta["seq"] + 1
    again.close(1000, "bye")
    hub.tick(T0 + 5_050)
    hub.tick(T0 + 5_050 + GRACE_MS - 1)
    assert len(hub.streams) == 1
    hub.tick(T0 + 5_050 + GRACE_MS)
    assert hub.streams == {} and hub.replay.used == 0 and hub.replay.frames == 0
    assert not hub.streams_by_owner


def test_churning_distinct_subscriptions_frees_streams_and_bounds_replay_bytes() -> None:
    bound = 256 * 1024
    hub = new_hub(replay_bytes=bound)
    now = T0
    peak_streams = 0
    fleet = [f"b{i}" for i in range(30)]
    for cycle in range(150):  # two and a half simulated minutes, one connection a second
        session, _ = connect(hub, f"ip:{cycle % 7}", now=now)
        for n in range(10):  # distinct options make distinct streams
            options = {"min_interval_ms": (cycle * 10 + n) % 60_000, "snapshot": False}
            send(session, {"type": "subscribe", "id": f"s{n}", "feed": "bus", "options": options}, now)
        for step in range(20):
            now += 50
            moved = [(i, bus(i, 121.40 + (cycle + step) * 1e-5, 31.25, note="x" * 400)) for i in fleet]
            hub.ingest("public", "bus", moved)
            hub.tick(now)
            assert hub.replay.used <= bound
        session.close(1000, "bye")
        peak_streams = max(peak_streams, len(hub.streams))
    assert buffered_bytes(hub) == hub.replay.used <= bound
    # Streams live for the grace period after their last member: about 10 connections' worth, not 300.
    assert peak_streams <= 10 * (GRACE_MS // 1000 + 2)
    hub.tick(now + 50)  # the last streams' idle time starts
    hub.tick(now + 50 + GRACE_MS)
    assert hub.streams == {} and hub.replay.used == 0 and not hub.streams_by_owner


def test_an_ip_can_keep_only_so_many_distinct_streams_alive() -> None:
    hub = new_hub()
    limits = Limits(messages_per_s=1e9, burst=10**9, max_subscriptions=10, max_streams=15)
    first, _ = connect(hub, "ip:9", limits)
    for n in range(10):
        send(first, {"type": "subscribe", "id": f"s{n}", "feed": "bus", "options": {"min_interval_ms": n}})
    first.close(1000, "bye")
    hub.tick(T0 + 50)
    second, sink = connect(hub, "ip:9", limits)
    for n in range(10, 20):
        send(second, {"type": "subscribe", "id": f"s{n}", "feed": "bus", "options": {"min_interval_ms": n}})
    replies = [f for f in sink.take() if f["type"] in ("subscribed", "error")]
    assert [f["type"] for f in replies] == ["subscribed"] * 5 + ["error"] * 5
    assert {f["code"] for f in replies if f["type"] == "error"} == {"too_many_streams"}
    # Streams that exist anyway cost nothing to join, and another IP has its own allowance.
    send(second, {"type": "subscribe", "id": "old", "feed": "bus", "options": {"min_interval_ms": 3}})
    assert sink.take()[0]["type"] == "subscribed"
    other, other_sink = connect(hub, "ip:10", limits)
    send(other, {"type": "subscribe", "id": "x", "feed": "bus", "options": {"min_interval_ms": 999}})
    assert other_sink.take()[0]["type"] == "subscribed"
    # Once the orphans' grace is over, the IP may create streams again.
    hub.tick(T0 + 50 + GRACE_MS)
    send(second, {"type": "subscribe", "id": "late", "feed": "bus", "options": {"min_interval_ms": 77}})
    assert second.subs["late"].stream.owner == "ip:9"


def test_a_freed_stream_is_gone_from_memory_not_only_from_the_hub() -> None:
    # The process-wide replay budget remembers which stream holds each frame; it must not keep a freed
    # stream (with its entity sets and cached frames) alive. The chaos run's churn showed the server's RSS
    # growing by 240 MiB in 5 minutes while every stream had been freed.
    hub = new_hub(replay_bytes=10**9)  # never over: nothing trims the budget's bookkeeping
    session, _ = connect(hub, "ip:1")
    send(session, {"type": "subscribe", "id": "a", "feed": "bus", "options": {"min_interval_ms": 1}})
    stream = session.subs["a"].stream
    gone = weakref.ref(stream)
    hub.ingest("public", "bus", [("b1", bus("b1", 121.45, 31.25))])
    hub.tick(T0 + 50)
    stream.snapshot_frames()  # fills the stream's snapshot cache, as a joining client does
    session.close(1000, "bye")
    del stream, session
    hub.tick(T0 + 100)
    hub.tick(T0 + 100 + GRACE_MS)
    assert hub.streams == {}
    gc.collect()
    assert gone() is None


def test_orphaned_streams_in_their_grace_period_hold_little_besides_replay_frames() -> None:
    # Half the chaos run's churned subscriptions asked for a snapshot of the whole city: each stream kept
    # those snapshot frames (~0.8 MB) for its whole life, 200 streams per IP. The frames are shared by the
    # clients joining in the same tick only.
    hub = new_hub(replay_bytes=10**9)
    fleet = [
        (f"b{i}", bus(f"b{i}", 121.2 + (i % 97) * 0.005, 31.0 + (i // 97) * 0.01, note="x" * 120)) for i in range(3000)
    ]
    hub.ingest("public", "bus", fleet)
    hub.tick(T0)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for cycle in range(5):
            session, sink = connect(hub, "ip:1", now=T0 + cycle)
            for n in range(10):
                options = {"min_interval_ms": 1000 + cycle * 10 + n, "snapshot": True}
                send(session, {"type": "subscribe", "id": f"s{n}", "feed": "bus", "options": options}, T0 + cycle)
            session.close(1000, "bye")
            del session, sink  # the client is gone, and with it the frames it was sent
        hub.tick(T0 + 50)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before - hub.replay.used
    finally:
        tracemalloc.stop()
    assert len(hub.streams) == 50
    assert held / len(hub.streams) < 200_000, f"{held / len(hub.streams):,.0f} bytes per orphaned stream"


def test_a_records_kept_encoding_costs_its_size_not_a_serialiser_buffer() -> None:
    # orjson returns a 200-byte record in a buffer of at least 4 KiB; a node keeps one encoding per entity,
    # codec and CRS for as long as the entity lives.
    codec = CODECS[JSON]
    record = {"id": "b1", "lng": 121.45, "lat": 31.25, "crs": "gcj02", "route_id": "71", "note": "x" * 120}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [codec.encode_kept(record) for _ in range(1000)]
        per_record = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert kept[0] == codec.encode(record)
    assert per_record < 2 * len(kept[0]), f"{per_record:,.0f} bytes kept for a {len(kept[0])}-byte record"


def test_a_replay_buffer_holds_its_frames_and_not_their_entity_ids() -> None:
    """A stream keeps thousands of frames for exact resumes; what it keeps beside each frame's bytes is a
    few words, not the ids of the entities in it (a whole-feed frame names hundreds)."""
    hub = new_hub()
    session, sink = connect(hub, "ip:1")
    send(session, {"type": "subscribe", "id": "a", "feed": "bus", "options": {"snapshot": False}})
    fleet = [f"bus-{i:05d}" for i in range(300)]

    def tick(n: int) -> None:
        hub.ingest("public", "bus", [(i, bus(i, 121.40 + n * 1e-5, 31.25)) for i in fleet])
        hub.tick(T0 + 50 * (n + 1))
        sink.take()

    def held_by_streams() -> int:
        """Bytes allocated by the stream's own code and still held (frames are built by the codec)."""
        only_streams = [tracemalloc.Filter(True, stream_module.__file__)]
        return sum(t.size for t in tracemalloc.take_snapshot().filter_traces(only_streams).traces)

    tick(0)
    frames = 100
    tracemalloc.start()
    try:
        before = held_by_streams()
        for n in range(1, frames + 1):
            tick(n)
        gc.collect()
        per_frame = (held_by_streams() - before) / frames
    finally:
        tracemalloc.stop()
    assert len(next(iter(hub.streams.values())).buffer) == frames + 1
    # Each frame's 300 ids were 2.4 KB more; its sequence number and record count are about 100 bytes.
    assert per_frame < 400, f"{per_frame:.0f} bytes held per buffered frame beside its bytes"
