"""The simulators over HTTP: the documented paths, conditional GET, and each switchable fault."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf.message import DecodeError
from google.transit import gtfs_realtime_pb2

from adapters.simulators.beijing import utc_from_local
from adapters.simulators.city import SimulatedCity
from adapters.simulators.faults import FaultError, parse_fault
from adapters.simulators.server import build_app
from shfeeds_cli.cmd_simulate import parse_fault_specs

START_S = utc_from_local(2026, 11, 27, 13, 5)
PATHS = {
    "bus": "/bus/gps.json",
    "metro": "/metro/vehicle-positions.pb",
    "parking": "/parking/lots.json",
    "charging": "/charging/stations.json",
    "scenic": "/scenic/visitors.json",
    "bus_trip_updates": "/bus/trip-updates.pb",
    "metro_trip_updates": "/metro/trip-updates.pb",
}


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def city(clock: ManualClock) -> SimulatedCity:
    return SimulatedCity(11, start_ms=START_S * 1000, buses=200, lots=100, connectors=200, monotonic=clock)


@pytest.fixture
async def client(city: SimulatedCity) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_app(city))) as c:
        yield c


async def test_every_feed_is_served_at_its_documented_path(client: TestClient) -> None:
    for feed, path in PATHS.items():
        resp = await client.get(path)
        assert resp.status == 200, feed
        body = await resp.read()
        if feed.startswith("metro") or feed.endswith("trip_updates"):
            assert resp.content_type == "application/x-protobuf"
            gtfs_realtime_pb2.FeedMessage().ParseFromString(body)
        else:
            assert orjson.loads(body)["code"] == 0
    index = await (await client.get("/")).json()
    assert index["feeds"] == PATHS


async def test_conditional_get_answers_304_until_the_data_changes(client: TestClient, clock: ManualClock) -> None:
    first = await client.get("/scenic/visitors.json")
    etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]
    again = await client.get("/scenic/visitors.json", headers={"If-None-Match": etag})
    assert again.status == 304 and again.headers["ETag"] == etag and await again.read() == b""
    since = await client.get("/scenic/visitors.json", headers={"If-Modified-Since": last_modified})
    assert since.status == 304
    clock.now += 600  # scenic counts update every five simulated minutes
    changed = await client.get("/scenic/visitors.json", headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    later = await client.get("/scenic/visitors.json", headers={"If-Modified-Since": last_modified})
    assert later.status == 200, "Last-Modified moves forward when the body changes, even within a second"


async def set_fault(client: TestClient, **spec: object) -> None:
    resp = await client.post("/_faults", data=orjson.dumps(spec))
    assert resp.status == 200, await resp.text()


async def test_garbage_records_are_mixed_in_and_counted(client: TestClient) -> None:
    clean = orjson.loads(await (await client.get("/parking/lots.json")).read())["data"]
    await set_fault(client, feed="parking", fault="garbage", rate=0.1)
    try:
        dirty = orjson.loads(await (await client.get("/parking/lots.json")).read())["data"]
    finally:
        await set_fault(client, feed="parking", fault=None)
    good = [r for r in dirty if r in clean]
    bad = [r for r in dirty if r not in clean]
    assert len(good) == len(clean) and len(bad) == 10
    for rec in bad:  # each is invalid in a way a parser must notice
        broken = not isinstance(rec, dict) or "parkId" not in rec or rec["parkId"] == ""
        assert broken or rec.get("lat") == 999.0 or "N/A" in rec.values()
    stats = await (await client.get("/_stats")).json()
    assert stats["parking"]["garbage_records"] >= 10


async def test_garbage_body_is_not_a_valid_payload(client: TestClient) -> None:
    clean_metro = await (await client.get(PATHS["metro"])).read()
    for feed in ("bus", "metro"):
        await set_fault(client, feed=feed, fault="garbage", mode="body")
        body = await (await client.get(PATHS[feed])).read()
        await set_fault(client, feed=feed, fault=None)
        if feed == "bus":
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(body)
        else:
            assert body != clean_metro
            message = gtfs_realtime_pb2.FeedMessage()
            with contextlib.suppress(DecodeError):
                message.ParseFromString(body)
                # A body cut at an entity boundary still decodes: then it holds fewer entities than the clean one.
                assert len(message.entity) < len(gtfs_realtime_pb2.FeedMessage.FromString(clean_metro).entity)


async def test_duplicates_repeat_records(client: TestClient) -> None:
    await set_fault(client, feed="bus", fault="duplicates", rate=0.5)
    doc = orjson.loads(await (await client.get("/bus/gps.json")).read())
    await set_fault(client, feed="bus", fault=None)
    ids = [r["obuId"] for r in doc["data"]]
    assert len(ids) - len(set(ids)) == round(len(set(ids)) * 0.5)
    await set_fault(client, feed="metro", fault="duplicates", rate=0.2)
    message = gtfs_realtime_pb2.FeedMessage()
    message.ParseFromString(await (await client.get(PATHS["metro"])).read())
    await set_fault(client, feed="metro", fault=None)
    ids = [e.id for e in message.entity]
    assert len(ids) > len(set(ids))


async def test_time_jump_shifts_every_timestamp(client: TestClient, city: SimulatedCity) -> None:
    now = city.now_s()
    await set_fault(client, feed="charging", fault="time_jump", jump_s=-86_400)
    doc = orjson.loads(await (await client.get("/charging/stations.json")).read())
    await set_fault(client, feed="charging", fault=None)
    assert doc["updateTime"] < "2026-11-27" and all(s["updateTime"] < "2026-11-27" for s in doc["stations"])
    await set_fault(client, feed="metro", fault="time_jump", jump_s=3600)
    message = gtfs_realtime_pb2.FeedMessage()
    message.ParseFromString(await (await client.get(PATHS["metro"])).read())
    await set_fault(client, feed="metro", fault=None)
    assert message.header.timestamp == now + 3600
    assert all(e.vehicle.timestamp == now + 3600 for e in message.entity)


async def test_stall_holds_the_response_until_the_fault_is_cleared(client: TestClient) -> None:
    await set_fault(client, feed="scenic", fault="stall", stall_s=30)
    began = time.monotonic()
    pending = asyncio.ensure_future(client.get("/scenic/visitors.json"))
    await asyncio.sleep(0.3)
    assert not pending.done(), "a stalled source does not answer"
    other = await client.get("/parking/lots.json")
    assert other.status == 200, "other feeds keep answering"
    await set_fault(client, feed="scenic", fault=None)
    resp = await asyncio.wait_for(pending, timeout=5)
    assert resp.status == 200 and time.monotonic() - began < 5


async def test_stall_gives_up_after_stall_s(client: TestClient) -> None:
    await set_fault(client, feed="scenic", fault="stall", stall_s=0.3)
    began = time.monotonic()
    resp = await client.get("/scenic/visitors.json")
    await set_fault(client, feed="scenic", fault=None)
    assert resp.status == 200 and 0.25 < time.monotonic() - began < 3


async def test_upstream_and_http_errors(client: TestClient) -> None:
    await set_fault(client, feed="bus", fault="upstream_error")
    doc = await (await client.get("/bus/gps.json")).json()
    assert doc["code"] != 0 and "data" not in doc
    await set_fault(client, feed="bus", fault="http_error")
    assert (await client.get("/bus/gps.json")).status == 503
    assert (await client.delete("/_faults")).status == 200
    assert (await client.get("/bus/gps.json")).status == 200
    assert all(v is None for v in (await (await client.get("/_faults")).json()).values())


async def test_bad_fault_requests_get_a_clear_400(client: TestClient) -> None:
    for body in (b"not json", b"[]", orjson.dumps({"feed": "ferry", "fault": "stall"}),
                 orjson.dumps({"feed": "bus", "fault": "explode"}),
                 orjson.dumps({"feed": "bus", "fault": "garbage", "rate": 7})):  # fmt: skip
        resp = await client.post("/_faults", data=body)
        assert resp.status == 400
        assert (await resp.json())["error"]


async def test_faults_from_the_constructor(city: SimulatedCity) -> None:
    app = build_app(city, faults={"bus": {"fault": "duplicates", "rate": 1.0}})
    async with TestClient(TestServer(app)) as c:
        doc = orjson.loads(await (await c.get("/bus/gps.json")).read())
    ids = [r["obuId"] for r in doc["data"]]
    assert len(ids) == 2 * len(set(ids))


def test_fault_specs_from_the_command_line() -> None:
    specs = parse_fault_specs(["bus=garbage:rate=0.2:mode=body,parking=stall", "scenic=time_jump:jump_s=-60"])
    assert parse_fault(specs["bus"]).rate == 0.2 and parse_fault(specs["bus"]).mode == "body"
    assert parse_fault(specs["parking"]).kind == "stall"
    assert parse_fault(specs["scenic"]).jump_s == -60
    with pytest.raises(ValueError):
        parse_fault_specs(["bus"])
    with pytest.raises(FaultError):
        parse_fault({"fault": "stall", "colour": "red"})


def test_simulate_accepts_faults_on_the_ocpi_sessions_endpoint(unused_tcp_port: int) -> None:
    import subprocess
    import sys
    import time
    import urllib.request

    cli = [sys.executable, "-m", "shfeeds_cli.main", "simulate", "--buses", "50", "--lots", "20", "--connectors", "60"]
    refused = subprocess.run([*cli, "--faults", "tram=garbage"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "charging_sessions" in refused.stderr
    port = str(unused_tcp_port)
    proc = subprocess.Popen(
        [*cli, "--port", port, "--faults", "charging_sessions=garbage:rate=1:mode=body"], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ocpi/2.2.1/cdrs", timeout=5) as resp:
                    body = resp.read()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "simulator did not come up"
                time.sleep(0.5)
        # Every response of the endpoint is garbled on purpose: not the JSON envelope OCPI promises.
        try:
            envelope = json.loads(body)
        except ValueError:
            envelope = None
        assert not (isinstance(envelope, dict) and isinstance(envelope.get("data"), list))
    finally:
        proc.terminate()
        proc.wait(10)
