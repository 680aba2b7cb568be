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
