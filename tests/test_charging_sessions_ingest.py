"""The simulated OCPI CDRs endpoint → the polling adapter (date_from cursor, rel="next" pages) → real Kafka.

Checked against what the simulator says exists: every session whose CDR was billed within the polled
window arrives in raw.charging_sessions exactly once across two polls (the second one overlapping the
first), and a malformed CDR lands in dlq.charging_sessions with its original bytes and the reason.
"""

from __future__ import annotations

import collections
import functools
import time
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from adapters.runtime.kafka_sink import KafkaSink
from adapters.runtime.poller import PollError
from adapters.runtime.polling_adapter import PollingAdapter
from adapters.runtime.resume import newest_ingested
from adapters.runtime.sources import SOURCES
from adapters.simulators.charging_sessions import BILLING_DELAY_MAX_S, PATH
from adapters.simulators.city import SimulatedCity
from adapters.simulators.server import build_app
from kafka_admin import ensure_topics
from schemas import decode_dead_letter, decode_kafka, dlq_topic, raw_topic
from settings import Settings

from .streams_support import topic_prefix_fixture  # noqa: F401  (the fixture, by its name)
from .test_adapters_kafka import _end_offsets, _read_from

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]

FEED = "charging_sessions"
TOKEN = "emsp-credentials-token"
PAGE = 12


class Tap:
    """Every CDRs request the simulator answered: its query and body."""

    def __init__(self) -> None:
        self.served: list[tuple[dict[str, str], bytes]] = []

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if request.path == PATH and isinstance(response, web.Response) and isinstance(response.body, bytes):
            self.served.append((dict(request.query), response.body))
        return response


async def serve_city(city: SimulatedCity, ocpi_token: str = "") -> tuple[web.Application, web.AppRunner, str, Tap]:
    """The simulator for ``city`` on a free port, with a tap on its CDR responses."""
    tap = Tap()
    app = build_app(city, ocpi_token=ocpi_token)
    app.middlewares.append(tap.middleware)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return app, runner, f"http://127.0.0.1:{runner.addresses[0][1]}", tap


async def test_sessions_arrive_once_across_polls_and_pages_bad_cdrs_in_the_dlq(
    kafka_bootstrap, running_stack, unique_name, topic_prefix
):
    name = unique_name("cdrs")
    topics = [topic_prefix + raw_topic(FEED), topic_prefix + dlq_topic(FEED)]
    await ensure_topics(kafka_bootstrap, running_stack.topic_partitions, names=topics)

    ticks = [0.0]
    # The simulated clock starts at the real now: the adapter's first window is the real last hour.
    city = SimulatedCity(
        7, start_ms=int(time.time() * 1000), buses=20, lots=20, connectors=300, monotonic=lambda: ticks[0]
    )
    # The operator asks for credentials, as real ones do.
    app, runner, base, tap = await serve_city(city, ocpi_token=TOKEN)

    start = await _end_offsets(kafka_bootstrap, topics)
    sink = KafkaSink(kafka_bootstrap, topic_prefix=topic_prefix)
    await sink.start()
    try:
        async with aiohttp.ClientSession() as session:

            def cdr_adapter(token: str) -> PollingAdapter:
                return PollingAdapter(
                    name=name,
                    format_name="ocpi-cdrs",
                    url=f"{base}{PATH}?limit={PAGE}",
                    interval_s=60,
                    timeout_s=10,
                    session=session,
                    sink=sink,
                    headers=SOURCES["sh-charging-sessions"].request_headers(Settings(ocpi_token=token)),
                )

            stranger = cdr_adapter("")  # no credentials
            with pytest.raises(PollError, match="credentials were refused"):
                await stranger.poll_once()
            assert stranger.stats.errors == 1 and stranger.stats.records == 0
            tap.served.clear()
            adapter = cdr_adapter(TOKEN)
            await adapter.poll_once()
            first_pages = len(tap.served)
            first_cursor = adapter.cursor_ms
            ticks[0] += 1200  # twenty simulated minutes later, with some CDRs corrupted upstream
            async with session.post(f"{base}/_faults", json={"feed": FEED, "fault": "garbage", "rate": 0.2}) as r:
                assert r.status == 200
            await adapter.poll_once()
        await sink.flush(timeout_s=60)
    finally:
        await sink.close()
        await runner.cleanup()

    assert first_pages >= 3, "the first hour does not fit on one page: the adapter followed rel=next"
    assert first_cursor is not None and adapter.cursor_ms is not None and adapter.cursor_ms > first_cursor
    second_query = tap.served[first_pages][0]
    assert second_query["date_from"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(first_cursor // 1000))

    # What exists: the simulator's own listing of the CDRs billed from the first window's start until now.
    window_start = tap.served[0][0]["date_from"]
    everything: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = city_page(app, window_start, offset)
        everything += page
        if len(page) < 1000:
            break
        offset += 1000
    expected_ids = {c["id"] for c in everything}
    assert len(expected_ids) == len(everything) > 3 * PAGE

    got = await _read_from(kafka_bootstrap, start, name)
    raw = got.get(topic_prefix + raw_topic(FEED), [])
    records: list[Any] = [decode_kafka(FEED, m.value) for m in raw]
    counts = collections.Counter(r.id for r in records)
    assert set(counts) == expected_ids, (len(set(counts) - expected_ids), len(expected_ids - set(counts)))
    assert max(counts.values()) == 1, "no session twice, though the two polls' windows overlap"
    assert adapter.stats.skipped > 0, "the second window overlapped the first: its repeats were skipped"
    for message, record in zip(raw, records, strict=True):
        assert message.key == record.id.encode() and message.timestamp == record.observed_at == record.ended_at
        assert record.token_id and record.station_id.startswith("SHC-")

    letters = [decode_dead_letter(m.value) for m in got.get(topic_prefix + dlq_topic(FEED), [])]
    served_items = [item for _, body in tap.served for item in orjson.loads(body)["data"]]
    # The simulator's corruptions: not an object, no usable id, or a total that is not a number.
    corrupted = [
        item
        for item in served_items
        if not isinstance(item, dict) or item.get("id") not in expected_ids or "N/A" in item.values()
    ]
    assert letters and len(letters) == len(corrupted)
    assert sorted(letter.original for letter in letters) == sorted(orjson.dumps(item) for item in corrupted)
    for letter in letters:
        assert letter.source == name and letter.feed == FEED and letter.locator and letter.locator.startswith("data[")
        assert letter.reason


def city_page(app: web.Application, date_from: str, offset: int) -> list[dict[str, Any]]:
    """The simulator's CDRs from ``date_from`` at its current time, without faults, straight from its log."""
    from adapters.simulators import charging_sessions as cdrs
    from adapters.simulators.server import SERVER_KEY

    server = app[SERVER_KEY]
    query = cdrs.parse_query({"date_from": date_from, "offset": str(offset), "limit": "1000"})
    page = cdrs.render_page(server.sessions, server.city.now_s(), query, None, 0)
    data: list[dict[str, Any]] = orjson.loads(page.body)["data"]
    return data


async def test_a_restarted_adapter_resumes_where_kafka_says_it_left_off(
    kafka_bootstrap, running_stack, unique_name, topic_prefix
):
    # Down four hours, longer than the one-hour first-poll lookback: resuming from the lookback would never
    # ask for three of those hours. The restarted adapter resumes from its newest session in Kafka instead.
    name = unique_name("cdr-resume")
    topics = [topic_prefix + raw_topic(FEED), topic_prefix + dlq_topic(FEED)]
    await ensure_topics(kafka_bootstrap, running_stack.topic_partitions, names=topics)
    ticks = [0.0]
    start_ms = int(time.time() * 1000) - 4 * 3_600_000
    city = SimulatedCity(7, start_ms=start_ms, buses=20, lots=20, connectors=300, monotonic=lambda: ticks[0])
    app, runner, base, tap = await serve_city(city)
    url = f"{base}{PATH}?limit=200"
    start = await _end_offsets(kafka_bootstrap, topics)

    async def run_once(session: aiohttp.ClientSession, cursor_ms: int | None = None) -> PollingAdapter:
        sink = KafkaSink(kafka_bootstrap, topic_prefix=topic_prefix)
        await sink.start()
        try:
            adapter = PollingAdapter(
                name=name,
                format_name="ocpi-cdrs",
                url=url,
                interval_s=60,
                timeout_s=10,
                session=session,
                sink=sink,
                resume=functools.partial(newest_ingested, kafka_bootstrap, topic_prefix + raw_topic(FEED), name),
            )
            adapter.cursor_ms = cursor_ms
            await adapter.resume_cursor()
            await adapter.poll_once()
            await sink.flush(timeout_s=60)
            return adapter
        finally:
            await sink.close()

    try:
        async with aiohttp.ClientSession() as session:
            first = await run_once(session, cursor_ms=start_ms - 3_600_000)  # as if it had run for a while
            ticks[0] += 4 * 3600  # the adapter is down for four simulated hours
            served_before = len(tap.served)
            second = await run_once(session)
    finally:
        await runner.cleanup()

    assert first.cursor_ms is not None
    resumed_from = tap.served[served_before][0]["date_from"]
    assert resumed_from == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(first.cursor_ms // 1000))
    assert second.cursor_ms is not None and second.cursor_ms > first.cursor_ms + 3 * 3_600_000

    everything: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = city_page(app, tap.served[0][0]["date_from"], offset)
        everything += page
        if len(page) < 1000:
            break
        offset += 1000
    got = await _read_from(kafka_bootstrap, start, name)
    records: list[Any] = [decode_kafka(FEED, m.value) for m in got.get(topic_prefix + raw_topic(FEED), [])]
    counts = collections.Counter(r.id for r in records)
    assert set(counts) == {c["id"] for c in everything}, "every session of the four hours arrived"
    # Only sessions around the resumed cursor come twice (dropped downstream as duplicates): the window is
    # inclusive and filters on billing time, which trails a session's end by up to the billing delay.
    again = {r.id for r in records if counts[r.id] > 1}
    assert len(again) < len(counts) // 20
    assert all(
        first.cursor_ms - BILLING_DELAY_MAX_S * 1000 <= r.observed_at <= first.cursor_ms
        for r in records
        if r.id in again
    )
