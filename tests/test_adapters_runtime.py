"""The runtime's pieces without Kafka: backoff, conditional GET, the unchanged-record filter, polling."""

from __future__ import annotations

import asyncio
import itertools
import json
import random

import aiohttp
import pytest
from aiohttp import web

from adapters.formats import parse_with
from adapters.runtime.backoff import Backoff
from adapters.runtime.change_filter import ChangeFilter, next_refresh
from adapters.runtime.kafka_sink import KafkaSink
from adapters.runtime.poller import HttpPoller, PollError
from adapters.runtime.routing import OutMessage
from schemas.validity import TTL_MS

from .test_adapters_shanghai import documented_example, parse


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    backoff = Backoff(base_s=1.0, cap_s=30.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(10)]
    for attempt, delay in enumerate(delays):
        ceiling = min(30.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert delays[-1] <= 30.0 and len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_unchanged_records_are_skipped_but_any_real_change_passes():
    example = documented_example("sh-bus-gps")
    first = parse("sh-bus-gps", example).records[0]
    # Only time and sequence moved, and not as far as the entity's refresh mark (see the refresh tests).
    example["data"][0].update(gpsTime="2026-11-27 13:05:01", seq=88214)
    same = parse("sh-bus-gps", example).records[0]
    assert first.observed_at < same.observed_at and same.expires_at < next_refresh(
        first.id, first.expires_at, TTL_MS["bus"]
    )
    example["data"][0].update(lng=example["data"][0]["lng"] + 0.0001)
    moved = parse("sh-bus-gps", example).records[0]
    seen = ChangeFilter()
    receipt = seen.claim("bus", first)
    assert receipt is not None
    assert seen.claim("bus", same) is None  # on its way: a repeat is not sent again
    receipt(True)
    assert seen.claim("bus", same) is None
    moved_receipt = seen.claim("bus", moved)
    assert moved_receipt is not None
    assert seen.claim("bus", moved) is None
    assert seen.claim("metro", moved) is not None  # another feed is another entity
    moved_receipt(True)
    assert seen.claim("bus", moved) is None


def test_a_record_kafka_refused_is_sent_again_on_the_next_poll():
    example = documented_example("sh-bus-gps")
    first = parse("sh-bus-gps", example).records[0]
    example["data"][0].update(lng=example["data"][0]["lng"] + 0.0001)
    moved = parse("sh-bus-gps", example).records[0]
    seen = ChangeFilter()
    first_receipt = seen.claim("bus", first)
    moved_receipt = seen.claim("bus", moved)
    assert first_receipt is not None and moved_receipt is not None
    first_receipt(True)
    moved_receipt(False)  # refused for good: not sent as far as the filter knows
    assert seen.claim("bus", moved) is not None
    # An acknowledgement arriving late for older content does not override newer acknowledged content.
    seen2 = ChangeFilter()
    old, new = seen2.claim("bus", first), seen2.claim("bus", moved)
    assert old is not None and new is not None
    new(True)
    old(True)
    assert seen2.claim("bus", moved) is None and seen2.claim("bus", first) is not None


class _Sent:
    """A sink keeping what the ingestor submits, acknowledging each message as Kafka would, or refusing those
    of the entities in ``refuse``."""

    def __init__(self) -> None:
        self.messages: list[OutMessage] = []
        self.refuse: set[bytes] = set()

    async def submit_many(self, messages: list[OutMessage]) -> None:
        for message in messages:
            self.messages.append(message)
            if message.receipt is not None:
                message.receipt(message.key not in self.refuse)


def test_a_poll_builds_only_the_items_whose_record_would_be_sent():
    """The skip of unchanged items (adapters/formats/sh_envelope.py) is the change filter's own rule applied
    before building: over a run of whole-fleet bodies, 1 s apart and then 10 s, with Kafka refusing some
    buses' records once, the same messages go out as when every item is built, and most items are not built."""
    from adapters.formats import get_format
    from adapters.runtime.ingest import Ingestor
    from adapters.runtime.stats import SourceStats
    from adapters.simulators.city import SimulatedCity

    start_s = 1_765_089_000  # 14:30 in Beijing: most of the fleet in service
    city = SimulatedCity(seed=5, start_ms=start_s * 1000, buses=400, lots=5, connectors=5)
    moments = [start_s + s for s in (0, 1, 2, 3, 13, 23, 24)]
    bodies = [city.render("bus", t) for t in moments]
    spec = get_format("sh-bus-gps")
    assert spec.skips_unchanged

    def polls(skip: bool) -> tuple[list[list[tuple[bytes, bytes]]], SourceStats, list[int]]:
        sink, stats, not_built = _Sent(), SourceStats(source="sh-bus"), []
        ingestor = Ingestor(sink, stats, ChangeFilter())  # type: ignore[arg-type]
        sent = []
        for n, body in enumerate(bodies):
            # the third poll's records of every fifth bus are refused: the next poll must send them again
            sink.refuse = {f"OBU-{i:06d}".encode() for i in range(0, 400, 5)} if n == 2 else set()
            sink.messages = []
            options = {"unchanged": ingestor.change_filter.unchanged} if skip else {}
            seen: set[str] = set()
            not_built.append(0)
            for chunk in spec.parse_chunks(body, source="sh-bus", received_at_ms=0, **options):
                asyncio.run(ingestor.ingest(chunk, seen))
                not_built[-1] += len(chunk.unchanged)
            sent.append([(m.key, m.value) for m in sink.messages])
        return sent, stats, not_built

    built, built_stats, _ = polls(skip=False)
    skipped, skip_stats, not_built = polls(skip=True)
    assert skipped == built
    refused = {f"OBU-{i:06d}".encode() for i in range(0, 400, 5)}
    refused_sent = {pair for pair in built[2] if pair[0] in refused}
    assert refused_sent and {key for key, _ in refused_sent} <= {key for key, _ in built[3]}  # all sent again
    assert refused_sent & set(built[3])  # some of them only because of the refusal: the very same record
    assert (skip_stats.records, skip_stats.skipped) == (built_stats.records, built_stats.skipped)
    # 1 s apart, most buses repeat their last report: those items were not built at all
    assert not_built[0] == 0 and all(n > len(sent) for n, sent in zip(not_built[1:4], built[1:4], strict=True))


def test_an_item_without_its_own_time_is_always_built():
    """A bus report without gpsTime takes the response's time, so the same item makes a new record each poll."""
    from adapters.formats import get_format

    example = documented_example("sh-bus-gps")
    del example["data"][0]["gpsTime"]
    spec = get_format("sh-bus-gps")
    asked: list[str] = []

    def unchanged(feed: str, entity: str, item_json: bytes) -> bool:
        asked.append(entity)
        return True

    body = json.dumps(example).encode()
    (chunk,) = spec.parse_chunks(body, source="sh-test", received_at_ms=0, unchanged=unchanged)
    assert asked == [] and len(chunk.records) == 1 and chunk.unchanged == []
    example["data"][0]["gpsTime"] = "2026-11-27 13:05:00"
    (chunk,) = spec.parse_chunks(json.dumps(example).encode(), source="sh-test", received_at_ms=0, unchanged=unchanged)
    assert chunk.records == [] and chunk.unchanged == [example["data"][0]["obuId"]]


def test_the_filter_forgets_entities_long_expired_behind_the_newest_record():
    import msgspec

    example = documented_example("sh-bus-gps")
    first = parse("sh-bus-gps", example).records[0]
    seen = ChangeFilter(horizon_ms=86_400_000)
    receipt = seen.claim("bus", first)
    assert receipt is not None
    receipt(True)
    # Two days later another vehicle reports: the first one's entry is gone, so its content would be news.
    later = msgspec.structs.replace(
        first, id="other", observed_at=first.observed_at + 2 * 86_400_000, expires_at=first.expires_at + 2 * 86_400_000
    )
    assert seen.claim("bus", later) is not None
    assert seen.sweep() == 1 and len(seen) == 1
    assert seen.claim("bus", first) is not None


def test_an_entity_repeating_itself_is_refreshed_before_its_copy_would_go_stale():
    import msgspec

    example = documented_example("sh-bus-gps")
    first = parse("sh-bus-gps", example).records[0]
    ttl = first.expires_at - first.observed_at
    assert ttl > 0

    def repeat(after_ms: int):  # the same content, reported again later
        return msgspec.structs.replace(
            first, observed_at=first.observed_at + after_ms, expires_at=first.expires_at + after_ms
        )

    seen = ChangeFilter()
    receipt = seen.claim("bus", first)
    assert receipt is not None
    receipt(True)
    # Reported again every second for three validity periods: the copy downstream is renewed at most half a
    # period after the last one, then every half period, and never in between.
    sent = []
    for after in range(1000, 3 * ttl, 1000):
        refresh = seen.claim("bus", repeat(after))
        if refresh is not None:
            refresh(True)
            sent.append(after)
    assert 0 < sent[0] <= ttl // 2
    assert {b - a for a, b in itertools.pairwise(sent)} == {ttl // 2}
    # The very same report again is never a refresh, even for content valid no time at all.
    instant = msgspec.structs.replace(first, id="instant", expires_at=first.observed_at)
    instant_receipt = seen.claim("bus", instant)
    assert instant_receipt is not None
    instant_receipt(True)
    assert seen.claim("bus", instant) is None


def test_entities_first_sent_together_are_refreshed_spread_over_the_polls():
    import msgspec

    # A whole feed sent at start-up, then polled every 30 s with nothing changed (predictions that hold):
    # each poll re-sends about its share of the entities, not all of them every other poll.
    first = parse("sh-bus-gps", documented_example("sh-bus-gps")).records[0]
    poll = TTL_MS["bus"] // 4  # the arrivals' poll against their TTL
    fleet = [msgspec.structs.replace(first, id=f"OBU-{i:05d}") for i in range(2000)]
    seen = ChangeFilter()
    per_poll = []
    for n in range(9):
        sent = 0
        for rec in fleet:
            again = msgspec.structs.replace(
                rec, observed_at=rec.observed_at + n * poll, expires_at=rec.expires_at + n * poll
            )
            receipt = seen.claim("bus", again)
            if receipt is not None:
                receipt(True)
                sent += 1
        per_poll.append(sent)
    assert per_poll[0] == len(fleet)
    # Half a period is two polls: every entity once in two polls, about half of them in each.
    assert all(0.4 * len(fleet) <= n <= 0.6 * len(fleet) for n in per_poll[1:]), per_poll
    assert sum(per_poll[1:]) == len(fleet) * (len(per_poll) - 1) // 2


def test_a_station_unchanged_for_hours_is_refreshed_as_each_poll_vouches_for_it():
    import msgspec

    # A state feed gives each station's last change time; the response's own time vouches that it still
    # holds, so every poll moves expires_at while observed_at stays put.
    example = documented_example("sh-charging")
    station = parse("sh-charging", example).records[0]
    ttl = TTL_MS["charging"]
    assert station.expires_at > station.observed_at + ttl, "the response's time extends the last change's"

    def polled(after_ms: int):
        return msgspec.structs.replace(station, expires_at=station.expires_at + after_ms)

    seen = ChangeFilter()
    receipt = seen.claim("charging", station)
    assert receipt is not None
    receipt(True)
    due = next_refresh(station.id, station.expires_at, ttl) - station.expires_at
    assert 0 < due <= ttl // 2
    assert seen.claim("charging", polled(due - 1)) is None
    assert seen.claim("charging", polled(due)) is not None


async def _serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/feed", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/feed"


async def test_conditional_get_sends_validators_and_handles_304():
    seen_headers: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen_headers.append(dict(request.headers))
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304)
        return web.Response(body=b"{}", headers={"ETag": '"v1"', "Last-Modified": "Fri, 27 Nov 2026 05:00:00 GMT"})

    runner, url = await _serve(handler)
    try:
        async with aiohttp.ClientSession() as session:
            poller = HttpPoller(session, url, timeout_s=5)
            assert (await poller.fetch()).body == b"{}"
            assert (await poller.fetch()).body is None
    finally:
        await runner.cleanup()
    assert "If-None-Match" not in seen_headers[0]
    assert seen_headers[1]["If-None-Match"] == '"v1"'
    assert seen_headers[1]["If-Modified-Since"] == "Fri, 27 Nov 2026 05:00:00 GMT"


async def test_http_errors_and_timeouts_are_poll_errors():
    async def handler(request: web.Request) -> web.Response:
        if request.query.get("slow"):
            await asyncio.sleep(2)
        return web.Response(status=503)

    runner, url = await _serve(handler)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(PollError, match="HTTP 503"):
                await HttpPoller(session, url, timeout_s=5).fetch()
            with pytest.raises(PollError, match="timed out"):
                await HttpPoller(session, url + "?slow=1", timeout_s=0.2).fetch()
            with pytest.raises(PollError):
                await HttpPoller(session, "http://127.0.0.1:1/nothing", timeout_s=2).fetch()
    finally:
        await runner.cleanup()


async def test_sink_holds_messages_while_kafka_is_unreachable_and_says_so():
    sink = KafkaSink(
        "127.0.0.1:1", max_buffered=3, request_timeout_ms=1000, retry_backoff=Backoff(base_s=0.05, cap_s=0.1)
    )
    await sink.start()
    message = OutMessage("raw.bus", b"k", b"v", 1_795_000_000_000, [])
    for _ in range(3):
        await sink.submit(message)
    # Full: the next submit waits (backpressure) instead of dropping anything.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sink.submit(message), timeout=0.5)
    for _ in range(50):
        if sink.stats.send_failures:
            break
        await asyncio.sleep(0.1)
    assert sink.stats.buffered == 3 and sink.stats.delivered == 0
    assert sink.stats.send_failures >= 1 and sink.stats.last_error
    await sink.close(timeout_s=0.1)


def test_whole_response_garbage_is_one_reject_with_the_original_bytes():
    body = b"<html>502 Bad Gateway</html>"
    result = parse_with("sh-bus-gps", body, source="s", received_at_ms=1_795_000_000_000)
    assert result.records == [] and [r.original for r in result.rejects] == [body]
