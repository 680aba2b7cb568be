"""Plain HTTP on the WebSocket port: the map page and its assets, district outlines, GTFS-Realtime
VehiclePositions per tier, and health. Served through the handshake hook, so one port does everything."""

from __future__ import annotations

import http
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .districts import districts_geojson
from .feed_reader import FeedUnavailable
from .gtfs_rt import vehicle_positions
from .metrics import NodeMetrics
from .protocol.limits import CRS_BY_TIER

if TYPE_CHECKING:
    from .server import Node

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
GTFS_CACHE_MS = 1000


def response(status: int, body: bytes, content_type: str, extra: list[tuple[str, str]] | None = None) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body)))])
    for name, value in extra or []:
        headers[name] = value
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


@cache
def _districts_body() -> bytes:
    return orjson.dumps(districts_geojson())


class HttpRoutes:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._gtfs: dict[str, tuple[int, bytes]] = {}
        self._metrics = NodeMetrics(node)

    async def handle(self, conn: ServerConnection, request: Request) -> Response:
        path = urlsplit(request.path).path
        if path in ("/", "/map", "/map.html"):
            return self._static("map.html")
        if path.startswith("/static/"):
            return self._static(path.removeprefix("/static/"))
        if path == "/districts.geojson":
            return response(200, _districts_body(), "application/geo+json", [("Cache-Control", "max-age=3600")])
        if path == "/gtfs-rt/vehicle-positions.pb":
            return await self._gtfs_rt(conn, request)
        if path in ("/healthz", "/_health"):
            return self._health()
        if path == "/metrics":
            return response(200, self._metrics.render(), CONTENT_TYPE_LATEST)
        return response(404, b"not found\n", "text/plain; charset=utf-8")

    def _static(self, name: str) -> Response:
        target = (STATIC / name).resolve()
        if STATIC not in target.parents or not target.is_file():
            return response(404, b"not found\n", "text/plain; charset=utf-8")
        body = target.read_bytes()
        return response(200, body, _TYPES.get(target.suffix, "application/octet-stream"))

    async def _gtfs_rt(self, conn: ServerConnection, request: Request) -> Response:
        ip = str(conn.remote_address[0]) if conn.remote_address else "?"
        auth = await self.node.authenticate(request, ip)
        if isinstance(auth, Response):
            return auth
        tier = auth.tier
        # GTFS-RT positions are WGS-84; tiers limited to GCJ-02 get their blurred point converted back.
        converted = "wgs84" not in CRS_BY_TIER[tier]
        now = time.time_ns() // 1_000_000
        cached = self._gtfs.get(tier)
        if cached is None or now - cached[0] > GTFS_CACHE_MS:
            readable, problems = [], []
            for feed in ("bus", "metro"):
                try:
                    await self.node.readers.ensure(tier, feed)
                    readable.append(feed)
                except FeedUnavailable as err:
                    problems.append(str(err))
            if not readable:
                return response(503, ("; ".join(problems) + "\n").encode(), "text/plain; charset=utf-8")
            hub = self.node.hub
            entries = [e for feed in readable for e in hub.source(tier, feed).entries.values()]
            cached = (now, vehicle_positions(entries, now))
            self._gtfs[tier] = cached
        return response(
            200,
            cached[1],
            "application/x-protobuf",
            [
                ("X-Shfeeds-Tier", tier),
                ("X-Shfeeds-Crs", "wgs84"),
                ("X-Shfeeds-Crs-Source", "gcj02-converted" if converted else "wgs84"),
                ("Cache-Control", "max-age=1"),
            ],
        )

    def _health(self) -> Response:
        node = self.node
        body = {
            "node": node.hub.node_id,
            "connections": len(node.sessions),
            "streams": len(node.hub.streams),
            "sources": {f"{t}/{f}": len(s.entries) for (t, f), s in node.hub.sources.items() if s.ready},
            "frames_sent": node.hub.frames_sent,
            "records_delivered": node.hub.records_delivered,
            "records_read": node.readers.records_read,
            "tick_ms_avg": round(node.tick_ms_total / node.ticks, 3) if node.ticks else None,
            "audit_entries_written": node.audit.entries_written,
            "latency": {
                "kafka_to_node": node.readers.kafka_latency.summary(),
                "node_to_written": node.hub.latency.summary(),
            },
        }
        return response(200, orjson.dumps(body), "application/json")
