"""``/gtfs/static.zip``: the static GTFS of the simulated network whose vehicles the server publishes.

Built on first request from the simulator's seed and fleet size in the server config, valid for a year from
the current Shanghai service day, and rebuilt when that day changes. Building the full city is a few
seconds of Python, so it runs in a child process: the event loop keeps the interpreter lock. Every route,
stop and trip id the simulated feeds carry is in it (see ``adapters.simulators.gtfs_export``).
"""

from __future__ import annotations

import asyncio
import hashlib
import http
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import date, datetime, timedelta, timezone

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
CONTENT_TYPE = "application/zip"


def service_day(now: datetime | None = None) -> date:
    return (now or datetime.now(SHANGHAI)).astimezone(SHANGHAI).date()


class StaticFeed:
    def __init__(self, seed: int, buses: int) -> None:
        self.seed = seed
        self.buses = buses
        self._built: tuple[date, bytes, str] | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> tuple[bytes, str]:
        """The zip for today and its entity tag."""
        today = service_day()
        async with self._lock:
            if self._built is None or self._built[0] != today:
                body = await _in_child_process(self.seed, self.buses, today)
                self._built = (today, body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
            return self._built[1], self._built[2]

    async def respond(self, request: Request) -> Response:
        """The zip, or 304 when the request's ``If-None-Match`` names its entity tag."""
        body, etag = await self.current()
        headers = Headers([("Content-Type", CONTENT_TYPE), ("ETag", etag), ("Cache-Control", "max-age=3600")])
        if etag in request.headers.get("If-None-Match", "").replace(" ", "").split(","):
            headers["Content-Length"] = "0"
            return Response(304, http.HTTPStatus(304).phrase, headers, b"")
        headers["Content-Length"] = str(len(body))
        headers["Content-Disposition"] = 'attachment; filename="static.zip"'
        return Response(200, http.HTTPStatus(200).phrase, headers, body)


async def _in_child_process(seed: int, buses: int, start: date) -> bytes:
    from adapters.simulators.gtfs_export import build_zip

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return await asyncio.get_running_loop().run_in_executor(pool, build_zip, seed, buses, start)
