"""The health rules and the stats folding, without a broker: figures in, states and reasons out."""

from __future__ import annotations

from control_plane.figures import fold, lag_histogram, merge, percentile_ms, source_record, split, stage_record
from control_plane.health import load_thresholds
from control_plane.health.report import build_report
from control_plane.health.thresholds import FeedThresholds, ThresholdsError, parse_thresholds

NOW = 1_800_000_000_000
T = FeedThresholds(sources=("sh-bus",), expected_interval_s=10, stale_after_s=45, fleet=100, completeness=0.5)


def source(**kw: object) -> dict:
    base: dict[str, object] = {"polls": 6, "errors": 0, "records": 600, "rejects": 0, "duplicates": 0, "skipped": 0}
    base.update(kw)
    return base


def latest(age_s: float, heard_s: float = 1) -> dict:
    return {"sh-bus": {"last_at": NOW - heard_s * 1000, "last_success_ms": NOW - age_s * 1000}}


def assess(sources: list, last: dict, feed_minutes: list | None = None):
    from control_plane.health import assess as run

    return run("bus", T, NOW, feed_minutes or [], {"sh-bus": sources}, last, started_ms=NOW - 600_000)


def test_a_flowing_feed_is_ok() -> None:
    h = assess([source()], latest(2))
    assert h.state == "ok" and h.reasons == []
    assert h.figures["records_per_s"] > 0 and h.figures["reject_ratio"] == 0


def test_no_data_past_the_threshold_is_stale_with_the_reason() -> None:
    h = assess([source(records=0, polls=0)], latest(50))
    assert h.state == "stale"
    assert "no data from sh-bus for 50 s" in h.reasons[0] and "stale after 45 s" in h.reasons[0]
    assert h.dimensions["timeliness"]["state"] == "stale"


def test_silence_from_the_adapter_is_down() -> None:
    h = assess([], latest(200, heard_s=120))
    assert h.state == "down" and "nothing heard from sh-bus" in h.reasons[0]


def test_rejects_and_duplicates_degrade_with_their_dimension() -> None:
    h = assess([source(rejects=100, rej={"bad coordinates": 100})], latest(2))
    assert h.state == "degraded" and h.dimensions["normativity"]["state"] == "degraded"
    assert "reject ratio" in h.reasons[0] and "bad coordinates (100)" in h.reasons[0]
    h = assess([source(duplicates=90)], latest(2))
    assert h.state == "degraded" and h.dimensions["truthfulness"]["state"] == "degraded"


def test_completeness_against_the_fleet() -> None:
    minute = {"in": 10, "active": {"w1": 20, "w2": 10}, "last_at": NOW}
    h = assess([source()], latest(2), feed_minutes=[minute])
    assert h.figures["entities_reporting"] == 30 and h.state == "degraded"
    assert "30 of 100 entities reporting" in h.reasons[0]


def test_stage_records_fold_into_minutes_by_feed() -> None:
    figures = {"in": 5, "out": 3, "dup": 1, "rej": {"bad": 1}, "lag": lag_histogram([900, 40_000])}
    rec = stage_record("clean", "w1", NOW, 5, {"bus": figures}, {"raw.bus/0": 7, "raw.metro/0": 2})
    parts = dict(split(rec))
    bucket = fold(fold(None, parts["feed:bus"]), parts["feed:bus"])
    assert bucket["in"] == 10 and bucket["rej"] == {"bad": 2} and bucket["partitions"] == {"raw.bus/0": 7}
    assert percentile_ms(bucket["lag"], 0.5) == 1_000 and percentile_ms(bucket["lag"], 0.99) == 60_000
    src = dict(split(source_record("sh-bus", "bus", NOW, 10.0, records=4, rej={"x": 1}, last_success_ms=NOW)))
    assert merge([src["source:sh-bus"], src["source:sh-bus"]])["records"] == 8


def test_report_is_503_material_only_for_stale_or_down() -> None:
    thresholds = parse_thresholds('[feeds.bus]\nsources = ["sh-bus"]\nexpected_interval_s = 10\n')
    buckets = {"source:sh-bus": [source(rejects=500)]}
    last = {"source:sh-bus": {"last_at": NOW, "last_success_ms": NOW, "feed": "bus"}}
    report = build_report(NOW, thresholds, lambda k, n: buckets.get(k, []), last, {}, NOW - 1000, ["bus"])
    assert report["ok"] and report["state"] == "degraded"
    last["source:sh-bus"]["last_success_ms"] = NOW - 100_000
    report = build_report(NOW, thresholds, lambda k, n: buckets.get(k, []), last, {}, NOW - 1000, ["bus"])
    assert not report["ok"] and report["reasons"][0].startswith("bus: stale")


def test_thresholds_file_is_checked() -> None:
    assert load_thresholds().for_feed("bus").stale_s == 45
    for bad in ("[feeds.bus]\nstale_after = 3\n", "[feeds.bus]\nfleet = -1\n", "[feeds.bus\n"):
        try:
            parse_thresholds(bad)
        except ThresholdsError as err:
            assert "feeds.bus" in str(err) or "thresholds" in str(err)
        else:
            raise AssertionError(f"accepted {bad!r}")


def test_a_ratio_does_not_jump_back_above_its_threshold_at_a_minute_turn() -> None:
    """10 records/s, of which 6/s duplicated from 1:00 to 1:08 only. From then on the duplicate ratio may
    only fall, across the turn of the minute too: a window of whole minutes fell below the threshold at
    1:36 and jumped back above it at 2:00, clearing an alert and raising it again with nothing new."""
    thresholds = parse_thresholds('[defaults]\nwindow_s = 60\n[feeds.bus]\nsources = ["sh-bus"]\n')
    start = (NOW // 60_000) * 60_000

    def bucket(minute: int, at_s: float) -> dict:
        seconds = min(60.0, max(0.0, at_s - minute * 60))
        dirty = min(8.0, seconds) if minute == 1 else 0.0
        return source(records=round(10 * seconds), duplicates=round(6 * dirty))

    def ratio(at_s: float) -> float:
        now = start + int(at_s * 1000)
        current = int(at_s // 60)

        def minutes(key: str, count: int) -> list:
            return [bucket(m, at_s) if m >= 0 else None for m in range(current - count + 1, current + 1)]

        last = {"source:sh-bus": {"last_at": now, "last_success_ms": now, "feed": "bus"}}
        report = build_report(now, thresholds, minutes, last, {}, start, ["bus"])
        return float(report["feeds"][0]["figures"]["duplicate_ratio"])

    after = [ratio(68 + 2 * i) for i in range(60)]  # 1:08 … 3:06
    assert after == sorted(after, reverse=True), after
    assert after[0] > 0.05 and after[-1] == 0
