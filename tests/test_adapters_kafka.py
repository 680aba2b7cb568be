"""HTTP source with good records, garbage and duplicates → runtime → the real Kafka.

Every good record must arrive once in raw.<feed> (keyed by entity, timestamped with observed_at, header
source), every bad one in dlq.<feed> with its original bytes and a reason.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from access.identity import kafka_options
from adapters.formats.common import BEIJING
from adapters.formats.ocpi_auth import authorization_header
from adapters.formats.sh_envelope import CHUNK_ITEMS
from adapters.runtime.change_filter import next_refresh
from adapters.runtime.kafka_sink import KafkaSink
from adapters.runtime.polling_adapter import PollingAdapter
from adapters.runtime.push import BASE_PATH, PushReceiver
from kafka_admin import ensure_topics
from schemas import decode_dead_letter, decode_kafka, dlq_topic, raw_topic
from schemas.validity import TTL_MS

from .adapters_helpers import shared
from .streams_support import topic_prefix_fixture  # noqa: F401  (the fixture, by its name)
from .test_adapters_shanghai import documented_example

pytestmark = pytest.mark.stack


async def _end_offsets(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or []]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or []]
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def _read_from(bootstrap: str, start: dict[TopicPartition, int], source: str) -> dict[str, list]:
    """Everything written after ``start`` by ``source`` (other tests share these topics)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options(), enable_auto_commit=False)
    await consumer.start()
    out: dict[str, list] = {}
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        end = await consumer.end_offsets(list(start))
        remaining = {tp for tp in start if end[tp] > start[tp]}
        while remaining:
            batches = await consumer.getmany(timeout_ms=2000)
            if not batches:
                break
            for tp, messages in batches.items():
                for m in messages:
                    if dict(m.headers).get("source") == source.encode():
                        out.setdefault(tp.topic, []).append(m)
                if messages and messages[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


async def _serve_bus(handler: Any) -> tuple[web.AppRunner, str]:
    """A Shanghai bus endpoint answered by ``handler`` on a free port: its runner and URL."""
    app = web.Application()
    app.router.add_get("/bus/gps.json", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/bus/gps.json"


@contextlib.asynccontextmanager
async def _bus_adapter(bootstrap: str, topic_prefix: str, url: str, **options: Any) -> AsyncIterator[PollingAdapter]:
    """A bus adapter polling ``url`` into a Kafka sink of its own, which is flushed and closed after."""
    sink = KafkaSink(bootstrap, topic_prefix=topic_prefix)
    await sink.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield PollingAdapter(format_name="sh-bus-gps", url=url, session=session, sink=sink, **options)
        await sink.flush(timeout_s=60)
    finally:
        await sink.close()


def _bus(example_item: dict, obu: str, **change) -> dict:
    return {**example_item, "obuId": obu, **change}


def _moved_short_of_refresh(item: dict) -> str:
    """``item``'s ``gpsTime`` moved on by up to 30 s, but not to the bus's refresh mark (change_filter.py)."""
    reported = datetime.fromisoformat(item["gpsTime"]).replace(tzinfo=BEIJING)
    expires = int(reported.timestamp() * 1000) + TTL_MS["bus"]
    due = next_refresh(item["obuId"], expires, TTL_MS["bus"]) - expires
    later = reported + timedelta(seconds=min(30, (due - 1) // 1000))
    return later.strftime("%Y-%m-%d %H:%M:%S")


async def test_good_records_once_in_raw_bad_ones_in_dlq(kafka_bootstrap, running_stack, unique_name, topic_prefix):
    name = unique_name("src")
    prefix = name[-12:]
    topics = [topic_prefix + raw_topic("bus"), topic_prefix + dlq_topic("bus")]
    await ensure_topics(kafka_bootstrap, running_stack.topic_partitions, names=topics)

    example = documented_example("sh-bus-gps")
    good = example["data"][0]
    ids = [f"{prefix}-{i}" for i in range(4)]
    garbage_item = {"obuId": f"{prefix}-bad", "lng": "east", "lat": 31.2}
    far_away = _bus(good, f"{prefix}-far", lng=2.35, lat=48.85, coordType="wgs84")
    first = {
        **example,
        "data": [
            _bus(good, ids[0]),
            _bus(good, ids[1], lng=121.5),
            garbage_item,
            _bus(good, ids[2], lat=31.1),
            far_away,
            "not an object",
        ],
    }
    # Second poll: the same buses with only times moved (duplicates: not as far as a bus's refresh mark,
    # which would send it again), one repeated inside the response, and one new bus.
    second = copy.deepcopy(first)
    second["data"] = [
        _bus(d, d["obuId"], gpsTime=_moved_short_of_refresh(d), seq=d.get("seq", 0) + 1) for d in first["data"][:2]
    ]
    second["data"] += [second["data"][0], _bus(good, ids[3], lng=121.6)]
    garbage_response = b"\x1f\x8b garbage, not JSON"
    responses = [
        json.dumps(first).encode(),
        json.dumps(first).encode(),
        json.dumps(second).encode(),
        garbage_response,
        None,
    ]

    async def handler(request: web.Request) -> web.Response:
        body = responses.pop(0)
        if body is None:
            return web.Response(status=500)
        return web.Response(body=body, content_type="application/json")

    runner, url = await _serve_bus(handler)

    start = await _end_offsets(kafka_bootstrap, topics)
    try:
        async with _bus_adapter(kafka_bootstrap, topic_prefix, url, name=name, interval_s=1, timeout_s=5) as adapter:
            for _ in range(4):
                await adapter.poll_once()
            with pytest.raises(Exception, match="HTTP 500"):
                await adapter.poll_once()
    finally:
        await runner.cleanup()

    stats = adapter.stats
    assert (stats.polls, stats.not_modified, stats.errors) == (5, 1, 1)  # the repeated body is not re-read
    assert stats.records == 4 and stats.skipped == 3
    got = await _read_from(kafka_bootstrap, start, name)
    raw = got.get(topic_prefix + raw_topic("bus"), [])
    records: list[Any] = [decode_kafka("bus", m.value) for m in raw]
    assert sorted(r.id for r in records) == sorted(ids)  # each good bus exactly once
    for message, record in zip(raw, records, strict=True):
        assert message.key == record.id.encode() and message.timestamp == record.observed_at
        assert record.source == name and 121.0 < record.lng < 122.0
    letters = [decode_dead_letter(m.value) for m in got.get(topic_prefix + dlq_topic("bus"), [])]
    originals = {letter.original for letter in letters}
    assert len(letters) == 4
    assert json.dumps(garbage_item, separators=(",", ":")).encode() in originals
    assert json.dumps(far_away, separators=(",", ":"), ensure_ascii=False).encode() in originals
    assert b'"not an object"' in originals and garbage_response in originals
    assert all(letter.reason and letter.source == name and letter.feed == "bus" for letter in letters)
    assert {m.key for m in got[topic_prefix + dlq_topic("bus")]} == {name.encode()}


async def test_a_whole_fleet_response_reaches_kafka_while_it_is_still_being_parsed(
    kafka_bootstrap, running_stack, unique_name, topic_prefix
):
    """The first chunks of a city-sized response are acknowledged by Kafka before the poll has built the
    last one, so the stream worker can start on them (docs/benchmarks-e2e.md). Built on the event loop, the
    chunks left the adapter only once the whole body was parsed."""
    prefix = unique_name("fleet")[-12:]
    await ensure_topics(
        kafka_bootstrap,
        running_stack.topic_partitions,
        names=[topic_prefix + raw_topic("bus"), topic_prefix + dlq_topic("bus")],
    )
    example = documented_example("sh-bus-gps")
    good = example["data"][0]
    buses = 20 * CHUNK_ITEMS
    fleet = [_bus(good, f"{prefix}-{i}", lng=121.2 + i / buses / 2, lat=31.0 + i / buses / 2) for i in range(buses)]
    body = json.dumps({**example, "data": fleet}).encode()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    runner, url = await _serve_bus(handler)
    try:
        async with _bus_adapter(
            kafka_bootstrap, topic_prefix, url, name=prefix, interval_s=10, timeout_s=30
        ) as adapter:
            await adapter.poll_once()
            acknowledged_when_parsed = adapter.ingestor.sink.stats.delivered
    finally:
        await runner.cleanup()
    assert adapter.stats.records == buses and adapter.ingestor.sink.stats.delivered == buses
    assert acknowledged_when_parsed >= CHUNK_ITEMS, acknowledged_when_parsed


async def test_ocpi_push_receiver_to_kafka(kafka_bootstrap, running_stack, unique_name, topic_prefix):
    name = unique_name("ocpi")
    topics = [topic_prefix + raw_topic("charging"), topic_prefix + dlq_topic("charging")]
    await ensure_topics(kafka_bootstrap, running_stack.topic_partitions, names=topics)
    location = shared("ocpi", "v2.2.1", "location_example.json").read_bytes()
    patch_status = shared("ocpi", "v2.2.1", "location_patch_example_status.json").read_bytes()
    put_evse = shared("ocpi", "v2.2.1", "location_put_example_add_evse.json").read_bytes()

    start = await _end_offsets(kafka_bootstrap, topics)
    sink = KafkaSink(kafka_bootstrap, topic_prefix=topic_prefix)
    await sink.start()
    receiver = PushReceiver(name=name, sink=sink, token="cpo-secret")
    await receiver.start("127.0.0.1", 0)
    base = f"http://127.0.0.1:{receiver.port}{BASE_PATH}/BE/BEC"
    try:
        async with aiohttp.ClientSession() as session:

            async def send(
                method: str, path: str, body: bytes, auth: str | None = authorization_header("cpo-secret")
            ) -> tuple[int, dict]:
                headers = {"Authorization": auth} if auth else {}
                async with session.request(method, base + path, data=body, headers=headers) as response:
                    return response.status, await response.json()

            # Strangers are refused before anything is parsed, and their bodies are not dead letters.
            assert (await send("PUT", "/LOC1", location, auth=None))[0] == 401
            status, reply = await send("PUT", "/LOC1", location, auth=authorization_header("guess"))
            assert (status, reply["status_code"]) == (401, 2000)
            assert receiver.stats.errors == 2 and receiver.stats.records == 0
            assert (await send("PATCH", "/LOC1/3256", patch_status))[1]["status_code"] == 2003  # not known yet
            for _ in range(2):  # the repeated PUT changes nothing and is skipped
                status, reply = await send("PUT", "/LOC1", location)
                assert (status, reply["status_code"]) == (200, 1000)
            # An operator still on OCPI 2.1.1 sends the token plain: accepted too.
            status, reply = await send("PATCH", "/LOC1/3256", patch_status, auth="Token cpo-secret")
            assert (status, reply["status_code"]) == (200, 1000)
            status, reply = await send("PUT", "/LOC1/9999", put_evse)
            assert status == 200
            status, reply = await send("PATCH", "/LOC1/3256", b"not json")
            assert (status, reply["status_code"]) == (400, 2001)
        await sink.flush(timeout_s=60)
    finally:
        await receiver.stop()
        await sink.close()

    got = await _read_from(kafka_bootstrap, start, name)
    stations: list[Any] = [decode_kafka("charging", m.value) for m in got.get(topic_prefix + raw_topic("charging"), [])]
    # PUT (twice, the second unchanged and skipped), PATCH status, PUT EVSE: three distinct states.
    assert [len(s.connectors) for s in stations] == [3, 3, 4]
    assert [c.status for c in stations[1].connectors if c.id.startswith("3256:")] == ["CHARGING", "CHARGING"]
    assert stations[-1].observed_at == 1561379949000  # 2019-06-24T12:39:09Z from the pushes
    letters = [decode_dead_letter(m.value) for m in got.get(topic_prefix + dlq_topic("charging"), [])]
    assert [letter.original for letter in letters] == [patch_status, b"not json"]
    assert "unknown location" in letters[0].reason and "not valid JSON" in letters[1].reason


async def test_run_adapter_polls_until_cancelled_and_reports_figures(
    kafka_bootstrap, running_stack, unique_name, topic_prefix
):
    import asyncio

    from adapters.runtime import AdapterRuntime

    example = documented_example("sh-bus-gps")
    obu = unique_name("bus")[-40:]
    example["data"][0]["obuId"] = obu
    body = json.dumps(example).encode()

    async def handler(request: web.Request) -> web.Response:
        return (
            web.Response(body=body, headers={"ETag": '"same"'})
            if request.headers.get("If-None-Match") != '"same"'
            else web.Response(status=304)
        )

    runner, url = await _serve_bus(handler)
    # Under a topic prefix, as a second environment on the same Kafka would run.
    topics = [topic_prefix + raw_topic("bus"), topic_prefix + dlq_topic("bus")]
    await ensure_topics(kafka_bootstrap, running_stack.topic_partitions, names=topics)
    start = await _end_offsets(kafka_bootstrap, topics)
    runtime = AdapterRuntime(running_stack, topic_prefix=topic_prefix)
    task = asyncio.create_task(runtime.run(["sh-bus"], urls={"sh-bus": url}, create_topics=False))
    try:
        for _ in range(100):
            figures = runtime.figures()
            if figures["kafka"]["delivered"] >= 1:
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await runner.cleanup()
    bus = figures["sources"]["sh-bus"]
    assert bus["polls"] >= 1 and bus["records"] == 1 and bus["last_success_ms"]
    assert figures["kafka"]["delivered"] >= 1 and figures["kafka"]["buffered"] == 0
    got = await _read_from(kafka_bootstrap, start, "sh-bus")
    assert [decode_kafka("bus", m.value).id for m in got.get(topic_prefix + raw_topic("bus"), [])] == [obu]


async def test_sink_receipts_say_delivered_or_refused_for_good(kafka_bootstrap, running_stack, unique_name):
    from adapters.runtime.routing import OutMessage

    topic = unique_name("sink-receipts")
    await ensure_topics(kafka_bootstrap, 1, names=[topic])
    outcomes: list[tuple[str, bool]] = []
    sink = KafkaSink(kafka_bootstrap)
    await sink.start()
    try:
        too_big = OutMessage(
            topic, b"big", b"x" * 2_000_000, 1_795_000_000_000, [], lambda ok: outcomes.append(("big", ok))
        )
        fine = OutMessage(topic, b"fine", b"v", 1_795_000_000_000, [], lambda ok: outcomes.append(("fine", ok)))
        await sink.submit(too_big)
        await sink.submit(fine)
        await sink.flush(timeout_s=60)
    finally:
        await sink.close()
    # The refused message does not block the one behind it; both callers learn the outcome.
    assert sorted(outcomes) == [("big", False), ("fine", True)]
    assert sink.stats.undeliverable == 1 and sink.stats.delivered == 1 and sink.stats.buffered == 0
    assert "MessageSizeTooLarge" in (sink.stats.last_error or "")


async def test_adapter_run_command_writes_under_its_topic_prefix(kafka_bootstrap, running_stack, topic_prefix):
    import asyncio
    import contextlib
    import os
    import sys

    import settings as settings_mod
    from adapters.runtime import adapter_topics
    from kafka_admin import topic_partitions
    from schemas import Naming

    example = documented_example("sh-bus-gps")
    body = json.dumps(example).encode()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body)

    runner, url = await _serve_bus(handler)
    raw = topic_prefix + raw_topic("bus")
    env = {**os.environ, "SHFEEDS_KAFKA_BOOTSTRAP": kafka_bootstrap}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shfeeds_cli.main", "adapter", "run", "sh-bus", "--url", url, "--interval", "0.5",
        "--topic-prefix", topic_prefix, cwd=settings_mod.PROJECT_ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, **kafka_options(), auto_offset_reset="earliest")
    await consumer.start()
    try:
        got: list[Any] = []
        for _ in range(120):  # the adapter creates its topics under its prefix first
            partitions = [TopicPartition(raw, p) for p in await topic_partitions(kafka_bootstrap, raw)]
            if partitions:
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                break
            await asyncio.sleep(0.25)
        else:
            raise AssertionError(f"the adapter did not create {raw}")
        for _ in range(60):
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                got += [decode_kafka("bus", m.value) for m in messages]
            if got:
                break
        topics = await consumer.topics()
    finally:
        await consumer.stop()
        with contextlib.suppress(ProcessLookupError):  # it may have ended on its own: stderr says why
            proc.terminate()
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        await runner.cleanup()
    assert got and got[0].source == "sh-bus", stderr.decode()[-2000:]
    # The adapter creates the topics adapters write, and no other component's.
    assert set(adapter_topics(Naming(topic_prefix))) <= topics
    assert not [t for t in topics if t.startswith((topic_prefix + "tier.", topic_prefix + "pending."))]
