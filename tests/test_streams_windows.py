"""Windowed tiers: the charging sessions' station-hours are released whole, once, and late sessions are
reported instead of becoming a second, partial aggregate. Pure gate logic, then the real pipeline."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import ChargingSession, dlq_topic, raw_topic
from streams.aggregate_topics import pipeline_tier_topic
from streams.config import StreamConfig
from streams.enrichment import Enricher
from streams.fanout import decode_value
from streams.windows import WindowGate
from streams.worker import Pipeline

from .streams_support import (
    TopicReader,
    now_ms,
    produce,
    topic_prefix_fixture,  # noqa: F401  (the fixture, by its name)
)

HOUR = 3_600_000


def rows(key: bytes, end: int, n: int) -> list[tuple[bytes, bytes, int]]:
    return [(key, b"v%d" % i, end) for i in range(n)]


def test_a_window_waits_until_the_partition_moves_past_it_or_goes_quiet():
    gate = WindowGate(quiet_ms=1000)
    gate.add("p0", 1, rows(b"st-1", HOUR, 3), now=0)
    gate.add("p0", 2, rows(b"st-2", HOUR, 2), now=0)
    # The partition may still be receiving this window: nothing yet.
    assert gate.take("p0", complete=False, now=500).commit is None
    # A later window arrives: the earlier one is complete, the later one waits.
    gate.add("p0", 3, rows(b"st-1", 2 * HOUR, 1), now=600)
    first = gate.take("p0", complete=False, now=700)
    assert first.commit == 2 and len(first.rows) == 5 and not first.late
    # Nothing more for a while: the later window is released too.
    assert gate.take("p0", complete=False, now=1000).commit is None
    second = gate.take("p0", complete=False, now=1700)
    assert second.commit == 3 and [r[0] for r in second.rows] == [b"st-1"]


def test_a_session_arriving_after_its_window_was_released_is_late_and_kept_apart():
    gate = WindowGate(quiet_ms=0)
    gate.add("p0", 1, rows(b"st-1", HOUR, 5), now=0)
    assert len(gate.take("p0", complete=True, now=0).rows) == 5
    gate.add("p0", 2, rows(b"st-1", HOUR, 1) + rows(b"st-9", HOUR, 1), now=10)
    out = gate.take("p0", complete=True, now=10)
    assert [r[0] for r in out.late] == [b"st-1"] and [r[0] for r in out.rows] == [b"st-9"]
    # A restarted worker that recovered the marks still spots it.
    again = WindowGate(quiet_ms=0)
    again.remember((k, int(v)) for k, v in gate.marks(out.rows).items())
    again.remember([(b"st-1", HOUR)])
    again.add("p1", 7, rows(b"st-1", HOUR, 1), now=0)
    assert len(again.take("p1", complete=True, now=0).late) == 1


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
    topic = {t: config.topic(pipeline_tier_topic(t, "charging_sessions")) for t in ("licensed", "registered", "public")}
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
