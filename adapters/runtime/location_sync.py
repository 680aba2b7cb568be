"""The full sync of OCPI Locations: every so often, GET every Location page by page and reconcile.

An eMSP that receives pushes still pulls the whole list now and then: a push can be lost (the operator's
retries gave up, we were down), and only a full read repairs that. Each sync starts at the configured URL
(``?limit=`` sets the page size; no ``date_from``, so every Location is listed) and follows each
``Link: <...>; rel="next"`` (OCPI 2.2.1 pagination, ``offset``/``limit`` chosen by the server). Each Location
is offered to the ``LocationStore`` it shares with the push receiver: taken unless a newer push is held.
What is taken is sent on as a charging station record (unchanged ones are skipped) and written to the
Location log, so a restarted receiver knows it. A Location that differs from the version held (a lost or
stale push) is sent whatever this source sent before, dated no earlier than the page (the stream layer
keeps only newer states). A page count that disagrees with ``X-Total-Count`` (the list
changed while it was read) is logged; the next sync reads it again.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters.formats.common import ItemError, JsonDict, iso_time_ms
from adapters.formats.ocpi_envelope import check_status
from adapters.formats.ocpi_location_store import LocationStore
from adapters.formats.ocpi_locations import FEED, location_key, location_record
from adapters.formats.result import ParseResult
from schemas import Record, now_ms

from .location_log import location_message
from .polling_adapter import MAX_PAGES_PER_POLL, PollingAdapter
from .routing import OutMessage, record_message

log = logging.getLogger(__name__)


def _page_items(body: bytes) -> tuple[list[Any], int | None]:
    """The Locations of one OCPI list response, and the response's ``timestamp`` (ms) if readable."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise ItemError(f"the page is not JSON: {err}") from None
    if not isinstance(payload, dict) or "status_code" not in payload:
        raise ItemError("the page is not an OCPI response (no status_code)")
    check_status(payload, payload["status_code"])
    data = payload.get("data")
    if not isinstance(data, list):
        raise ItemError("the page's data is not a list of Locations")
    try:
        vouched = iso_time_ms(payload.get("timestamp"), "timestamp") if payload.get("timestamp") else None
    except ItemError:
        vouched = None
    return data, vouched


def _newer_than(record: Record, held: JsonDict, item: JsonDict, vouched: int | None, source: str) -> Record:
    """``record`` (of the synced ``item``), dated at the page's time when it is not newer than the record of
    the version we ``held``: a repair of a stale push carries the operator's older change time, and the
    stream layer would take it for a repeat of what the push sent."""
    try:
        before = location_record(held, source=source).observed_at
    except (ItemError, OverflowError):
        return record
    if record.observed_at > before or vouched is None or vouched <= before:
        return record
    return location_record({**item, "last_updated": _ocpi_time(vouched)}, source=source, vouched_ms=vouched)


def _ocpi_time(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LocationSync(PollingAdapter):
    def __init__(self, *, store: LocationStore, **kwargs: Any) -> None:
        super().__init__(format_name="ocpi-locations", **kwargs)
        self.store = store
        self.last_sync: dict[str, int] = {}  # figures of the last complete sync, for logs and tests

    async def poll_once(self) -> None:
        """One full sync; raises PollError when a page could not be read (the next try starts over)."""
        self.stats.polls += 1
        started = time.perf_counter()
        url = self.poller.url
        seen: list[str] = []  # every Location listed, in page order (one listed twice shows here)
        taken = kept = pages = 0
        total: int | None = None
        for _ in range(MAX_PAGES_PER_POLL):
            fetched = await self._fetch(url)
            pages += 1
            if total is None:
                total = fetched.total_count
            page_taken, page_kept = await self._reconcile_page(fetched.body or b"", url, seen)
            taken += page_taken
            kept += page_kept
            if fetched.next_url is None or fetched.next_url == url:
                break
            url = fetched.next_url
        else:
            log.warning("source %s: stopped after %d pages in one sync", self.name, MAX_PAGES_PER_POLL)
        distinct = len(set(seen))
        if total is not None and total != distinct:
            log.warning("source %s: the sync saw %d Locations, the server counted %d", self.name, distinct, total)
        if distinct != len(seen):
            log.warning("source %s: %d Locations were listed twice (the list moved while it was read)",
                        self.name, len(seen) - distinct)  # fmt: skip
        self.last_sync = {
            "pages": pages,
            "listed": len(seen),
            "locations": distinct,
            "taken": taken,
            "kept_newer_push": kept,
        }
        self.stats.last_poll_s = time.perf_counter() - started

    async def _reconcile_page(self, body: bytes, url: str, seen: list[str]) -> tuple[int, int]:
        received = now_ms()
        result = ParseResult()
        try:
            items, vouched = _page_items(body)
        except ItemError as err:
            result.reject(body, source=self.name, feed=FEED, reason=str(err), received_at_ms=received, locator=url)
            await self.ingestor.ingest(result)
            return 0, 0
        taken = kept = 0
        logged: list[OutMessage] = []
        repairs: list[OutMessage] = []
        for index, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise ItemError(f"data[{index}] is not a Location object")
                key = location_key(item)
                record = location_record(item, source=self.name, vouched_ms=vouched)
            except (ItemError, OverflowError) as err:
                result.reject(
                    orjson.dumps(item),
                    source=self.name,
                    feed=FEED,
                    reason=f"data[{index}]: {err}",
                    received_at_ms=received,
                    locator=f"data[{index}]",
                )
                continue
            seen.append(key)
            held = self.store.get(key)
            if not self.store.offer(key, item):
                kept += 1  # a push newer than this page's copy: it stands
                continue
            taken += 1
            if held == item:
                result.records.append(record)  # sent again only when the change filter says it is due
                continue
            logged.append(location_message(key, item, self.name))
            if held is None:
                result.records.append(record)
                continue
            # We held another version: the operator changed it, or a push left us with something else. This
            # copy must reach Kafka whatever this source sent before, and be newer than what went out.
            repairs.append(record_message(_newer_than(record, held, item, vouched, self.name)))
        self.stats.records += len(repairs)
        await self.ingestor.sink.submit_many(repairs)
        await self.ingestor.ingest(result)
        await self.ingestor.sink.submit_many(logged)
        return taken, kept
