"""The service under test: a stack of its own, the components supervised as ``shfeeds run`` supervises them,
and the blows (SIGKILL of a broker, a component, Redis). The chaos run and the soak (``bench/soak``) use it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

import settings as settings_mod
from access.identity import kafka_options
from shfeeds_cli import stack
from shfeeds_cli.supervisor import ChildSpec, Supervisor, component_argv

# Ports of a chaos run unless SHFEEDS_* says otherwise: clear of a developer's own stack (18xxx/19xxx),
# since the run kills brokers.
CHAOS_DEFAULTS = {
    "SHFEEDS_STACK_DIR": str(settings_mod.PROJECT_ROOT / ".stack" / "chaos"),
    "SHFEEDS_CACHE_DIR": str(settings_mod.PROJECT_ROOT / ".stack" / "cache"),
    "SHFEEDS_KAFKA_PORT": "29092",
    "SHFEEDS_KAFKA_CONTROLLER_PORT": "29093",
    "SHFEEDS_REDIS_PORT": "26379",
    "SHFEEDS_SIMULATOR_PORT": "28080",
    "SHFEEDS_WS_PORT": "28765",
    "SHFEEDS_CONTROL_PLANE_PORT": "28770",
    "SHFEEDS_KAFKA_BROKERS": "3",
    "SHFEEDS_KAFKA_HEAP": "384m",
}


def chaos_environment() -> dict[str, str]:
    """This process's environment with the chaos run's defaults for whatever it does not set."""
    env = dict(os.environ)
    for name, value in CHAOS_DEFAULTS.items():
        env.setdefault(name, value)
    return env


def chaos_children(buses: int, seed: int = 7) -> Callable[[settings_mod.Settings], list[ChildSpec]]:
    """The components a chaos run blows at: the bus feed from simulator to WebSocket server."""

    def children(settings: settings_mod.Settings) -> list[ChildSpec]:
        return [
            ChildSpec(
                "simulator",
                component_argv("simulate", "--buses", str(buses), "--seed", str(seed)),
                ready_port=settings.simulator_port,
            ),
            ChildSpec("adapter sh-bus", component_argv("adapter", "run", "sh-bus")),
            ChildSpec("streams", component_argv("streams", "worker", "--no-aggregates")),
            ChildSpec(
                "ws-server",
                component_argv("serve", "--network-seed", str(seed), "--network-buses", str(buses)),
            ),
        ]

    return children


def cli(env: dict[str, str], *args: str) -> str:
    """``shfeeds ARGS`` with the run's environment; its standard output."""
    done = subprocess.run(component_argv(*args), env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


class Service:
    """The stack and the supervised components of one chaos run."""

    def __init__(
        self, env: dict[str, str], log_path: Path, children: Callable[[settings_mod.Settings], list[ChildSpec]]
    ) -> None:
        self.env = env
        os.environ.update(env)  # the supervisor starts the children with this process's environment
        self.settings = settings_mod.load()
        self.log_path = log_path
        self.children = children(self.settings)
        self.supervisor = Supervisor(self.settings, self.children, watch_stack=False)
        self._task: asyncio.Task[None] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.settings.ws_port}/"

    def stack_up(self) -> None:
        stack.up(self.settings, quiet=True)

    def stack_down(self) -> None:
        with contextlib.redirect_stdout(sys.stderr):
            stack.down(self.settings)

    async def start(self) -> None:
        self._log = self.log_path.open("a", buffering=1)
        self._redirect = contextlib.redirect_stdout(self._log)
        self._redirect.__enter__()  # the supervisor and its children's lines go to the log file
        self._task = asyncio.create_task(self.supervisor.run())

    async def stop(self) -> None:
        self.supervisor._on_signal()  # as Ctrl-C would
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 60)
        self._redirect.__exit__(None, None, None)
        self._log.close()

    def child(self, name: str) -> ChildSpec:
        return next(c for c in self.children if c.name == name)

    def pid(self, name: str) -> int | None:
        proc = self.child(name).process
        return proc.pid if proc is not None and proc.returncode is None else None

    async def kill_child(self, name: str) -> int:
        """SIGKILL a component; the supervisor starts it again. Returns the pid killed."""
        pid = self.pid(name)
        assert pid is not None, f"{name} is not running"
        os.kill(pid, signal.SIGKILL)
        return pid

    async def wait_restarted(self, name: str, old_pid: int, timeout_s: float = 60.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            pid = self.pid(name)
            if pid is not None and pid != old_pid:
                return time.monotonic() - started
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{name} was not restarted within {timeout_s:.0f} s")

    def rss_bytes(self, name: str) -> int | None:
        """Resident memory of a component's process (and of its children: ``serve`` may fork workers)."""
        pid = self.pid(name)
        if pid is None:
            return None
        total = 0
        for p in [pid, *_children(pid)]:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def cpu_seconds(self, name: str) -> float | None:
        """User + system CPU a component's process (and its children) used so far."""
        pid = self.pid(name)
        if pid is None:
            return None
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for p in [pid, *_children(pid)]:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / tick

    # ------------------------------------------------------------------------------------------ stack blows

    async def leader_broker(self, topic: str, partition: int = 0) -> stack.KafkaService:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap, **kafka_options())
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        leader = next(p["leader"] for p in described["partitions"] if p["partition"] == partition)
        return next(b for b in stack.brokers(self.settings) if b.index + 1 == leader)

    @staticmethod
    async def kill_service(service: stack.KafkaService | stack.RedisService) -> None:
        pid = int(service.pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        for _ in range(200):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not stack.port_open(int(service.address.rsplit(":", 1)[1])):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{service.name} still answers after SIGKILL")

    @staticmethod
    async def restart_service(service: stack.KafkaService | stack.RedisService, timeout_s: float = 120.0) -> None:
        """Start it again, as ``shfeeds run``'s watchdog does for a stack process that died."""
        await asyncio.to_thread(service.start)
        await asyncio.to_thread(service.wait_ready, timeout_s)

    def redis(self) -> stack.RedisService:
        return stack.RedisService(self.settings)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return {tp.partition: o for tp, o in (await consumer.end_offsets(partitions)).items()}
    finally:
        await consumer.stop()


async def read_range(
    bootstrap: str, topic: str, start: dict[int, int], end: dict[int, int], timeout_s: float = 120.0
) -> list[dict[str, Any]]:
    """The decoded values of ``topic`` from ``start`` to ``end`` (exclusive) per partition, in log order per
    partition; keys are kept as ``_key``."""
    tps = [TopicPartition(topic, p) for p in sorted(end) if end[p] > start.get(p, 0)]
    if not tps:
        # Nothing to read; and a consumer stopped right after its start can raise its own task's
        # cancellation (aiokafka's group coordinator), so none is started.
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, **kafka_options(), enable_auto_commit=False, max_partition_fetch_bytes=8 << 20
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start.get(tp.partition, 0))
        remaining = set(tps)
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=1000, max_records=20_000)).items():
                for m in messages:
                    if m.offset >= end[tp.partition]:
                        break
                    if m.value is not None:
                        value = msgpack.unpackb(m.value, raw=False)
                        if isinstance(value, dict):
                            value["_key"] = m.key.decode() if m.key else None
                            out.append(value)
                if messages and messages[-1].offset + 1 >= end[tp.partition]:
                    remaining.discard(tp)
        if remaining:
            raise TimeoutError(f"could not read {topic} to its end offsets {end}")
        return out
    finally:
        await consumer.stop()


def with_brokers(settings: settings_mod.Settings, brokers: int) -> settings_mod.Settings:
    return dataclasses.replace(settings, kafka_brokers=brokers)
