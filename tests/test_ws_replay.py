"""``replay`` over the WebSocket protocol on the real Kafka and Redis: a replay returns what a live client of
the same tier received, in the same order; its as-of snapshot is the live client's state at ``from``; a
public key gets only public records; licensed replays are audited; pause, resume, speed, seek and bad
requests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from schemas import now_ms
from ws_server.audit_chain import verify_chain
from ws_server.testing import bus_record

from .test_ws_e2e import (
    LUJIAZUI,
    PEOPLES_SQUARE,
    Stack,
    open_ws,
    read_audit,
    recv,
    recv_until,
    send,
    stack,  # noqa: F401  (the fixture, by its name)
)

pytestmark = pytest.mark.stack


async def collect_replay(ws, replay_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Every message of one replay until its completion: snapshot records, delta records, the rest."""
    out: dict[str, Any] = {"snapshot": [], "records": [], "remove": [], "messages": []}
    deadline = time.monotonic() + timeout
    while True:
        m = await recv(ws, max(0.1, deadline - time.monotonic()))
        if m.get("id") != replay_id:
            continue
        out["messages"].append(m)
        if m["type"] == "replay_snapshot":
            out["snapshot"] += m["records"]
        elif m["type"] == "replay_delta":
            out["records"] += m["records"]
            out["remove"] += m["remove"]
        elif m["type"] == "error":
            raise AssertionError(m)
        elif m["type"] == "replay_complete":
            return out


async def test_replay_equals_what_a_live_client_received(stack: Stack) -> None:  # noqa: F811
    live = await open_ws(stack.url)
    await send(live, {"type": "subscribe", "id": "live", "feed": "bus"})
    await recv_until(live, "subscribed")
    base = now_ms() - 120_000  # event times in the past, spaced so that order is unambiguous
    places = [PEOPLES_SQUARE, LUJIAZUI]
    written: list[dict[str, Any]] = []
    for i in range(36):
        rec = bus_record(f"b{i % 6}", *places[i % 2], route_id="71")
        rec["observed_at"] = base + i * 1_000
        rec["expires_at"] = rec["observed_at"] + 120_000
        written.append(rec)
    frm = base + 12_000  # the first 12 records are history before `from`
    to = base + 36_000

    state: dict[str, dict[str, Any]] = {}  # the live client's entities
    state_at_from: dict[str, dict[str, Any]] | None = None
    live_after_from: list[dict[str, Any]] = []
    for rec in written:
        if rec["observed_at"] >= frm and state_at_from is None:
            state_at_from = {k: dict(v) for k, v in state.items()}
        await stack.writer.put("public", "bus", [rec])
        m = await recv_until(live, "delta")
        assert [r["id"] for r in m["upsert"]] == [rec["id"]], "one record per frame: nothing conflated"
        for r in m["upsert"]:
            state[r["id"]] = r
            if r["observed_at"] >= frm:
                live_after_from.append(r)
    await live.close()

    ws = await open_ws(stack.url)
    await send(ws, {"type": "replay", "id": "r", "feed": "bus", "from": frm, "to": to, "speed": "max"})
    started = await recv(ws)
    assert started["type"] == "replay_started" and started["tier"] == "public" and started["from"] == frm
    got = await collect_replay(ws, "r")
    assert got["records"] == live_after_from  # the same records, in the same order
    assert {r["id"]: r for r in got["snapshot"]} == state_at_from
    assert all(r["policy_version"] == "test-1" for r in got["records"] + got["snapshot"])

    # the same replay as a lab would ask it: Shanghai time, a district, at 1000x
    shanghai = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(frm / 1000 + 8 * 3600))
    await send(
        ws,
        {
            "type": "replay",
            "id": "h",
            "feed": "bus",
            "from": shanghai,
            "to": to,
            "speed": 1000,
            "filter": {"district": "黄浦"},
        },
    )
    await recv(ws)
    huangpu = await collect_replay(ws, "h")
    assert huangpu["records"] == [r for r in live_after_from if (r["lng"], r["lat"]) == PEOPLES_SQUARE]
    await ws.close()


async def test_public_key_replays_only_what_public_had(stack: Stack) -> None:  # noqa: F811
    t = now_ms() - 60_000
    lic = bus_record("v1", 121.473712, 31.230433, vehicle_id="SH-0001", passenger_count=37)
    pub = bus_record("v1", 121.4735, 31.2305, occupancy_status="MANY_SEATS_AVAILABLE")
    for rec in (lic, pub):
        rec["observed_at"], rec["expires_at"] = t, t + 120_000
    await stack.writer.put("licensed", "bus", [lic])
    await stack.writer.put("public", "bus", [pub])
    key, _ = await stack.keys.issue("licensed", agreement_id="AG-REPLAY-1")

    public = await open_ws(stack.url)
    await send(
        public,
        {
            "type": "replay",
            "id": "p",
            "feed": "bus",
            "from": t - 1_000,
            "to": now_ms() + 3_600_000,
            "speed": "max",
            "options": {"crs": "wgs84"},
        },
    )
    error = await recv(public)
    assert error["type"] == "error" and error["code"] == "crs_not_allowed" and error["id"] == "p"
    await send(
        public,
        {"type": "replay", "id": "p", "feed": "bus", "from": t - 1_000, "to": now_ms() + 3_600_000, "speed": "max"},
    )
    started = await recv(public)
    assert started["tier"] == "public" and started["to"] <= now_ms(), "no replay into the future"
    got = await collect_replay(public, "p")
    assert got["records"] == [pub] and "vehicle_id" not in got["records"][0]

    licensed = await open_ws(stack.url, key)
    await send(
        licensed,
        {
            "type": "replay",
            "id": "l",
            "feed": "bus",
            "from": t - 1_000,
            "to": t + 1_000,
            "speed": "max",
            "options": {"crs": "wgs84"},
        },
    )
    assert (await recv(licensed))["tier"] == "licensed"
    got = await collect_replay(licensed, "l")
    (record,) = got["records"]
    assert record["vehicle_id"] == "SH-0001" and record["crs"] == "wgs84"
    entries = [e for e in await read_audit(stack, want=1, timeout=15.0) if e.get("replay")]
    assert entries, "the licensed replay is in the access log"
    (entry,) = entries
    assert entry["agreement_id"] == "AG-REPLAY-1" and entry["records"] == 1 and "vehicle_id" in entry["fields"]
    assert entry["replay"] == {"from": t - 1_000, "to": t + 1_000} and entry["policy_version"] == ["test-1"]
    assert verify_chain(await read_audit(stack, want=1)) == []
    await public.close()
    await licensed.close()


async def test_pause_resume_speed_seek_and_bad_requests(stack: Stack) -> None:  # noqa: F811
    base = now_ms() - 100_000
    recs = []
    for i in range(30):
        rec = bus_record(f"c{i % 3}", *PEOPLES_SQUARE)
        rec["observed_at"], rec["expires_at"] = base + i * 1_000, base + i * 1_000 + 120_000
        recs.append(rec)
    await stack.writer.put("public", "bus", recs)
    ws = await open_ws(stack.url)

    await send(ws, {"type": "replay", "id": "x", "feed": "bus", "from": "yesterday", "to": base})
    assert (await recv(ws))["code"] == "invalid_message"
    await send(ws, {"type": "replay", "id": "x", "feed": "bus", "from": base, "to": base + 1, "speed": 5000})
    assert (await recv(ws))["code"] == "invalid_message"
    await send(ws, {"type": "replay", "id": "x", "feed": "ferry", "from": base, "to": base + 1})
    assert (await recv(ws))["code"] == "unknown_feed"
    await send(ws, {"type": "pause", "id": "nothing"})
    assert (await recv(ws))["code"] == "unknown_subscription"

    # 30 s of event time at 1x: pause, check nothing arrives, then seek back and finish at max speed
    await send(ws, {"type": "replay", "id": "s", "feed": "bus", "from": base, "to": base + 30_000, "speed": 1})
    assert (await recv(ws))["type"] == "replay_started"
    first = await recv_until(ws, "replay_delta")
    assert first["records"][0]["observed_at"] == base
    await send(ws, {"type": "pause", "id": "s"})
    while (m := await recv(ws))["type"] != "replay_progress" or not m["paused"]:
        pass  # deltas and progress sent before the pause arrived
    quiet_until = time.monotonic() + 1.5
    while time.monotonic() < quiet_until:
        try:
            m = await recv(ws, quiet_until - time.monotonic())
        except TimeoutError:
            break
        assert m["type"] == "replay_progress", f"nothing but progress while paused, got {m['type']}"
    await send(ws, {"type": "seek", "id": "s", "at": base + 20_000})
    await send(ws, {"type": "speed", "id": "s", "speed": "max"})
    await send(ws, {"type": "resume", "id": "s"})
    snap = await recv_until(ws, "replay_snapshot")
    assert snap["at"] == base + 20_000
    assert {r["id"]: r["observed_at"] for r in snap["records"]} == {
        "c0": base + 18_000,
        "c1": base + 19_000,
        "c2": base + 17_000,
    }
    rest = await collect_replay(ws, "s")
    assert [r["observed_at"] for r in rest["records"]] == [base + i * 1_000 for i in range(20, 30)]
    await send(ws, {"type": "stop", "id": "s"})
    assert (await recv(ws))["code"] == "unknown_subscription"  # it had completed
    await ws.close()


async def test_python_client_replays_and_exports(stack: Stack, tmp_path) -> None:  # noqa: F811
    from client import FeedClient

    base = now_ms() - 50_000
    recs = []
    for i in range(12):
        rec = bus_record(f"d{i % 4}", *(PEOPLES_SQUARE if i % 2 else LUJIAZUI), route_id="71")
        rec["observed_at"], rec["expires_at"] = base + i * 1_000, base + i * 1_000 + 120_000
        recs.append(rec)
    await stack.writer.put("public", "bus", recs)
    client = FeedClient(stack.url)
    kinds, records = [], []
    async for m in client.replay("bus", base, base + 12_000, speed=1000, district="Huangpu"):
        kinds.append(m["type"])
        if m["type"] == "replay_delta":
            records += m["records"]
    assert kinds[0] == "replay_started" and kinds[1] == "replay_snapshot" and kinds[-1] == "replay_complete"
    assert records == [r for r in recs if (r["lng"], r["lat"]) == PEOPLES_SQUARE]
    out = tmp_path / "bus.parquet"
    assert await client.replay_to_file("bus", base, base + 12_000, str(out), routes=["71"]) == 12
    import pyarrow.parquet as pq

    assert pq.read_table(out).column("observed_at").to_pylist() == [r["observed_at"] for r in recs]


async def test_cli_replays_through_the_protocol_with_a_key(stack: Stack, tmp_path) -> None:  # noqa: F811
    import json
    import sys

    base = now_ms() - 40_000
    lic = []
    for i in range(8):
        rec = bus_record(f"e{i % 2}", *PEOPLES_SQUARE, vehicle_id=f"SH-{i % 2}")
        rec["observed_at"], rec["expires_at"] = base + i * 1_000, base + i * 1_000 + 120_000
        lic.append(rec)
    await stack.writer.put("licensed", "bus", lic)
    key, _ = await stack.keys.issue("licensed", agreement_id="AG-CLI")
    out = tmp_path / "lic.ndjson"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shfeeds_cli.main",
        "replay",
        "--feed",
        "bus",
        "--from",
        str(base),
        "--to",
        str(base + 8_000),
        "--url",
        stack.url,
        "--key",
        key,
        "--out",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == lic  # the key's tier: licensed records, vehicle ids included


async def test_messagepack_clients_get_the_same_records(stack: Stack) -> None:  # noqa: F811
    import msgpack
    from websockets.asyncio.client import connect

    base = now_ms() - 30_000
    recs = []
    for i in range(700):  # more than one frame of 500
        rec = bus_record(f"m{i % 7}", *PEOPLES_SQUARE, route_id="71")
        rec["observed_at"], rec["expires_at"] = base + i * 10, base + i * 10 + 120_000
        recs.append(rec)
    await stack.writer.put("public", "bus", recs)
    request = {"type": "replay", "id": "m", "feed": "bus", "from": base, "to": base + 7_000, "speed": "max"}

    json_ws = await open_ws(stack.url)
    await send(json_ws, request)
    await recv(json_ws)
    as_json = await collect_replay(json_ws, "m")
    await json_ws.close()

    async with connect(stack.url, subprotocols=["shfeeds.v1.msgpack"]) as mp:  # type: ignore[list-item]
        await mp.send(msgpack.packb(request))
        records: list[dict[str, Any]] = []
        while True:
            m = msgpack.unpackb(await asyncio.wait_for(mp.recv(), 30), raw=False)
            if m["type"] == "replay_delta":
                records += m["records"]
            elif m["type"] in ("replay_complete", "error"):
                assert m["type"] == "replay_complete", m
                break
    assert records == as_json["records"] == recs
