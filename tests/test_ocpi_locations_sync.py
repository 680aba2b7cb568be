"""Charging piles as an eMSP receives them over OCPI 2.2.1: the simulator's paged Locations list, the full sync
that reads it, the push receiver beside it, and what the pair knows surviving a restart (through Kafka).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition

import settings as settings_mod
from access.identity import kafka_options
from adapters.formats import parse_with
from adapters.formats.ocpi_auth import authorization_header
from adapters.formats.ocpi_locations import EVSE_STATUS
from adapters.runtime import AdapterRuntime
from adapters.runtime.push import BASE_PATH
from adapters.simulators.beijing import utc_from_local
from adapters.simulators.city import SimulatedCity
from adapters.simulators.ocpi_locations import PATH
from adapters.simulators.server import build_app
from kafka_admin import topic_partitions
from schemas import decode_kafka

from .adapters_helpers import shared
from .streams_support import topic_prefix_fixture  # noqa: F401  (the fixture, by its name)

START_S = utc_from_local(2026, 11, 27, 18, 30)
TOKEN = "ocpi-locations-test-token"
AUTH = {"Authorization": authorization_header(TOKEN)}


def small_city() -> SimulatedCity:
    # A frozen clock: the Locations do not change under the test's feet.
    return SimulatedCity(11, start_ms=START_S * 1000, buses=20, lots=20, connectors=300, monotonic=lambda: 0.0)


async def test_the_simulator_pages_its_locations_as_ocpi_says() -> None:
    city = small_city()
    async with TestClient(TestServer(build_app(city))) as client:
        seen: list[str] = []
        url: str | None = f"{PATH}?limit=7"
        pages = 0
        while url is not None:
            response = await client.get(url)
            assert response.status == 200
            assert response.headers["X-Limit"] == "7"
            total = int(response.headers["X-Total-Count"])
            result = parse_with("ocpi-locations", await response.read(), source="t", received_at_ms=0)
            assert not result.rejects and 0 < len(result.records) <= 7
            seen += [record.id for record in result.records]
            pages += 1
            link = response.links.get("next")
            url = link["url"].path_qs if link is not None else None  # type: ignore[union-attr]
        # Every Location once, in pages of the asked size; the last page has no next link.
        assert len(seen) == len(set(seen)) == total == city.charging.station_count
        assert pages == -(-total // 7)
        # The next link keeps the query's filters; a limit above the server's maximum is lowered to it.
        response = await client.get(f"{PATH}?limit=5000&date_from=2020-01-01T00:00:00Z")
        assert response.headers["X-Limit"] == "1000" and "Link" not in response.headers
        late = await client.get(f"{PATH}?limit=2&date_from=2099-01-01T00:00:00Z")
        assert late.headers["X-Total-Count"] == "0" and (await late.json())["data"] == []
        filtered = await client.get(f"{PATH}?limit=2&date_from=2020-01-01T00:00:00Z")
        assert "date_from=2020-01-01T00:00:00Z" in filtered.headers["Link"] and "offset=2" in filtered.headers["Link"]
        bad = await client.get(f"{PATH}?limit=0")
        assert bad.status == 400 and (await bad.json())["status_code"] == 2001


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def settings(running_stack: settings_mod.Settings) -> settings_mod.Settings:
    return dataclasses.replace(running_stack, ocpi_push_token=TOKEN)


@pytest.fixture
async def runtimes(
    settings: settings_mod.Settings, topic_prefix: str
) -> AsyncIterator[Callable[..., Awaitable[tuple[AdapterRuntime, asyncio.Task[None], int]]]]:
    """Start an adapter runtime on the test's topics; every one started is stopped at the end."""
    tasks: list[asyncio.Task[None]] = []

    async def start(names: list[str], **kwargs: Any) -> tuple[AdapterRuntime, asyncio.Task[None], int]:
        runtime = AdapterRuntime(settings, topic_prefix=topic_prefix, ops_stats=False)
        port = free_port()
        task = asyncio.create_task(runtime.run(names, push_port=port, **kwargs))
        tasks.append(task)
        await until(lambda: bool(runtime.push_receivers) and runtime.push_receivers[0].port is not None, task)
        return runtime, task, port

    yield start
    for task in tasks:
        await stop(task)


async def stop(task: asyncio.Task[None]) -> None:
    if not task.done():
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def until(check: Callable[[], bool], task: asyncio.Task[None], timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():
            if task.done():
                task.result()  # raises what stopped it
                raise AssertionError("the runtime stopped")
            await asyncio.sleep(0.05)


async def push(session: aiohttp.ClientSession, method: str, port: int, path: str, body: Any) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}{BASE_PATH}/{path}"
    async with session.request(method, url, data=orjson.dumps(body), headers=AUTH) as response:
        reply: dict[str, Any] = await response.json()
        reply["http"] = response.status
        return reply


async def stations_in_kafka(bootstrap: str, topic: str, key: str) -> list[Any]:
    """Every charging station record under ``key`` in ``topic``, oldest first."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await topic_partitions(bootstrap, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        out = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for messages in (await consumer.getmany(timeout_ms=5000)).values():
                out += [m for m in messages if m.key == key.encode()]
        return [decode_kafka("charging", m.value) for m in sorted(out, key=lambda m: (m.timestamp, m.offset))]
    finally:
        await consumer.stop()


@pytest.mark.stack
async def test_a_restarted_push_receiver_accepts_a_patch_for_a_location_it_learned_before(
    runtimes: Callable[..., Awaitable[tuple[AdapterRuntime, asyncio.Task[None], int]]],
    settings: settings_mod.Settings,
    topic_prefix: str,
) -> None:
    location = orjson.loads(shared("ocpi", "v2.2.1", "location_example.json").read_bytes())
    async with aiohttp.ClientSession() as session:
        first, first_task, port = await runtimes(["ocpi-push"])
        assert (await push(session, "PUT", port, "BE/BEC/LOC1", location))["status_code"] == 1000
        await first.sink.flush(30)
        await stop(first_task)

        second, _, port = await runtimes(["ocpi-push"])
        assert "BE*BEC*LOC1" in second.locations  # learned again from Kafka before it listened
        patch = {"status": "CHARGING", "last_updated": "2015-06-30T08:00:00Z"}
        reply = await push(session, "PATCH", port, "BE/BEC/LOC1/3256", patch)
        assert (reply["http"], reply["status_code"]) == (200, 1000)
        await second.sink.flush(30)
    records = await stations_in_kafka(settings.kafka_bootstrap, topic_prefix + "raw.charging", "BE*BEC*LOC1")
    statuses = {c.id: c.status for c in records[-1].connectors}
    # The EVSE the PATCH named is charging now; the rest of the Location is what the PUT said.
    assert statuses["3256:1"] == "CHARGING" and statuses["3257:1"] == "RESERVED"
    assert second.stats["ocpi-push"].rejects == 0


def ocpi_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.stack
async def test_the_full_sync_and_the_push_receiver_converge(
    runtimes: Callable[..., Awaitable[tuple[AdapterRuntime, asyncio.Task[None], int]]],
    settings: settings_mod.Settings,
    topic_prefix: str,
) -> None:
    city = small_city()
    runner = web.AppRunner(build_app(city), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    simulator = f"http://127.0.0.1:{runner.addresses[0][1]}{PATH}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(simulator, params={"limit": "1000"}) as response:
                truth = {f"CN*{loc['party_id']}*{loc['id']}": loc for loc in (await response.json())["data"]}
            runtime, task, port = await runtimes(
                ["ocpi-push", "sh-charging-locations"],
                urls={"sh-charging-locations": f"{simulator}?limit=7"},
                intervals={"sh-charging-locations": 0.5},
            )
            (sync,) = runtime.location_syncs
            await until(lambda: sync.stats.polls >= 2 and bool(sync.last_sync), task)
            # Paging visits every Location once: pages of 7, every Location taken from the first sync.
            assert sync.last_sync["listed"] == sync.last_sync["locations"] == len(truth)
            assert sync.last_sync["pages"] == -(-len(truth) // 7)
            assert {key: runtime.locations.get(key) for key in truth} == truth
            assert sync.stats.rejects == 0

            fresh_key, stale_key = list(truth)[:2]
            fresh, stale = truth[fresh_key], truth[stale_key]
            sim_updated = datetime.fromisoformat(fresh["last_updated"])
            # A push newer than the sync's copy (the operator's change after the page was served): it stands.
            newer = {"status": "OUTOFORDER", "last_updated": ocpi_time(sim_updated + timedelta(days=1))}
            path = f"CN/{fresh['party_id']}/{fresh['id']}/{fresh['evses'][0]['uid']}"
            assert (await push(session, "PATCH", port, path, newer))["status_code"] == 1000  # known from the sync
            # A push older than the operator's state (delayed on the way): the next sync repairs it.
            old = datetime.fromisoformat(stale["last_updated"]) - timedelta(hours=1)
            older = {"status": "OUTOFORDER", "last_updated": ocpi_time(old)}
            path = f"CN/{stale['party_id']}/{stale['id']}/{stale['evses'][0]['uid']}"
            assert (await push(session, "PATCH", port, path, older))["status_code"] == 1000
            stored = runtime.locations.get(stale_key)
            assert stored is not None and stored["evses"][0]["status"] == "OUTOFORDER"
            # A Location of the same operator that the operator no longer lists: removed by the next sync.
            gone = {**stale, "id": "GONE1", "last_updated": ocpi_time(old)}
            assert (await push(session, "PUT", port, f"CN/{stale['party_id']}/GONE1", gone))["status_code"] == 1000
            gone_key = f"CN*{stale['party_id']}*GONE1"
            polls = sync.stats.polls
            await until(lambda: sync.stats.polls >= polls + 2, task)

            assert runtime.locations.get(stale_key) == stale  # reconciled to the operator's state
            kept = runtime.locations.get(fresh_key)
            assert kept is not None and kept["evses"][0]["status"] == "OUTOFORDER"
            assert sync.last_sync["kept_newer_push"] == 1
            removed = runtime.locations.get(gone_key)
            assert removed is not None and {e["status"] for e in removed["evses"]} == {"REMOVED"}
            others = {key: runtime.locations.get(key) for key in truth if key != fresh_key}
            assert gone_key not in truth
            assert others == {key: loc for key, loc in truth.items() if key != fresh_key}
            await runtime.sink.flush(30)
        # What a consumer of raw.charging sees last for each: the repaired state, and the newer push.
        raw = topic_prefix + "raw.charging"
        stale_records = await stations_in_kafka(settings.kafka_bootstrap, raw, stale_key)
        pushed = [r for r in stale_records if r.source == "ocpi-push"]
        repaired = stale_records[-1]
        assert pushed and pushed[-1].connectors[0].status == "FAULTED"
        assert repaired.source == "sh-charging-locations"
        assert repaired.connectors[0].status == EVSE_STATUS[stale["evses"][0]["status"]]
        # Newer than the stale push's record: the stream layer takes it as the latest state.
        assert repaired.observed_at > pushed[-1].observed_at
        (fresh_record, *_) = reversed(await stations_in_kafka(settings.kafka_bootstrap, raw, fresh_key))
        assert fresh_record.source == "ocpi-push" and fresh_record.connectors[0].status == "FAULTED"
        (gone_record, *_) = reversed(await stations_in_kafka(settings.kafka_bootstrap, raw, gone_key))
        assert gone_record.source == "sh-charging-locations" and gone_record.connectors == []
    finally:
        await runner.cleanup()


def test_shfeeds_run_starts_the_push_receiver() -> None:
    import argparse

    from shfeeds_cli.cmd_run import children

    for no_simulator in (False, True):
        args = argparse.Namespace(no_simulator=no_simulator, buses=None, seed=1, time_scale=1.0)
        specs = {spec.name: spec for spec in children(args, settings_mod.load())}
        assert specs["adapter ocpi-push"].argv[-4:-2] == ["run", "ocpi-push"]
