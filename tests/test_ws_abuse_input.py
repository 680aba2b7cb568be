"""Bad input on a real node (real Kafka and Redis): answered with documented errors on an open connection,
never a 1011; the largest polygon allowed fits in a frame; one bad client writes a bounded number of log
lines."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgpack
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.test_ws_input_fuzz import _full_precision_polygon
from ws_server.config import Naming, ServerConfig
from ws_server.protocol.codec import decode_frame
from ws_server.protocol.messages import MAX_POLYGON_VERTICES
from ws_server.server import Node
from ws_server.testing import create_tier_topics, running_node

pytestmark = pytest.mark.stack

LOG_LINES = 5
REFUSED = ("bad_encoding", "invalid_message")  # which one depends on where the decoder stops


@pytest.fixture
async def node(kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]) -> AsyncIterator[Node]:
    prefix = unique_name("wsabuse")
    naming = Naming(prefix + ".", prefix)
    await create_tier_topics(kafka_bootstrap, naming, [("public", "bus")])
    config = ServerConfig(
        port=0, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, naming=naming, log_lines_per_minute=LOG_LINES
    )
    async with running_node(config) as running:
        yield running


async def open_ws(node: Node, protocol: str = "shfeeds.v1.json") -> ClientConnection:
    return await connect(f"ws://127.0.0.1:{node.port}/", subprotocols=[protocol], max_size=None)  # type: ignore[list-item]


async def answer(ws: ClientConnection, frame: bytes | str) -> dict[str, Any]:
    await ws.send(frame)
    reply: dict[str, Any] = decode_frame(await asyncio.wait_for(ws.recv(), 30))
    return reply


async def test_the_largest_polygon_allowed_is_accepted_in_json(node: Node) -> None:
    polygon = _full_precision_polygon(MAX_POLYGON_VERTICES)
    frame = orjson.dumps({"type": "subscribe", "id": "big", "feed": "bus", "filter": {"polygon": polygon}})
    assert len(frame) > 64 * 1024  # the old frame limit closed the connection (1009) before the check
    async with await open_ws(node) as ws:
        reply = await answer(ws, frame.decode())
        assert reply["type"] == "subscribed" and reply["id"] == "big"


async def test_deep_nesting_and_nan_are_answered_and_the_connection_stays_usable(node: Node) -> None:
    deep_json = '{"type":"ping","x":' + "[" * 5000 + "]" * 5000 + "}"
    async with await open_ws(node) as ws:
        assert (await answer(ws, deep_json))["code"] in REFUSED
        assert (await answer(ws, "[" * 20000 + "]" * 20000))["type"] == "error"
        assert (await answer(ws, '{"type":"ping","t":1}'))["type"] == "pong"
    nan_ring = [[math.nan, 31.2], [121.5, 31.2], [121.45, 31.3], [math.nan, 31.2]]
    bad_polygon = {"type": "Polygon", "coordinates": [nan_ring]}
    async with await open_ws(node, "shfeeds.v1.msgpack") as ws:
        deep = b"\x82" + msgpack.packb("type") + msgpack.packb("ping") + msgpack.packb("x") + b"\x91" * 5000 + b"\xc0"
        assert (await answer(ws, deep))["code"] in REFUSED
        message = {"type": "subscribe", "id": "n", "feed": "bus", "filter": {"polygon": bad_polygon}}
        reply = await answer(ws, msgpack.packb(message))
        assert reply["code"] == "invalid_filter" and reply["id"] == "n"
        assert (await answer(ws, msgpack.packb({"type": "ping", "t": 2})))["type"] == "pong"


async def test_one_bad_client_writes_a_bounded_number_of_log_lines(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ws_server.clients")
    async with await open_ws(node) as ws:
        for n in range(15):  # within the public burst: every one is answered, none is dropped
            assert (await answer(ws, "{not json " + "x" * n))["code"] == "bad_encoding"
    for _ in range(200):
        if any("suppressed" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if r.name == "ws_server.clients"]
    refusals = [line for line in lines if "bad_encoding" in line]
    summaries = [line for line in lines if "suppressed" in line]
    assert len(refusals) == LOG_LINES
    assert summaries == [summaries[0]] and f"suppressed {15 - LOG_LINES} log lines" in summaries[0]
