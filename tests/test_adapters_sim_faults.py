"""The simulated city with faults switched on → the real adapter runtime → a Kafka of the test's own,
killed (SIGKILL) and restarted mid-run.

What is checked, against the bytes the simulator actually served (tapped on the server side):
- every good record arrives in raw.<feed> (in-response duplicates and unchanged records skipped), byte for
  byte, including those served while Kafka was down, and nothing else does;
- the raw topics are at-least-once (docs/contracts.md): the adapter decides to send each record once, and a
  record appears more than once in Kafka only as a whole batch written again, right after the broker was
  killed (measured: Kafka 4.1.1, killed with SIGKILL, wrote an idempotent producer's retried batch a second
  time under the same producer id and sequence numbers, in 3 of 5 runs here) or when the sink replaced a
  dead producer; each extra copy is byte-identical, and the stream cleaner drops every one of them, so no
  duplicate goes further;
- every bad item arrives in dlq.<feed> with its original bytes, the source and a reason, and their number
  matches what the simulator says it injected.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

import settings as settings_mod
from access.identity import kafka_options
from adapters.formats import get_format
from adapters.runtime import AdapterRuntime, KafkaSink
from adapters.runtime.change_filter import fingerprint, next_refresh
from adapters.runtime.sources import SOURCES
from adapters.simulators.city import SimulatedCity
from adapters.simulators.server import build_app
from schemas import decode_dead_letter, decode_kafka, dlq_topic, encode_kafka, raw_topic, to_dict
from schemas.validity import TTL_MS
from shfeeds_cli import stack
from streams.logic.cleaning import Cleaner

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

START_MS = 1_795_743_000_000  # 2026-11-27 06:50 UTC = 14:50 Beijing, a Friday: metro and buses running
SOURCE_OF_FEED = {"bus": "sh-bus", "metro": "sh-metro", "parking": "sh-parking"}
POLL_S = 0.4


class Tap:
    """Every 200 body the simulator served, per path, in the order served."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = collections.defaultdict(list)
        self.recording = True

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        if (
            self.recording
            and response.status == 200
            and isinstance(response, web.Response)
            and not request.path.startswith("/_")
        ):
            assert isinstance(response.body, bytes)
            self.bodies[request.path].append(response.body)
        return response


def expected_from_served(source: str, bodies: list[bytes]) -> tuple[collections.Counter[Any], list[bytes]]:
    """What the runtime must have produced for these bodies: changed records (as Kafka values) and the
    original bytes of every reject. Consecutive identical bodies are one (the adapter skips the repeat).
    Unchanged content is sent again once it would stay current past the sent copy's next refresh mark."""
    config = SOURCES[source]
    parse = get_format(config.format).parse
    last: dict[str, tuple[bytes, int]] = {}
    values: collections.Counter[Any] = collections.Counter()
    originals: list[bytes] = []
    previous = None
    for body in bodies:
        if body == previous:
            continue
        previous = body
        result = parse(body, source=source, received_at_ms=int(time.time() * 1000), **config.options)
        for record in result.records:
            mark = fingerprint(record)
            sent = last.get(record.id)
            if sent is None or sent[0] != mark or record.expires_at >= sent[1]:
                last[record.id] = (mark, next_refresh(record.id, record.expires_at, TTL_MS[config.feed]))
                values[(record.id, encode_kafka(record))] += 1
        originals.extend(letter.original for letter in result.rejects)
    return values, originals


def assert_cleaner_drops_repeats(feed: str, raw: list[Any]) -> None:
    """The stream cleaner, fed the raw topic partition by partition as a worker is, accepts each record
    (entity, observed_at, expires_at) at most once: repeats written by a replaced producer stop there."""
    by_partition: dict[int, list[Any]] = collections.defaultdict(list)
    for message in raw:
        by_partition[message.partition].append(message)
    cleaner = Cleaner(feed)
    accepted: collections.Counter[tuple[str, int, int]] = collections.Counter()
    for messages in by_partition.values():
        records = [to_dict(decode_kafka(feed, m.value)) for m in sorted(messages, key=lambda m: m.offset)]
        now = max(r["observed_at"] for r in records)
        for record in cleaner.clean(records, now).accepted:
            accepted[(record["id"], record["observed_at"], record["expires_at"])] += 1
    again = {key: n for key, n in accepted.items() if n > 1}
    assert not again, f"{feed}: the cleaner let {len(again)} repeated records through, e.g. {next(iter(again))}"


def assert_repeats_are_batches_written_again(feed: str, raw: list[Any]) -> None:
    """Every extra copy in a partition belongs to a run of consecutive offsets that repeats, record for
    record, a run written earlier in that partition: a batch the broker took twice, not a record the
    adapter sent again on its own."""
    by_partition: dict[int, list[Any]] = collections.defaultdict(list)
    for message in raw:
        by_partition[message.partition].append(message)
    for partition, messages in by_partition.items():
        messages.sort(key=lambda m: m.offset)
        first: dict[tuple[bytes, bytes], int] = {}
        copies: list[tuple[int, int]] = []  # (offset of the copy, offset of the original)
        for m in messages:
            key = (m.key, m.value)
            if key in first:
                copies.append((m.offset, first[key]))
            else:
                first[key] = m.offset
        runs: list[list[tuple[int, int]]] = []
        for copy in copies:
            if runs and copy[0] == runs[-1][-1][0] + 1:
                runs[-1].append(copy)
            else:
                runs.append([copy])
        for run in runs:
            originals = [o for _, o in run]
            assert originals == list(range(originals[0], originals[0] + len(run))), (
                f"{feed}[{partition}]: copies at offsets {run[0][0]}..{run[-1][0]} do not repeat one earlier batch"
            )


async def read_all(bootstrap: str, topics: list[str]) -> dict[str, list[Any]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = []
        for topic in topics:
            for _ in range(50):
                found = consumer.partitions_for_topic(topic)
                if found:
                    break
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
            partitions += [TopicPartition(topic, p) for p in sorted(found or [])]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        out: dict[str, list[Any]] = collections.defaultdict(list)
        remaining = {tp for tp in partitions if end[tp] > 0}
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=1000)).items():
                out[tp.topic].extend(messages)
                if messages and messages[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
        assert not remaining, f"could not read to the end of {remaining}"
        return out
    finally:
        await consumer.stop()


def kill_kafka(kafka: stack.KafkaService) -> None:
    pid = int(kafka.pid_file.read_text())
    os.kill(pid, signal.SIGKILL)  # the harshest stop: no flush, no clean shutdown
    for _ in range(100):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not stack.port_open(kafka.settings.kafka_port):
            return
        time.sleep(0.1)
    raise AssertionError("Kafka still answers after SIGKILL")


async def set_fault(session: aiohttp.ClientSession, base: str, feed: str, **spec: Any) -> None:
    async with session.post(f"{base}/_faults", json={"feed": feed, **spec}) as response:
        assert response.status == 200, await response.text()


async def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_simulator_faults_and_a_kafka_restart_lose_nothing_and_repeats_stop_at_the_cleaner(
    isolated_stack: settings_mod.Settings,
) -> None:
    own = isolated_stack
    city = SimulatedCity(seed=11, start_ms=START_MS, time_scale=10.0, buses=300, lots=150, connectors=200)
    tap = Tap()
    app = build_app(
        city,
        faults={
            "bus": {"fault": "garbage", "rate": 0.05},
            "parking": {"fault": "duplicates", "rate": 0.2},
            "metro": {"fault": "time_jump", "jump_s": -600},
        },
    )
    app.middlewares.append(tap.middleware)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    paths = {feed: city.feeds[feed].path for feed in SOURCE_OF_FEED}

    sink = KafkaSink(own.kafka_bootstrap, request_timeout_ms=10_000, close_timeout_s=60.0)
    runtime = AdapterRuntime(own, sink=sink)
    sources = list(SOURCE_OF_FEED.values())
    task = asyncio.create_task(
        runtime.run(
            sources,
            urls={SOURCE_OF_FEED[f]: base + p for f, p in paths.items()},
            intervals=dict.fromkeys(sources, POLL_S),
            create_topics=False,  # the isolated stack made them
        )
    )
    kafka = stack.KafkaService(own)
    try:
        async with aiohttp.ClientSession() as control:
            await wait_for(lambda: sink.stats.delivered > 500, 30, "first deliveries")
            served_before = {f: len(tap.bodies[p]) for f, p in paths.items()}

            await asyncio.to_thread(kill_kafka, kafka)
            await set_fault(control, base, "metro", fault="garbage", rate=0.05)
            await asyncio.sleep(3.0)  # polling on while Kafka is gone
            held_while_down = sink.stats.buffered
            served_while_down = {f: len(tap.bodies[p]) - served_before[f] for f, p in paths.items()}

            assert kafka.start()
            await asyncio.to_thread(kafka.wait_ready, 90.0)
            await set_fault(control, base, "bus", fault="duplicates", rate=0.1)
            delivered_at_restart = sink.stats.delivered
            await wait_for(lambda: sink.stats.delivered > delivered_at_restart + 200, 60, "deliveries after restart")
            await asyncio.sleep(1.5)
            # Hold every source (stall) so nothing is served that the runtime might not have read, then stop.
            for feed in SOURCE_OF_FEED:
                await set_fault(control, base, feed, fault="stall", stall_s=600)
            await asyncio.sleep(POLL_S * 3)
            async with control.get(f"{base}/_stats") as response:
                injected = await response.json()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Release the stalled requests (their client is gone) so the server stops at once.
        tap.recording = False
        async with aiohttp.ClientSession() as control, control.delete(f"{base}/_faults"):
            pass
        await runner.cleanup()

    assert held_while_down > 0 and all(n > 0 for n in served_while_down.values()), (held_while_down, served_while_down)
    assert sink.stats.buffered == 0 and sink.stats.undeliverable == 0

    got = await read_all(own.kafka_bootstrap, [t for f in SOURCE_OF_FEED for t in (raw_topic(f), dlq_topic(f))])
    for feed, source in SOURCE_OF_FEED.items():
        expected, originals = expected_from_served(source, tap.bodies[paths[feed]])
        raw = got.get(raw_topic(feed), [])
        produced = collections.Counter((m.key.decode(), m.value) for m in raw)
        assert set(produced) == set(expected), (
            f"{feed}: {len(set(expected) - set(produced))} good records missing, "
            f"{len(set(produced) - set(expected))} unexpected"
        )
        repeated = sum((produced - expected).values())
        assert_repeats_are_batches_written_again(feed, raw)
        assert_cleaner_drops_repeats(feed, raw)
        assert all(dict(m.headers)["source"] == source.encode() for m in raw)
        letters = [decode_dead_letter(m.value) for m in got.get(dlq_topic(feed), [])]
        sent_letters = collections.Counter(letter.original for letter in letters)
        assert set(sent_letters) == set(originals)
        letters_repeated = len(letters) - len(originals)
        assert letters_repeated >= 0
        assert all(letter.reason and letter.source == source and letter.feed == feed for letter in letters)
        stats = runtime.stats[source]
        assert stats.records == sum(expected.values()) == len(raw) - repeated
        assert stats.rejects == len(originals)
        garbage = injected[feed].get("garbage_records", 0)
        assert len(originals) == garbage, f"{feed}: {len(originals)} dead letters for {garbage} injected bad records"
        assert stats.skipped >= injected[feed].get("duplicate_records", 0)
    assert injected["bus"]["garbage_records"] > 0 and injected["metro"]["garbage_records"] > 0
    assert injected["parking"]["duplicate_records"] > 0 and injected["bus"]["duplicate_records"] > 0
