"""The data catalogue over HTTP on the WebSocket port: ``/catalog`` (DCAT as JSON-LD) and
``/catalog.html`` (the same for people). Quality figures come from the control plane's ``/health/feeds``,
fetched at most once every few seconds; without it the entries say their quality is unknown."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson
from websockets.http11 import Request

from catalog.dcat import to_jsonld
from catalog.page import to_html
from catalog.sources import installed_catalogue, installed_inputs
from schemas import now_ms

log = logging.getLogger(__name__)

HEALTH_CACHE_MS = 5000
HEALTH_TIMEOUT_S = 1.5


class CatalogRoutes:
    def __init__(self, control_plane_url: str | None) -> None:
        self.control_plane_url = control_plane_url.rstrip("/") if control_plane_url else None
        self._health: tuple[int, dict[str, Any] | None] | None = None
        self._lock = asyncio.Lock()
        installed_inputs()  # a bad policy or metadata file stops the server at start, not at the first request

    async def _health_report(self) -> dict[str, Any] | None:
        if self.control_plane_url is None:
            return None
        async with self._lock:
            now = now_ms()
            if self._health is not None and now - self._health[0] < HEALTH_CACHE_MS:
                return self._health[1]
            report: dict[str, Any] | None = None
            try:
                timeout = aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)
                async with (
                    aiohttp.ClientSession(timeout=timeout) as http,
                    http.get(f"{self.control_plane_url}/health/feeds") as answer,
                ):
                    if answer.status == 200:
                        report = await answer.json()
            except (aiohttp.ClientError, TimeoutError, ValueError) as err:
                log.debug("catalogue: no health report: %s", err)
            self._health = (now, report)
            return report

    @staticmethod
    def urls(request: Request, tls: bool) -> tuple[str, str]:
        """The HTTP base and WebSocket URL as the client reached this server (its Host header)."""
        host = request.headers.get("Host") or "127.0.0.1"
        return (f"{'https' if tls else 'http'}://{host}", f"{'wss' if tls else 'ws'}://{host}/")

    async def jsonld(self, request: Request, tls: bool) -> bytes:
        base, ws = self.urls(request, tls)
        catalogue = installed_catalogue(await self._health_report(), now_ms())
        return orjson.dumps(to_jsonld(catalogue, base, ws))

    async def html(self, request: Request, tls: bool) -> bytes:
        base, ws = self.urls(request, tls)
        catalogue = installed_catalogue(await self._health_report(), now_ms())
        _, meta, _ = installed_inputs()
        return to_html(catalogue, meta, base, ws).encode()
