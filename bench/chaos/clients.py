"""The client population of a chaos run: a watcher that checks every frame, a bystander that measures its
latency, and the abusive clients of issue 13 (distinct-subscription churn, garbage, the largest polygons)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson
from websockets.asyncio.client import ClientConnection, connect

from client import FeedClient
from ws_server.protocol.messages import MAX_POLYGON_VERTICES

JSON = "shfeeds.v1.json"
MSGPACK = "shfeeds.v1.msgpack"
PING_TIMEOUT_S = 10.0


@dataclass
class Watcher:
    """An undelayed-tier client on one feed, through the project's own client (``client.FeedClient``, which
    resumes with its cursor after a dropped connection). Every frame is checked: deltas numbered without a
    hole, and no record version (entity, ``observed_at``, state) delivered twice."""

    url: str
    api_key: str
    feed: str = "bus"
    client: FeedClient = field(init=False)
    versions: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)
    gaps: list[str] = field(default_factory=list)
    resets: list[str] = field(default_factory=list)
    snapshots: int = 0
    deltas: int = 0
    records: int = 0  # upserts received
    conflated: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    repeats: list[dict[str, Any]] = field(default_factory=list)  # which versions came again, in what frame
    first_pos: str | None = None
    last_pos: str | None = None
    connects: int = 0
    _seq: int | None = None

    def __post_init__(self) -> None:
        self.client = FeedClient(self.url, api_key=self.api_key, codec=MSGPACK, backoff_max_s=2.0)
        self.client.subscribe("all", self.feed)

    async def run(self) -> None:
        async for event in self.client.events():
            self._check(event.type, event.message)

    def _record(self, record: dict[str, Any], frame: str) -> None:
        entity = str(record.get("id"))
        version = (entity, int(record.get("observed_at", 0)), str(record.get("state", "")))
        self.versions[version] += 1
        if self.versions[version] > 1:
            self.repeats.append({"version": version, "frame": frame, "at": time.time()})
        self.entities[entity] = record

    def _check(self, kind: str, message: dict[str, Any]) -> None:
        if kind == "subscribed":
            self.connects = self.client.connects
            if not message.get("resumed"):
                self._seq = message["seq"]
        elif kind == "reset":
            self.resets.append(str(message.get("reason")))
            self.entities.clear()
            self._seq = message["seq"]
        elif kind == "snapshot":
            if message.get("part", 0) == 0:
                self.snapshots += 1
                if self.snapshots > 1:  # only a reset may send a second one, and that is counted there
                    self.entities.clear()
            for record in message.get("records", []):
                self.entities[str(record.get("id"))] = record
                if self.snapshots == 1:
                    self._record(record, "snapshot")
            self._seq = message["seq"]
            if message.get("last", True):
                self.first_pos = self.first_pos or message.get("pos")
                self.last_pos = message.get("pos", self.last_pos)
        elif kind == "delta":
            seq = message["seq"]
            explained = message.get("conflated") or message.get("diff")
            if not explained and self._seq is not None and seq != self._seq + 1:
                self.gaps.append(f"expected seq {self._seq + 1}, got {seq}")
            self.conflated += bool(message.get("conflated"))
            self.deltas += 1
            self._seq = seq
            kind = "conflated delta" if message.get("conflated") else "diff delta" if message.get("diff") else "delta"
            for record in message.get("upsert", []):
                self._record(record, f"{kind} seq {seq}")
            self.records += len(message.get("upsert", []))
            for entity in message.get("remove", []):
                self.entities.pop(str(entity), None)
            for entity in message.get("stale", []):  # the record as held, now marked stale
                held = self.entities.get(str(entity))
                if held is not None:
                    self._record({**held, "state": "stale"}, f"{kind} seq {seq} (stale)")
            self.last_pos = message.get("pos", self.last_pos)
        elif kind == "error":
            self.errors.append(message)

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.versions.values() if n > 1)


@dataclass
class Bystander:
    """A well-behaved client next to the abuse: subscribed to a feed, it pings five times a second and
    keeps each round trip. Pings lost to a server restart are counted apart (``outage_s``)."""

    url: str
    api_key: str | None = None
    rtts: list[float] = field(default_factory=list)
    reconnects: int = 0  # failed or dropped connections (each attempt while the server restarts counts)
    outage_s: float = 0.0  # from losing the connection to being subscribed again
    frames: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        lost_at: float | None = None
        while not stop.is_set():
            try:
                async with connect(
                    self.url,
                    subprotocols=[JSON],  # type: ignore[list-item]
                    additional_headers=headers,
                    max_size=None,
                    open_timeout=5,
                ) as ws:
                    await ws.send(orjson.dumps({"type": "subscribe", "id": "b", "feed": "bus"}).decode())
                    # Served again once subscribed: a restarted node first reads the feed back from Kafka,
                    # and a connection's messages are answered in order. That wait is the outage, not latency.
                    while orjson.loads(await asyncio.wait_for(ws.recv(), 60)).get("type") != "subscribed":
                        pass
                    if lost_at is not None:
                        self.outage_s += time.monotonic() - lost_at
                        lost_at = None
                    await self._ping_until(ws, stop)
            except Exception:
                self.reconnects += 1
                lost_at = lost_at if lost_at is not None else time.monotonic()
                await asyncio.sleep(0.5)

    async def _ping_until(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await ws.send(orjson.dumps({"type": "ping", "t": started}).decode())
            while True:
                try:
                    reply = orjson.loads(await asyncio.wait_for(ws.recv(), PING_TIMEOUT_S))
                except TimeoutError:
                    self.rtts.append(PING_TIMEOUT_S)  # unanswered counts, as the longest wait
                    raise
                if reply.get("type") == "pong" and reply.get("t") == started:
                    break
                self.frames += 1
            self.rtts.append(time.perf_counter() - started)
            await asyncio.sleep(0.2)

    def p99_ms(self) -> float | None:
        if not self.rtts:
            return None
        ordered = sorted(self.rtts)
        return 1000 * ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass
class AbuseTally:
    """What the abusive clients did and what the server answered."""

    connections: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)  # close codes the server chose


async def _drain(ws: ClientConnection, tally: AbuseTally) -> None:
    with contextlib.suppress(Exception):
        async for data in ws:
            message = msgpack.unpackb(data) if isinstance(data, bytes) else orjson.loads(data)
            kind = str(message.get("type"))
            tally.replies[f"{kind}:{message['code']}" if kind == "error" else kind] += 1


async def _session(url: str, tally: AbuseTally, protocol: str, frames: list[bytes | str], pace_s: float) -> None:
    try:
        async with connect(url, subprotocols=[protocol], max_size=None, open_timeout=5) as ws:  # type: ignore[list-item]
            tally.connections += 1
            reader = asyncio.create_task(_drain(ws, tally))
            for frame in frames:
                await ws.send(frame)
                await asyncio.sleep(pace_s)
            await asyncio.sleep(0.3)  # the answers to the last ones
            await ws.close()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(reader, 5)
            if ws.close_code is not None:
                tally.closes[ws.close_code] += 1
    except Exception as err:  # a refused handshake (429), the server restarting: counted, then on again
        tally.replies[f"connect:{type(err).__name__}"] += 1
        await asyncio.sleep(0.5)


async def churn(url: str, tally: AbuseTally, stop: asyncio.Event, worker: int) -> None:
    """Issue 13, item 2: connect, make 10 distinct subscriptions (``min_interval_ms`` makes each distinct),
    close, repeat: every stream is orphaned when the connection goes."""
    cycle = 0
    while not stop.is_set():
        frames: list[bytes | str] = []
        for n in range(10):
            options = {"min_interval_ms": (worker * 7919 + cycle * 10 + n) % 60_000, "snapshot": n % 2 == 0}
            frames.append(
                orjson.dumps({"type": "subscribe", "id": f"s{n}", "feed": "bus", "options": options}).decode()
            )
        tally.sent["distinct subscription"] += len(frames)
        await _session(url, tally, JSON, frames, 0.12)  # under the public rate limit: only the streams cost
        cycle += 1


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _garbage_frames(rng: random.Random) -> list[tuple[str, bytes | str]]:
    nan_polygon = {"type": "Polygon", "coordinates": [[[121.4, 31.2], [math.nan, 31.3], [121.5, 31.3], [121.4, 31.2]]]}
    return [
        ("json nested 5,000 deep", _nested(5000)),
        ("msgpack nested 5,000 deep", b"\x91" * 5000 + b"\xc0"),
        (
            "NaN polygon (msgpack)",
            msgpack.packb({"type": "subscribe", "id": "n", "feed": "bus", "filter": {"polygon": nan_polygon}}),
        ),
        ("not json", '{"type": "subscribe", ' + "x" * rng.randrange(10, 200)),
        ("random bytes", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))),
        ("wrong types", orjson.dumps({"type": "subscribe", "id": 5, "feed": ["bus"], "filter": "all"}).decode()),
        ("unknown feed", orjson.dumps({"type": "subscribe", "id": "u", "feed": "atlantis"}).decode()),
    ]


async def garbage(url: str, tally: AbuseTally, stop: asyncio.Event, seed: int) -> None:
    """Issue 13, item 3: deeply nested JSON and MessagePack, NaN polygons, malformed frames."""
    rng = random.Random(seed)
    while not stop.is_set():
        named = _garbage_frames(rng)
        text = [(name, f) for name, f in named if isinstance(f, str)]
        binary = [(name, f) for name, f in named if isinstance(f, bytes)]
        for name, _ in named:
            tally.sent[name] += 1
        await _session(url, tally, JSON, [f for _, f in text], 0.15)
        await _session(url, tally, MSGPACK, [f for _, f in binary], 0.15)


def _big_polygon(shift: float) -> dict[str, Any]:
    vertices = MAX_POLYGON_VERTICES
    points = [
        [121.4737 + shift + 0.02 * math.cos(a), 31.2304 + 0.02 * math.sin(a)]
        for a in (2 * math.pi * i / (vertices - 1) for i in range(vertices - 1))
    ]
    return {"type": "Polygon", "coordinates": [[*points, points[0]]]}


async def polygons(url: str, tally: AbuseTally, stop: asyncio.Event, seed: int) -> None:
    """Issue 13, item 4: distinct 5,000-vertex polygons, each costing real validation work."""
    n = seed * 1_000_000
    while not stop.is_set():
        frames: list[bytes | str] = []
        for _ in range(4):
            n += 1
            subscribe = {
                "type": "subscribe",
                "id": f"p{n % 5}",
                "feed": "bus",
                "options": {"snapshot": False},
                "filter": {"polygon": _big_polygon(n * 1e-7)},
            }
            frames.append(orjson.dumps(subscribe).decode())
            frames.append(orjson.dumps({"type": "unsubscribe", "id": f"p{n % 5}"}).decode())
        tally.sent["5,000-vertex polygon"] += 4
        await _session(url, tally, JSON, frames, 0.25)
