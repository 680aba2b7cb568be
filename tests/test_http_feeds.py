"""Plain HTTP on the real Kafka and Redis, with a plain HTTP client (urllib): GTFS-RT that consumers accept
(expired entities left out, gzip, ETag / Last-Modified and 304), feed queries that hold what a WebSocket
client of the same tier holds, paging, tiers, errors, rate limits, audit, and the OpenAPI document."""

from __future__ import annotations

import asyncio
import gzip
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import jsonschema
import orjson
import pytest
from google.transit import gtfs_realtime_pb2
from openapi_spec_validator import validate
from websockets.asyncio.client import connect

from schemas import now_ms
from ws_server.testing import bus_record

from .test_ws_e2e import Stack, read_audit
from .test_ws_e2e import stack as stack  # the fixture, by its name

pytestmark = pytest.mark.stack

PEOPLES_SQUARE = (121.4737, 31.2304)  # Huangpu
LUJIAZUI = (121.5055, 31.2397)  # Pudong
HONGQIAO = (121.3200, 31.1940)  # Minhang


def http_url(stack: Stack, path: str) -> str:
    return f"http://127.0.0.1:{stack.node.port}{path}"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def _get(url: str, headers: dict[str, str]) -> Reply:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return Reply(resp.status, dict(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as err:  # 304 and 4xx/5xx come here, with their headers and body
        return Reply(err.code, dict(err.headers.items()), err.read())


async def get(url: str, **headers: str) -> Reply:
    """One request with urllib (no automatic decompression: what the server sends is what we see)."""
    return await asyncio.to_thread(_get, url, {k.replace("_", "-"): v for k, v in headers.items()})


async def ws_snapshot(stack: Stack, flt: dict[str, Any], key: str | None = None) -> list[dict[str, Any]]:
    """The records a WebSocket client holds after subscribing to bus with ``flt``."""
    headers = {"Authorization": f"Bearer {key}"} if key else None
    url = f"ws://127.0.0.1:{stack.node.port}/"
    async with connect(url, subprotocols=["shfeeds.v1.json"], additional_headers=headers) as ws:  # type: ignore[list-item]
        await ws.send(orjson.dumps({"type": "subscribe", "id": "s", "feed": "bus", "filter": flt}).decode())
        records: list[dict[str, Any]] = []
        while True:
            message = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            assert message["type"] != "error", message
            if message["type"] == "snapshot":
                records += message["records"]
                if message["last"]:
                    return records


async def query_all(stack: Stack, params: str, limit: int, **headers: str) -> tuple[list[dict[str, Any]], int]:
    """Every record of a feed query, following the cursor; and the number of pages."""
    records: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        url = http_url(stack, f"/v1/feeds/bus?{params}&limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        reply = await get(url, **headers)
        assert reply.status == 200, reply.body
        page = reply.json()
        assert page["count"] == len(page["records"]) <= limit
        records += page["records"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            assert len(records) == page["total"]
            return records, pages


async def test_gtfs_rt_leaves_out_expired_entities_gzips_and_answers_conditional_requests(stack: Stack) -> None:
    now = now_ms()
    live = _spread(20)  # enough for gzip to be worth it (bodies under 512 bytes are sent as they are)
    await stack.writer.put(
        "public",
        "bus",
        [
            *live,
            # Past its expiry, and the stale marker has not come (yet): still not in the feed.
            bus_record("expired", *LUJIAZUI, observed_at=now - 200_000, expires_at=now - 80_000),
            bus_record("stale", *HONGQIAO, state="stale"),
        ],
    )
    url = http_url(stack, "/gtfs-rt/vehicle-positions.pb")
    first = await get(url, Accept_Encoding="gzip")
    assert first.status == 200 and first.headers["Content-Encoding"] == "gzip"
    assert first.headers["Content-Type"] == "application/x-protobuf" and first.headers["Vary"] == "Accept-Encoding"
    feed = gtfs_realtime_pb2.FeedMessage.FromString(gzip.decompress(first.body))
    assert [e.id for e in feed.entity] == [r["id"] for r in live]
    plain = await get(url)
    assert "Content-Encoding" not in plain.headers and plain.body == gzip.decompress(first.body)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    # A consumer holding either representation's tag, or the date, is told it is current.
    for headers in ({"If_None_Match": etag}, {"If_None_Match": plain.headers["ETag"]}, {"If_Modified_Since": modified}):
        again = await get(url, Accept_Encoding="gzip", **headers)
        assert again.status == 304 and again.body == b"" and again.headers["ETag"] == etag, headers
    as_json = await get(url + "?format=json")
    assert as_json.status == 200 and as_json.headers["Content-Type"] == "application/json"
    assert [e["id"] for e in as_json.json()["entity"]] == [r["id"] for r in live]
    assert as_json.json()["header"]["incrementality"] == "FULL_DATASET"
    assert (await get(url + "?format=xml")).status == 400
    # New content: a new tag, and the old tag no longer gets 304 (the rendering is at most 1 s old).
    await stack.writer.put("public", "bus", [bus_record("new", *LUJIAZUI)])
    deadline = time.monotonic() + 15
    while True:
        changed = await get(url, If_None_Match=etag)
        if changed.status == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert changed.status == 200 and changed.headers["ETag"] != plain.headers["ETag"]
    ids = [e.id for e in gtfs_realtime_pb2.FeedMessage.FromString(changed.body).entity]
    assert ids == [*(r["id"] for r in live), "new"]


def _spread(n: int) -> list[dict[str, Any]]:
    """``n`` buses around three places in three districts, on two routes."""
    places = [PEOPLES_SQUARE, LUJIAZUI, HONGQIAO]
    out = []
    for i in range(n):
        lng, lat = places[i % 3]
        out.append(bus_record(f"bus-{i:03d}", lng + (i % 5) * 0.002, lat + (i % 7) * 0.001, route_id=str(71 + i % 2)))
    return out


async def test_feed_queries_hold_what_a_websocket_client_holds_and_paging_visits_each_once(stack: Stack) -> None:
    await stack.writer.put("public", "bus", _spread(45))
    await stack.writer.put("public", "bus", [bus_record("bus-999", *LUJIAZUI, state="stale")])
    filters: list[tuple[str, dict[str, Any]]] = [
        ("bbox=121.46,31.22,121.52,31.25", {"bbox": [121.46, 31.22, 121.52, 31.25]}),
        ("near=121.5055,31.2397,600", {"near": {"lng": 121.5055, "lat": 31.2397, "radius_m": 600}}),
        ("district=Huangpu", {"district": "Huangpu"}),
        ("district=Minhang&routes=72", {"district": "Minhang", "routes": ["72"]}),
        ("ids=bus-001,bus-002,bus-404", {"ids": ["bus-001", "bus-002", "bus-404"]}),
    ]
    # A public key whose request rate allows the many small pages of this test.
    key, _ = await stack.keys.issue("public", limits={"burst": 1000, "messages_per_s": 1000})
    for params, flt in filters:
        records, pages = await query_all(stack, params, limit=4, X_API_Key=key)
        ids = [r["id"] for r in records]
        assert len(ids) == len(set(ids)), params  # paging visits each entity once
        assert ids == sorted(ids)
        held = await ws_snapshot(stack, flt, key)
        assert sorted(records, key=lambda r: r["id"]) == sorted(held, key=lambda r: r["id"]), params
        assert records and pages == -(-len(records) // 4), params
    everything, _ = await query_all(stack, "", limit=7, X_API_Key=key)
    held_all = await ws_snapshot(stack, {}, key)
    assert len(everything) == 46 and {r["id"] for r in everything} == {r["id"] for r in held_all}
    # The page's tag: a 304 while nothing changed.
    url = http_url(stack, "/v1/feeds/bus?district=Huangpu")
    page = await get(url)
    assert (await get(url, If_None_Match=page.headers["ETag"])).status == 304


async def test_a_public_key_gets_neither_the_fields_nor_the_precision_of_a_higher_tier(stack: Stack) -> None:
    await stack.writer.put(
        "licensed", "bus", [bus_record("v1", 121.473712, 31.230433, vehicle_id="SH-0001", passenger_count=37)]
    )
    await stack.writer.put("public", "bus", [bus_record("v1", 121.4735, 31.2305, occupancy_status="FEW_SEATS")])
    public_key, _ = await stack.keys.issue("public")
    licensed_key, _ = await stack.keys.issue("licensed", agreement_id="AG-HTTP-1")
    for headers in ({}, {"Authorization": f"Bearer {public_key}"}, {"X-API-Key": public_key}):
        reply = await get(http_url(stack, "/v1/feeds/bus"), **headers)
        (record,) = reply.json()["records"]
        assert reply.headers["X-Shfeeds-Tier"] == "public" and reply.json()["tier"] == "public"
        assert "vehicle_id" not in record and "passenger_count" not in record
        assert (record["lng"], record["lat"], record["crs"]) == (121.4735, 31.2305, "gcj02")
        refused = await get(http_url(stack, "/v1/feeds/bus?crs=wgs84"), **headers)
        assert refused.status == 403 and refused.json()["error"]["code"] == "crs_not_allowed"
    licensed = await get(http_url(stack, f"/v1/feeds/bus?crs=wgs84&key={licensed_key}"))
    (record,) = licensed.json()["records"]
    assert licensed.json()["tier"] == "licensed" and record["vehicle_id"] == "SH-0001" and record["crs"] == "wgs84"
    unknown = await get(http_url(stack, "/v1/feeds/bus"), Authorization="Bearer nonsense")
    assert unknown.status == 401 and unknown.json()["error"]["code"] == "unauthorized"
    # The licensed page is in the access audit, like a licensed WebSocket delivery.
    entries = await read_audit(stack, want=1)
    assert [(e["agreement_id"], e["feed"], e["records"]) for e in entries] == [("AG-HTTP-1", "bus", 1)]
    assert "vehicle_id" in entries[0]["fields"]


async def test_bad_parameters_get_documented_json_errors_and_rate_limits_apply(stack: Stack) -> None:
    await stack.writer.put("public", "bus", [bus_record("b1", *PEOPLES_SQUARE)])
    cases = {
        "/v1/feeds/bus?bbox=121.4,31.2,121.5": (400, "invalid_filter"),
        "/v1/feeds/bus?bbox=121.5,31.2,121.4,31.3": (400, "invalid_filter"),  # min > max
        "/v1/feeds/bus?near=121.4,31.2,nan": (400, "invalid_filter"),
        "/v1/feeds/bus?near=121.4,31.2,90000": (400, "invalid_filter"),
        "/v1/feeds/bus?district=Atlantis": (400, "invalid_filter"),
        "/v1/feeds/bus?bbox=121.4,31.2,121.5,31.3&district=Huangpu": (400, "invalid_filter"),
        "/v1/feeds/bus?routes=": (400, "invalid_filter"),
        "/v1/feeds/bus?colour=red": (400, "invalid_parameter"),
        "/v1/feeds/bus?limit=0": (400, "invalid_parameter"),
        "/v1/feeds/bus?limit=ten": (400, "invalid_parameter"),
        "/v1/feeds/bus?crs=utm": (400, "invalid_parameter"),
        "/v1/feeds/bus?ids=a&ids=b": (400, "invalid_parameter"),
        "/v1/feeds/bus?cursor=%25%25": (400, "invalid_cursor"),
        "/v1/feeds/trams": (404, "unknown_feed"),
    }
    for path, (status, code) in cases.items():
        reply = await get(http_url(stack, path))
        assert "error" in reply.json(), (path, reply.status, reply.body[:200])
        assert (reply.status, reply.json()["error"]["code"]) == (status, code), path
        assert reply.headers["Content-Type"] == "application/json" and reply.json()["error"]["message"]
    # A key's own limits apply to its requests as to its WebSocket messages.
    slow_key, _ = await stack.keys.issue("public", limits={"burst": 2, "messages_per_s": 0.2})
    statuses = [(await get(http_url(stack, "/v1/feeds/bus"), X_API_Key=slow_key)) for _ in range(3)]
    assert [r.status for r in statuses] == [200, 200, 429]
    assert statuses[2].json()["error"]["code"] == "rate_limited" and int(statuses[2].headers["Retry-After"]) >= 1


async def test_the_openapi_document_passes_an_independent_validator(stack: Stack) -> None:
    reply = await get(http_url(stack, "/openapi.json"), Accept_Encoding="gzip")
    assert reply.status == 200 and reply.headers["Content-Encoding"] == "gzip"
    document = orjson.loads(gzip.decompress(reply.body))
    validate(document)  # openapi-spec-validator: raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"].startswith("3.1")
    for path in ("/v1/feeds/{feed}", "/gtfs-rt/vehicle-positions.pb", "/healthz", "/schemas/{feed}/{tier}.json"):
        assert path in document["paths"]
    # Every error code the endpoint can answer is in the document, and real answers fit its schemas.
    codes = document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    assert {"invalid_filter", "invalid_parameter", "invalid_cursor", "unknown_feed", "rate_limited"} <= set(codes)
    await stack.writer.put("public", "bus", [bus_record("b1", *PEOPLES_SQUARE)])
    schemas = {**document, "$ref": "#/components/schemas/FeedPage"}
    jsonschema.validate((await get(http_url(stack, "/v1/feeds/bus?limit=1"))).json(), schemas)
    schemas["$ref"] = "#/components/schemas/Error"
    jsonschema.validate((await get(http_url(stack, "/v1/feeds/bus?limit=x"))).json(), schemas)
