"""The end-to-end latency bench's own logic, without a broker: the source's serve-time bookkeeping (and that
it names reports exactly as the adapter's parser does), the per-stage join, the exact percentiles, the
uncapped histogram and the goals."""

from __future__ import annotations

import asyncio
import io
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import orjson
from aiohttp import web

from adapters.formats import sh_bus_gps
from adapters.simulators.beijing import OFFSET_S, format_local
from adapters.simulators.bus import BusFleet
from adapters.simulators.city import SimulatedCity
from adapters.simulators.faults import Fault
from bench.e2e_latency.receivers import OperatorClient, adapter_figures
from bench.e2e_latency.source import BUS_PATH, ServeLog, bus_reports, fleet_shift_s, serve_time_middleware
from bench.e2e_latency.summary import (
    P99_BOUND_MS,
    SLOW_MS,
    goals,
    histogram,
    join,
    latency_summary,
    nearest_rank,
    page_body,
    summary_body,
)
from tests.conftest import _free_port

NOW_S = 1_796_522_400  # 10:00 in Shanghai: the fleet is out


def fleet_body(t_s: int, buses: int = 40) -> bytes:
    records, _ = BusFleet(seed=5, buses=buses).records(t_s)
    return orjson.dumps({"code": 0, "updateTime": format_local(t_s), "data": records})


def test_a_report_keeps_the_time_it_was_first_served() -> None:
    log = ServeLog()
    assert log.note(1_000, [("OBU-1", 10_000), ("OBU-2", 10_000)]) == [("OBU-1", 10_000), ("OBU-2", 10_000)]
    # The next poll repeats OBU-2's report and brings a new one of OBU-1.
    assert log.note(2_000, [("OBU-1", 20_000), ("OBU-2", 10_000)]) == [("OBU-1", 20_000)]
    assert log.first_served == {("OBU-1", 10_000): 1_000, ("OBU-2", 10_000): 1_000, ("OBU-1", 20_000): 2_000}
    assert (log.bodies, log.reports_seen) == (2, 4)


def test_reports_are_named_as_the_adapter_names_its_records() -> None:
    body = fleet_body(NOW_S)
    parsed = sh_bus_gps.parse(body, source="sh-bus", received_at_ms=NOW_S * 1000)
    assert parsed.records
    assert sorted(bus_reports(body)) == sorted((r.id, r.observed_at) for r in parsed.records)


def test_the_middleware_notes_bus_bodies_after_writing_them_and_nothing_else() -> None:
    body = fleet_body(NOW_S, buses=10)
    log, sink = ServeLog(), io.BytesIO()

    async def bus(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match"):
            return web.Response(status=304)
        return web.Response(body=body, content_type="application/json")

    async def other(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application(middlewares=[serve_time_middleware(log, sink, lambda: int(time.time() * 1000))])
    app.router.add_get(BUS_PATH, bus)
    app.router.add_get("/parking/lots.json", other)
    port, ready, done = _free_port(), threading.Event(), threading.Event()

    async def serve() -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        while not done.is_set():
            await asyncio.sleep(0.02)
        await runner.cleanup()

    server = threading.Thread(target=asyncio.run, args=(serve(),))
    server.start()
    try:
        assert ready.wait(10)
        asked = int(time.time() * 1000)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{BUS_PATH}", timeout=10) as resp:
            assert resp.read() == body  # the body reached the client whole
        for url, headers in ((BUS_PATH, {"If-None-Match": '"x"'}), ("/parking/lots.json", {})):
            req = urllib.request.Request(f"http://127.0.0.1:{port}{url}", headers=headers)
            try:
                urllib.request.urlopen(req, timeout=10).read()
            except urllib.error.HTTPError as err:
                assert err.code == 304
        again = urllib.request.urlopen(f"http://127.0.0.1:{port}{BUS_PATH}", timeout=10).read()
        assert again == body
    finally:
        done.set()
        server.join(10)
    lines = [orjson.loads(line) for line in sink.getvalue().splitlines()]
    assert len(lines) == 1, "only the first 200 of the bus feed had new reports"
    assert lines[0]["served_ms"] >= asked
    assert sorted(map(tuple, lines[0]["new"])) == sorted(bus_reports(body))
    assert lines[0]["items"] == len(bus_reports(body))
    assert log.bodies == 2


def test_the_source_serves_the_stated_hours_fleet_at_the_real_time() -> None:
    # Whenever the bench runs, the load is the afternoon's: the clock moved, every written time moved back.
    for now in (1_796_000_000.0, 1_796_030_000.0, 1_796_060_000.0):
        shift = fleet_shift_s("14:30", now)
        assert abs(shift) <= 43_200 and int(now + shift + OFFSET_S) % 86_400 == 14 * 3600 + 30 * 60
    now = time.time()
    shift = fleet_shift_s("14:30", now)
    city = SimulatedCity(seed=3, buses=600, lots=5, connectors=5, start_ms=int(now * 1000) + shift * 1000)
    t_s = city.now_s()
    body = orjson.loads(city.feeds["bus"].render(t_s, Fault(kind="time_jump", jump_s=-shift), 0).body)
    assert len(body["data"]) == int(city.bus.in_service(t_s).sum()) > 300  # most of the fleet, not the night's
    records = sh_bus_gps.parse(orjson.dumps(body), source="s", received_at_ms=0).records
    observed = [r.observed_at / 1000 for r in records]
    assert now - 60 < min(observed) and max(observed) < time.time() + 1


def test_percentiles_are_values_some_report_had() -> None:
    values = list(range(1, 101))
    assert [nearest_rank(values, q) for q in (0.5, 0.9, 0.99, 1.0)] == [50, 90, 99, 100]
    assert nearest_rank([7], 0.99) == 7


def test_the_histogram_reaches_the_true_maximum_and_loses_nothing() -> None:
    values = [-3, 0, 24, 25, 99, 100, 1_000, 73_123]
    buckets = histogram(values)
    assert sum(b["count"] for b in buckets) == len(values)
    assert buckets[0] == {"lo_ms": -3, "hi_ms": 0, "count": 1}  # a stage stamped a little early shows as such
    last = [b for b in buckets if b["count"]][-1]
    assert last["lo_ms"] <= 73_123 < last["hi_ms"] and buckets[-1] == last
    assert {"lo_ms": 0, "hi_ms": 25, "count": 2} in buckets
    assert {"lo_ms": 25, "hi_ms": 50, "count": 1} in buckets


def test_a_backlog_shows_in_the_maximum_and_the_slow_share() -> None:
    values = [100] * 990 + [60_000] * 10
    summary = latency_summary(values)
    assert summary["max_ms"] == 60_000 and summary["p99_ms"] == 100
    assert summary["over_slow"] == 10 and summary["over_slow_share"] == 0.01
    assert latency_summary([]) == {"count": 0}


def test_each_missing_report_is_charged_to_the_first_stage_it_did_not_reach() -> None:
    served = {("a", 1): 1_000, ("b", 1): 1_000, ("c", 1): 1_500, ("d", 1): 2_000, ("early", 1): 500}
    raw = {("a", 1): 1_100, ("b", 1): 1_120, ("c", 1): 1_600, ("early", 1): 600}
    tier = {("a", 1): 1_300, ("b", 1): 1_330, ("early", 1): 700}
    client = {("a", 1): 1_400, ("early", 1): 800, ("ghost", 1): 1_900}
    out = join(served, raw, tier, client, start_ms=1_000, end_ms=3_000)
    assert out["served"] == 4  # "early" was served before the window
    assert out["missing"] == {"served_not_raw": 1, "raw_not_tier": 1, "tier_not_client": 1}
    assert out["client_unserved"] == 1
    stages = out["stages"]
    assert stages["poll_to_client"]["max_ms"] == 400
    assert (stages["poll_to_raw"]["count"], stages["poll_to_raw"]["max_ms"]) == (3, 120)
    assert stages["raw_to_tier"]["max_ms"] == 210 and stages["tier_to_client"]["max_ms"] == 100
    assert out["slices"] == [{"from_s": 0, "count": 1, "p50_ms": 400, "p99_ms": 400, "max_ms": 400}]


def run_of(latencies: list[int], lost: int = 0) -> dict[str, Any]:
    served = {(f"b{i}", 0): 0 for i in range(len(latencies) + lost)}
    reached = {(f"b{i}", 0): 0 for i in range(len(latencies) + lost)}
    client = {(f"b{i}", 0): v for i, v in enumerate(latencies)}
    joined = join(served, reached, reached, client, 0, 1)
    return {
        "buses": 17_000,
        "interval_s": 10.0,
        "warmup_s": 20,
        "seconds": 60,
        "grace_s": 10,
        "bodies": 6,
        "items_per_body": 14_000,
        **joined,
        "client": {"frames": 5, "conflated": 0, "repeats": 0},
        "adapter": {},
        "cpu_share": {"adapter": 0.4},
    }


def result_of(*runs: dict[str, Any]) -> dict[str, Any]:
    machine = {"loadavg": [1.0, 1.0, 1.0], "cores": 2}
    return {"git_sha": "0" * 40, "when": "now", "machine": machine, "machine_after": machine, "runs": list(runs)}


def test_the_goals_say_missed_when_p99_is_over_the_bound_or_a_report_is_lost() -> None:
    fast, slow = run_of([200] * 100), run_of([200] * 98 + [P99_BOUND_MS + 1] * 2)
    assert [g.met for g in goals(result_of(fast))] == [True, True]
    assert [g.met for g in goals(result_of(slow))] == [False, True]
    assert [g.met for g in goals(result_of(run_of([200] * 100, lost=1)))] == [True, False]
    assert [g.met for g in goals(result_of(run_of([])))] == [False, False]


def test_the_doc_sections_show_every_figure_the_goal_rests_on() -> None:
    result = result_of(run_of([200] * 98 + [P99_BOUND_MS + 1, 65_000]))
    page, summary = page_body(result, "r.json"), summary_body(result, "r.json")
    for text in (page, summary):
        assert "65,000" in text and "MISSED" not in text.split("\n")[0]
    assert f"> {SLOW_MS:,} ms" in page and "[51,200, 102,400) 1" in page


def test_the_client_stamps_each_report_once_and_counts_repeats() -> None:
    client = OperatorClient("ws://unused", "key")
    client.take({"type": "subscribed"}, 0)
    delta = {"type": "delta", "upsert": [{"id": "OBU-1", "observed_at": 10}, {"id": "OBU-2", "observed_at": 10}]}
    client.take(delta, 100)
    client.take({**delta, "conflated": True}, 200)
    assert client.subscribed.is_set()
    assert client.first == {("OBU-1", 10): 100, ("OBU-2", 10): 100}
    assert (client.frames, client.conflated, client.repeats) == (2, 1, 2)


def test_adapter_metrics_are_read_by_name() -> None:
    text = (
        "# HELP shfeeds_adapter_polls_total Polls\n"
        'shfeeds_adapter_polls_total{source="sh-bus"} 7.0\n'
        'shfeeds_adapter_last_poll_duration_seconds{source="sh-bus"} 0.25\n'
        "shfeeds_adapter_delivered_total 100.0\n"
    )
    assert adapter_figures(text) == {"polls_total": 7.0, "last_poll_duration_seconds": 0.25, "delivered_total": 100.0}
