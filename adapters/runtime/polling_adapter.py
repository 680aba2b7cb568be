"""A polled source: fetch, parse, ingest, sleep; back off with jitter while it fails.

A format with a query window (OCPI modules) is asked only for what is new: each poll sends the newest
``observed_at`` ingested so far (first poll: the window's lookback) and reads every ``rel="next"`` page.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiokafka.errors import KafkaError
from yarl import URL

from adapters.formats import QueryWindow, get_format
from schemas import now_ms

from .backoff import Backoff
from .change_filter import ChangeFilter
from .ingest import Ingestor
from .kafka_sink import KafkaSink
from .poller import Fetched, HttpPoller, PollError
from .stats import SourceStats

log = logging.getLogger(__name__)

MAX_PAGES_PER_POLL = 1000  # a server whose next links never end must not hold the poller forever


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
        window: QueryWindow | None = None,
        headers: dict[str, str] | None = None,
        resume: Callable[[], Awaitable[int | None]] | None = None,
    ) -> None:
        self.name = name
        spec = get_format(format_name)
        self.parse = spec.parse
        self.parse_chunks = spec.parse_chunks
        self.skips_unchanged = spec.skips_unchanged
        self.window = window or spec.window
        self.cursor_ms: int | None = None  # newest observed_at ingested (query-window sources)
        # Where a query-window source left off before this process (see resume.py); asked before its first poll.
        self.resume = resume if self.window is not None else None
        self.options = options or {}
        self.interval_s = interval_s
        self.poller = HttpPoller(session, url, timeout_s=timeout_s, headers=headers)
        self.stats = stats or SourceStats(source=name)
        self.ingestor = Ingestor(sink, self.stats, ChangeFilter())
        self.backoff = backoff or Backoff(base_s=min(1.0, interval_s), cap_s=max(60.0, interval_s))
        self._last_body_digest: bytes | None = None

    def window_url(self, window: QueryWindow) -> str:
        """The first URL of a query-window poll: ``param`` = the cursor, else now − lookback."""
        since_ms = self.cursor_ms if self.cursor_ms is not None else now_ms() - int(window.lookback_s * 1000)
        since = datetime.fromtimestamp(since_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return str(URL(self.poller.url).update_query({window.param: since}))

    async def _fetch(self, url: str | None) -> Fetched:
        try:
            fetched = await self.poller.fetch(url)
        except PollError as err:
            self.stats.errors += 1
            self.stats.last_error = str(err)
            raise
        self.stats.last_success_ms = now_ms()
        return fetched

    async def poll_once(self) -> None:
        """One poll; raises PollError when the source could not be read."""
        self.stats.polls += 1
        started = time.perf_counter()
        if self.window is not None:
            await self._poll_window(self.window)
            self.stats.last_poll_s = time.perf_counter() - started
            return
        fetched = await self._fetch(None)
        if fetched.body is None:
            self.stats.not_modified += 1
            return
        # Servers without validators often resend the same bytes: nothing in them can be new.
        digest = hashlib.blake2b(fetched.body, digest_size=16).digest()
        if digest == self._last_body_digest:
            self.stats.not_modified += 1
            return
        self._last_body_digest = digest
        # Chunk by chunk, each chunk built in a thread while the event loop sends the ones before it: the
        # first buses of a whole-fleet response reach Kafka in tens of milliseconds, not after the last is
        # parsed. Built on the loop itself, with a yield between chunks, the producer advanced one step per
        # chunk and nothing was acknowledged before the last chunk (docs/benchmarks-e2e.md).
        seen: set[str] = set()
        received_at_ms = now_ms()
        options = dict(self.options)
        if self.skips_unchanged:
            # items equal to what the change filter holds are not built at all (adapters/formats/sh_envelope.py)
            options["unchanged"] = self.ingestor.change_filter.unchanged
        chunks = self.parse_chunks(fetched.body, source=self.name, received_at_ms=received_at_ms, **options)
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            await self.ingestor.ingest(chunk, seen)
        self.stats.last_poll_s = time.perf_counter() - started

    async def _poll_window(self, window: QueryWindow) -> None:
        url = self.window_url(window)
        newest = self.cursor_ms
        for _ in range(MAX_PAGES_PER_POLL):
            fetched = await self._fetch(url)
            if fetched.body is None:
                self.stats.not_modified += 1
                break
            result = await asyncio.to_thread(
                self.parse, fetched.body, source=self.name, received_at_ms=now_ms(), **self.options
            )
            await self.ingestor.ingest(result)
            for record in result.records:
                newest = record.observed_at if newest is None else max(newest, record.observed_at)
            if not window.follow_next or fetched.next_url is None or fetched.next_url == url:
                break
            url = fetched.next_url
        else:
            log.warning("source %s: stopped after %d pages in one poll", self.name, MAX_PAGES_PER_POLL)
        # Moved only once every page was read: a poll that failed half-way is asked for again in full.
        self.cursor_ms = newest

    async def resume_cursor(self) -> None:
        """Take up the cursor where the last run left it; retried until Kafka answers, since polling from
        the lookback instead could skip what the source published while we were away."""
        if self.resume is None or self.cursor_ms is not None:
            return
        while True:
            try:
                self.cursor_ms = await self.resume()
            except (KafkaError, OSError, TimeoutError) as err:
                delay = self.backoff.next_delay()
                log.warning("source %s: cannot read where it left off (%s); next try in %.1f s", self.name, err, delay)
                await asyncio.sleep(delay)
                continue
            self.backoff.reset()
            if self.cursor_ms is not None:
                log.info("source %s: resuming from %s", self.name, datetime.fromtimestamp(self.cursor_ms / 1000, UTC))
            return

    async def run_forever(self) -> None:
        await self.resume_cursor()
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
