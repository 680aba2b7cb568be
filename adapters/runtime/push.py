"""Push receiver: an HTTP endpoint for OCPI 2.2.1 Location PUT/PATCH from a charge point operator.

Each accepted push re-normalises the whole Location into a ChargingStation record; a rejected one goes to
the DLQ with the request body and the reason, and the sender gets an OCPI error. The Locations live in a
``LocationStore`` shared with the full sync, and every accepted one is written to the Location log in Kafka
(``location_log.py``), from which a restarted receiver learns them again before it listens.
"""

from __future__ import annotations

import logging
import time

import orjson
from aiohttp import web

from adapters.formats.common import ItemError, load_json
from adapters.formats.ocpi_auth import token_accepted
from adapters.formats.ocpi_location_store import LocationStore
from adapters.formats.ocpi_locations import FEED, location_record
from adapters.formats.ocpi_push import PushTarget, UnknownObject, apply_push
from adapters.formats.result import ParseResult
from schemas import now_ms

from .ingest import Ingestor
from .kafka_sink import KafkaSink
from .location_log import location_message
from .stats import SourceStats

BASE_PATH = "/ocpi/2.2.1/locations"
log = logging.getLogger(__name__)


def _ocpi_reply(http_status: int, status_code: int, message: str) -> web.Response:
    body = {
        "status_code": status_code,
        "status_message": message,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return web.Response(status=http_status, body=orjson.dumps(body), content_type="application/json")


class PushReceiver:
    def __init__(
        self,
        *,
        name: str,
        sink: KafkaSink,
        token: str,
        stats: SourceStats | None = None,
        store: LocationStore | None = None,
        log_locations: bool = False,
    ) -> None:
        """``store``: the Locations known (shared with a full sync); ``log_locations``: write each accepted
        Location to the Location log (its topic must exist: ``LocationLog.load`` creates it)."""
        if not token:
            raise ValueError(f"push source {name}: a credentials token is required (pushes are never anonymous)")
        self.name = name
        self.token = token  # the credentials token operators must present
        self.stats = stats or SourceStats(source=name)
        self.ingestor = Ingestor(sink, self.stats)
        self.locations = store if store is not None else LocationStore()
        self.log_locations = log_locations
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        for suffix in ("{cc}/{party}/{loc}", "{cc}/{party}/{loc}/{evse}", "{cc}/{party}/{loc}/{evse}/{conn}"):
            app.router.add_route("PUT", f"{BASE_PATH}/{suffix}", self.handle)
            app.router.add_route("PATCH", f"{BASE_PATH}/{suffix}", self.handle)
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def handle(self, request: web.Request) -> web.Response:
        info = request.match_info
        if not token_accepted(request.headers.get("Authorization"), self.token):
            # Not an upstream record but a stranger: refused, counted, and kept out of the dead letters.
            self.stats.errors += 1
            self.stats.last_error = f"{request.method} {request.path}: missing or wrong credentials token"
            log.warning("push source %s: refused %s %s from %s: bad credentials", self.name, request.method,
                        request.path, request.remote)  # fmt: skip
            return _ocpi_reply(401, 2000, "Unauthorized: missing or unknown credentials token")
        target = PushTarget(info["cc"], info["party"], info["loc"], info.get("evse"), info.get("conn"))
        body = await request.read()
        self.stats.polls += 1
        received = now_ms()
        result = ParseResult()
        try:
            location = apply_push(self.locations.get(target.key), request.method, target, load_json(body))
            record = location_record(location, source=self.name)
        except (ItemError, OverflowError) as err:
            result.reject(
                body,
                source=self.name,
                feed=FEED,
                reason=f"{request.method} {request.path}: {err}",
                received_at_ms=received,
                locator=request.path,
            )
            await self.ingestor.ingest(result)
            if isinstance(err, UnknownObject):
                return _ocpi_reply(404, 2003, str(err))
            return _ocpi_reply(400, 2001, str(err))
        self.locations.pushed(target.key, location)
        result.records.append(record)
        await self.ingestor.ingest(result)
        if self.log_locations:
            await self.ingestor.sink.submit(location_message(target.key, location, self.name))
        self.stats.last_success_ms = received
        return _ocpi_reply(200, 1000, "Success")
