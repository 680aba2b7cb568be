"""Stage logic without a broker: cleaning, tier fan-out with the real policy engine, delay release."""

from __future__ import annotations

from schemas import to_dict
from streams.cleaning import Cleaner
from streams.delay_stage import due_prefix
from streams.fanout import TierFanout, decode_value
from streams.worker import load_engine

from .streams_support import bus

T0 = 1_764_000_000_000


def test_cleaner_drops_duplicates_old_updates_and_impossible_jumps():
    cleaner = Cleaner("bus")
    recs = [
        to_dict(bus("b1", T0, seq=1)),
        to_dict(bus("b1", T0, seq=1)),  # the same update again
        to_dict(bus("b1", T0 - 5000, seq=0)),  # older than what was seen
        to_dict(bus("b1", T0 + 10_000, lng=121.60, seq=2)),  # 12 km in 10 s
        to_dict(bus("b1", T0 + 20_000, lng=121.4740, seq=3)),
        to_dict(bus("b2", T0, lng=116.4, lat=39.9)),  # Beijing
    ]
    result = cleaner.clean(recs, T0 + 60_000)
    assert [r["seq"] for r in result.accepted] == [1, 3]
    assert result.duplicates == 2
    reasons = dict(result.rejected)
    assert "impossible jump" in reasons[3] and "outside Shanghai" in reasons[5]


def test_cleaner_rejects_clocks_running_ahead():
    result = Cleaner("bus").clean([to_dict(bus("b1", T0 + 3_600_000))], T0)
    assert result.rejected and "future" in result.rejected[0][1]


def test_public_fanout_throttles_per_vehicle_and_blurs():
    engine = load_engine()
    fanout = TierFanout(engine, "bus", "public", "gcj02")
    recs = [to_dict(bus("b1", T0 + i * 10_000, lng=121.4737 + i * 0.0001)) for i in range(7)]
    released = fanout.release(recs).records
    # One update per 30 s per vehicle on the public tier.
    assert [decode_value(r.value)["observed_at"] for r in released] == [T0, T0 + 30_000, T0 + 60_000]
    view = decode_value(released[0].value)
    assert "plate" not in view and "speed_kmh" not in view
    assert view["crs"] == "gcj02" and view["policy_version"] == engine.policy_version
    # A replay of what was released is dropped, a stale marker for the newest passes once.
    assert fanout.release(recs[:3]).records == []
    marker = dict(recs[-1], state="stale")
    assert len(fanout.release([marker]).records) == 1
    assert fanout.release([marker]).records == []


def test_release_marks_survive_a_restart():
    engine = load_engine()
    before = TierFanout(engine, "bus", "public", "gcj02")
    recs = [to_dict(bus("b1", T0))]
    marks = before.release(recs).marks
    after = TierFanout(engine, "bus", "public", "gcj02")
    after.remember(marks.items())
    assert after.release(recs).records == []
    assert after.release([to_dict(bus("b1", T0 + 10_000))]).records == []  # still throttled
    assert len(after.release([to_dict(bus("b1", T0 + 30_000))]).records) == 1


def test_due_prefix_releases_in_order_only_what_is_old_enough():
    assert due_prefix([T0, T0 + 100, T0 - 50, T0 + 5000], 1000, T0 + 1100) == 3
    assert due_prefix([T0 + 5000, T0], 1000, T0 + 1100) == 0  # never overtakes the head
    assert due_prefix([], 1000, T0) == 0


def test_a_bad_fix_does_not_block_the_vehicle_once_consistent_fixes_follow():
    cleaner = Cleaner("bus")
    # A glitch 10 km away, accepted because it arrives after a ten-minute gap ...
    first = cleaner.clean([to_dict(bus("b1", T0, seq=1))], T0)
    glitch = cleaner.clean([to_dict(bus("b1", T0 + 600_000, lng=121.58, seq=2))], T0 + 600_000)
    assert first.accepted and glitch.accepted
    # ... then the true positions, 10 s apart: the first two are impossible jumps from the glitch, the
    # third consistent one re-anchors the vehicle instead of waiting minutes for the speed bound.
    t = T0 + 610_000
    true = [to_dict(bus("b1", t + i * 10_000, lng=121.4740 + i * 0.0005, seq=3 + i)) for i in range(4)]
    result = cleaner.clean(true, t + 40_000)
    assert [r["seq"] for r in result.accepted] == [5, 6]
    assert [i for i, _ in result.rejected] == [0, 1]
    # A lone glitch between good fixes is still rejected, and does not start a re-anchoring run.
    lone = cleaner.clean([to_dict(bus("b1", t + 40_000, lng=121.60, seq=7))], t + 40_000)
    assert lone.rejected
    back = cleaner.clean([to_dict(bus("b1", t + 50_000, lng=121.4760, seq=8))], t + 50_000)
    assert back.accepted and "b1" not in cleaner.candidates


def test_inconsistent_glitches_never_re_anchor():
    cleaner = Cleaner("bus")
    cleaner.clean([to_dict(bus("b1", T0, seq=0))], T0)
    # Fixes scattered 10 km apart in alternating directions agree with nothing: all rejected.
    scattered = [to_dict(bus("b1", T0 + i * 5000, lng=121.36 + 0.2 * (i % 2), seq=i)) for i in range(1, 7)]
    assert cleaner.clean(scattered, T0 + 40_000).accepted == []


async def test_delay_stage_forgets_throttles_of_partitions_it_loses():
    from aiokafka import TopicPartition

    from streams.aggregate_topics import clean_topic
    from streams.batch_producer import partition_for
    from streams.config import StreamConfig
    from streams.delay_stage import DelayStage

    config = StreamConfig(bootstrap="unused:9092", redis_url="redis://unused", partitions=4, feeds=("bus",))
    stage = DelayStage(config, load_engine(), None, None, "public", ["bus"])  # type: ignore[arg-type]
    fanout = stage.fanouts["bus"]
    entities = [f"veh-{i}" for i in range(40)]
    fanout.release([to_dict(bus(e, T0)) for e in entities])
    topic = clean_topic("bus")
    stage.assigned = {TopicPartition(topic, p) for p in range(4)}
    await stage.on_revoked({TopicPartition(topic, 1), TopicPartition(topic, 3)})
    kept = {e for e in entities if partition_for(e.encode(), 4) in (0, 2)}
    assert set(fanout.released) == kept and 0 < len(kept) < len(entities)
