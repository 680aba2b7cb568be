"""The WebSocket core's shape: dependencies run one way (stream → hub → session → server), the hub alone
keeps the "behind" set, the HTTP side talks to a narrow view of the node, and the session says what a
message needs from the I/O layer. All without a broker."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from tests.test_ws_protocol import T0, ListSink, bus, make, send
from ws_server.gtfs_static_feed import StaticFeed
from ws_server.http_routes import HttpRoutes, text_response
from ws_server.protocol.session import FeedNeed
from ws_server.protocol.state import Entry
from ws_server.protocol.stream import Stream

PROTOCOL = Path(__file__).resolve().parents[1] / "ws_server" / "protocol"


def _imports(module: str) -> set[str]:
    tree = ast.parse((PROTOCOL / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.add(node.module)
    return found


def test_the_stream_and_the_hub_know_nothing_of_sessions() -> None:
    assert "session" not in _imports("stream")
    assert "session" not in _imports("hub")
    assert "hub" not in _imports("stream")


class RecordingMember:
    """A member that is always behind until told otherwise: the hub must keep and drain it itself."""

    def __init__(self) -> None:
        self.frames: list[int] = []
        self.catch_up_calls = 0
        self.can_catch_up = False

    def deliver(self, frame: bytes, ids: tuple[str, ...], seq: int, now_ms: int) -> bool:
        self.frames.append(seq)
        return True

    def try_catch_up(self, now_ms: int) -> bool:
        self.catch_up_calls += 1
        return self.can_catch_up


def test_the_hub_keeps_its_own_behind_set_from_what_deliver_returns() -> None:
    hub, session, _ = make()
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"})
    stream: Stream = next(iter(hub.streams.values()))
    member = RecordingMember()
    hub.join(stream, member)
    hub.ingest("public", "bus", [("b1", bus("b1", 121.45, 31.25))])
    hub.tick(T0 + 50)
    assert member.frames == [1] and member in hub.behind
    hub.tick(T0 + 100)
    assert member.catch_up_calls >= 1 and member in hub.behind
    member.can_catch_up = True
    hub.tick(T0 + 150)
    assert member not in hub.behind
    member.can_catch_up = False
    hub.ingest("public", "bus", [("b1", bus("b1", 121.46, 31.25))])
    hub.tick(T0 + 200)
    assert member.frames == [1, 2] and member in hub.behind
    hub.leave(stream, member)
    assert member not in hub.behind and member not in stream.members


def test_a_slow_session_is_behind_in_the_hub_and_leaving_clears_it() -> None:
    hub, session, sink = make()
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"})
    sink.take()
    sink.held = 10 << 20
    hub.ingest("public", "bus", [("b1", bus("b1", 121.45, 31.25))])
    hub.tick(T0 + 50)
    assert len(hub.behind) == 1
    send(session, {"type": "unsubscribe", "id": "a"}, T0 + 60)
    assert not hub.behind


def test_the_session_says_what_a_subscribe_needs() -> None:
    _, session, sink = make()
    ping = session.parse(orjson.dumps({"type": "ping"}), T0)
    assert ping is not None and session.needs(ping) == []
    resume = {"epoch": "e", "seq": 1, "pos": "x.5.7"}
    message = session.parse(orjson.dumps({"type": "subscribe", "id": "a", "feed": "bus", "resume": resume}), T0)
    assert message is not None
    assert session.needs(message) == [FeedNeed("public", "bus", {0: 5, 1: 7})]
    unknown = session.parse(orjson.dumps({"type": "subscribe", "id": "b", "feed": "nope"}), T0)
    assert unknown is not None and session.needs(unknown) is None
    (error,) = sink.take()
    assert error["code"] == "unknown_feed" and error["id"] == "b"
    session.unavailable(message, "kafka down")
    (error,) = sink.take()
    assert error["code"] == "feed_unavailable" and error["id"] == "a"


class FakeView:
    """The HTTP side's whole view of a node."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, list[str]]] = []

    async def authenticate(self, request: Request, ip: str) -> Any:
        if request.headers.get("X-API-Key") == "bad":
            return text_response(401, "unknown or revoked API key\n")
        return SimpleNamespace(tier="public", key=None)

    @property
    def audit(self) -> Any:
        raise AssertionError("a public request is never audited")

    async def latest(self, tier: str, feeds: list[str]) -> tuple[list[Entry], list[str]]:
        self.asked.append((tier, feeds))
        return [], ["bus: down", "metro: down"]

    def health(self) -> dict[str, Any]:
        return {"node": "fake", "connections": 3}


class FakeConn:
    remote_address = ("127.0.0.1", 5555)


def _get(routes: HttpRoutes, path: str, headers: list[tuple[str, str]] | None = None) -> Response:
    request = Request(path, Headers(headers or []))
    return asyncio.run(routes.handle(FakeConn(), request))  # type: ignore[arg-type]


def test_http_routes_need_only_a_narrow_view_of_the_node() -> None:
    view = FakeView()
    routes = HttpRoutes(view, StaticFeed(seed=1, buses=10))
    health = _get(routes, "/healthz")
    assert health.status_code == 200 and orjson.loads(health.body) == {"node": "fake", "connections": 3}
    refused = _get(routes, "/gtfs-rt/vehicle-positions.pb", [("X-API-Key", "bad")])
    assert refused.status_code == 401
    down = _get(routes, "/gtfs-rt/vehicle-positions.pb")
    assert (
        down.status_code == 503
        and b"bus: down" in down.body
        and view.asked == [("public", ["bus"]), ("public", ["metro"])]
    )


def test_list_sink_is_still_the_only_sink_the_core_needs() -> None:
    _, session, sink = make()
    assert isinstance(sink, ListSink)
    send(session, {"type": "subscribe", "id": "a", "feed": "bus"})
    assert [f["type"] for f in sink.take()] == ["subscribed", "snapshot"]
