"""Windowed tiers: the charging sessions' station-hours are released whole, once, and late sessions are
reported instead of becoming a second, partial aggregate. Pure gate logic, then the real pipeline."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from schemas import ChargingSession, Naming, dlq_topic, raw_topic, to_dict
from streams.config import StreamConfig
from streams.logic.enrichment import Enricher
from streams.logic.fanout import decode_value
from streams.logic.windows import WindowGate
from streams.stages.worker import Pipeline, worker_topics

from .streams_support import (
    TopicReader,
    now_ms,
    produce,
    topic_prefix_fixture,  # noqa: F401  (the fixture, by its name)
)

HOUR = 3_600_000


def rows(key: bytes, end: int, n: int) -> list[tuple[bytes, bytes, int]]:
    return [(key, b"v%d" % i, end) for i in range(n)]


DELAY = 900_000


def test_a_window_is_released_whole_once_due_even_when_hours_interleave():
    gate = WindowGate(DELAY, quiet_ms=0)
    # Around the hour, sessions of two hours arrive mixed (one envelope per batch and hour).
    gate.add("p0", 0, rows(b"st-1", HOUR, 3), now=HOUR)
    gate.add("p0", 1, rows(b"st-1", 2 * HOUR, 1), now=HOUR)
    gate.add("p0", 2, rows(b"st-1", HOUR, 2), now=HOUR)
    # Not due yet, or not read to the end of the partition: nothing.
    assert gate.take("p0", HOUR + DELAY - 1, caught_up=True).rows == []
    assert gate.take("p0", HOUR + DELAY, caught_up=False).rows == []
    first = gate.take("p0", HOUR + DELAY, caught_up=True)
    assert len(first.rows) == 5 and {r[2] for r in first.rows} == {HOUR}
    # The later hour is still held, so the commit stays at its offset; then it falls due.
    assert first.commit == 1 and first.decided == 3
    second = gate.take("p0", 2 * HOUR + DELAY, caught_up=True)
    assert [r[2] for r in second.rows] == [2 * HOUR] and second.commit == 3


def test_a_backlog_still_being_written_is_released_once_the_partition_goes_quiet():
    gate = WindowGate(0, quiet_ms=3000, max_wait_ms=60_000)
    gate.add("p0", 0, rows(b"st-1", HOUR, 3), now=10 * HOUR)  # long due: a replay
    assert gate.take("p0", 10 * HOUR + 1000, caught_up=True).rows == []
    gate.add("p0", 1, rows(b"st-1", HOUR, 2), now=10 * HOUR + 2000)
    assert gate.take("p0", 10 * HOUR + 4000, caught_up=True).rows == []
    assert len(gate.take("p0", 10 * HOUR + 5000, caught_up=True).rows) == 5
    # A partition that never goes quiet still releases its due windows after waiting a minute for quiet.
    busy = WindowGate(0, quiet_ms=3000, max_wait_ms=60_000)
    released = []
    for i in range(40):
        busy.add("p0", i, rows(b"st-2", HOUR + (i % 2) * HOUR, 1), now=HOUR + i * 2000)
        released.append(busy.take("p0", HOUR + i * 2000, caught_up=True))
    first = next(i for i, r in enumerate(released) if r.rows)
    assert first == 30 and {r[2] for r in released[first].rows} == {HOUR}


def test_a_catch_up_that_holds_too_many_records_releases_its_due_windows_early():
    gate = WindowGate(0, quiet_ms=3000, max_wait_ms=60_000, max_held_rows=10)
    gate.add("p0", 0, rows(b"st-1", HOUR, 6), now=10 * HOUR)  # long due, the partition still being written
    gate.add("p0", 1, rows(b"st-1", 11 * HOUR, 3), now=10 * HOUR)  # a future hour
    assert gate.take("p0", 10 * HOUR, caught_up=False).rows == []
    gate.add("p0", 2, rows(b"st-2", HOUR, 4), now=10 * HOUR)  # 13 held: over the limit
    early = gate.take("p0", 10 * HOUR, caught_up=False)
    # Only what is due goes; the future hour stays held and keeps the commit at its offset.
    assert len(early.rows) == 10 and {r[2] for r in early.rows} == {HOUR}
    assert early.commit == 1 and gate.held_rows["p0"] == 3
    # The rest of an hour released early is late, never a second aggregate.
    gate.add("p0", 3, rows(b"st-1", HOUR, 1), now=10 * HOUR)
    assert len(gate.take("p0", 10 * HOUR, caught_up=False).late) == 1


def test_a_session_arriving_after_its_window_was_released_is_late_and_kept_apart():
    gate = WindowGate(0, quiet_ms=0)
    gate.add("p0", 0, rows(b"st-1", HOUR, 5), now=HOUR)
    assert len(gate.take("p0", HOUR, caught_up=True).rows) == 5
    gate.add("p0", 1, rows(b"st-1", HOUR, 1) + rows(b"st-9", HOUR, 1), now=HOUR)
    out = gate.take("p0", HOUR, caught_up=True)
    assert [r[0] for r in out.late] == [b"st-1"] and [r[0] for r in out.rows] == [b"st-9"]


def test_after_a_restart_a_replayed_record_is_not_late_but_a_new_one_is():
    gate = WindowGate(0, quiet_ms=0)
    gate.add("p0", 0, rows(b"st-1", HOUR, 2), now=HOUR)
    out = gate.take("p0", HOUR, caught_up=True)
    # A new worker recovers the marks, then re-reads from the last commit (offset 0: the commit was lost).
    again = WindowGate(0, quiet_ms=0)
    again.remember([(k, int(v)) for k, v in gate.marks(out.rows).items()], [("p0", out.decided or 0)])
    again.add("p0", 0, rows(b"st-1", HOUR, 2), now=HOUR)
    again.add("p0", 1, rows(b"st-1", HOUR, 1), now=HOUR)
    replay = again.take("p0", HOUR, caught_up=True)
    assert replay.rows == [] and len(replay.late) == 1 and replay.commit == 2


def session(i: int, station: str, ended_at: int) -> ChargingSession:
    return ChargingSession(
        id=f"cdr-{station}-{i}",
        source="test",
        observed_at=ended_at,
        expires_at=ended_at + 86_400_000,
        station_id=station,
        connector_id="1",
        lng=121.4737 + (0.01 if station == "st-b" else 0.0),
        lat=31.2304,
        started_at=ended_at - 3_000_000,
        ended_at=ended_at,
        energy_kwh=20.0,
        token_id=f"token-{i}",
        contract_id=f"CN-SHF-C{i:05d}",
    )


@pytest.mark.stack
async def test_charging_sessions_reach_the_tiers_as_whole_station_hours(
    kafka_bootstrap: str, redis_url: str, unique_name: Any, topic_prefix: str
) -> None:
    # Two hours ago: every tier's delay (15 min licensed, 1 h below) has passed, so the windows are due at once.
    hour = (now_ms() // HOUR - 2) * HOUR
    a = [session(i, "st-a", hour + 60_000 * (i + 1)) for i in range(12)]  # 12 sessions: above every k
    b = [session(i, "st-b", hour + 90_000 * (i + 1)) for i in range(3)]  # 3: below k = 5
    config = StreamConfig(
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        partitions=2,
        app_id=unique_name("app"),
        topic_prefix=topic_prefix,
        redis_prefix=unique_name("r"),
        feeds=("charging_sessions",),
        poll_timeout_ms=50,
        stale_scan_interval_s=0.2,
        max_poll_records=4,  # the hour is split over several clean batches and envelopes
    )
    # The real policy file (its delays are what this test is about); a fixed pseudonym secret.
    from streams.policy import PolicyEngine, load_policy

    engine = PolicyEngine(load_policy(), secret=b"streams-test-secret")
    topic = {t: config.naming.tier_topic(t, "charging_sessions") for t in ("licensed", "registered", "public")}
    dlq = config.topic(dlq_topic("charging_sessions"))
    async with Pipeline(config, engine=engine, enricher=Enricher.from_geo(), aggregates=False):
        await produce(kafka_bootstrap, config.topic(raw_topic("charging_sessions")), a + b)
        async with TopicReader(kafka_bootstrap, [*topic.values(), dlq]) as reader:
            licensed = await reader.wait_for(topic["licensed"], 12)
            registered = await reader.wait_for(topic["registered"], 1)
            public = await reader.wait_for(topic["public"], 1)
            # A session of that hour reported only now is late: kept in the dead letters, once per tier.
            await produce(
                kafka_bootstrap, config.topic(raw_topic("charging_sessions")), [session(99, "st-a", hour + 30_000)]
            )
            letters = await reader.wait_for(dlq, 3)
            registered = await reader.wait_for(topic["registered"], 2, timeout_s=3.0)
    # Licensed: station-hours with fewer than 5 sessions are suppressed whole; the rest pseudonymised.
    assert len(licensed) == 12 and {v["station_id"] for v in licensed} == {"st-a"}
    assert all("token_id" not in v and "contract_id" not in v and v["id"].startswith("cdr-") is False for v in licensed)
    # Registered and public derive from licensed: one aggregate per station-hour it kept, counts rounded to
    # 5 (12 → 10); the suppressed station-hour stays invisible; no second, partial aggregate after the late one.
    assert [(v["id"], v["sessions"], v["window_start"]) for v in registered] == [(f"st-a@{hour}", 10, hour)]
    # Public needs k = 10 and sees registered's rounded 10 (12 ± 2.5): it cannot vouch for 10, so it bands.
    assert [(v["id"], v["sessions"]) for v in public] == [(f"st-a@{hour}", "<10")]
    # The late session, kept with its clean bytes and the reason, once for each windowed tier.
    assert sorted(v["reason"].split(":")[0] for v in letters) == [f"late for tier {t}" for t in sorted(topic)]
    assert {decode_value(v["original"])["id"] for v in letters} == {"cdr-st-a-99"}


@pytest.mark.stack
async def test_kill_9_mid_stream_releases_every_station_hour_once(
    kafka_bootstrap: str, redis_url: str, unique_name: Any, topic_prefix: str, tmp_path: Any
) -> None:
    from kafka_admin import ensure_topics

    from .test_streams_recovery import Workers

    feed = "charging_sessions"
    await ensure_topics(kafka_bootstrap, 4, worker_topics(Naming(topic_prefix), (feed,), aggregates=False))
    raw = topic_prefix + raw_topic(feed)
    registered_topic = Naming(topic_prefix).tier_topic("registered", feed)
    dlq = topic_prefix + dlq_topic(feed)
    base = (now_ms() // HOUR - 6) * HOUR
    stations = [f"st-{c}" for c in "abcdefgh"]

    def hour_of_sessions(h: int) -> list[ChargingSession]:
        # 7 sessions per station and hour: kept by licensed (k = 5), 5 after rounding at registered.
        return [session(h * 100 + i, st, base + h * HOUR + 60_000 * (i + 1)) for st in stations for i in range(7)]

    workers = Workers(tmp_path, topic_prefix, unique_name("app"), unique_name("r"))
    try:
        async with TopicReader(kafka_bootstrap, [registered_topic, dlq]) as reader:
            first = workers.start()
            await produce(kafka_bootstrap, raw, hour_of_sessions(0) + hour_of_sessions(1))
            await reader.wait_for(registered_topic, 1, timeout_s=30)
            first.send_signal(signal.SIGKILL)  # some hours out, others parked in pending or in the gate
            first.wait()
            await produce(kafka_bootstrap, raw, hour_of_sessions(2))
            workers.start()
            await produce(kafka_bootstrap, raw, hour_of_sessions(3))
            await reader.wait_for(registered_topic, 4 * len(stations), timeout_s=60)
            await asyncio.sleep(2.0)
            await reader.poll()
    finally:
        workers.close()
    rows = [v for _, v, _, _, _ in reader.records[registered_topic]]
    expected = {f"{st}@{base + h * HOUR}" for st in stations for h in range(4)}
    assert {v["id"] for v in rows} == expected, "a station-hour was lost"
    # At-least-once: a window replayed after the crash may repeat, always whole (never a partial count).
    assert all(v["sessions"] == 5 for v in rows)
    assert len(rows) <= 2 * len(expected)
    assert reader.records[dlq] == [], "nothing is late here"


async def test_a_finished_session_is_removed_and_forgotten_at_expiry_instead_of_going_stale():
    from aiokafka import ConsumerRecord, TopicPartition

    from schemas import encode_kafka
    from streams.io import metrics
    from streams.logic.cleaning import Cleaner
    from streams.stages.clean import CleanStage
    from streams.stages.worker import load_engine

    now = (now_ms() // HOUR) * HOUR
    # An event that is already past its expiry when it arrives is refused, not taken as news.
    old = to_dict(session(1, "st-a", now - 2 * 86_400_000))
    assert "expired on arrival" in Cleaner("charging_sessions").clean([old], now).rejected[0][1]

    clock = [now]
    config = StreamConfig(bootstrap="unused:9092", redis_url="redis://unused", feeds=("charging_sessions",))
    no_io: Any = None  # process() and periodic() only compute; delivery is not called here
    stage = CleanStage(config, load_engine(), no_io, no_io, Enricher({}), ("operator",), clock=lambda: clock[0])
    tp = TopicPartition(raw_topic("charging_sessions"), 0)
    rec = session(3, "st-a", now - 30_000)
    value = encode_kafka(rec)
    await stage.process(
        {tp: [ConsumerRecord(tp.topic, 0, 0, rec.observed_at, 0, b"k", value, None, 1, len(value), [])]}
    )
    state = stage.feeds["charging_sessions"]
    assert "cdr-st-a-3" in state.last and "cdr-st-a-3" in state.cleaner.marks
    # A day later the session expires: a removal marker is published for it, not a stale one, and nothing
    # of it is kept.
    removed = ("clean", "charging_sessions", "removed")
    stale = ("clean", "charging_sessions", "stale")
    before = [metrics.RECORDS.labels(*labels)._value.get() for labels in (removed, stale)]
    clock[0] = rec.expires_at + 1
    assert await stage.periodic() is not None
    after = [metrics.RECORDS.labels(*labels)._value.get() for labels in (removed, stale)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 0]
    assert "cdr-st-a-3" not in state.last and "cdr-st-a-3" not in state.cleaner.marks
    assert "cdr-st-a-3" not in state.stale and not stage.expiry


@pytest.mark.stack
async def test_an_ended_entity_leaves_the_tier_snapshot_and_the_recovery_state(
    redis_url: str, unique_name: Any
) -> None:
    import redis.asyncio as aioredis

    from schemas import Naming
    from streams.io.state_store import StateStore

    client = aioredis.Redis.from_url(redis_url)
    store = StateStore(client, Naming(redis_prefix=unique_name("r")))
    feed, tier = "charging_sessions", ("operator", "charging_sessions")
    keys = [store.naming.last_key(feed), store.naming.released_key(*tier), store.naming.state_key(*tier)]
    try:
        both = {"cdr-1": b"a", "cdr-2": b"b"}
        await store.write({tier: both}, {}, {feed: both}, release_marks={tier: both})
        # cdr-1 ended: its removal marker is the tier's last record of it, written and then deleted.
        await store.write(
            {tier: [(b"cdr-1", b"removed", 1)]},
            {},
            {},
            forget={feed: ["cdr-1"]},
            forget_marks={tier: ["cdr-1"]},
            removed={tier: [b"cdr-1"]},
        )
        assert [set(await store.load(key)) for key in keys] == [{"cdr-2"}] * 3
    finally:
        await client.delete(*keys)
        await client.aclose()
