"""Stage logic without a broker: cleaning, tier fan-out with the real policy engine, delay release."""

from __future__ import annotations

from schemas import TIERS, to_dict
from schemas.validity import TTL_MS
from streams.logic.cleaning import Cleaner
from streams.logic.fanout import FeedFanout, TierFanout, decode_value, encode_value, removed_keys
from streams.stages.delay import due_prefix
from streams.stages.worker import load_engine

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


def test_the_same_state_vouched_for_later_is_a_refresh_not_a_duplicate():
    # A charging station's last change stays at T0 while later polls vouch for it: expires_at moves on.
    cleaner = Cleaner("bus")
    first = to_dict(bus("b1", T0, expires_in_ms=120_000))
    later = to_dict(bus("b1", T0, expires_in_ms=180_000))
    result = cleaner.clean([first, dict(first), later, dict(later)], T0 + 60_000)
    assert [r["expires_at"] for r in result.accepted] == [T0 + 120_000, T0 + 180_000]
    assert result.duplicates == 2 and cleaner.marks["b1"].expires_at == T0 + 180_000


def test_cleaner_rejects_clocks_running_ahead():
    result = Cleaner("bus").clean([to_dict(bus("b1", T0 + 3_600_000))], T0)
    assert result.rejected and "future" in result.rejected[0][1]


def test_public_fanout_throttles_per_vehicle_and_blurs():
    engine = load_engine()
    fanout = TierFanout(engine, "bus", "public", "gcj02")
    recs = [to_dict(bus("b1", T0 + i * 10_000, lng=121.4737 + i * 0.0001)) for i in range(7)]
    released = fanout.release(recs).records
    # One update per 30 s per vehicle on the public tier.
    assert [decode_value(value)["observed_at"] for _, value, _ in released] == [T0, T0 + 30_000, T0 + 60_000]
    view = decode_value(released[0][1])
    assert "plate" not in view and "speed_kmh" not in view
    assert view["crs"] == "gcj02" and view["policy_version"] == engine.policy_version
    # A replay of what was released is dropped, a stale marker for the newest passes once.
    assert fanout.release(recs[:3]).records == []
    marker = dict(recs[-1], state="stale")
    assert len(fanout.release([marker]).records) == 1
    assert fanout.release([marker]).records == []


def test_a_removal_passes_a_throttled_tier_and_leaves_the_snapshot_once_it_is_the_last_word():
    engine = load_engine()
    fanout = TierFanout(engine, "bus", "public", "gcj02")
    rec = to_dict(bus("b1", T0))
    first = fanout.release([rec]).records
    # The removal carries the same observed_at as the last update (a stale marker would be throttled
    # against it): it passes, at expiry time, and the tier forgets the entity.
    removal = fanout.release([dict(rec, state="removed")]).records
    assert len(removal) == 1 and decode_value(removal[0][1])["state"] == "removed"
    assert removal[0][2] == rec["expires_at"] and "b1" not in fanout.released
    key = first[0][0]
    assert removed_keys(first + removal) == [key]
    # Back again in the same batch of forwarded records: its snapshot entry must stay.
    assert removed_keys(first + removal + first) == []
    assert removed_keys(first) == []


def test_every_tier_of_a_feed_at_once_matches_each_tier_alone():
    # FeedFanout's chained pass (and its short encoding path for ordinary updates) must publish exactly the
    # bytes each tier's own fan-out would, stale markers included.
    engine = load_engine()

    def fanouts() -> dict[str, TierFanout]:
        return {t: TierFanout(engine, "bus", t, "gcj02") for t in TIERS}

    recs = [to_dict(bus(f"b{i}", T0 + i * 7_000, lng=121.4737 + i * 0.001)) for i in range(12)]
    markers = [dict(r, state="stale") for r in recs[:3]]
    together = FeedFanout(engine, "bus", fanouts())
    alone = fanouts()
    for batch in (recs, markers):
        released = together.release(batch)
        for tier in TIERS:
            assert released[tier].records == alone[tier].release(batch).records
    assert [decode_value(v)["state"] for _, v, _ in released["operator"].records] == ["stale"] * 3


def test_a_delayed_tier_counts_its_delay_from_when_a_state_was_last_vouched_for():
    # A station unchanged since T0 and vouched for an hour later: the operator may know at once, but the
    # delayed tiers must not learn "still unchanged an hour later" before their delay from that hour.
    engine = load_engine()
    vouched = T0 + 3_600_000
    station = {
        "id": "SHC-1",
        "source": "t",
        "observed_at": T0,
        "expires_at": vouched + TTL_MS["charging"],
        "lng": 121.4737,
        "lat": 31.2304,
        "public": True,
        "connectors": [{"id": f"c{i}", "type": "GB_T_DC", "status": "AVAILABLE"} for i in range(4)],
    }
    fanout = FeedFanout(engine, "charging", {t: TierFanout(engine, "charging", t, "gcj02") for t in TIERS})
    released = fanout.release([station])
    times = {tier: [ts for _, _, ts in release.records] for tier, release in released.items()}
    assert times["operator"] == [T0] and times["licensed"] == [T0]  # undelayed: their own time
    assert times["registered"] == [vouched] and times["public"] == [vouched]
    # A vehicle has no voucher: its delay counts from its fix, as before.
    bus_fanout = TierFanout(engine, "bus", "public", "gcj02")
    assert [ts for _, _, ts in bus_fanout.release([to_dict(bus("b1", T0))]).records] == [T0]


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


async def test_a_rebalance_drops_throttles_and_progress_of_lost_partitions():
    from aiokafka import TopicPartition

    from kafka_admin.partitioning import partition_for
    from schemas import pending_topic, raw_topic
    from streams.config import StreamConfig
    from streams.logic.enrichment import Enricher
    from streams.stages.clean import CleanStage
    from streams.stages.delay import DelayStage

    config = StreamConfig(bootstrap="unused:9092", redis_url="redis://unused", partitions=4, feeds=("bus",))
    engine = load_engine()
    clean = CleanStage(config, engine, None, None, Enricher({}), ("operator", "public"))  # type: ignore[arg-type]
    state = clean.feeds["bus"]
    entities = [f"veh-{i}" for i in range(40)]
    records = [to_dict(bus(e, T0)) for e in entities]
    state.cleaner.clean(records, T0)
    assert set(state.fanout.release(records)) == {"operator", "public"}
    raw = raw_topic("bus")
    clean.assigned = {TopicPartition(raw, p) for p in range(4)}
    await clean.on_revoked({TopicPartition(raw, 1), TopicPartition(raw, 3)})
    kept = {e for e in entities if partition_for(e.encode(), 4) in (0, 2)}
    assert 0 < len(kept) < len(entities)
    # The public throttle and the duplicate detection of the lost vehicles are gone with their partitions.
    assert set(state.fanouts["public"].released) == kept and set(state.cleaner.marks) == kept

    delay = DelayStage(config, engine, None, None, "public", ["bus"])  # type: ignore[arg-type]
    pending = pending_topic("public", "bus")
    delay.assigned = {TopicPartition(pending, p) for p in range(4)}
    delay.forwarded = {TopicPartition(pending, p): 100 for p in range(4)}
    await delay.on_revoked({TopicPartition(pending, 1)})
    assert set(delay.forwarded) == {TopicPartition(pending, p) for p in (0, 2, 3)}


def test_cached_district_lookup_gives_the_exact_answers():
    import numpy as np

    from geo.districts import district_of
    from streams.logic.enrichment import DistrictCells

    rng = np.random.default_rng(7)
    # Random points over the municipality and beyond it (sea, Jiangsu), twice: cold and cached cells.
    lngs = 120.8 + rng.random(5000) * 1.2
    lats = 30.6 + rng.random(5000) * 1.3
    cells = DistrictCells()
    exact = district_of(lngs, lats).tolist()
    assert cells(lngs, lats) == exact
    assert cells(lngs, lats) == exact
    assert any(v is None for v in exact) and len({v for v in exact if v}) == 16


async def test_a_mass_expiry_is_marked_a_batch_at_a_time():
    """Entities expiring together (a worker recovering a city's predictions after a pause) are marked a
    batch's worth per scan, and the stage asks to scan again at once while some are left."""
    from streams.config import StreamConfig
    from streams.logic.enrichment import Enricher
    from streams.stages.clean import CleanStage

    now = [T0]
    config = StreamConfig(bootstrap="unused:9092", redis_url="redis://unused", feeds=("bus",), max_poll_records=10)
    stage = CleanStage(config, load_engine(), None, None, Enricher({}), ("operator",), clock=lambda: now[0])  # type: ignore[arg-type]
    state = stage.feeds["bus"]
    for k in range(25):
        rec = to_dict(bus(f"b{k}", T0, expires_in_ms=1000))
        state.cleaner.clean([rec], now[0])
        state.last[rec["id"]] = encode_value(rec)
        stage._schedule("bus", rec["id"], rec["expires_at"])
    assert not stage.periodic_backlog()
    now[0] = T0 + 2000
    marked = []
    while stage.periodic_backlog():
        assert await stage.periodic() is not None
        marked.append(len(state.stale))
    assert marked == [10, 20, 25]
    assert await stage.periodic() is None


async def test_stale_markers_follow_the_newest_expiry_with_one_timer_per_vehicle():
    from streams.config import StreamConfig
    from streams.logic.enrichment import Enricher
    from streams.stages.clean import CleanStage

    now = [T0]
    config = StreamConfig(bootstrap="unused:9092", redis_url="redis://unused", feeds=("bus",))
    stage = CleanStage(config, load_engine(), None, None, Enricher({}), ("operator",), clock=lambda: now[0])  # type: ignore[arg-type]
    state = stage.feeds["bus"]
    for k in range(50):  # fifty updates, each pushing the expiry 100 ms further
        rec = to_dict(bus("b1", T0 + k * 100, seq=k, expires_in_ms=1000))
        state.cleaner.clean([rec], now[0])
        state.last["b1"] = encode_value(rec)
        stage._schedule("bus", "b1", rec["expires_at"])
    assert len(stage.expiry) == 1
    now[0] = T0 + 2000  # the first expiry has passed, the newest (T0 + 5900) has not
    assert await stage.periodic() is None and "b1" not in state.stale
    now[0] = T0 + 6000
    assert await stage.periodic() is not None and "b1" in state.stale
