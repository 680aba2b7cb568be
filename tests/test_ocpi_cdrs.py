"""``ocpi-cdrs``: OCPI 2.2.1 CDRs → charging sessions, and the simulator's CDRs endpoint that serves them.

Parser: the mapping a user of ``raw.charging_sessions`` relies on, one bad CDR costing only itself, a bad
envelope rejected whole. Simulator: determinism, OCPI paging and date filtering, consistency with the
charging feed's connector states, and its faults as the parser sees them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from adapters.formats import get_format
from adapters.runtime.kafka_sink import KafkaSink
from adapters.runtime.polling_adapter import PollingAdapter
from adapters.simulators.beijing import utc_from_local
from adapters.simulators.charging import ChargingNetwork
from adapters.simulators.charging_sessions import PATH, SessionLog
from adapters.simulators.city import SimulatedCity
from adapters.simulators.server import build_app
from schemas.validity import TTL_MS

from .adapters_helpers import RECEIVED_AT, parse_any

START_S = utc_from_local(2026, 11, 27, 18, 30)  # a Friday evening: DC hubs busy


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def cdr(cdr_id: str = "CDR-0001", **changes: Any) -> dict[str, Any]:
    """A DC fast-charging CDR at a hub in Pudong, written from the OCPI 2.2.1 CDR object's fields."""
    item: dict[str, Any] = {
        "country_code": "CN",
        "party_id": "TLD",
        "id": cdr_id,
        "start_date_time": "2026-11-27T09:12:00Z",
        "end_date_time": "2026-11-27T09:58:30Z",
        "session_id": "SESS-77",
        "cdr_token": {
            "country_code": "CN",
            "party_id": "XXC",
            "uid": "04A1B2C3D4E5F6",
            "type": "RFID",
            "contract_id": "CN-XXC-C00012345",
        },
        "auth_method": "WHITELIST",
        "cdr_location": {
            "id": "PD-HUB-3",
            "name": "世纪大道充电站",
            "address": "世纪大道 100 号",
            "city": "上海市",
            "country": "CHN",
            "coordinates": {"latitude": "31.228511", "longitude": "121.521067"},
            "evse_uid": "PD-HUB-3-E07",
            "evse_id": "CN*TLD*E0307",
            "connector_id": "2",
            "connector_standard": "GBT_DC",
            "connector_format": "CABLE",
            "connector_power_type": "DC",
        },
        "currency": "CNY",
        "charging_periods": [
            {"start_date_time": "2026-11-27T09:12:00Z", "dimensions": [{"type": "ENERGY", "volume": 41.7}]}
        ],
        "total_cost": {"excl_vat": 55.8, "incl_vat": 63.05},
        "total_energy": 41.7,
        "total_time": 0.775,
        "total_parking_time": 0.0,
        "last_updated": "2026-11-27T09:59:10Z",
    }
    item.update(changes)
    return item


def envelope(items: list[Any], status_code: Any = 1000) -> bytes:
    return orjson.dumps(
        {"data": items, "status_code": status_code, "status_message": "Success", "timestamp": "2026-11-27T10:00:00Z"}
    )


def parse(data: bytes) -> Any:
    return parse_any("ocpi-cdrs", data, source="cpo-test", received_at_ms=RECEIVED_AT)


# ------------------------------------------------------------------------------------------------ parser


def test_a_cdr_becomes_a_charging_session() -> None:
    second = cdr("CDR-0002", total_energy="12.5")
    second["cdr_token"] = {**second["cdr_token"], "uid": "A1", "contract_id": None}
    result = parse(envelope([cdr(), second]))
    assert result.rejects == []
    first, other = result.records
    assert first.id == "CDR-0001" and first.source == "cpo-test"
    assert first.station_id == "PD-HUB-3" and first.connector_id == "PD-HUB-3-E07:2"
    assert (first.lng, first.lat) == (121.521067, 31.228511)  # OCPI strings, WGS-84 kept as they are
    assert first.started_at == ms("2026-11-27T09:12:00+00:00")
    assert first.ended_at == ms("2026-11-27T09:58:30+00:00")
    assert first.observed_at == first.ended_at  # the session's end, not the billing time
    assert first.expires_at == first.ended_at + TTL_MS["charging_sessions"]
    assert first.energy_kwh == 41.7
    assert (first.token_id, first.contract_id) == ("04A1B2C3D4E5F6", "CN-XXC-C00012345")
    assert other.energy_kwh == 12.5 and other.token_id == "A1" and other.contract_id is None


def test_times_with_an_offset_are_converted_to_utc() -> None:
    result = parse(envelope([cdr(start_date_time="2026-11-27T17:12:00+08:00")]))
    assert result.records[0].started_at == ms("2026-11-27T09:12:00+00:00")


BAD_CDRS: list[tuple[Any, str]] = [
    (cdr("bad-1", end_date_time="2026-11-27T09:00:00Z"), "end_date_time is before start_date_time"),
    (cdr("bad-2", total_energy="N/A"), "total_energy"),
    (cdr("bad-3", total_energy=-3), "energy_kwh"),
    (cdr("bad-4", start_date_time="yesterday"), "start_date_time"),
    (cdr("bad-5", last_updated=None), "last_updated"),
    (cdr("bad-6", total_time="N/A"), "total_time"),
    ({k: v for k, v in cdr("bad-7").items() if k != "id"}, "missing id"),
    (cdr("", total_energy=1), "invalid charging_sessions record"),
    (cdr("bad-9", cdr_token="04A1"), "cdr_token"),
    (
        cdr("bad-10", cdr_location={**cdr()["cdr_location"], "coordinates": {"latitude": "95.1", "longitude": "121"}}),
        "globe",
    ),
    (cdr("bad-11", cdr_location={**cdr()["cdr_location"], "evse_uid": None}), "evse_uid"),
    ("not a CDR", "data[1] is a string"),
    (None, "data[1] is null"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_CDRS, ids=[str(i) for i in range(len(BAD_CDRS))])
def test_one_bad_cdr_is_one_dead_letter_and_costs_no_other(bad: Any, reason: str) -> None:
    result = parse(envelope([cdr("good-1"), bad, cdr("good-2")]))
    assert [r.id for r in result.records] == ["good-1", "good-2"]
    [letter] = result.rejects
    assert reason in letter.reason
    assert letter.locator == "data[1]" and letter.feed == "charging_sessions" and letter.source == "cpo-test"
    assert orjson.loads(letter.original) == bad  # the CDR exactly as received, for the DLQ


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (envelope([cdr()], status_code=3000), "OCPI status_code 3000"),
        (envelope([cdr()], status_code="1000"), "OCPI status_code '1000'"),
        (orjson.dumps({"status_code": 1000, "timestamp": "2026-11-27T10:00:00Z"}), "without data"),
        (orjson.dumps({"status_code": 1000, "data": cdr()}), "data is an object, expected an array"),
        (orjson.dumps([cdr()]), "the response is an array"),
        (orjson.dumps({"data": [cdr()]}), "missing status_code"),
        (b"<html>502 Bad Gateway</html>", "not valid JSON"),
    ],
)
def test_a_bad_envelope_is_rejected_whole(body: bytes, reason: str) -> None:
    result = parse(body)
    assert result.records == []
    [letter] = result.rejects
    assert reason in letter.reason and letter.original == body and letter.locator is None


def test_an_empty_page_is_no_records_and_no_rejects() -> None:
    result = parse(envelope([]))
    assert result.records == [] and result.rejects == []


# --------------------------------------------------------------------------------------------- simulator


def make_city(seed: int = 5, clock: list[float] | None = None) -> SimulatedCity:
    ticks = clock if clock is not None else [0.0]
    return SimulatedCity(seed, start_ms=START_S * 1000, buses=20, lots=20, connectors=300, monotonic=lambda: ticks[0])


@pytest.fixture(scope="module")
def clock() -> list[float]:
    return [0.0]


@pytest.fixture(scope="module")
def city(clock: list[float]) -> SimulatedCity:
    return make_city(clock=clock)


@pytest.fixture
async def client(city: SimulatedCity) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_app(city))) as c:
        yield c


def ocpi(t_s: int) -> str:
    return datetime.fromtimestamp(t_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def get_page(client: TestClient, **params: Any) -> tuple[Any, dict[str, Any]]:
    response = await client.get(PATH, params={k: str(v) for k, v in params.items()})
    assert response.status == 200, await response.text()
    return response, orjson.loads(await response.read())


async def all_pages(client: TestClient, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Follow rel="next" from the first page; returns the CDRs and the number of pages."""
    response, doc = await get_page(client, **params)
    cdrs, pages = list(doc["data"]), 1
    while "next" in response.links:
        url = URL(str(response.links["next"]["url"]))
        response = await client.get(url.path_qs)
        cdrs += orjson.loads(await response.read())["data"]
        pages += 1
    return cdrs, pages


async def test_cdrs_are_paged_the_ocpi_way(client: TestClient) -> None:
    everything, _ = await all_pages(client, date_from=ocpi(START_S - 3600), limit=1000)
    assert len(everything) > 40, "an evening hour at 300 connectors ends dozens of sessions"
    response, doc = await get_page(client, date_from=ocpi(START_S - 3600), limit=15)
    assert doc["status_code"] == 1000 and len(doc["data"]) == 15
    assert response.headers["X-Total-Count"] == str(len(everything)) and response.headers["X-Limit"] == "15"
    paged, pages = await all_pages(client, date_from=ocpi(START_S - 3600), limit=15)
    assert paged == everything, "the pages together are the whole list, in order, none twice"
    assert pages == -(-len(everything) // 15)
    updated = [c["last_updated"] for c in everything]
    assert updated == sorted(updated) and max(updated) <= ocpi(START_S)  # nothing from the future
    capped, _ = await get_page(client, limit=100_000)
    assert capped.headers["X-Limit"] == "1000"  # a limit above the server's is lowered, and said so


async def test_date_from_is_inclusive_and_date_to_exclusive(client: TestClient) -> None:
    everything, _ = await all_pages(client, date_from=ocpi(START_S - 3600), limit=1000)
    pivot = everything[len(everything) // 2]["last_updated"]
    before, _ = await all_pages(client, date_from=ocpi(START_S - 3600), date_to=pivot, limit=1000)
    after, _ = await all_pages(client, date_from=pivot, limit=1000)
    assert all(c["last_updated"] < pivot for c in before) and all(c["last_updated"] >= pivot for c in after)
    assert before + after == everything


async def test_same_seed_and_clock_serve_the_same_cdrs() -> None:
    bodies = []
    for seed in (5, 5, 6):
        async with TestClient(TestServer(build_app(make_city(seed)))) as c:
            _, doc = await get_page(c, date_from=ocpi(START_S - 7200), limit=1000)
            bodies.append(doc["data"])
    assert bodies[0] == bodies[1] and bodies[0] != bodies[2]


async def test_sessions_match_the_charging_feed_and_are_plausible(client: TestClient, city: SimulatedCity) -> None:
    cdrs, _ = await all_pages(client, date_from=ocpi(START_S - 3 * 3600), limit=1000)
    # Parsed like the adapter parses them: every simulated CDR is a valid session.
    result = parse(orjson.dumps({"status_code": 1000, "data": cdrs}))
    assert result.rejects == [] and len(result.records) == len(cdrs)
    sessions = result.records
    for s in sessions:
        assert s.started_at < s.ended_at and 0 <= s.energy_kwh <= 80.0
        assert s.ended_at - s.started_at <= 24 * 3600_000
    dc_hours = sorted(
        (s.ended_at - s.started_at) / 3_600_000
        for s, c in zip(sessions, cdrs, strict=True)
        if c["cdr_location"]["connector_power_type"] == "DC"
    )
    assert 0.3 < dc_hours[len(dc_hours) // 2] < 1.5, "a DC session's median is well under an hour and a half"
    assert len({s.token_id for s in sessions}) > len(sessions) * 0.8  # many different drivers
    # Where the CDR says a car was plugged in, the charging feed showed that connector taken; at the end it
    # frees up (or faults). The charging feed runs on its own copy of the same state machine.
    network = city.charging
    index = {cid: i for i, cid in enumerate(network.connector_ids)}
    by_end: dict[int, list[int]] = {}
    for c in cdrs[:60]:
        end_s = int(datetime.fromisoformat(c["end_date_time"]).timestamp())
        by_end.setdefault(end_s, []).append(index[c["cdr_location"]["evse_uid"]])
    for end_s in sorted(by_end):
        during = network.statuses(end_s - 60)
        taken = during[by_end[end_s]]
        assert set(taken.tolist()) <= {0, 2, 3}, "plugged in (2) or charging (3); 0 when the station is offline"
        after = network.statuses(end_s)[by_end[end_s]]
        assert set(after.tolist()) <= {0, 1, 4, 255}


def test_a_day_of_sessions_has_realistic_lengths() -> None:
    # Fast charging clusters around half an hour to an hour; public AC runs a few hours, rarely overnight.
    start = utc_from_local(2026, 11, 24, 0, 0)
    log = SessionLog(ChargingNetwork(seed=7, connectors=2000, start_s=start))
    log.advance_to(start + 86_400)
    connectors, charging_s = log.finished.columns()[0], log.finished.columns()[3]
    minutes = charging_s / 60.0
    dc = log.network.is_dc[connectors]
    fast, slow = minutes[dc], minutes[~dc]
    assert len(fast) > 5000 and len(slow) > 500
    assert 30 <= float(np.median(fast)) <= 45 and float((fast < 20).mean()) < 0.2
    assert 150 <= float(np.median(slow)) <= 260 and float((slow > 8 * 60).mean()) < 0.08


async def test_faults_reach_the_cdrs_endpoint(client: TestClient) -> None:
    window = {"date_from": ocpi(START_S - 3600), "limit": 40}
    _, clean = await get_page(client, **window)

    async def with_fault(**spec: Any) -> Any:
        await client.post("/_faults", data=orjson.dumps({"feed": "charging_sessions", **spec}))
        try:
            return await client.get(PATH, params={k: str(v) for k, v in window.items()})
        finally:
            await client.post("/_faults", data=orjson.dumps({"feed": "charging_sessions", "fault": None}))

    garbage = await with_fault(fault="garbage", rate=0.1)
    body = await garbage.read()
    result = parse(body)
    assert len(result.rejects) == 4 and [r.id for r in result.records] == [c["id"] for c in clean["data"]]
    assert (await with_fault(fault="http_error")).status == 503
    upstream = parse(await (await with_fault(fault="upstream_error")).read())
    assert upstream.records == [] and "OCPI status_code 3000" in upstream.rejects[0].reason
    jumped = orjson.loads(await (await with_fault(fault="time_jump", jump_s=-600)).read())["data"]
    assert [c["id"] for c in jumped] == [c["id"] for c in clean["data"]]
    first, shifted = clean["data"][0], jumped[0]
    assert ms(shifted["end_date_time"]) == ms(first["end_date_time"]) - 600_000
    stats = await (await client.get("/_stats")).json()
    assert stats["charging_sessions"]["garbage_records"] == 4 and stats["charging_sessions"]["http_errors"] == 1
    bad = await client.get(PATH, params={"date_from": "last tuesday"})
    assert bad.status == 400 and (await bad.json())["status_code"] == 2001


async def test_the_first_poll_asks_for_the_last_hour_then_resumes_from_the_newest_session() -> None:
    async with aiohttp.ClientSession() as session:
        adapter = PollingAdapter(
            name="cdr-url",
            format_name="ocpi-cdrs",
            url="http://sim.test/ocpi/2.2.1/cdrs?limit=50",
            interval_s=60,
            timeout_s=5,
            session=session,
            sink=KafkaSink("127.0.0.1:1"),  # never started: only the URL logic is exercised here
        )
        window = get_format("ocpi-cdrs").window
        assert window is not None and adapter.window == window
        url = URL(adapter.window_url(window))
        lag = datetime.now(UTC) - datetime.fromisoformat(url.query["date_from"])
        assert url.query["limit"] == "50" and 3599 <= lag.total_seconds() <= 3605
        adapter.cursor_ms = ms("2026-11-27T09:58:30.250+00:00")
        assert URL(adapter.window_url(window)).query["date_from"] == "2026-11-27T09:58:30Z"
