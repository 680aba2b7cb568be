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

OCPI has no delete for a Location: a removed one has every EVSE ``REMOVED``. A complete sync (every page
read, as many Locations as the server counted) that no longer lists a Location of an operator it does list
sets that for it, unless a push changed it while the sync ran; its record then carries no connector.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters.formats.common import ItemError, JsonDict, iso_time_ms
from adapters.formats.ocpi_envelope import check_status
from adapters.formats.ocpi_location_store import LocationStore, updated_ms
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
        started_ms = now_ms()
        complete = False
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
                complete = True
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
        removed = 0
        if complete and total in (None, distinct):
            removed = await self._remove_unlisted(set(seen), started_ms)
        self.last_sync = {
            "pages": pages,
            "listed": len(seen),
            "locations": distinct,
            "taken": taken,
            "kept_newer_push": kept,
            "removed": removed,
        }
        self.stats.last_poll_s = time.perf_counter() - started

    async def _remove_unlisted(self, listed: set[str], started_ms: int) -> int:
        """Held Locations of the listed operators that the complete sync did not list: removed (every EVSE)."""
        operators = {key.rsplit("*", 1)[0] for key in listed}
        stamp = _ocpi_time(started_ms)
        logged: list[OutMessage] = []
        repairs: list[OutMessage] = []
        for key in self.store.keys():  # noqa: SIM118 (a list, not a view: the loop changes the store)
            held = self.store.get(key)
            if key in listed or held is None or key.rsplit("*", 1)[0] not in operators:
                continue
            changed = updated_ms(held)
            if changed is not None and changed >= started_ms:
                continue  # pushed while the sync ran: newer than the list
            evses = [e for e in held.get("evses") or [] if isinstance(e, dict)]
            if not evses or all(e.get("status") == "REMOVED" for e in evses):
                continue
            gone = {
                **held,
                "last_updated": stamp,
                "evses": [{**e, "status": "REMOVED", "last_updated": stamp} for e in evses],
            }
            try:
                record = location_record(gone, source=self.name)
            except (ItemError, OverflowError):
                continue  # what we held cannot be read (then it never reached Kafka either)
            self.store.pushed(key, gone)
            logged.append(location_message(key, gone, self.name))
            repairs.append(record_message(record))
        if repairs:
            log.info("source %s: %d Locations no longer listed, removed", self.name, len(repairs))
        self.stats.records += len(repairs)
        await self.ingestor.sink.submit_many(repairs)
        await self.ingestor.sink.submit_many(logged)
        return len(repairs)

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
