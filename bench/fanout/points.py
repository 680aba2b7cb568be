"""One measured point of the fan-out capacity benchmark: start the node(s), connect the clients, offer the input
for a window, read what the clients saw and what it cost; optionally drop every connection and let them all
resume while input continues (the reconnect storm).

Latency is the Go load generator's: the producer stamps ``sent_ms`` on each record before Kafka, the client
takes it off on receipt, for every record of every frame, with no clamp (a backlog shows as its true maximum).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.fanout.run import ROOT, LoadGen, Server, cpu_s, machine_busy, primed, produce, rss_kb, socket_queues
from bench.fanout.sockets import kernel_slab_kb, socket_memory
from ws_server.config import Naming, ServerConfig

P99_BOUND_MS = 200  # the bound for a phone client
# Unread bytes in client sockets growing over a window by this much, or by this many seconds of the window's
# traffic if that is more: clients fall behind. The share of one tick's burst a once-a-second sample catches
# is chance, and at a few hundred MB/s one 20 ms tick's frames alone are several MB.
BACKLOG_GROWTH_MB = 2.0
BACKLOG_GROWTH_S = 0.05


@dataclass(frozen=True)
class Point:
    mode: str  # serve_node's: grouped (ours), tick (fair baseline), baseline (one frame per record)
    clients: int
    viewports: int  # 0: the mixed filters; N: every client a phone viewport, N distinct
    rate: int  # input records per second
    processes: int = 1  # nodes sharing the port (SO_REUSEPORT)
    storm: bool = False  # after the window, drop every connection and resume them all
    tick_ms: int = ServerConfig.tick_ms  # the node's tick (bench/fanout/capacity.py gives the baseline its own)


@dataclass(frozen=True)
class Setup:
    bootstrap: str
    redis_url: str
    loadgen: Path
    port: int
    seconds: float
    server_cpu: str  # taskset list for a single node ('' = none); several nodes are never pinned
    loadgen_cpu: str
    codec: str = "msgpack"  # the clients' subprotocol: with JSON the load generator falls behind first


class Samples:
    """Every second while input runs (in a thread): unread client bytes, kernel socket memory, server RSS."""

    def __init__(self, port: int, pids: list[int], every_s: float = 1.0) -> None:
        self.port, self.pids, self.every_s = port, pids, every_s
        self.rows: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            _, client_rx = socket_queues(self.port)
            kernel = socket_memory(self.port)
            self.rows.append(
                {
                    "client_rx_mb": client_rx / 1e6,
                    "server_socket_kb": kernel.per_server_socket() / 1024,
                    "server_sockets": kernel.server_sockets,
                    "rss_mb": sum(rss_kb(pid) for pid in self.pids) / 1024,
                    "slab_mb": kernel_slab_kb() / 1024,
                }
            )

    def __enter__(self) -> Samples:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def backlog_growth_mb(rows: list[dict[str, float]]) -> float:
    """Unread client bytes: mean of the window's last third minus mean of its first third."""
    rx = [r["client_rx_mb"] for r in rows]
    if len(rx) < 3:
        return 0.0
    third = len(rx) // 3
    return statistics.fmean(rx[-third:]) - statistics.fmean(rx[:third])


def backlog_bound_mb(result: dict[str, Any]) -> float:
    """How much the clients' unread bytes may grow over a window (``mb_per_s``: what they received)."""
    return max(BACKLOG_GROWTH_MB, BACKLOG_GROWTH_S * (result.get("mb_per_s") or 0.0))


def overloaded(result: dict[str, Any]) -> bool:
    """Past the knee: p99 over the bound, clients' unread bytes growing, or connections closed as slow."""
    return (
        result["p99_ms"] < 0
        or result["p99_ms"] > P99_BOUND_MS
        or result["backlog_growth_mb"] > backlog_bound_mb(result)
        or max(result["slow_closes"], result.get("node_slow_closes", 0)) > 0
    )


def start_nodes(point: Point, setup: Setup, naming: Naming) -> list[Server]:
    argv = [
        sys.executable, "-m", "bench.fanout.serve_node", "--mode", point.mode, "--port", str(setup.port),
        "--topic-prefix", naming.topic_prefix, "--redis-prefix", naming.redis_prefix, "--tick-ms", str(point.tick_ms),
    ]  # fmt: skip
    if point.processes > 1:
        argv.append("--reuse-port")
    elif setup.server_cpu:
        argv = ["taskset", "-c", setup.server_cpu, *argv]
    nodes = [Server(argv) for _ in range(point.processes)]
    for node in nodes:
        assert node.proc.stdout is not None
        node.proc.stdout.readline()
    time.sleep(1.5)
    return nodes


def warm_up(point: Point, setup: Setup, url: str) -> None:
    """A few single connections load the feed (Redis snapshot + topic) on every node, so the figures that
    follow are the connections' own."""
    for _ in range(2 * point.processes):
        subprocess.run([str(setup.loadgen), "-url", url, "-clients", "1"], input="quit\n", text=True,
                       check=True, capture_output=True)  # fmt: skip
    time.sleep(1.0)


def distinct_filters(point: Point, setup: Setup) -> int:
    """How many different subscriptions the clients make (the server's streams for them)."""
    listed = subprocess.run(
        [str(setup.loadgen), "-clients", str(point.clients), "-viewports", str(point.viewports), "-list-filters"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return len(orjson.loads(listed.stdout))


def measure(point: Point, setup: Setup) -> dict[str, Any]:
    with primed(setup.bootstrap, setup.redis_url, "benchcap") as naming:
        return measure_on(point, setup, naming)


def measure_on(point: Point, setup: Setup, naming: Naming) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{setup.port}/"
    nodes = start_nodes(point, setup, naming)
    pids = [n.proc.pid for n in nodes]  # taskset execs the node, so the pid is the node's
    result: dict[str, Any] = asdict(point)
    result["distinct_filters"] = distinct_filters(point, setup)
    gen: LoadGen | None = None
    try:
        warm_up(point, setup, url)
        rss_before = sum(rss_kb(p) for p in pids)
        slab_before = kernel_slab_kb()
        gen = LoadGen(setup.loadgen, url, point.clients, setup.loadgen_cpu or None, setup.codec,
                      ("-viewports", str(point.viewports)))  # fmt: skip
        result["connect_s"] = gen.read()["seconds"]
        time.sleep(3.0)
        idle = socket_memory(setup.port)
        result["kb_per_idle_connection"] = (sum(rss_kb(p) for p in pids) - rss_before) / point.clients
        result["kernel_kb_per_idle_connection"] = idle.per_server_socket() / 1024
        # Both ends of every connection are on this machine: the slab growth is theirs together.
        result["slab_kb_per_connection_both_ends"] = (kernel_slab_kb() - slab_before) / point.clients
        gen.command("measure")
        for node in nodes:
            node.command("reset")
        cpu_before, gen_before = sum(cpu_s(p) for p in pids), cpu_s(gen.proc.pid)
        busy_before, total_before = machine_busy()
        with Samples(setup.port, pids) as samples:
            result["input_records"] = asyncio.run(
                produce(setup.bootstrap, naming.tier_topic("public", "bus"), point.rate, setup.seconds, 7)
            )
            time.sleep(1.0)
        gen.command("stop")
        result.update(gen.read())
        window = setup.seconds + 1.0
        busy_after, total_after = machine_busy()
        result["server_cpu"] = (sum(cpu_s(p) for p in pids) - cpu_before) / window
        result["loadgen_cpu"] = (cpu_s(gen.proc.pid) - gen_before) / window
        result["machine_busy_cores"] = (busy_after - busy_before) / (total_after - total_before) * 2
        reports = [node.command("report") or {} for node in nodes]
        for key in ("conflated_frames", "slow_closes", "records_delivered", "send_buffer_bytes_total"):
            result[f"node_{key}"] = sum(r.get(key, 0) or 0 for r in reports)
        # Where the time goes, from the (first) node: Kafka record timestamp → read by the node, the record
        # read → its frame written to every member, and how long a tick takes (its target is 50 ms).
        first = reports[0] if reports else {}
        result["kafka_to_node_p99_ms"] = (first.get("kafka_to_node") or {}).get("p99_ms")
        result["node_to_written_p99_ms"] = (first.get("node_to_written") or {}).get("p99_ms")
        result["tick_ms_avg"] = first.get("tick_ms_avg")
        result["gc_ms_max"] = first.get("gc_ms_max")
        result["gc_ms_max_by_generation"] = first.get("gc_ms_max_by_generation")
        rows = samples.rows
        result["backlog_growth_mb"] = backlog_growth_mb(rows)
        result["client_rx_mb_max"] = max((r["client_rx_mb"] for r in rows), default=0.0)
        result["kb_per_connection"] = (
            max((r["rss_mb"] for r in rows), default=0.0) * 1024 - rss_before
        ) / point.clients
        result["kernel_kb_per_connection"] = statistics.fmean(r["server_socket_kb"] for r in rows) if rows else 0.0
        result["cpu_us_per_delivery"] = (
            result["server_cpu"] * 1e6 / result["deliveries_per_s"] if result["deliveries_per_s"] else None
        )
        result["overloaded"] = overloaded(result)
        if point.storm:
            result["storm"] = reconnect_storm(point, setup, naming, gen, pids)
    finally:
        if gen is not None:
            gen.close()
        for node in nodes:
            node.proc.terminate()
        for node in nodes:
            try:
                node.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.proc.kill()
    return result


def reconnect_storm(point: Point, setup: Setup, naming: Naming, gen: LoadGen, pids: list[int]) -> dict[str, Any]:
    """Drop every connection at once (no close handshake) while records keep flowing, and resume them all;
    server RSS and kernel socket memory sampled every 250 ms through it."""
    topic = naming.tier_topic("public", "bus")
    producing = subprocess.Popen(
        [sys.executable, "-c", (
            "import asyncio; from bench.fanout.run import produce; "
            f"asyncio.run(produce({setup.bootstrap!r}, {topic!r}, {point.rate}, 20, 9))"
        )],
        cwd=ROOT,
    )  # fmt: skip
    rss_before = sum(rss_kb(p) for p in pids) / 1024
    slab_before = kernel_slab_kb() / 1024
    try:
        time.sleep(1.0)
        with Samples(setup.port, pids, every_s=0.25) as samples:
            gen.command("resume")
            resumed = gen.read()
            time.sleep(3.0)
        gen.command("gaps")
        after = gen.read()
    finally:
        producing.wait()
    rows = samples.rows
    return {
        "seconds": resumed["seconds"],
        "resumed": resumed["resumed"],
        "reset": resumed["reset"],
        "gaps_after": after["gaps"],
        "rss_mb_before": rss_before,
        "rss_mb_peak": max((r["rss_mb"] for r in rows), default=0.0),
        "kernel_kb_per_socket_peak": max((r["server_socket_kb"] for r in rows), default=0.0),
        "slab_mb_before": slab_before,
        "slab_mb_peak": max((r["slab_mb"] for r in rows), default=0.0),
        "server_sockets_peak": max((r["server_sockets"] for r in rows), default=0),
    }
