"""HTTP serving of the simulated city: every feed at its ``docs/sources.md`` path, with conditional GET
(ETag / Last-Modified → 304) and a control API for faults.

Control endpoints (not part of any real source):

* ``GET /_faults`` — the active faults; ``POST /_faults`` with ``{"feed": "bus", "fault": "garbage", ...}``
  sets one (``"fault": null`` or ``"none"`` clears it); ``DELETE /_faults`` clears all;
* ``GET /_stats`` — per feed: requests, 200s, 304s, stalls, and what the faults injected;
* ``GET /`` — the feeds and the simulated time.

Besides the city's feeds, ``GET /ocpi/2.2.1/cdrs`` serves the charging sessions as an OCPI 2.2.1 CDRs module
(``date_from`` / ``date_to`` / ``offset`` / ``limit``, ``X-Total-Count``, ``X-Limit``, ``Link: rel="next"``);
its faults are set under the feed name ``charging_sessions``. ``GET /ocpi/2.2.1/locations`` serves the charging
network as OCPI 2.2.1 Locations, paged the same way (faults: ``charging_locations``; ``stall`` and
``http_error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import orjson
from aiohttp import web

from adapters.formats.ocpi_auth import token_accepted
from adapters.simulators import charging_sessions as cdrs
from adapters.simulators import ocpi_locations
from adapters.simulators.beijing import format_local
from adapters.simulators.city import SimulatedCity
from adapters.simulators.faults import Fault, FaultError, parse_fault
from adapters.simulators.rendering import Feed, JsonFeed, Rendered
from settings import Settings

FaultSpec = Fault | str | Mapping[str, Any]
# (simulated now, the paging query, the active fault) → one page of an OCPI list
PageMaker = Callable[[int, cdrs.CdrQuery, Fault | None], Awaitable[cdrs.CdrPage]]


@dataclass(kw_only=True)
class FaultState:
    """A fault switch with its counters: what every served endpoint has."""

    fault: Fault | None = None
    fault_version: int = 0
    fault_changed: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stats: dict[str, int] = field(default_factory=dict)

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n


@dataclass(kw_only=True)
class FeedState(FaultState):
    feed: Feed
    cached_key: tuple[int, int] | None = None
    cached: Rendered | None = None
    etag: str | None = None
    last_modified_s: int = 0


def _etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _etag_matches(header: str, etag: str) -> bool:
    """RFC 9110 weak comparison against an If-None-Match list."""
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == bare for candidate in header.split(","))


def _parse_http_date(text: str) -> int | None:
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


class FeedServer:
    """Per-feed fault switches, response caching and validators for one ``SimulatedCity``."""

    def __init__(
        self, city: SimulatedCity, faults: Mapping[str, FaultSpec] | None = None, ocpi_token: str = ""
    ) -> None:
        self.city = city
        self.ocpi_token = ocpi_token  # asked of OCPI requests, as a real operator would; empty: not asked
        self.states = {name: FeedState(feed=feed) for name, feed in city.feeds.items()}
        self.by_path = {state.feed.path: state for state in self.states.values()}
        self.sessions = cdrs.SessionLog(city.charging)
        self.sessions_state = FaultState()
        self.locations_state = FaultState()
        self.switches: dict[str, FaultState] = {
            **self.states,
            cdrs.FEED_NAME: self.sessions_state,
            ocpi_locations.FEED_NAME: self.locations_state,
        }
        for name, spec in (faults or {}).items():
            self.set_fault(name, spec)

    def set_fault(self, feed: str, spec: FaultSpec | None) -> Fault | None:
        if feed not in self.switches:
            raise FaultError(f"unknown feed {feed!r}; expected one of {', '.join(self.switches)}")
        fault = None if spec is None or spec == "none" else spec if isinstance(spec, Fault) else parse_fault(spec)
        state = self.switches[feed]
        state.fault = fault
        state.fault_version += 1
        state.fault_changed.set()
        state.fault_changed = asyncio.Event()
        return fault

    def clear_faults(self) -> None:
        for name in self.switches:
            self.set_fault(name, None)

    async def _render(self, state: FeedState, t_s: int) -> Rendered:
        key = (t_s, state.fault_version)
        async with state.lock:
            if state.cached_key != key or state.cached is None:
                salt = t_s ^ zlib.crc32(state.feed.name.encode())
                # Rendering the whole city's buses takes tens of ms: keep the control API responsive.
                state.cached = await asyncio.to_thread(state.feed.render, t_s, state.fault, salt)
                state.cached_key = key
                for name, n in state.cached.injected.items():
                    state.count(name, n)
            return state.cached

    async def _stall(self, state: FaultState, fault: Fault) -> None:
        state.count("stalled")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.fault_changed.wait(), timeout=fault.stall_s)

    async def handle_feed(self, request: web.Request) -> web.StreamResponse:
        state = self._state_for(request)
        state.count("requests")
        fault = state.fault
        if fault is not None and fault.kind == "stall":
            await self._stall(state, fault)
            fault = state.fault
        # GTFS-Realtime has no in-band error code: an upstream error shows as an HTTP error there.
        in_band = isinstance(state.feed, JsonFeed)
        if fault is not None and (fault.kind == "http_error" or (fault.kind == "upstream_error" and not in_band)):
            state.count("http_errors")
            return web.Response(status=503, text="Service Unavailable", headers={"Retry-After": "5"})
        rendered = await self._render(state, self.city.now_s())
        etag = _etag_of(rendered.body)
        if etag != state.etag:
            # Last-Modified must move forward whenever the body changes, even twice within one second.
            now = int(time.time())
            state.last_modified_s = max(now, state.last_modified_s + 1)
            state.etag = etag
        headers = {
            "ETag": etag,
            "Last-Modified": email.utils.formatdate(state.last_modified_s, usegmt=True),
            "Cache-Control": "no-cache",
        }
        inm = request.headers.get("If-None-Match")
        ims = request.headers.get("If-Modified-Since")
        not_modified = False
        if inm is not None:
            not_modified = _etag_matches(inm, etag)
        elif ims is not None:
            since = _parse_http_date(ims)
            not_modified = since is not None and state.last_modified_s <= since
        if not_modified:
            state.count("not_modified")
            return web.Response(status=304, headers=headers)
        state.count("ok")
        return web.Response(body=rendered.body, headers={**headers, "Content-Type": rendered.content_type})

    async def _ocpi_list(
        self,
        request: web.Request,
        state: FaultState,
        page_of: Callable[[int, cdrs.CdrQuery, Fault | None], Awaitable[cdrs.CdrPage]],
    ) -> web.StreamResponse:
        """An OCPI 2.2.1 GET list: credentials, faults, paging parameters, one page with the paging headers."""
        state.count("requests")
        if self.ocpi_token and not token_accepted(request.headers.get("Authorization"), self.ocpi_token):
            state.count("unauthorized")
            return web.Response(
                status=401,
                body=cdrs.ocpi_body(self.city.now_s(), status_code=2000, message="Unauthorized"),
                content_type="application/json",
            )
        fault = state.fault
        if fault is not None and fault.kind == "stall":
            await self._stall(state, fault)
            fault = state.fault
        if fault is not None and fault.kind == "http_error":
            state.count("http_errors")
            return web.Response(status=503, text="Service Unavailable", headers={"Retry-After": "5"})
        now = self.city.now_s()
        try:
            query = cdrs.parse_query(dict(request.query))
        except cdrs.QueryError as err:
            state.count("bad_requests")
            body = cdrs.ocpi_body(now, status_code=2001, message=f"Invalid or missing parameters: {err}")
            return web.Response(status=400, body=body, content_type="application/json")
        page = await page_of(now, query, fault)
        for name, n in page.injected.items():
            state.count(name, n)
        state.count("ok")
        headers = {"X-Total-Count": str(page.total), "X-Limit": str(page.limit), "Cache-Control": "no-cache"}
        if page.next_offset is not None:
            next_url = request.url.update_query(offset=str(page.next_offset), limit=str(page.limit))
            headers["Link"] = f'<{next_url}>; rel="next"'
        return web.Response(body=page.body, headers=headers, content_type="application/json")

    async def handle_cdrs(self, request: web.Request) -> web.StreamResponse:
        """OCPI 2.2.1 ``GET /cdrs``: one page of finished sessions, with OCPI paging headers."""
        state = self.sessions_state

        async def page_of(now: int, query: cdrs.CdrQuery, fault: Fault | None) -> cdrs.CdrPage:
            salt = now ^ query.offset ^ zlib.crc32(cdrs.FEED_NAME.encode())
            async with state.lock:  # one thread at a time steps the session log
                return await asyncio.to_thread(cdrs.render_page, self.sessions, now, query, fault, salt)

        return await self._ocpi_list(request, state, page_of)

    async def handle_locations(self, request: web.Request) -> web.StreamResponse:
        """OCPI 2.2.1 ``GET /locations``: one page of the charging network's Locations, OCPI paging headers."""
        charging = self.states["charging"]  # the same network the charging feed steps, under its lock

        async def page_of(now: int, query: cdrs.CdrQuery, fault: Fault | None) -> cdrs.CdrPage:
            async with charging.lock:
                return await asyncio.to_thread(ocpi_locations.render_page, self.city.charging, now, query)

        return await self._ocpi_list(request, self.locations_state, page_of)

    def _state_for(self, request: web.Request) -> FeedState:
        state = self.by_path.get(request.path)
        if state is None:
            raise web.HTTPNotFound()
        return state

    async def get_faults(self, request: web.Request) -> web.Response:
        body = {name: (s.fault.to_json() if s.fault else None) for name, s in self.switches.items()}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def post_faults(self, request: web.Request) -> web.Response:
        try:
            spec = orjson.loads(await request.read())
        except orjson.JSONDecodeError as err:
            return _error(f"body is not JSON: {err}")
        if not isinstance(spec, dict) or not isinstance(spec.get("feed"), str):
            return _error('expected {"feed": "<name>", "fault": "<kind>" | null, ...options}')
        feed = spec["feed"]
        kind = spec.get("fault")
        try:
            fault = self.set_fault(feed, None if kind in (None, "none") else spec)
        except FaultError as err:
            return _error(str(err))
        body = {"feed": feed, "fault": fault.to_json() if fault else None}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def delete_faults(self, request: web.Request) -> web.Response:
        self.clear_faults()
        return web.Response(body=b"{}", content_type="application/json")

    async def get_stats(self, request: web.Request) -> web.Response:
        body = {name: dict(s.stats) for name, s in self.switches.items()}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def get_index(self, request: web.Request) -> web.Response:
        now = self.city.now_s()
        body = {
            "simulatedTime": format_local(now),
            "simulatedEpochMs": now * 1000,
            "timeScale": self.city.clock.time_scale,
            "seed": self.city.seed,
            "feeds": {name: s.feed.path for name, s in self.states.items()},
            "ocpi": {cdrs.FEED_NAME: cdrs.PATH, ocpi_locations.FEED_NAME: ocpi_locations.PATH},
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")


def _error(message: str) -> web.Response:
    return web.Response(status=400, body=orjson.dumps({"error": message}), content_type="application/json")


SERVER_KEY: web.AppKey[FeedServer] = web.AppKey("feed_server", FeedServer)


def build_app(
    city: SimulatedCity, faults: Mapping[str, FaultSpec] | None = None, ocpi_token: str = ""
) -> web.Application:
    """An aiohttp application serving ``city``'s feeds; ``faults`` maps feed names to initial faults;
    ``ocpi_token``, when given, is required of OCPI requests."""
    server = FeedServer(city, faults, ocpi_token)
    app = web.Application()
    app[SERVER_KEY] = server
    for state in server.states.values():
        app.router.add_get(state.feed.path, server.handle_feed)
    app.router.add_get(cdrs.PATH, server.handle_cdrs)
    app.router.add_get(ocpi_locations.PATH, server.handle_locations)
    app.router.add_get("/_faults", server.get_faults)
    app.router.add_post("/_faults", server.post_faults)
    app.router.add_delete("/_faults", server.delete_faults)
    app.router.add_get("/_stats", server.get_stats)
    app.router.add_get("/", server.get_index)
    return app


async def serve(
    city: SimulatedCity,
    *,
    settings: Settings | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    faults: Mapping[str, FaultSpec] | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """Serve ``city`` on ``port`` (default: the settings' simulator port) until cancelled."""
    settings = settings or Settings()
    if port is None:
        port = settings.simulator_port
    runner = web.AppRunner(build_app(city, faults, settings.ocpi_token), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    if started is not None:
        started.set()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
