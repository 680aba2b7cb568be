"""A polled source: fetch, parse, ingest, sleep; back off with jitter while it fails."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

import aiohttp

from adapters.formats import get_format

from .backoff import Backoff
from .change_filter import ChangeFilter
from .ingest import Ingestor
from .kafka_sink import KafkaSink
from .poller import HttpPoller, PollError
from .stats import SourceStats

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


class PollingAdapter:
    def __init__(
        self,
        *,
        name: str,
        format_name: str,
        url: str,
        interval_s: float,
        timeout_s: float,
        session: aiohttp.ClientSession,
        sink: KafkaSink,
        options: dict[str, Any] | None = None,
        stats: SourceStats | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.parse = get_format(format_name).parse
        self.options = options or {}
        self.interval_s = interval_s
        self.poller = HttpPoller(session, url, timeout_s=timeout_s)
        self.stats = stats or SourceStats(source=name)
        self.ingestor = Ingestor(sink, self.stats, ChangeFilter())
        self.backoff = backoff or Backoff(base_s=min(1.0, interval_s), cap_s=max(60.0, interval_s))
        self._last_body_digest: bytes | None = None

    async def poll_once(self) -> None:
        """One poll; raises PollError when the source could not be read."""
        self.stats.polls += 1
        started = time.perf_counter()
        try:
            fetched = await self.poller.fetch()
        except PollError as err:
            self.stats.errors += 1
            self.stats.last_error = str(err)
            raise
        self.stats.last_success_ms = now_ms()
        if fetched.body is None:
            self.stats.not_modified += 1
            return
        # Servers without validators often resend the same bytes: nothing in them can be new.
        digest = hashlib.blake2b(fetched.body, digest_size=16).digest()
        if digest == self._last_body_digest:
            self.stats.not_modified += 1
            return
        self._last_body_digest = digest
        result = self.parse(fetched.body, source=self.name, received_at_ms=now_ms(), **self.options)
        await self.ingestor.ingest(result)
        self.stats.last_poll_s = time.perf_counter() - started

    async def run_forever(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.poll_once()
            except PollError as err:
                delay = self.backoff.next_delay()
                log.warning("source %s: %s; next try in %.1f s", self.name, err, delay)
                await asyncio.sleep(delay)
                continue
            self.backoff.reset()
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
