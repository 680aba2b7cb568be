"""A three-broker Kafka on this machine, as a real deployment runs it: replication factor 3,
min.insync.replicas 2, idempotent producers. A broker killed with SIGKILL under load and later restarted
costs nothing: every record the adapters' sink accepted arrives once, in order per entity."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

import settings as settings_mod
from access.identity import kafka_options
from adapters.runtime import KafkaSink
from adapters.runtime.routing import OutMessage
from kafka_admin import ensure_topics
from shfeeds_cli import stack

pytestmark = [pytest.mark.stack, pytest.mark.timeout(420)]

ENTITIES = 40


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_start() -> int:
    """Where the kernel's ports for outgoing connections begin. A port above it that is free when checked can
    be taken by any client socket before the brokers bind it, seconds later (a CI run failed so)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _free_port_runs(count: int, step: int = 2) -> tuple[int, int]:
    """Two base ports whose ``count`` ports ``step`` apart are all free: clients' and controllers'."""
    rng = random.Random()
    top = max(20_010, _ephemeral_start() - 2 * count * step)
    while True:
        base = rng.randrange(20_000, top, 10)
        ports = [base + i * step for i in range(count)] + [base + 1 + i * step for i in range(count)]
        if all(_free(p) for p in ports):
            return base, base + 1


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, running_stack: settings_mod.Settings
) -> Iterator[settings_mod.Settings]:
    """One cluster for the module: three JVMs take a while to start on two cores."""
    kafka_port, controller_port = _free_port_runs(3)
    own = settings_mod.Settings(
        stack_dir=tmp_path_factory.mktemp("cluster") / "stack",
        cache_dir=running_stack.cache_dir,
        kafka_port=kafka_port,
        kafka_controller_port=controller_port,
        kafka_brokers=3,
        redis_port=_free_port_runs(1)[0],
        kafka_heap="256m",
        topic_partitions=2,
    )
    stack.share_secrets(running_stack, own)
    try:
        stack.up(own, quiet=True)  # inside the try: a start that fails part-way leaves nothing running
        yield own
    finally:
        stack.down(own)


async def _partitions(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """Per partition: (leader, replicas, in-sync replicas)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_options())
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {p["partition"]: (p["leader"], p["replicas"], p["isr"]) for p in described["partitions"]}


async def _min_insync(bootstrap: str, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_options())
    await admin.start()
    try:
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    entries = {entry[0]: entry[1] for entry in configs[0].resources[0][4]}
    return entries["min.insync.replicas"]


async def test_three_brokers_keep_three_copies_and_need_two(cluster: settings_mod.Settings) -> None:
    parts = await _partitions(cluster.kafka_bootstrap, "raw.bus")
    assert cluster.kafka_bootstrap.count(",") == 2
    assert await _min_insync(cluster.kafka_bootstrap, "raw.bus") == "2"
    for leader, replicas, isr in parts.values():
        assert sorted(replicas) == [1, 2, 3] and sorted(isr) == [1, 2, 3] and leader in replicas


def _kill(service: stack.KafkaService) -> None:
    pid = int(service.pid_file.read_text())
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not stack.port_open(service.port):
            return
        time.sleep(0.1)
    raise AssertionError(f"{service.name} still answers after SIGKILL")


async def _read_all(bootstrap: str, topic: str) -> list[tuple[str, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        out: list[tuple[str, int]] = []
        remaining = {tp for tp in partitions if end[tp] > 0}
        deadline = time.monotonic() + 90
        while remaining and time.monotonic() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=1000)).items():
                out += [(m.key.decode(), int(m.value)) for m in messages]
                if messages and messages[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
        assert not remaining, f"could not read to the end of {remaining}"
        return out
    finally:
        await consumer.stop()


async def test_a_broker_killed_under_load_loses_and_repeats_nothing(cluster: settings_mod.Settings) -> None:
    topic = f"cluster-load-{os.getpid()}"
    await ensure_topics(cluster.kafka_bootstrap, 2, [topic], replication_factor=3)
    for _ in range(100):  # a new topic reaches every broker's metadata a moment after it is created
        parts = await _partitions(cluster.kafka_bootstrap, topic)
        if len(parts) == 2 and all(leader >= 0 for leader, _, _ in parts.values()):
            break
        await asyncio.sleep(0.2)
    leader = parts[0][0]  # the leader of partition 0 goes: its partitions must move under load
    victim = next(b for b in stack.brokers(cluster) if b.index + 1 == leader)

    sink = KafkaSink(cluster.kafka_bootstrap, request_timeout_ms=10_000, close_timeout_s=90.0)
    await sink.start()
    sent = 0
    stop = asyncio.Event()

    async def produce() -> None:
        nonlocal sent
        while not stop.is_set():
            for _ in range(50):
                await sink.submit(
                    OutMessage(topic, f"e{sent % ENTITIES}".encode(), str(sent).encode(), int(time.time() * 1000), [])
                )
                sent += 1
            await asyncio.sleep(0.05)  # ~1,000 records/s

    producer = asyncio.create_task(produce())
    try:
        await asyncio.sleep(4)
        delivered_before = sink.stats.delivered
        await asyncio.to_thread(_kill, victim)
        await asyncio.sleep(12)  # load goes on with two of three, once leaders moved (broker session: 4 s)
        delivered_while_down = sink.stats.delivered - delivered_before
        assert victim.start()
        await asyncio.to_thread(victim.wait_ready, 120.0)
        await asyncio.sleep(4)
    finally:
        stop.set()
        await producer
        await sink.close()
    assert delivered_while_down > 1_000, "writes stalled while one broker of three was down"
    assert sink.stats.buffered == 0 and sink.stats.undeliverable == 0 and sink.stats.producer_restarts == 0

    got = await _read_all(cluster.kafka_bootstrap, topic)
    counts = collections.Counter(value for _, value in got)
    assert set(counts) == set(range(sent)), f"{sent - len(counts)} of {sent} records lost"
    assert max(counts.values()) == 1, f"{sum(n - 1 for n in counts.values())} records repeated"
    last: dict[str, int] = {}
    for key, value in got:  # per partition in offset order, so per entity in the order sent
        assert last.get(key, -1) < value, f"{key}: {value} after {last[key]}"
        last[key] = value
