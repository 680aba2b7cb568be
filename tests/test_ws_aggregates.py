"""Aggregates are feeds like the others, on the real Kafka and Redis: a WebSocket subscription to
``agg_parking`` by district delivers that district's figures at the client's tier precision (as the real
policy blurs them), live, over plain HTTP and in a replay; ``agg_vehicles`` by route; ``shfeeds tail agg_parking
--district``."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import AGGREGATE_FEEDS, CLIENT_FEEDS, Naming, now_ms
from streams.policy import PolicyEngine
from ws_server.config import ServerConfig
from ws_server.testing import TierWriter, create_tier_topics, running_node

from .test_http_feeds import get
from .test_ws_e2e import Stack, open_ws, recv, recv_until, send
from .test_ws_replay import collect_replay

pytestmark = pytest.mark.stack

PAIRS = [(t, f) for t in ("public", "registered") for f in ("agg_parking", "agg_vehicles")]
HUANGPU, XUHUI = "310101", "310104"


@pytest.fixture
async def agg_stack(kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> AsyncIterator[Stack]:
    prefix = unique_name("wsagg")
    naming = Naming(prefix + ".", prefix)
    await create_tier_topics(kafka_bootstrap, naming, PAIRS)
    config = ServerConfig(port=0, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, naming=naming)
    async with TierWriter(kafka_bootstrap, redis_url, naming) as writer, running_node(config) as node:
        yield Stack(node, writer, naming, node.keys, kafka_bootstrap)


def parking(group: str, key: str, t: int, capacity: int, free: int) -> dict[str, Any]:
    """An agg_parking record as the stream layer computes it (``streams/logic/aggregation.py``)."""
    return {
        "id": f"{group}:{key}",
        "source": "streams",
        "observed_at": t,
        "expires_at": t + 900_000,
        "group": group,
        "key": key,
        "lots": 3,
        "capacity": capacity,
        "free": free,
        "occupancy_pct": round(100.0 * (capacity - free) / capacity, 1),
    }


def vehicles(group: str, key: str, t: int, n: int) -> dict[str, Any]:
    return {
        "id": f"bus:{group}:{key}",
        "source": "streams",
        "observed_at": t,
        "expires_at": t + 900_000,
        "mode": "bus",
        "group": group,
        "key": key,
        "vehicles": n,
    }


def test_every_aggregate_is_a_client_feed_and_documented() -> None:
    assert set(AGGREGATE_FEEDS) <= set(CLIENT_FEEDS)
    asyncapi = (Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml").read_text(encoding="utf-8")
    feed_schema = asyncapi[asyncapi.index("    Feed:") :]
    enum = re.search(r"enum: \[([^\]]*)\]", feed_schema)
    assert enum is not None and tuple(f.strip() for f in enum.group(1).split(",")) == CLIENT_FEEDS


async def test_agg_parking_by_district_at_each_tier_live_replay_and_tail(agg_stack: Stack) -> None:
    engine = PolicyEngine(secret=b"aggregates-test-secret")
    base = now_ms() - 60_000
    figures = [
        parking("district", HUANGPU, base, 1_234, 321),  # occupancy 74.0 %
        parking("district", XUHUI, base + 1_000, 2_000, 150),
        parking("scenic", "SCN-YUYUAN", base + 2_000, 417, 13),  # near Yu Garden, in Huangpu: 96.9 %
        parking("scenic", "SCN-ORIENTALPEARL", base + 3_000, 900, 40),  # Pudong
    ]
    views = {tier: engine.apply("agg_parking", tier, figures) for tier in ("public", "registered")}
    for tier, recs in views.items():
        await agg_stack.writer.put(tier, "agg_parking", recs)
    registered_key, _ = await agg_stack.keys.issue("registered")
    in_huangpu = {"district:310101", "scenic:SCN-YUYUAN"}

    for tier, key in (("public", None), ("registered", registered_key)):
        ws = await open_ws(agg_stack.url, key)
        await send(ws, {"type": "subscribe", "id": "p", "feed": "agg_parking", "filter": {"district": "黄浦"}})
        subscribed = await recv(ws)
        assert subscribed["type"] == "subscribed" and subscribed["tier"] == tier, subscribed
        snapshot = await recv_until(ws, "snapshot")
        got = {r["id"]: r for r in snapshot["records"]}
        assert set(got) == in_huangpu
        for rec in views[tier]:
            if rec["id"] in in_huangpu:
                assert got[rec["id"]] == rec  # exactly the tier's view, no more precise
        await ws.close()
        # the same over plain HTTP: the district's figures at the tier's precision
        headers = {"X-API-Key": key} if key else {}
        reply = await get(f"http://127.0.0.1:{agg_stack.node.port}/v1/feeds/agg_parking?district=310101", **headers)
        assert reply.status == 200, reply.body
        assert {r["id"]: r for r in reply.json()["records"]} == {r["id"]: r for r in views[tier] if r["id"] in got}
    public = {r["id"]: r for r in views["public"]}
    registered = {r["id"]: r for r in views["registered"]}
    assert public["district:310101"]["occupancy_pct"] == 75 and registered["district:310101"]["occupancy_pct"] == 74
    assert public["scenic:SCN-YUYUAN"]["free"] == 13 and registered["scenic:SCN-YUYUAN"]["occupancy_pct"] == 97

    # live: a new Huangpu figure arrives as a delta, a Xuhui one does not
    ws = await open_ws(agg_stack.url)
    await send(ws, {"type": "subscribe", "id": "p", "feed": "agg_parking", "filter": {"district": "Huangpu"}})
    await recv_until(ws, "snapshot")
    later = [
        parking("district", XUHUI, base + 10_000, 2_000, 10),
        parking("district", HUANGPU, base + 11_000, 1_234, 5),
    ]
    later_views = engine.apply("agg_parking", "public", later)
    await agg_stack.writer.put("public", "agg_parking", later_views)
    delta = await recv_until(ws, "delta")
    assert delta["upsert"] == [later_views[1]] and later_views[1]["occupancy_pct"] == 100
    await ws.close()

    # replayable like the other feeds, with the same filter
    ws = await open_ws(agg_stack.url)
    frm, to = base + 500, base + 12_000
    await send(
        ws,
        {
            "type": "replay",
            "id": "r",
            "feed": "agg_parking",
            "from": frm,
            "to": to,
            "speed": "max",
            "filter": {"district": "黄浦"},
        },
    )
    assert (await recv(ws))["type"] == "replay_started"
    replayed = await collect_replay(ws, "r")
    assert [r["id"] for r in replayed["snapshot"]] == ["district:310101"]
    assert [(r["id"], r["observed_at"]) for r in replayed["records"]] == [
        ("scenic:SCN-YUYUAN", base + 2_000),
        ("district:310101", base + 11_000),
    ]
    await ws.close()

    # shfeeds tail, as a user types it
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "shfeeds_cli.main", "tail", "agg_parking", "--district", "黄浦"]
    tail = await asyncio.to_thread(
        subprocess.run,
        [*cmd, "--url", agg_stack.url, "--count", "2", "--timeout", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert tail.returncode == 0, tail.stderr
    lines = [orjson.loads(line) for line in tail.stdout.splitlines() if line.strip()]
    assert {r["id"] for r in lines} == in_huangpu


async def test_agg_vehicles_by_route(agg_stack: Stack) -> None:
    engine = PolicyEngine(secret=b"aggregates-test-secret")
    t = now_ms() - 1_000
    figures = [vehicles("route", "71", t, 12), vehicles("route", "49", t, 8), vehicles("district", HUANGPU, t, 20)]
    await agg_stack.writer.put("public", "agg_vehicles", engine.apply("agg_vehicles", "public", figures))
    ws = await open_ws(agg_stack.url)
    await send(ws, {"type": "subscribe", "id": "v", "feed": "agg_vehicles", "filter": {"routes": ["71"]}})
    await recv_until(ws, "subscribed")
    snapshot = await recv_until(ws, "snapshot")
    assert [(r["id"], r["vehicles"]) for r in snapshot["records"]] == [("bus:route:71", 12)]
    await send(ws, {"type": "subscribe", "id": "all", "feed": "agg_vehicles"})
    await recv_until(ws, "subscribed")
    everything = await recv_until(ws, "snapshot")
    assert {r["id"] for r in everything["records"]} == {"bus:route:71", "bus:route:49", "bus:district:310101"}
    await ws.close()
