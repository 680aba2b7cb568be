"""Stats messages as the emitter sends them (a bundle of records), decoded and folded without a broker."""

from __future__ import annotations

import orjson

from control_plane.figures import (
    LAG_EDGES_MS,
    decode_stats,
    fold,
    fold_bundle,
    lag_histogram,
    source_record,
    split,
    stage_record,
    ws_record,
)
from control_plane.health.report import build_report
from control_plane.health.thresholds import parse_thresholds

NOW = 1_796_400_000_000


def batch(n: int, worker: str = "w1") -> dict[str, object]:
    figures = {"in": n, "out": n - 1, "dup": 1, "rej": {"bad": 1}, "lag": lag_histogram([n * 100])}
    return stage_record("clean", worker, NOW + n, n, {"bus": figures}, {"raw.bus/0": n})


def test_a_bundle_folds_to_what_its_records_fold_to_one_by_one() -> None:
    records = [batch(3), batch(5), source_record("sh-bus", "bus", NOW, 2.0, records=4, last_success_ms=NOW), batch(9)]
    one_by_one: dict[str, dict[str, object]] = {}
    for record in records:
        for key, delta in split(record):
            one_by_one[key] = fold(one_by_one.get(key), delta)
    bundled = fold_bundle(decode_stats(orjson.dumps(records)))
    assert bundled == one_by_one
    assert bundled["feed:bus"]["in"] == 17 and bundled["feed:bus"]["partitions"] == {"raw.bus/0": 9}
    assert bundled["stage:clean"]["batches"] == 3 and bundled["source:sh-bus"]["records"] == 4


def test_a_single_record_and_junk_decode_as_expected() -> None:
    assert decode_stats(orjson.dumps(batch(2))) == [orjson.loads(orjson.dumps(batch(2)))]
    assert decode_stats(b"not json") == [] and decode_stats(b"42") == []
    assert decode_stats(b'[{"kind": "stage"}, 7, "x"]') == [{"kind": "stage"}]


def test_lag_histogram_puts_each_edge_in_its_own_bucket() -> None:
    hist = lag_histogram([0, LAG_EDGES_MS[0], LAG_EDGES_MS[0] + 1, LAG_EDGES_MS[-1] + 1])
    assert hist[0] == 2 and hist[1] == 1 and hist[-1] == 1 and sum(hist) == 4


def test_the_report_shows_ingest_lag_and_websocket_clients_per_tier() -> None:
    figures = {"in": 10, "out": 10, "ilag": lag_histogram([90] * 9 + [4_000])}
    records = [
        stage_record("clean", "w1", NOW, 10, {"bus": figures}, {}),
        ws_record("n1", NOW, {"public": 2, "licensed": 1}, {"public": 4, "licensed": 1}),
        ws_record("n2", NOW, {"public": 1}, {"public": 3}),
        ws_record("gone", NOW - 60_000, {"public": 100}, {"public": 100}),  # not heard from lately
    ]
    folded = fold_bundle(records)
    latest = {k: v for k, v in folded.items() if k.startswith("ws:")}
    thresholds = parse_thresholds('[feeds.bus]\nsources = ["sh-bus"]\nexpected_interval_s = 10\n')
    buckets = {"feed:bus": [folded["feed:bus"]]}
    report = build_report(NOW, thresholds, lambda k, n: buckets.get(k, []), latest, {}, NOW - 1000, ["bus"])
    timeliness = report["feeds"][0]["dimensions"]["timeliness"]["figures"]
    assert timeliness["ingest_lag_p50_ms"] == 100 and timeliness["ingest_lag_p99_ms"] == 5_000
    assert report["websocket"] == {
        "nodes": 2,
        "connections": {"public": 3, "licensed": 1},
        "subscriptions": {"public": 7, "licensed": 1},
    }
