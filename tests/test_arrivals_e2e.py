"""Arrivals end to end on the real Kafka and Redis: the simulator's bus TripUpdates (with some broken trip
updates among them) → the ``sh-bus-arrivals`` source → raw.arrivals / dlq.arrivals → the stream pipeline →
the tier topics → the WebSocket server: a subscription filtered by one stop gets that stop's predictions only,
and ``/gtfs-rt/trip-updates.pb`` decodes with the official bindings into trips and stops of the static feed
the server publishes."""

from __future__ import annotations

import asyncio
import csv
import io
import socket
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from google.transit import gtfs_realtime_pb2
from websockets.asyncio.client import connect

import settings as settings_mod
from access.identity import kafka_options
from adapters.runtime import AdapterRuntime
from adapters.simulators.city import SimulatedCity
from adapters.simulators.server import build_app
from schemas import DeadLetter, decode_dead_letter
from streams.config import StreamConfig
from streams.logic.enrichment import Enricher
from streams.stages.worker import Pipeline
from ws_server.config import ServerConfig
from ws_server.testing import running_node

from .streams_support import short_policy_engine
from .streams_support import topic_prefix_fixture as topic_prefix_fixture  # the fixture, by its name

pytestmark = pytest.mark.stack

SEED = 11
BUSES = 1320  # 120 lines, three of them night lines: buses run at every hour of the day
SOURCE = "sh-bus-arrivals"


@dataclass
class Service:
    simulator: str  # base URL
    ws_port: int
    dlq_topic: str
    bootstrap: str


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
async def service(
    kafka_bootstrap: str,
    redis_url: str,
    running_stack: settings_mod.Settings,
    unique_name: Callable[[str], str],
    topic_prefix: str,
) -> AsyncIterator[Service]:
    # The simulated city at the real time (so the pipeline sees fresh data), every 50th trip update broken.
    city = SimulatedCity(seed=SEED, buses=BUSES, lots=10, connectors=10)
    runner = web.AppRunner(build_app(city, {"bus_trip_updates": {"fault": "garbage", "rate": 0.02}}))
    await runner.setup()
    sock = _listening_socket()
    await web.SockSite(runner, sock).start()
    simulator = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = StreamConfig(
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        partitions=2,
        app_id=unique_name("app"),
        topic_prefix=topic_prefix,
        redis_prefix=unique_name("r"),
        feeds=("arrivals",),
        poll_timeout_ms=50,
        stale_scan_interval_s=0.2,
    )
    server = ServerConfig(
        port=0,
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        naming=config.naming,
        network_seed=SEED,
        network_buses=BUSES,
    )
    runtime = AdapterRuntime(running_stack, topic_prefix=topic_prefix)
    async with Pipeline(config, engine=short_policy_engine(), enricher=Enricher({}), aggregates=False):
        adapter = asyncio.create_task(
            runtime.run([SOURCE], urls={SOURCE: simulator + "/bus/trip-updates.pb"}, intervals={SOURCE: 5.0})
        )
        try:
            async with running_node(server) as node:
                yield Service(simulator, node.port, config.naming.dlq_topic("arrivals"), kafka_bootstrap)
        finally:
            adapter.cancel()
            await asyncio.gather(adapter, return_exceptions=True)
            await runner.cleanup()


async def _busiest_stop(simulator: str) -> str:
    """The stop most runs are predicted at right now, on the simulator's own feed."""
    async with aiohttp.ClientSession() as http, http.get(simulator + "/bus/trip-updates.pb") as resp:
        message = gtfs_realtime_pb2.FeedMessage.FromString(await resp.read())
    counts: dict[str, int] = {}
    for entity in message.entity:
        for stu in entity.trip_update.stop_time_update:
            counts[stu.stop_id] = counts.get(stu.stop_id, 0) + 1
    return max(sorted(counts), key=lambda s: counts[s])


async def _records(ws: Any, want: int, timeout: float) -> list[dict[str, Any]]:
    """Records from snapshot and delta frames until ``want`` arrived or ``timeout`` passed."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        try:
            message = orjson.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            break
        got += message.get("records", []) + message.get("upsert", [])
    return got


async def test_a_stop_subscription_gets_only_that_stops_predictions(service: Service) -> None:
    stop = await _busiest_stop(service.simulator)
    url = f"ws://127.0.0.1:{service.ws_port}/"
    async with (
        connect(url, subprotocols=["shfeeds.v1.json"]) as one_stop,  # type: ignore[list-item]
        # Whole-feed deltas are not split into parts (a poll can change thousands of predictions at once, over
        # 1 MiB): read them without a frame limit, as client/feed_client.py does.
        connect(url, subprotocols=["shfeeds.v1.json"], max_size=None) as everything,  # type: ignore[list-item]
    ):
        await one_stop.send(
            orjson.dumps({"type": "subscribe", "id": "s", "feed": "arrivals", "filter": {"stops": [stop]}})
        )
        await everything.send(orjson.dumps({"type": "subscribe", "id": "a", "feed": "arrivals"}))
        mine = await _records(one_stop, 1, 90.0)
        mine += await _records(one_stop, 10**6, 2.0)  # and whatever else comes on that subscription meanwhile
        others = await _records(everything, 20, 10.0)
    assert mine, f"no prediction for stop {stop} reached the subscriber"
    assert {r["stop_id"] for r in mine} == {stop}
    assert len({r["stop_id"] for r in others}) > 10  # unfiltered, the feed holds many stops
    for record in mine:
        assert record["trip_id"] and record["departure_at"] >= record["observed_at"] - 60_000
        assert "vehicle_id" not in record and "plate" not in record  # the public tier's view


async def test_trip_updates_endpoint_decodes_into_the_published_static_feed(service: Service) -> None:
    base = f"http://127.0.0.1:{service.ws_port}"
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.get(base + "/gtfs/static.zip") as resp:
            archive = zipfile.ZipFile(io.BytesIO(await resp.read()))
        message = gtfs_realtime_pb2.FeedMessage()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            async with http.get(base + "/gtfs-rt/trip-updates.pb") as resp:
                assert resp.status == 200 and resp.headers["Content-Type"] == "application/x-protobuf"
                assert resp.headers["X-Shfeeds-Tier"] == "public"
                message = gtfs_realtime_pb2.FeedMessage.FromString(await resp.read())
            if len(message.entity) >= 5:
                break
            await asyncio.sleep(1.0)
        # What a consumer polling the feed relies on: a conditional request, gzip and the JSON rendering.
        async with http.get(base + "/gtfs-rt/trip-updates.pb", headers={"Accept-Encoding": "gzip"}) as resp:
            etag, gzipped = resp.headers["ETag"], resp.headers.get("Content-Encoding")
            fresh = gtfs_realtime_pb2.FeedMessage.FromString(await resp.read())  # aiohttp inflates it
        assert gzipped == "gzip" and len(fresh.entity) >= 5
        async with http.get(base + "/gtfs-rt/trip-updates.pb", headers={"If-None-Match": etag}) as resp:
            assert resp.status in (200, 304)  # 200 only if a prediction changed in between
            same = resp.status == 304 or resp.headers["ETag"] != etag
        assert same
        async with http.get(base + "/gtfs-rt/trip-updates.pb?format=json") as resp:
            as_json = await resp.json()
        assert resp.status == 200 and as_json["entity"][0]["trip_update"]["trip"]["trip_id"]

    def table(name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(archive.read(name).decode("utf-8"))))

    trips = {t["trip_id"]: t for t in table("trips.txt")}
    stops = {s["stop_id"] for s in table("stops.txt")}
    stop_at = {(r["trip_id"], int(r["stop_sequence"])): r["stop_id"] for r in table("stop_times.txt")}
    assert message.header.gtfs_realtime_version == "2.0" and len(message.entity) >= 5
    for entity in message.entity:
        tu = entity.trip_update
        assert tu.trip.trip_id in trips and trips[tu.trip.trip_id]["route_id"] == tu.trip.route_id
        assert tu.trip.start_date and tu.trip.start_time
        sequences = [stu.stop_sequence for stu in tu.stop_time_update]
        assert sequences == sorted(sequences) and sequences
        for stu in tu.stop_time_update:
            assert stu.stop_id in stops and stop_at[(tu.trip.trip_id, stu.stop_sequence)] == stu.stop_id
            assert stu.departure.time > 0


async def test_broken_trip_updates_go_to_the_dlq_with_their_own_bytes(service: Service) -> None:
    consumer = AIOKafkaConsumer(
        service.dlq_topic, bootstrap_servers=service.bootstrap, **kafka_options(), auto_offset_reset="earliest"
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        deadline = time.monotonic() + 60
        while not letters and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                letters += [decode_dead_letter(m.value) for m in messages if m.value]
    finally:
        await consumer.stop()
    assert letters
    for letter in letters:
        assert letter.source == SOURCE and letter.feed == "arrivals" and letter.locator
        entity = gtfs_realtime_pb2.FeedEntity.FromString(letter.original)  # one entity, not the whole feed
        assert entity.id.endswith("-x") and entity.HasField("trip_update")
