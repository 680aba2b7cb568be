"""The server on the real Kafka and Redis: filters, tiers, resume, revocation, abusive clients, GTFS-RT."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from google.transit import gtfs_realtime_pb2
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from access.identity import kafka_options
from client import FeedClient
from geo.crs import gcj02_to_wgs84
from ws_server.audit_chain import verify_chain
from ws_server.config import Naming, ServerConfig
from ws_server.keys import KeyStore
from ws_server.server import Node
from ws_server.testing import TierWriter, bus_record, create_tier_topics, running_node

pytestmark = pytest.mark.stack

PAIRS = [(t, f) for t in ("public", "licensed") for f in ("bus", "metro")]


@dataclass
class Stack:
    node: Node
    writer: TierWriter
    naming: Naming
    keys: KeyStore
    bootstrap: str

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.node.port}/"


@pytest.fixture
async def stack(kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> AsyncIterator[Stack]:
    prefix = unique_name("wse2e")
    naming = Naming(prefix + ".", prefix)
    await create_tier_topics(kafka_bootstrap, naming, PAIRS)
    config = ServerConfig(
        port=0,
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        naming=naming,
        key_check_interval_s=1.0,
        audit_interval_s=0.5,
        per_ip_connections=6,
        max_frame_bytes=16 * 1024,
    )
    async with TierWriter(kafka_bootstrap, redis_url, naming) as writer, running_node(config) as node:
        yield Stack(node, writer, naming, node.keys, kafka_bootstrap)


async def open_ws(url: str, key: str | None = None) -> ClientConnection:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return await connect(url, subprotocols=["shfeeds.v1.json"], additional_headers=headers)  # type: ignore[list-item]


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(message).decode())


async def recv(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message


async def recv_until(ws: ClientConnection, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = await recv(ws, max(0.1, deadline - time.monotonic()))
        if message["type"] == kind:
            return message


PEOPLES_SQUARE = (121.4737, 31.2304)  # Huangpu
LUJIAZUI = (121.5055, 31.2397)  # Pudong
HONGQIAO = (121.3200, 31.1940)  # Minhang


async def test_snapshot_from_redis_then_live_deltas_from_kafka(stack: Stack) -> None:
    await stack.writer.put("public", "bus", [bus_record("b1", *PEOPLES_SQUARE)])
    ws = await open_ws(stack.url)
    await send(ws, {"type": "subscribe", "id": "a", "feed": "bus"})
    subscribed, snapshot = await recv(ws), await recv(ws)
    assert subscribed["type"] == "subscribed" and [r["id"] for r in snapshot["records"]] == ["b1"]
    started = time.monotonic()
    await stack.writer.put("public", "bus", [bus_record("b2", *LUJIAZUI)])
    delta = await recv_until(ws, "delta")
    assert [r["id"] for r in delta["upsert"]] == ["b2"] and delta["seq"] == 1
    assert time.monotonic() - started < 2.0
    await ws.close()


async def test_each_filter_end_to_end(stack: Stack) -> None:
    await stack.writer.put("public", "bus", [bus_record("warmup", *HONGQIAO)])
    ws = await open_ws(stack.url)
    filters = {
        "bbox": {"bbox": [121.46, 31.22, 121.48, 31.24]},
        "district": {"district": "浦东新区"},
        "near": {"near": {"lng": HONGQIAO[0], "lat": HONGQIAO[1], "radius_m": 300}},
        "polygon": {
            "polygon": {
                "type": "Polygon",
                "coordinates": [[[121.49, 31.23], [121.52, 31.23], [121.52, 31.25], [121.49, 31.25], [121.49, 31.23]]],
            }
        },
        "routes": {"routes": ["71"]},
        "ids": {"ids": ["hq"]},
    }
    for sub_id, flt in filters.items():
        await send(
            ws, {"type": "subscribe", "id": sub_id, "feed": "bus", "filter": flt, "options": {"snapshot": False}}
        )
    streams = {}
    for _ in filters:
        message = await recv(ws)
        assert message["type"] == "subscribed", message
        streams[message["stream"]] = message["id"]
    await stack.writer.put(
        "public",
        "bus",
        [
            bus_record("ps", *PEOPLES_SQUARE, route_id="71"),
            bus_record("ljz", *LUJIAZUI, route_id="980"),
            bus_record("hq", *HONGQIAO, route_id="941"),
        ],
    )
    got: dict[str, set[str]] = {}
    deadline = time.monotonic() + 10
    while len(got) < len(filters) and time.monotonic() < deadline:
        message = await recv(ws)
        if message["type"] == "delta":
            got.setdefault(streams[message["stream"]], set()).update(r["id"] for r in message["upsert"])
    assert got == {
        "bbox": {"ps"},
        "district": {"ljz"},
        "near": {"hq", "warmup"} - {"warmup"},
        "polygon": {"ljz"},
        "routes": {"ps"},
        "ids": {"hq"},
    }
    await ws.close()


async def test_public_client_never_sees_licensed_fields_or_wgs84(stack: Stack) -> None:
    licensed = bus_record("v1", 121.473712, 31.230433, vehicle_id="SH-0001", passenger_count=37)
    public = bus_record("v1", 121.4735, 31.2305, occupancy_status="MANY_SEATS_AVAILABLE")
    await stack.writer.put("licensed", "bus", [licensed])
    await stack.writer.put("public", "bus", [public])
    key, _ = await stack.keys.issue("licensed", agreement_id="AG-2026-7")
    pub = await open_ws(stack.url)
    lic = await open_ws(stack.url, key)
    await send(pub, {"type": "subscribe", "id": "a", "feed": "bus", "options": {"crs": "wgs84"}})
    error = await recv(pub)
    assert error["type"] == "error" and error["code"] == "crs_not_allowed"
    await send(pub, {"type": "subscribe", "id": "a", "feed": "bus"})
    await send(lic, {"type": "subscribe", "id": "a", "feed": "bus", "options": {"crs": "wgs84"}})
    pub_record = (await recv_until(pub, "snapshot"))["records"][0]
    lic_sub = await recv(lic)
    lic_record = (await recv_until(lic, "snapshot"))["records"][0]
    assert lic_sub["tier"] == "licensed" and lic_record["vehicle_id"] == "SH-0001" and lic_record["crs"] == "wgs84"
    assert "vehicle_id" not in pub_record and "passenger_count" not in pub_record
    assert (pub_record["lng"], pub_record["lat"]) == (121.4735, 31.2305) and pub_record["crs"] == "gcj02"
    # A licensed connection's deliveries are in the audit log, hash-chained.
    await stack.writer.put("licensed", "bus", [bus_record("v2", *LUJIAZUI, vehicle_id="SH-0002")])
    await recv_until(lic, "delta")
    entries = await read_audit(stack, want=1)
    assert entries and entries[0]["agreement_id"] == "AG-2026-7" and "vehicle_id" in entries[0]["fields"]
    assert verify_chain(entries) == []
    await pub.close()
    await lic.close()


async def read_audit(stack: Stack, want: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        stack.naming.audit_topic(),
        bootstrap_servers=stack.bootstrap,
        **kafka_options(),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    entries: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(entries) < want and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                entries += [orjson.loads(r.value) for r in records if r.value]
    finally:
        await consumer.stop()
    return sorted(entries, key=lambda e: (e["chain"], e["n"]))


async def test_resume_after_a_dropped_connection_has_no_gap_and_no_duplicate(stack: Stack) -> None:
    feed_client = FeedClient(stack.url, backoff_initial_s=0.05)
    feed_client.subscribe("s", "bus", options={"snapshot": False})
    received: list[tuple[int, str]] = []
    dropped = asyncio.Event()

    async def consume() -> None:
        async for event in feed_client.events():
            if event.type == "delta":
                received.extend((event.message["seq"], r["id"]) for r in event.message["upsert"])
            if len(received) == 5 and not dropped.is_set():
                dropped.set()
                assert feed_client._conn is not None
                feed_client._conn.transport.abort()  # the network drops, no close handshake
            if len(received) >= 20:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    for n in range(20):
        await stack.writer.put("public", "bus", [bus_record(f"r{n}", *PEOPLES_SQUARE)])
        await asyncio.sleep(0.08)
    await asyncio.wait_for(task, 15)
    assert feed_client.connects == 2 and feed_client.resumes == 1 and feed_client.resets == 0
    ids = [entity_id for _, entity_id in received]
    assert ids == [f"r{n}" for n in range(20)]  # every record once, in order
    seqs = sorted({seq for seq, _ in received})
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_revocation_and_downgrade_reach_open_connections_within_5s(stack: Stack) -> None:
    await stack.writer.put("licensed", "bus", [bus_record("v1", *PEOPLES_SQUARE, vehicle_id="X")])
    await stack.writer.put("public", "bus", [bus_record("v1", *PEOPLES_SQUARE)])
    revoked_key, _ = await stack.keys.issue("licensed", agreement_id="AG-1")
    downgraded_key, info = await stack.keys.issue("licensed", agreement_id="AG-2")
    a = await open_ws(stack.url, revoked_key)
    b = await open_ws(stack.url, downgraded_key)
    for ws in (a, b):
        await send(ws, {"type": "subscribe", "id": "s", "feed": "bus"})
        await recv_until(ws, "snapshot")
    started = time.monotonic()
    await stack.keys.revoke(revoked_key)
    await stack.keys.set_tier(info.key_id, "public")
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await recv(a, 6)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    reset = await recv_until(b, "reset", 6)
    snapshot = await recv_until(b, "snapshot")
    assert time.monotonic() - started < 5.0
    assert reset["reason"] == "tier_changed" and "vehicle_id" not in snapshot["records"][0]
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(stack.url, revoked_key)
    assert refused.value.response.status_code == 401
    await b.close()


async def test_abusive_clients_are_limited_while_others_are_unaffected(stack: Stack) -> None:
    good = await open_ws(stack.url)
    await send(good, {"type": "subscribe", "id": "s", "feed": "bus", "options": {"snapshot": False}})
    await recv(good)
    bad = await open_ws(stack.url)
    await bad.send("{this is not json")
    assert (await recv(bad))["code"] == "bad_encoding"
    big = await open_ws(stack.url)
    await big.send("x" * 100_000)
    with pytest.raises(ConnectionClosed) as too_big:
        await recv(big)
    assert too_big.value.rcvd is not None and too_big.value.rcvd.code == 1009
    flood = await open_ws(stack.url)
    codes: list[str] = []
    with pytest.raises(ConnectionClosed) as flooded:
        for _ in range(500):
            await send(flood, {"type": "ping"})
        while True:
            message = await recv(flood)
            if message["type"] == "error":
                codes.append(message["code"])
    assert "rate_limited" in codes and flooded.value.rcvd is not None and flooded.value.rcvd.code == 4029
    await stack.writer.put("public", "bus", [bus_record("ok", *PEOPLES_SQUARE)])
    delta = await recv_until(good, "delta")
    assert [r["id"] for r in delta["upsert"]] == ["ok"]
    # Per-IP cap on public connections (6 in this fixture; good and bad are still open).
    extra = [await open_ws(stack.url) for _ in range(4)]
    with pytest.raises(InvalidStatus) as capped:
        await open_ws(stack.url)
    assert capped.value.response.status_code == 429
    for ws in [good, bad, *extra]:
        await ws.close()


async def test_gtfs_rt_vehicle_positions_per_tier(stack: Stack) -> None:
    blurred = (121.4735, 31.2305)  # the public tier's grid-snapped point (GCJ-02)
    await stack.writer.put("public", "bus", [bus_record("b1", *blurred, route_id="71", speed_kmh=36.0)])
    await stack.writer.put("licensed", "bus", [bus_record("b1", *PEOPLES_SQUARE, route_id="71", vehicle_id="V1")])
    key, _ = await stack.keys.issue("licensed", agreement_id="AG-3")
    url = f"http://127.0.0.1:{stack.node.port}/gtfs-rt/vehicle-positions.pb"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200 and resp.headers["X-Shfeeds-Crs"] == "wgs84"  # as GTFS-RT requires
            assert resp.headers["X-Shfeeds-Crs-Source"] == "gcj02-converted"
            public = gtfs_realtime_pb2.FeedMessage.FromString(await resp.read())
        async with http.get(url, headers={"Authorization": f"Bearer {key}"}) as resp:
            assert resp.headers["X-Shfeeds-Tier"] == "licensed" and resp.headers["X-Shfeeds-Crs"] == "wgs84"
            licensed = gtfs_realtime_pb2.FeedMessage.FromString(await resp.read())
        async with http.get(url, headers={"Authorization": "Bearer nonsense"}) as resp:
            assert resp.status == 401
    (pub_entity,) = public.entity
    assert pub_entity.vehicle.trip.route_id == "71" and pub_entity.vehicle.position.speed == pytest.approx(10.0)
    assert pub_entity.vehicle.vehicle.id == "b1"
    # The public position is the blurred point moved to WGS-84 (GCJ-02 lies ~500 m north-east of it in
    # Shanghai), not the licensed raw position: converting released nothing more precise.
    want = gcj02_to_wgs84(*blurred)
    assert pub_entity.vehicle.position.longitude == pytest.approx(want[0], abs=2e-5)
    assert pub_entity.vehicle.position.latitude == pytest.approx(want[1], abs=2e-5)
    (lic_entity,) = licensed.entity
    assert lic_entity.vehicle.vehicle.id == "V1"
    raw = gcj02_to_wgs84(*PEOPLES_SQUARE)
    assert lic_entity.vehicle.position.longitude == pytest.approx(raw[0], abs=2e-5)
    assert abs(pub_entity.vehicle.position.longitude - raw[0]) > 1e-4
