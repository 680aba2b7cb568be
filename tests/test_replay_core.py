"""The replay core with no broker: exact event-time order from out-of-order partitions, the as-of
snapshot, filters, pacing by the speed factor, pause / resume / seek / speed, progress and completion."""

from __future__ import annotations

import itertools
import random

import pytest

from replay.core import ReplayCore, ReplayError, parse_speed
from replay.merge import EventTimeMerge, SourceRecord
from replay.pacing import ReplayClock
from tests.replay_support import T0, ListSink, source_record, tier_value

SKEW = 5_000


def shuffled_partitions(n_partitions: int, per_partition: int, seed: int) -> dict[int, list]:
    """Records whose timestamps go backwards inside each partition, by up to SKEW ms."""
    rng = random.Random(seed)
    out: dict[int, list] = {}
    for p in range(n_partitions):
        times = sorted(T0 + rng.randrange(0, 120_000) for _ in range(per_partition))
        # displace each record by up to SKEW later in the log: its timestamp then precedes newer ones
        jittered = sorted(times, key=lambda t: t + rng.randrange(0, SKEW))
        out[p] = [source_record(p, i, tier_value(f"v{p}-{i % 7}", t)) for i, t in enumerate(jittered)]
    return out


def test_merge_orders_out_of_order_partitions_exactly() -> None:
    parts = shuffled_partitions(3, 400, seed=7)
    assert any(a.timestamp > b.timestamp for recs in parts.values() for a, b in itertools.pairwise(recs)), (
        "the input must really be out of order"
    )
    merge = EventTimeMerge(parts, SKEW)
    out: list[SourceRecord] = []
    cursors = dict.fromkeys(parts, 0)
    rng = random.Random(3)
    while any(cursors[p] < len(parts[p]) for p in parts):  # uneven chunks, partitions interleaved at random
        p = rng.choice([q for q in parts if cursors[q] < len(parts[q])])
        n = rng.randrange(1, 40)
        merge.push(p, parts[p][cursors[p] : cursors[p] + n])
        cursors[p] += n
        if cursors[p] >= len(parts[p]):
            merge.finish(p)
        out += merge.pop_ready()
    out += merge.pop_ready()
    expected = sorted(r for recs in parts.values() for r in recs)
    assert [(r.partition, r.offset) for r in out] == [(r.partition, r.offset) for r in expected]
    assert merge.done and merge.late == 0


def test_merge_counts_records_that_break_the_skew_bound() -> None:
    merge = EventTimeMerge([0], 1_000)
    merge.push(0, [source_record(0, 0, tier_value("a", T0)), source_record(0, 1, tier_value("a", T0 + 5_000))])
    assert [r.offset for r in merge.pop_ready()] == [0]
    merge.push(0, [source_record(0, 2, tier_value("b", T0 - 500))])  # 5.5 s older than the newest: too late
    merge.finish(0)
    merge.pop_ready()
    assert merge.late == 1


def run_max(core: ReplayCore, parts: dict[int, list]) -> None:
    for p, recs in parts.items():
        core.push(p, recs)
        core.finish(p)
    wall = 0.0
    while core.tick(wall) is not None:
        wall += 1.0


def test_snapshot_holds_the_latest_state_at_from_and_marks_stale() -> None:
    sink = ListSink()
    start = T0 + 60_000
    parts = {
        0: [
            source_record(0, 0, tier_value("a", T0 + 1_000, lng=121.40)),
            source_record(0, 1, tier_value("a", T0 + 50_000, lng=121.41)),  # a's state at `from`
            source_record(0, 2, tier_value("b", T0 + 2_000, ttl_ms=10_000)),  # expired at `from`
            source_record(0, 3, tier_value("a", T0 + 70_000, lng=121.42)),  # a delta
        ],
        1: [
            source_record(1, 0, tier_value("c", T0 + 40_000)),
            source_record(1, 1, tier_value("c", T0 + 45_000, state="removed")),  # gone before `from`
            source_record(1, 2, tier_value("d", T0 + 59_999)),
            source_record(1, 3, tier_value("d", T0 + 60_000)),  # exactly at `from`: a delta, not snapshot
        ],
    }
    core = ReplayCore(
        partitions=[0, 1], from_ms=start, to_ms=T0 + 90_000, max_skew_ms=SKEW, lookback_ms=120_000, sink=sink
    )
    run_max(core, parts)
    (snap,) = sink.of("replay_snapshot")
    by_id = {r["id"]: r for r in snap["records"]}
    assert set(by_id) == {"a", "b", "d"}
    assert by_id["a"]["lng"] == 121.41 and "state" not in by_id["a"]
    assert by_id["b"]["state"] == "stale"
    assert by_id["d"]["observed_at"] == T0 + 59_999
    assert [(r["id"], r["observed_at"]) for r in sink.delta_records()] == [("d", T0 + 60_000), ("a", T0 + 70_000)]
    (done,) = sink.of("replay_complete")
    assert done["records"] == 2 and done["late"] == 0
    assert sink.messages[-1] is done


def test_deltas_follow_event_time_across_out_of_order_partitions() -> None:
    parts = shuffled_partitions(4, 300, seed=11)
    sink = ListSink()
    core = ReplayCore(
        partitions=list(parts),
        from_ms=T0 + 30_000,
        to_ms=T0 + 100_000,
        max_skew_ms=SKEW,
        lookback_ms=120_000,
        sink=sink,
    )
    run_max(core, parts)
    got = [r["observed_at"] for r in sink.delta_records()]
    every = sorted(r.timestamp for recs in parts.values() for r in recs)
    assert got == [t for t in every if T0 + 30_000 <= t < T0 + 100_000]
    assert [m["seq"] for m in sink.of("replay_delta")] == list(range(1, len(sink.of("replay_delta")) + 1))


def test_filter_sends_removes_for_entities_that_leave_it() -> None:
    def inside(records):  # east of 121.45 only
        return [r["lng"] > 121.45 for r in records]

    sink = ListSink()
    parts = {
        0: [
            source_record(0, 0, tier_value("a", T0 + 1_000, lng=121.50)),
            source_record(0, 1, tier_value("b", T0 + 2_000, lng=121.40)),
            source_record(0, 2, tier_value("a", T0 + 20_000, lng=121.40)),  # leaves
            source_record(0, 3, tier_value("b", T0 + 21_000, lng=121.40)),  # still outside: nothing
            source_record(0, 4, tier_value("b", T0 + 22_000, lng=121.48)),  # enters
        ]
    }
    core = ReplayCore(
        partitions=[0],
        from_ms=T0 + 10_000,
        to_ms=T0 + 30_000,
        max_skew_ms=SKEW,
        lookback_ms=120_000,
        sink=sink,
        admit=inside,
    )
    run_max(core, parts)
    assert [r["id"] for r in sink.of("replay_snapshot")[0]["records"]] == ["a"]
    (delta,) = sink.of("replay_delta")  # max speed: one frame
    assert delta["remove"] == ["a"] and [r["id"] for r in delta["records"]] == ["b"]


def test_an_entity_that_leaves_and_returns_gets_frames_in_that_order() -> None:
    def inside(records):
        return [r["lng"] > 121.45 for r in records]

    sink = ListSink()
    parts = {
        0: [
            source_record(0, 0, tier_value("a", T0 + 1_000, lng=121.50)),
            source_record(0, 1, tier_value("a", T0 + 20_000, lng=121.40)),  # leaves
            source_record(0, 2, tier_value("a", T0 + 21_000, lng=121.48)),  # returns
        ]
    }
    core = ReplayCore(
        partitions=[0],
        from_ms=T0 + 10_000,
        to_ms=T0 + 30_000,
        max_skew_ms=SKEW,
        lookback_ms=120_000,
        sink=sink,
        admit=inside,
    )
    run_max(core, parts)
    assert [(d["remove"], [r["observed_at"] for r in d["records"]]) for d in sink.of("replay_delta")] == [
        (["a"], []),
        ([], [T0 + 21_000]),
    ]


def test_speed_scales_the_original_timing() -> None:
    sink = ListSink()
    times = [T0 + 10_000 + i * 2_000 for i in range(10)]  # one record every 2 s of event time
    parts = {0: [source_record(0, i, tier_value("a", t)) for i, t in enumerate(times)]}
    core = ReplayCore(
        partitions=[0], from_ms=T0 + 10_000, to_ms=T0 + 40_000, max_skew_ms=SKEW, lookback_ms=0, sink=sink, speed=10.0
    )
    core.push(0, parts[0])
    core.finish(0)
    sent_at: dict[int, float] = {}
    wall = 1_000.0
    while (nxt := core.tick(wall)) is not None:
        for m in sink.of("replay_delta"):
            for r in m["records"]:
                sent_at.setdefault(r["observed_at"], wall)
        assert nxt >= wall
        wall = nxt
    for m in sink.of("replay_delta"):
        for r in m["records"]:
            sent_at.setdefault(r["observed_at"], wall)
    # 2 s of event time is 200 ms of wall time at 10x
    assert [round(sent_at[t] - 1_000.0) for t in times] == [i * 200 for i in range(10)]


def test_pause_resume_speed_and_seek() -> None:
    sink = ListSink()
    times = [T0 + 10_000 + i * 1_000 for i in range(20)]
    recs = [source_record(0, i, tier_value(f"e{i % 3}", t)) for i, t in enumerate(times)]
    core = ReplayCore(
        partitions=[0],
        from_ms=T0 + 10_000,
        to_ms=T0 + 40_000,
        max_skew_ms=SKEW,
        lookback_ms=60_000,
        sink=sink,
        speed=1.0,
    )
    core.push(0, recs)
    core.finish(0)
    core.tick(0.0)  # snapshot; the record at `from` is due at once
    assert len(sink.delta_records()) == 1
    core.tick(2_500.0)
    assert len(sink.delta_records()) == 3
    core.pause(2_500.0)
    assert core.tick(100_000.0) is not None
    assert len(sink.delta_records()) == 3, "nothing is sent while paused"
    assert sink.of("replay_progress")[-1]["paused"] is True
    core.resume(100_000.0)
    core.tick(100_499.0)
    assert len(sink.delta_records()) == 3  # paused at event time 12.5 s: the 13 s record is 0.5 s away
    core.tick(100_500.0)
    assert len(sink.delta_records()) == 4
    core.set_speed(100.0, 100_500.0)
    core.tick(100_550.0)  # 50 ms at 100x = 5 s of event time
    assert sink.delta_records()[-1]["observed_at"] == T0 + 18_000
    core.seek(T0 + 25_000)
    generation = core.generation
    assert generation == 1 and core.read_from_ms == T0 + 25_000 - 60_000 - SKEW
    core.push(0, recs)  # the I/O layer reads again from read_from_ms
    core.finish(0)
    core.tick(200_000.0)
    snap = sink.of("replay_snapshot")[-1]
    assert snap["at"] == T0 + 25_000
    assert {r["id"]: r["observed_at"] for r in snap["records"]} == {
        "e0": T0 + 22_000,
        "e1": T0 + 23_000,
        "e2": T0 + 24_000,
    }
    core.set_speed(None, 200_000.0)
    while core.tick(200_001.0) is not None:
        pass
    after_seek = sink.messages[sink.messages.index(snap) :]
    got = [r["observed_at"] for m in after_seek if m["type"] == "replay_delta" for r in m["records"]]
    assert got == times[15:]
    assert sink.messages[-1]["type"] == "replay_complete"


def test_speed_parsing_and_bad_requests() -> None:
    assert parse_speed("max") is None and parse_speed("10x") == 10.0 and parse_speed(1000) == 1000.0
    for bad in ("0.5", "1001", "fast"):
        with pytest.raises(ReplayError):
            parse_speed(bad)
    with pytest.raises(ReplayError):
        ReplayCore(partitions=[0], from_ms=T0, to_ms=T0, max_skew_ms=0, lookback_ms=0, sink=ListSink())


def test_clock_maps_event_time_to_wall_time() -> None:
    clock = ReplayClock(4.0)
    clock.start(T0, 0.0)
    assert clock.due_at(T0 + 4_000) == 1_000.0
    clock.pause(500.0)
    assert clock.position(10_000.0) == T0 + 2_000
    clock.resume(10_000.0)
    assert clock.due_at(T0 + 4_000) == 10_500.0


def test_raw_deltas_carry_the_stored_bytes() -> None:
    parts = shuffled_partitions(2, 100, seed=3)
    sink = ListSink()
    core = ReplayCore(
        partitions=list(parts), from_ms=T0, to_ms=T0 + 200_000, max_skew_ms=SKEW, lookback_ms=0, sink=sink, raw=True
    )
    run_max(core, parts)
    got = [v for m in sink.of("replay_delta") for v in m["raw"]]
    assert got == [r.value for r in sorted(r for recs in parts.values() for r in recs)]
