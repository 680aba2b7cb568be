"""Agreements, quotas, allow-lists, usage and feedback on a real node with the real Kafka and Redis: what an
applicant, a user and an operator see (docs/agreements.md)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from access.identity import kafka_options
from schemas import now_ms
from ws_server.config import Naming, ServerConfig
from ws_server.server import Node
from ws_server.testing import TierWriter, bus_record, create_tier_topics, running_node

from .conftest import settings_env

pytestmark = pytest.mark.stack

PAIRS = [(t, f) for t in ("public", "registered", "licensed", "operator") for f in ("bus", "metro")]
SPOT = (121.4737, 31.2304)
POLICY = """version = "test"
[registered]
daily_messages = 4
term_days = 365
[licensed]
default_term_days = 30
max_term_days = 365
max_allow_list = 4
[feedback]
reports_per_hour = 1
burst = 3
max_text = 500
"""


@dataclass
class Stack:
    node: Node
    writer: TierWriter
    naming: Naming
    bootstrap: str

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.node.port}{path}"


@pytest.fixture
async def stack(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str], tmp_path: Path
) -> AsyncIterator[Stack]:
    prefix = unique_name("agr")
    naming = Naming(prefix + ".", prefix)
    await create_tier_topics(kafka_bootstrap, naming, PAIRS)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    config = ServerConfig(
        port=0, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, naming=naming, key_check_interval_s=0.5,
        usage_flush_interval_s=0.2, agreement_policy=policy,
    )  # fmt: skip
    async with TierWriter(kafka_bootstrap, redis_url, naming) as writer, running_node(config) as node:
        yield Stack(node, writer, naming, kafka_bootstrap)


async def call(method: str, url: str, key: str | None = None, source: str = "127.0.0.1") -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as http, http.request(method, url, headers=headers) as r:
        body = await r.read()
        is_json = r.content_type == "application/json"
        return r.status, orjson.loads(body) if is_json else body.decode()


async def open_ws(stack: Stack, key: str, source: str = "127.0.0.1") -> ClientConnection:
    return await connect(
        f"ws://127.0.0.1:{stack.node.port}/", additional_headers={"Authorization": f"Bearer {key}"},
        subprotocols=["shfeeds.v1.json"], local_addr=(source, 0),  # type: ignore[list-item]
    )  # fmt: skip


async def recv(ws: ClientConnection, timeout: float = 8.0) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message


async def subscribe(ws: ClientConnection) -> dict[str, Any]:
    await ws.send(orjson.dumps({"type": "subscribe", "id": "s", "feed": "bus"}).decode())
    while (message := await recv(ws))["type"] != "snapshot":
        pass
    return message


async def licensed_key(stack: Stack, operator: str, **extra: str) -> tuple[str, str, str]:
    """Apply (licensed), approve as operator, claim: (agreement id, claim token, key)."""
    query = "tier=licensed&applicant=Metro%20App%20Ltd%20ops%40example.org&purpose=journey%20planner&feeds=bus"
    query += "".join(f"&{k}={v}" for k, v in extra.items() if k != "expires_at")
    status, applied = await call("POST", stack.url(f"/v1/agreements?{query}"))
    assert status == 201 and applied["state"] == "pending" and "key" not in applied
    agreement_id, token = applied["id"], applied["claim_token"]
    status, waiting = await call("GET", stack.url(f"/v1/agreements/{agreement_id}?token={token}"))
    assert status == 200 and waiting["state"] == "pending" and waiting["key"] is None
    approve = f"/v1/operator/agreements/{agreement_id}/approve?reason=ok"
    if "expires_at" in extra:
        approve += f"&expires_at={extra['expires_at']}"
    status, _ = await call("POST", stack.url(approve))
    assert status in (401, 403)  # no operator key: refused
    status, approved = await call("POST", stack.url(approve), operator)
    assert status == 200 and approved["state"] == "approved", approved
    status, claimed = await call("GET", stack.url(f"/v1/agreements/{agreement_id}?token={token}"))
    assert status == 200 and claimed["key"].startswith("shk_lic_")
    status, again = await call("GET", stack.url(f"/v1/agreements/{agreement_id}?token={token}"))
    assert again["key"] is None  # given once
    return agreement_id, token, claimed["key"]


async def test_licensed_request_to_approval_to_key_to_expiry_closes_open_connection(stack: Stack) -> None:
    await stack.writer.put("licensed", "bus", [bus_record("v1", *SPOT, vehicle_id="X")])
    operator, _ = await stack.node.keys.issue("operator")
    expires = now_ms() + 3000
    agreement_id, _token, key = await licensed_key(stack, operator, expires_at=str(expires))
    ws = await open_ws(stack, key)
    snapshot = await subscribe(ws)
    assert snapshot["records"][0]["id"] == "v1"
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await recv(ws, 10)
    cut_after_s = (now_ms() - expires) / 1000
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001 and cut_after_s < 5.0, cut_after_s
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(stack, key)
    assert refused.value.response.status_code == 401 and b"agreement_expired" in refused.value.response.body
    status, shown = await call("GET", stack.url(f"/v1/operator/agreements/{agreement_id}"), operator)
    assert status == 200 and shown["state"] == "expired"
    # Every step is in the operator log, the log of record.
    consumer = AIOKafkaConsumer(stack.naming.operator_log_topic(), bootstrap_servers=stack.bootstrap, **kafka_options(),
                                auto_offset_reset="earliest", enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        entries = [orjson.loads(m.value) for msgs in batches.values() for m in msgs]
    finally:
        await consumer.stop()
    assert [(e["action"], e["subject"]) for e in entries] == [("apply", agreement_id), ("approve", agreement_id)]
    assert entries[1]["actor"].startswith("key:")


async def test_withdrawal_closes_connection_and_allow_list_refuses_other_ip(stack: Stack) -> None:
    await stack.writer.put("licensed", "bus", [bus_record("v1", *SPOT, vehicle_id="X")])
    for tier in ("licensed", "operator"):
        await stack.writer.put(tier, "metro", [bus_record("m1", *SPOT, mode="metro", vehicle_id="Y")])
    await stack.writer.put("operator", "bus", [bus_record("v1", *SPOT, vehicle_id="X")])
    operator, _ = await stack.node.keys.issue("operator")
    agreement_id, _token, key = await licensed_key(stack, operator, allow_ips="127.0.0.1")
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(stack, key, source="127.0.0.2")
    assert refused.value.response.status_code == 403 and b"ip_not_allowed" in refused.value.response.body
    status, body = await call("GET", stack.url("/v1/feeds/bus"), key, source="127.0.0.2")
    assert status == 403 and body["error"]["code"] == "ip_not_allowed"
    status, body = await call("GET", stack.url("/v1/feeds/bus"), key)
    assert status == 200 and body["tier"] == "licensed"
    status, body = await call("GET", stack.url("/v1/feeds/metro"), key)  # the agreement names bus only
    assert status == 403 and body["error"]["code"] == "feed_not_licensed"
    # GTFS-RT positions carry bus and metro: this key gets its bus vehicles only; trip updates (arrivals) not.
    status, body = await call("GET", stack.url("/gtfs-rt/vehicle-positions.pb?format=json"), key)
    assert status == 200 and [e["id"] for e in body["entity"]] == ["v1"], body
    status, body = await call("GET", stack.url("/gtfs-rt/trip-updates.pb"), key)
    assert status == 403 and body.startswith("feed_not_licensed"), body
    status, body = await call("GET", stack.url("/gtfs-rt/vehicle-positions.pb?format=json"), operator)
    assert status == 200 and sorted(e["id"] for e in body["entity"]) == ["m1", "v1"], body
    ws = await open_ws(stack, key)
    await ws.send(orjson.dumps({"type": "subscribe", "id": "m", "feed": "metro"}).decode())
    refused_feed = await recv(ws)
    assert refused_feed["type"] == "error" and refused_feed["code"] == "feed_not_licensed"
    await subscribe(ws)
    started = time.monotonic()
    status, _ = await call(
        "POST", stack.url(f"/v1/operator/agreements/{agreement_id}/withdraw?reason=breach"), operator
    )
    assert status == 200
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await recv(ws, 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001 and time.monotonic() - started < 5


async def test_registered_key_over_daily_quota_is_cut_then_refused(stack: Stack) -> None:
    await stack.writer.put("registered", "bus", [bus_record("r0", *SPOT)])
    status, applied = await call("POST", stack.url("/v1/agreements?tier=registered&applicant=dev%40example.org"))
    assert status == 201 and applied["state"] == "approved" and applied["key"].startswith("shk_reg_")
    key = applied["key"]
    ws = await open_ws(stack, key)
    await subscribe(ws)  # message 1
    received = 1
    with pytest.raises(ConnectionClosed) as closed:
        for n in range(40):
            await stack.writer.put("registered", "bus", [bus_record(f"r{n + 1}", *SPOT)])
            message = await recv(ws, 3)
            while message["type"] != "delta":
                assert message["type"] == "error" and message["code"] == "quota_exceeded", message
                message = await recv(ws, 3)
            received += 1
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4031
    assert received >= 4  # the quota (4) was delivered before the cut
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(stack, key)
    assert refused.value.response.status_code == 429 and b"quota_exceeded" in refused.value.response.body
    status, body = await call("GET", stack.url("/v1/feeds/bus"), key)
    assert status == 429 and body["error"]["code"] == "quota_exceeded"


async def test_usage_per_key_and_feed_is_counted_and_exported(stack: Stack, redis_url: str) -> None:
    await stack.writer.put("registered", "bus", [bus_record("u0", *SPOT)])
    key, info = await stack.node.keys.issue("registered")  # no agreement quota
    ws = await open_ws(stack, key)
    frames, records, nbytes = 1, len((await subscribe(ws))["records"]), 0
    for n in range(3):
        await stack.writer.put("registered", "bus", [bus_record(f"u{n + 1}", *SPOT), bus_record(f"w{n}", *SPOT)])
        raw = await asyncio.wait_for(ws.recv(), 8)
        delta = orjson.loads(raw)
        assert delta["type"] == "delta"
        frames, records, nbytes = frames + 1, records + len(delta["upsert"]), nbytes + len(raw)
    await ws.close()
    await asyncio.sleep(0.6)  # a flush interval (0.2 s) and then some
    status, rows = await call("GET", stack.url("/v1/usage"), key)
    assert status == 200
    by_feed = {row["feed"]: row for row in rows}
    assert by_feed["bus"]["messages"] == frames and by_feed["bus"]["records"] == records
    assert by_feed["bus"]["bytes"] >= nbytes and by_feed["*"]["sessions"] == 1
    status, text = await call("GET", stack.url("/v1/usage?format=csv"), key)
    assert (
        status == 200 and text.splitlines()[0] == "day,key_id,agreement_id,feed,messages,records,bytes,sessions,replays"
    )
    cli = subprocess.run(
        [sys.executable, "-m", "shfeeds_cli.main", "usage", "--redis-prefix", stack.naming.redis_prefix,
         "--key", info.key_id, "--format", "json"],
        capture_output=True, text=True, timeout=60, check=True, env=settings_env(_settings()),
    )  # fmt: skip
    exported = {row["feed"]: row for row in orjson.loads(cli.stdout)}
    assert exported["bus"]["messages"] == frames


def _settings() -> Any:
    import settings

    return settings.load()


async def test_feedback_reaches_the_owner_and_the_reply_reaches_the_reporter(stack: Stack) -> None:
    operator, _ = await stack.node.keys.issue("operator")
    status, made = await call("POST", stack.url("/v1/feedback?feed=bus&entity_id=b-71-3&problem=stuck%20at%20depot"))
    assert status == 201 and made["status"] == "open"
    report_id, token = made["id"], made["token"]
    status, inbox = await call("GET", stack.url("/v1/operator/feedback?owner=jiushi&status=open"), operator)
    assert status == 200 and [(r["id"], r["entity_id"]) for r in inbox] == [(report_id, "b-71-3")]
    path = f"/v1/operator/feedback/{report_id}?status=confirmed&reply=GPS%20unit%20replaced%20tomorrow"
    status, answered = await call("POST", stack.url(path), operator)
    assert status == 200 and answered["status"] == "confirmed"
    status, seen = await call("GET", stack.url(f"/v1/feedback/{report_id}?token={token}"))
    assert status == 200 and seen["status"] == "confirmed" and seen["reply"] == "GPS unit replaced tomorrow"
    status, other = await call("GET", stack.url(f"/v1/feedback/{report_id}?token=wrong"))
    assert status == 404 and other["error"]["code"] == "not_found"
    for bad in ("/v1/feedback?feed=ferry&problem=x", "/v1/agreements?tier=licensed&applicant=x&feeds=bus"):
        status, refused = await call("POST", stack.url(bad))  # unknown feed; a licensed request without purpose
        assert status == 400 and refused["error"]["code"] == "invalid_request", refused
    codes = [(await call("POST", stack.url("/v1/feedback?feed=bus&problem=x")))[0] for _ in range(3)]
    assert codes == [201, 201, 429]  # burst 3 per IP, the first report included


def shfeeds(stack: Stack, *args: str) -> str:
    prefixes = ["--redis-prefix", stack.naming.redis_prefix]
    if args[0] != "usage":
        prefixes += ["--topic-prefix", stack.naming.topic_prefix]
    done = subprocess.run(
        [sys.executable, "-m", "shfeeds_cli.main", args[0], *prefixes, *args[1:]],
        capture_output=True, text=True, timeout=60, check=False, env=settings_env(_settings()),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_operator_decides_and_answers_from_the_command_line(stack: Stack) -> None:
    query = "tier=licensed&applicant=Bus%20Research&purpose=study&feeds=bus,metro&term_days=90"
    _, applied = await call("POST", stack.url(f"/v1/agreements?{query}"))
    assert applied["id"] in shfeeds(stack, "agreements", "list") and "pending" in shfeeds(stack, "agreements", "list")
    assert "approved" in await asyncio.to_thread(
        shfeeds, stack, "agreements", "approve", applied["id"], "--reason", "ok"
    )
    _, claimed = await call("GET", stack.url(f"/v1/agreements/{applied['id']}?token={applied['claim_token']}"))
    assert claimed["state"] == "approved" and claimed["key"].startswith("shk_lic_")
    assert claimed["expires_at"] - now_ms() > 89 * 86_400_000
    _, made = await call("POST", stack.url("/v1/feedback?feed=metro&entity_id=M2-7&problem=wrong%20station"))
    assert made["id"] in shfeeds(stack, "feedback", "list", "--owner", "shentong")
    shfeeds(stack, "feedback", "answer", made["id"], "rejected", "--reply", "the train was in the depot")
    _, seen = await call("GET", stack.url(f"/v1/feedback/{made['id']}?token={made['token']}"))
    assert (seen["status"], seen["reply"]) == ("rejected", "the train was in the depot")
