"""The catalogue served by a real node on the real Kafka and Redis: each entry's fields per tier are exactly
the fields a client of that tier receives over the WebSocket, and the quality figures are the live ones of
a real control plane."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import connect

import settings as settings_mod
from catalog import OPEN_TIERS
from schemas import now_ms
from streams.policy import PolicyEngine, load_policy
from ws_server.config import Naming, ServerConfig
from ws_server.keys import KeyStore
from ws_server.server import Node
from ws_server.testing import TierWriter, create_tier_topics, running_node

from .conftest import _free_port, settings_env

pytestmark = pytest.mark.stack

ENGINE = PolicyEngine(load_policy(), secret=b"catalog-test-secret")
FEEDS = ("bus", "parking", "charging", "scenic")
PEOPLES_SQUARE = (121.4737, 31.2304)


def full_records() -> dict[str, list[dict[str, Any]]]:
    """Canonical records with every optional field filled, and both sides of every k floor and band."""
    now = now_ms()
    base = {"source": "test", "observed_at": now, "expires_at": now + 600_000}
    lng, lat = PEOPLES_SQUARE
    bus = {
        **base,
        "id": "bus-1",
        "lng": lng,
        "lat": lat,
        "mode": "bus",
        "route_id": "71",
        "trip_id": "71-1",
        "direction_id": 0,
        "label": "沪B-1",
        "vehicle_id": "v-1",
        "bearing": 93.0,
        "speed_kmh": 23.4,
        "occupancy_status": "MANY_SEATS_AVAILABLE",
        "occupancy_pct": 37,
        "passenger_count": 30,
        "stop_id": "s1",
        "next_stop_id": "s2",
        "delay_s": 40,
        "seq": 5,
        "plate": "沪A12345",
        "driver_id": "d-9",
        "diagnostics": {"door": "ok"},
    }
    lot = {
        **base,
        "lng": lng + 0.001,
        "lat": lat,
        "name": "lot",
        "kind": "shopping",
        "status": "open",
        "district": "310101",
        "seq": 1,
    }
    parking = [{**lot, "id": "p-big", "capacity": 200, "free": 37}, {**lot, "id": "p-small", "capacity": 8, "free": 3}]

    def station(sid: str, n: int) -> dict[str, Any]:
        connectors = [
            {"id": f"{sid}-c{i}", "type": "GB_T_DC", "status": "AVAILABLE", "power_kw": 60.0, "fault_code": "none"}
            for i in range(n)
        ]
        return {
            **base,
            "id": sid,
            "lng": lng,
            "lat": lat + 0.001,
            "name": sid,
            "operator": "op",
            "public": True,
            "connectors": connectors,
            "district": "310101",
            "seq": 1,
        }

    scenic = {
        **base,
        "id": "sc-1",
        "lng": lng,
        "lat": lat - 0.001,
        "name": "豫园",
        "count": 1234,
        "capacity": 5000,
        "district": "310101",
        "seq": 2,
        "zones": [{"id": "z1", "count": 400, "name": "east"}, {"id": "z2", "count": 3}],
    }
    return {"bus": [bus], "parking": parking, "charging": [station("ch-4", 4), station("ch-2", 2)], "scenic": [scenic]}


async def subscribe_all(url: str, key: str | None) -> dict[str, set[str]]:
    """Subscribe to every feed of FEEDS with this key; the field names of each feed's snapshot records."""
    headers = {"Authorization": f"Bearer {key}"} if key else None
    seen: dict[str, set[str]] = {}
    feed_of: dict[str, str] = {}  # stream → feed, from "subscribed"
    done: set[str] = set()
    async with connect(url, subprotocols=["shfeeds.v1.json"], additional_headers=headers) as ws:  # type: ignore[list-item]
        for feed in FEEDS:
            await ws.send(orjson.dumps({"type": "subscribe", "id": feed, "feed": feed}).decode())
        deadline = time.monotonic() + 20
        while len(done) < len(FEEDS):
            message = orjson.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic())))
            assert message["type"] not in ("error", "unavailable"), message
            if message["type"] == "subscribed":
                feed_of[message["stream"]] = message["feed"]
            elif message["type"] == "snapshot":
                feed = feed_of[message["stream"]]
                seen.setdefault(feed, set()).update(name for r in message["records"] for name in r)
                if message["last"]:
                    assert seen[feed], f"no {feed} records at this tier"
                    done.add(feed)
    return seen


def catalogue_fields(doc: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    out = {}
    for dataset in doc["dcat:dataset"]:
        for dist in dataset["dcat:distribution"]:
            out[(dataset["dct:identifier"], dist["shf:tier"])] = {f["shf:name"] for f in dist["shf:field"]}
    return out


async def get(url: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        return answer.status, answer.headers.get("Content-Type", ""), await answer.read()


@pytest.fixture
async def served(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> AsyncIterator[tuple[Node, TierWriter, KeyStore]]:
    prefix = unique_name("catalog")
    naming = Naming(prefix + ".", prefix)
    await create_tier_topics(kafka_bootstrap, naming, [(t, f) for t in OPEN_TIERS for f in FEEDS], partitions=1)
    config = ServerConfig(port=0, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, naming=naming)
    async with TierWriter(kafka_bootstrap, redis_url, naming) as writer, running_node(config) as node:
        yield node, writer, node.keys


async def test_each_tier_receives_exactly_the_fields_its_catalogue_entry_lists(
    served: tuple[Node, TierWriter, KeyStore],
) -> None:
    node, writer, keys = served
    for feed, records in full_records().items():
        views = ENGINE.apply_all(feed, records)
        for tier in OPEN_TIERS:
            crs = ENGINE.allowed_crs(feed, tier)[0]
            released = [{**v, "crs": v.get("crs", crs), "policy_version": ENGINE.policy_version} for v in views[tier]]
            await writer.put(tier, feed, released)
    tier_keys = {
        "public": None,
        "registered": (await keys.issue("registered"))[0],
        "licensed": (await keys.issue("licensed", agreement_id="agr-catalog-test"))[0],
    }
    status, content_type, body = await get(f"http://127.0.0.1:{node.port}/catalog")
    assert status == 200 and content_type == "application/ld+json"
    listed = catalogue_fields(orjson.loads(body))
    url = f"ws://127.0.0.1:{node.port}/"
    for tier, key in tier_keys.items():
        received = await subscribe_all(url, key)
        for feed in FEEDS:
            fields = listed[(feed, tier)]
            assert received[feed] <= fields, f"{feed}/{tier}: sent but not in the catalogue: {received[feed] - fields}"
            # "state" marks a stale or removed entity only; every other listed field reached this client.
            assert fields - {"state"} <= received[feed], f"{feed}/{tier}: listed, never sent: {fields - received[feed]}"


@pytest.fixture
def control_plane(
    running_stack: settings_mod.Settings, tmp_path: Path, unique_name: Callable[[str], str]
) -> Iterator[str]:
    """A real control plane (its own app id and topic prefix) watching the bus feed, which has no adapter."""
    port = _free_port()
    log = (tmp_path / "control-plane.log").open("wb")
    argv = [sys.executable, "-m", "shfeeds_cli.main", "control-plane", "--web-port", str(port)]
    argv += ["--app-id", unique_name("cp"), "--topic-prefix", unique_name("cpcat") + ".", "--feeds", "bus"]
    proc = subprocess.Popen(argv, env=settings_env(running_stack), stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def test_the_catalogue_shows_the_control_planes_live_health(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str], control_plane: str
) -> None:
    report: dict[str, Any] | None = None
    deadline = time.monotonic() + 90
    while report is None and time.monotonic() < deadline:
        try:
            status, _, body = await get(f"{control_plane}/health/feeds")
            report = orjson.loads(body) if status == 200 else None
        except aiohttp.ClientError:
            pass
        if report is None:
            await asyncio.sleep(0.5)
    assert report is not None, "the control plane did not answer"
    bus = next(f for f in report["feeds"] if f["feed"] == "bus")
    prefix = unique_name("catalogcp")
    config = ServerConfig(
        port=0,
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        naming=Naming(prefix + ".", prefix),
        control_plane_url=control_plane,
    )
    async with running_node(config) as node:
        status, _, body = await get(f"http://127.0.0.1:{node.port}/catalog")
        doc = orjson.loads(body)
        entry = next(d for d in doc["dcat:dataset"] if d["dct:identifier"] == "bus")
        assert entry["shf:healthState"] == bus["state"] and entry["shf:healthReasons"] == bus["reasons"]
        status, content_type, page = await get(f"http://127.0.0.1:{node.port}/catalog.html")
        assert status == 200 and content_type.startswith("text/html")
        assert f'class="state-{bus["state"]}"' in page.decode() and "公交车实时位置" in page.decode()
