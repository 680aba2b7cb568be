"""Plain HTTP on the WebSocket port: the map page, the operator page and their assets, district outlines,
GTFS-Realtime VehiclePositions and TripUpdates per tier, feed queries (``ws_server.http_query``) and their
OpenAPI document, the published record schemas, the data catalogue, and health. Served through the
handshake hook, so one port does everything."""

from __future__ import annotations

import asyncio
import http
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from catalog.dcat import DCAT_PATH as CATALOG_PATH
from catalog.dcat import PAGE_PATH as CATALOG_PAGE_PATH
from schemas import now_ms

from . import gtfs_rt_trip_updates
from .audit import AccessAudit
from .catalog_routes import CatalogRoutes
from .districts import districts_geojson
from .gtfs_rt import VehicleEntities
from .gtfs_rt_feed import FeedRenderings
from .gtfs_static_feed import StaticFeed
from .http_cache import conditional_response
from .http_query import FeedQueries
from .map_layers import layer_body
from .metrics import NodeMetrics
from .openapi import openapi_body
from .protocol.errors import FEED_NOT_LICENSED
from .protocol.limits import CRS_BY_TIER
from .protocol.state import Entry
from .record_schemas import schema_response_body

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css",
}
GTFS_CACHE_MS = 1000
GTFS_FEEDS = ("bus", "metro")


def response(status: int, body: bytes, content_type: str, extra: list[tuple[str, str]] | None = None) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body)))])
    for name, value in extra or []:
        headers[name] = value
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def text_response(status: int, text: str, extra: list[tuple[str, str]] | None = None) -> Response:
    return response(status, text.encode(), "text/plain; charset=utf-8", extra)


def refusal(status: int, code: str, text: str) -> Response:
    """A handshake (or HTTP) refusal: the code first in the text, and in ``X-Shfeeds-Error``."""
    return text_response(status, f"{code}: {text}\n", [("X-Shfeeds-Error", code)])


PAGE_PATHS = ("/", "/map", "/map.html")
OPERATOR_PAGE_PATH = "/operator"
# Every static file: its declared type is the only one a browser may use.
STATIC_HEADERS = [("X-Content-Type-Options", "nosniff")]
# The operator page holds an operator key in the tab: it runs only its own scripts, talks only to this
# origin, is never framed and sends no Referer (docs/agreements.md, "The operator page").
OPERATOR_PAGE_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
]
GTFS_PATH = "/gtfs-rt/vehicle-positions.pb"
STATIC_GTFS_PATH = "/gtfs/static.zip"
OPENAPI_PATH = "/openapi.json"
HEALTH_PATHS = ("/healthz", "/_health")
ALLOWED_METHODS = ("GET", "HEAD")
ALLOW = [("Allow", ", ".join(ALLOWED_METHODS))]


def _known(path: str) -> bool:
    return (
        path in PAGE_PATHS
        or path == OPERATOR_PAGE_PATH
        or path in HEALTH_PATHS
        or path in (GTFS_PATH, gtfs_rt_trip_updates.PATH, STATIC_GTFS_PATH, OPENAPI_PATH, "/districts.geojson")
        or path in ("/metrics", CATALOG_PATH, CATALOG_PAGE_PATH)
        or path.startswith(("/static/", "/schemas/", "/layers/"))
        or FeedQueries.matches(path)
    )


class NodeView(Protocol):
    """All the HTTP side needs of a node (the server's ``Node`` is one)."""

    async def authenticate(self, request: Request, ip: str) -> Any:
        """The request's ``Auth`` (tier, key, limits, ip), or the ``Response`` refusing it."""
        ...

    @property
    def audit(self) -> AccessAudit: ...

    async def latest(self, tier: str, feeds: list[str]) -> tuple[list[Entry], list[str]]:
        """Latest entries of ``feeds`` at ``tier``, and the reasons feeds could not be read."""
        ...

    def health(self) -> dict[str, Any]: ...


@cache
def _districts_body() -> bytes:
    return orjson.dumps(districts_geojson())


class HttpRoutes:
    def __init__(
        self,
        node: NodeView,
        static_feed: StaticFeed,
        metrics: NodeMetrics | None = None,
        queries: FeedQueries | None = None,
        catalog: CatalogRoutes | None = None,
        *,
        tls: bool = False,
    ) -> None:
        self.node = node
        self._queries = queries
        self._catalog = catalog or CatalogRoutes(None)
        self._tls = tls
        self._positions = FeedRenderings(VehicleEntities, GTFS_CACHE_MS)
        # per (rendering, tier): the records of each feed in the rendering served now, for the licensed audit
        self._served: dict[tuple[int, str], dict[str, list[dict[str, Any]]]] = {}
        self._static_feed = static_feed
        self._trip_updates = FeedRenderings(gtfs_rt_trip_updates.new_encoder, GTFS_CACHE_MS)
        self._metrics = metrics
        self.platform: Any = None  # the agreement, usage and feedback endpoints, set by the server

    async def handle(self, conn: ServerConnection, request: Request) -> Response:
        """Every route but the platform's own (``ws_server.agreement_routes``, which take POST too) is a GET
        route: other methods get 405 with ``Allow``, and HEAD the GET answer's status and headers without
        its body."""
        path = urlsplit(request.path).path
        if self.platform is not None and self.platform.matches(path):
            return await self.platform.respond(request, str(conn.remote_address[0]) if conn.remote_address else "?")
        if not _known(path):
            answer = response(404, b"not found\n", "text/plain; charset=utf-8")
        elif request.method not in ALLOWED_METHODS:
            return text_response(405, f"method {request.method} not allowed; use GET or HEAD\n", ALLOW)
        else:
            answer = await self._get(conn, request, path)
        if request.method == "HEAD":
            # Content-Length stays that of the GET answer, as HEAD asks.
            return Response(answer.status_code, answer.reason_phrase, answer.headers, b"")
        return answer

    async def _get(self, conn: ServerConnection, request: Request, path: str) -> Response:
        if path in PAGE_PATHS:
            return self._static("map.html")
        if path == OPERATOR_PAGE_PATH:
            return self._static("operator.html")
        if path.startswith("/static/"):
            return self._static(path.removeprefix("/static/"))
        if path.startswith("/layers/") and path.endswith(".geojson"):
            name = path.removeprefix("/layers/").removesuffix(".geojson")
            return self._layer(name, parse_qs(urlsplit(request.path).query))
        if path == "/districts.geojson":
            return response(200, _districts_body(), "application/geo+json", [("Cache-Control", "max-age=3600")])
        if path == GTFS_PATH:
            return await self._gtfs_rt(conn, request, self._positions, GTFS_FEEDS)
        if path == gtfs_rt_trip_updates.PATH:
            return await self._gtfs_rt(conn, request, self._trip_updates, gtfs_rt_trip_updates.FEEDS)
        if path == STATIC_GTFS_PATH:
            return await self._static_feed.respond(request)
        if path == OPENAPI_PATH:
            return conditional_response(request, openapi_body(), "application/json")
        if FeedQueries.matches(path) and self._queries is not None:
            return await self._queries.respond(conn, request)
        if path.startswith("/schemas/"):
            body = schema_response_body(path.removeprefix("/schemas/"))
            if body is not None:
                return response(200, body, "application/schema+json", [("Cache-Control", "max-age=300")])
            return response(404, b"not found\n", "text/plain; charset=utf-8")
        if path == CATALOG_PATH:
            body = await self._catalog.jsonld(request, self._tls)
            return response(200, body, "application/ld+json", [("Cache-Control", "max-age=5")])
        if path == CATALOG_PAGE_PATH:
            body = await self._catalog.html(request, self._tls)
            return response(200, body, "text/html; charset=utf-8", [("Cache-Control", "max-age=5")])
        if path == "/metrics" and self._metrics is not None:
            return response(200, self._metrics.render(), CONTENT_TYPE_LATEST)
        return self._health()

    def query_sessions(self) -> list[Any]:
        """The sessions of plain HTTP feed queries (their deliveries count as usage too)."""
        return self._queries.sessions() if self._queries is not None else []

    def _layer(self, name: str, query: dict[str, list[str]]) -> Response:
        """A base layer of the map page (``ws_server.map_layers``), in the CRS the feeds deliver."""
        crs = query.get("crs", ["gcj02"])[0]
        try:
            body = layer_body(name, crs)
        except KeyError:
            return response(404, f"no map layer {name!r}\n".encode(), "text/plain; charset=utf-8")
        except ValueError as err:
            return response(400, f"{err}\n".encode(), "text/plain; charset=utf-8")
        return response(200, body, "application/geo+json", [("Cache-Control", "max-age=3600")])

    def _static(self, name: str) -> Response:
        target = (STATIC / name).resolve()
        if STATIC not in target.parents or not target.is_file():
            return response(404, b"not found\n", "text/plain; charset=utf-8")
        body = target.read_bytes()
        content_type = _TYPES.get(target.suffix, "application/octet-stream")
        # by file name, so /static/operator.html gets the page's headers too
        extra = OPERATOR_PAGE_HEADERS if target.name == "operator.html" else []
        return response(200, body, content_type, STATIC_HEADERS + extra)

    async def _gtfs_rt(
        self, conn: ServerConnection, request: Request, renderings: FeedRenderings, feeds: tuple[str, ...]
    ) -> Response:
        """A GTFS-RT feed made from ``feeds`` at the request's tier (``?format=json``: the same message as
        JSON, for debugging), with conditional GET and gzip (``ws_server.http_cache``)."""
        ip = str(conn.remote_address[0]) if conn.remote_address else "?"
        query = parse_qs(urlsplit(request.path).query)
        form = query.get("format", ["pb"])[0]
        if form not in ("pb", "json"):
            return text_response(400, f"unknown format {form!r}; use pb (the default) or json\n")
        auth = await self.node.authenticate(request, ip)
        if isinstance(auth, Response):
            return auth
        tier: str = auth.tier
        key = auth.key
        if key is not None and key.feeds:  # a licensed agreement's feeds only (docs/agreements.md)
            named = tuple(feed for feed in feeds if feed in key.feeds)
            if not named:
                listed = ", ".join(key.feeds)
                return refusal(403, FEED_NOT_LICENSED, f"the key's agreement names {listed}, not {', '.join(feeds)}")
            # A rendering per set of feeds read: one agreement's subset is never served to the whole tier.
            view = tier if named == feeds else f"{tier}:{'+'.join(named)}"
            feeds = named
        else:
            view = tier
        # GTFS-RT positions are WGS-84; tiers limited to GCJ-02 get their blurred point converted back.
        converted = "wgs84" not in CRS_BY_TIER[tier]
        now = now_ms()
        rendering = renderings.fresh(view, now)
        if rendering is None:
            entries: list[Entry] = []
            by_feed: dict[str, list[dict[str, Any]]] = {}
            problems: list[str] = []
            for feed in feeds:
                found, trouble = await self.node.latest(tier, [feed])
                entries += found
                problems += trouble
                if not trouble:
                    by_feed[feed] = [e.record for e in found]
            if not by_feed:  # nothing readable
                return text_response(503, "; ".join(problems) + "\n")
            rendering = renderings.render(view, entries, now)
            self._served[(id(renderings), view)] = by_feed
        headers = [
            ("X-Shfeeds-Tier", tier),
            ("X-Shfeeds-Crs", "wgs84"),
            ("X-Shfeeds-Crs-Source", "gcj02-converted" if converted else "wgs84"),
            ("Cache-Control", "max-age=1"),
        ]
        if form == "json":
            body = await asyncio.to_thread(rendering.json)  # seconds of pure Python for a full feed
            content_type, etag = "application/json", rendering.json_etag
        else:
            body, content_type, etag = rendering.body, "application/x-protobuf", rendering.etag
        if tier == "licensed":  # licensed deliveries are logged whatever the channel (ws_server/audit.py)
            for feed, records in self._served.get((id(renderings), view), {}).items():
                self.node.audit.record_delivery(
                    channel="gtfs-rt",
                    key_id=key.key_hash if key else None,
                    agreement_id=key.agreement_id if key else None,
                    ip=ip,
                    tier=tier,
                    feed=feed,
                    records=records,
                    nbytes=len(body),
                )
        return conditional_response(
            request, body, content_type, etag=etag, last_modified_ms=rendering.modified_ms, headers=headers
        )

    def _health(self) -> Response:
        return response(200, orjson.dumps(self.node.health()), "application/json")
