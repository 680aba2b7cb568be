"""Fan-out benchmark: 10,000 WebSocket clients with mixed subscriptions under city-scale bus input.

Runs the real server (one process, grouped frames) and, in the same run, the baseline (the same node with
one ``broadcast()`` frame per record), each against the same Go load generator and the same input, then
prints a Markdown table (and writes it with --out). Needs the local Kafka and Redis and Go.

    .venv/bin/python -m bench.fanout.run --clients 10000 --rate 2000 --seconds 30 --codec msgpack \\
        --out docs/benchmarks-fanout.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import orjson
from aiokafka import AIOKafkaProducer

from access.identity import kafka_options
from bench.pipeline.run import delete_redis_keys
from kafka_admin import delete_topics_under
from ws_server.config import Naming
from ws_server.testing import TierWriter, create_tier_topics

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BOX = (121.20, 30.90, 121.80, 31.45)  # where the simulated buses drive (GCJ-02)
FLEET = 17_000  # Shanghai's bus fleet


STEP = (0.0016, 0.0014)  # at most ~150 m a report in each axis: a bus at 36 km/h between 15-second reports


def bus(n: int, point: tuple[float, float], sent_ms: int) -> dict[str, Any]:
    return {
        "id": f"bus-{n:05d}",
        "sent_ms": sent_ms,
        "lng": round(point[0], 6),
        "lat": round(point[1], 6),
        "route_id": str(n % 1500),
        "observed_at": sent_ms,
        "expires_at": sent_ms + 120_000,
        "crs": "gcj02",
        "policy_version": "bench",
    }


class Fleet:
    """Where each bus is: spread over the area at first, then each report a short step from the last one, so
    buses cross the edges of map viewports as often as driving buses do (a bus placed anywhere at each report
    would leave almost every viewport it was in, doubling the frames a viewport client gets)."""

    def __init__(self, seed: int = 1) -> None:
        rng = random.Random(seed)
        self.points = [(rng.uniform(BOX[0], BOX[2]), rng.uniform(BOX[1], BOX[3])) for _ in range(FLEET)]

    def report(self, n: int, rng: random.Random, sent_ms: int) -> dict[str, Any]:
        x, y = self.points[n]
        x = min(max(x + rng.uniform(-STEP[0], STEP[0]), BOX[0]), BOX[2])
        y = min(max(y + rng.uniform(-STEP[1], STEP[1]), BOX[1]), BOX[3])
        self.points[n] = (x, y)
        return bus(n, (x, y), sent_ms)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_s(pid: int) -> float:
    return sum(cpu_split(pid))


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return float(sum(fields) - idle), float(sum(fields))


def socket_queues(port: int) -> tuple[int, int]:
    """Bytes queued in the kernel on loopback TCP: (sent by the server, not yet acknowledged; received by
    clients, not yet read by them). Large unread client queues mean the load generator is behind."""
    server_tx = client_rx = 0
    hex_port = f"{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        local, remote, queues = parts[1], parts[2], parts[4]
        tx, rx = (int(v, 16) for v in queues.split(":"))
        if local.endswith(":" + hex_port):
            server_tx += tx
        elif remote.endswith(":" + hex_port):
            client_rx += rx
    return server_tx, client_rx


class Sampler:
    """Samples the kernel socket queues every second while the input runs (in a thread)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.samples: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append(socket_queues(self.port))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {}
        tx = [a for a, _ in self.samples]
        rx = [b for _, b in self.samples]
        return {
            "kernel_server_tx_mb_mean": sum(tx) / len(tx) / 1e6,
            "kernel_client_rx_mb_mean": sum(rx) / len(rx) / 1e6,
            "kernel_client_rx_mb_max": max(rx) / 1e6,
        }


class Server:
    """The benchmark node in a child process, with its stdin/stdout control channel."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )

    def command(self, line: str) -> dict[str, Any] | None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        if line != "report":
            return None
        answer: dict[str, Any] = orjson.loads(self.proc.stdout.readline())
        return answer


class LoadGen:
    def __init__(
        self, binary: Path, url: str, clients: int, cpu: str | None, codec: str, extra: tuple[str, ...] = ()
    ) -> None:
        argv = [str(binary), "-url", url, "-clients", str(clients), "-codec", codec, *extra]
        if cpu:
            argv = ["taskset", "-c", cpu, *argv]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self, timeout: float = 300) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the load generator exited")
        result: dict[str, Any] = orjson.loads(line)
        return result

    def close(self) -> None:
        try:
            self.command("quit")
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()


async def produce(bootstrap: str, topic: str, rate: int, seconds: float, seed: int) -> int:
    """City-scale input: ``rate`` bus positions per second, in 20 ms slices."""
    rng = random.Random(seed)
    fleet = Fleet()  # the positions prime() wrote
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, **kafka_options(), linger_ms=5, acks=1, max_batch_size=1 << 20
    )
    await producer.start()
    sent = 0
    try:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) - sent
            now_ms = int(time.time() * 1000)
            for _ in range(max(0, due)):
                record = fleet.report(rng.randrange(FLEET), rng, now_ms)
                await producer.send(topic, msgpack.packb(record), key=record["id"].encode())
                sent += 1
            await asyncio.sleep(0.02)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


@contextlib.contextmanager
def primed(bootstrap: str, redis_url: str, tag: str) -> Iterator[Naming]:
    """A fresh prefix with the fleet primed in it: a node started on it reads no earlier run's records (a
    node catching up on minutes of a shared topic would send them to its new clients as late deliveries).
    Its topics and Redis keys go on the way out: a fan-out ramp primes dozens, and once left behind they
    had grown the development stack to 900 topics and hundreds of megabytes of Redis."""
    prefix = f"{tag}-{uuid.uuid4().hex[:8]}"
    naming = Naming(prefix + ".", prefix)
    try:
        asyncio.run(prime(bootstrap, redis_url, naming))
        yield naming
    finally:
        asyncio.run(discard(bootstrap, redis_url, naming))


async def discard(bootstrap: str, redis_url: str, naming: Naming) -> None:
    await delete_topics_under(bootstrap, naming.topic_prefix)
    await delete_redis_keys(redis_url, naming.redis_prefix + ":")


async def prime(bootstrap: str, redis_url: str, naming: Naming) -> None:
    await create_tier_topics(bootstrap, naming, [("public", "bus")], partitions=4)
    fleet = Fleet()
    now_ms = int(time.time() * 1000)
    async with TierWriter(bootstrap, redis_url, naming) as writer:
        for start in range(0, FLEET, 2000):
            batch = [bus(n, fleet.points[n], now_ms) for n in range(start, min(FLEET, start + 2000))]
            await writer.put("public", "bus", batch)


def run_mode(mode: str, args: argparse.Namespace, naming: Naming, binary: Path) -> dict[str, Any]:
    port = args.port + (0 if mode == "grouped" else 1)
    server_argv = [
        sys.executable, "-m", "bench.fanout.serve_node", "--mode", mode, "--port", str(port),
        "--topic-prefix", naming.topic_prefix, "--redis-prefix", naming.redis_prefix, "--tick-ms", str(args.tick_ms),
    ]  # fmt: skip
    if args.server_cpu:
        server_argv = ["taskset", "-c", args.server_cpu, *server_argv]
    node = Server(server_argv)
    server = node.proc
    result: dict[str, Any] = {"mode": mode, "codec": args.codec}
    gen: LoadGen | None = None
    try:
        assert server.stdout is not None
        server.stdout.readline()
        time.sleep(1.5)
        pid = server.pid  # taskset execs the server, so the pid is the same
        # A first connection loads the feed (Redis snapshot + topic) so the idle figure is connections only.
        subprocess.run(
            [str(binary), "-url", f"ws://127.0.0.1:{port}/", "-clients", "1"],
            input="quit\n",
            text=True,
            check=True,
            capture_output=True,
        )
        time.sleep(1.0)
        rss_before = rss_kb(pid)
        gen = LoadGen(binary, f"ws://127.0.0.1:{port}/", args.clients, args.loadgen_cpu, args.codec)
        connected = gen.read()
        time.sleep(3.0)
        rss_after = rss_kb(pid)
        result["connect_s"] = connected["seconds"]
        result["kb_per_idle_connection"] = (rss_after - rss_before) / args.clients
        gen.command("measure")
        node.command("reset")
        cpu_before, gen_cpu_before, own_before = cpu_s(pid), cpu_s(gen.proc.pid), time.process_time()
        sys_before = cpu_split(pid)[1]
        busy_before, total_before = machine_busy()
        with Sampler(port) as sampler:
            topic = naming.tier_topic("public", "bus")
            sent = asyncio.run(produce(args.bootstrap, topic, args.rate, args.seconds, 7))
            time.sleep(1.0)
        gen.command("stop")
        measured = gen.read()
        window = args.seconds + 1.0
        busy_after, total_after = machine_busy()
        result.update(measured)
        result["server_cpu_s_per_s"] = (cpu_s(pid) - cpu_before) / window
        result["server_sys_cpu_s_per_s"] = (cpu_split(pid)[1] - sys_before) / window
        result["loadgen_cpu_s_per_s"] = (cpu_s(gen.proc.pid) - gen_cpu_before) / window
        result["producer_cpu_s_per_s"] = (time.process_time() - own_before) / window
        result["machine_busy_cores"] = (busy_after - busy_before) / (total_after - total_before) * (os.cpu_count() or 1)
        result["node"] = node.command("report")
        result.update(sampler.summary())
        result["input_records"] = sent
        if mode == "grouped":
            # Drop every connection at once while records keep flowing, then resume them all.
            producing = subprocess.Popen(
                [sys.executable, "-c", (
                    "import asyncio,sys; from bench.fanout.run import produce; "
                    f"asyncio.run(produce({args.bootstrap!r}, {naming.tier_topic('public', 'bus')!r}, "
                    f"{args.rate}, 20, 9))"
                )],
                cwd=ROOT,
            )  # fmt: skip
            time.sleep(1.0)
            gen.command("resume")
            resumed = gen.read()
            time.sleep(3.0)
            gen.command("gaps")
            after = gen.read()
            producing.wait()
            result["resume_s"] = resumed["seconds"]
            result["resumed"] = resumed["resumed"]
            result["reset"] = resumed["reset"]
            result["gaps_after_resume"] = after["gaps"]
    finally:
        if gen is not None:
            gen.close()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    return result


def flatten(result: dict[str, Any]) -> dict[str, Any]:
    """The node's own latency report as top-level keys, for the table."""
    out = dict(result)
    node = result.get("node") or {}
    for stage in ("kafka_to_node", "node_to_written"):
        for key in ("p50_ms", "p99_ms"):
            out[f"{stage}_{key}"] = (node.get(stage) or {}).get(key)
    out["tick_ms_avg"] = node.get("tick_ms_avg")
    return out


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    grouped, baseline = (flatten(r) for r in results)
    ratio = grouped["deliveries_per_s"] / max(1.0, baseline["deliveries_per_s"])
    rows: list[tuple[str, str | tuple[str, ...], str]] = [
        ("record-deliveries/s", "deliveries_per_s", "{:,.0f}"),
        ("frames/s (received)", "frames_per_s", "{:,.0f}"),
        ("MB/s received", "mb_per_s", "{:,.1f}"),
        ("latency p50 (ms, produce → client)", "p50_ms", "{}"),
        ("latency p99 (ms, produce → client)", "p99_ms", "{}"),
        ("… of it: producer → node p50 / p99 (ms)", ("kafka_to_node_p50_ms", "kafka_to_node_p99_ms"), "{} / {}"),
        (
            "… of it: node → written to every member p50 / p99 (ms)",
            ("node_to_written_p50_ms", "node_to_written_p99_ms"),
            "{} / {}",
        ),
        ("tick duration, mean (ms; target 50)", "tick_ms_avg", "{}"),
        ("server CPU (cores busy)", "server_cpu_s_per_s", "{:.2f}"),
        ("… of it in the kernel (cores)", "server_sys_cpu_s_per_s", "{:.2f}"),
        ("load generator CPU (cores busy)", "loadgen_cpu_s_per_s", "{:.2f}"),
        ("producer CPU (cores busy)", "producer_cpu_s_per_s", "{:.2f}"),
        ("whole machine busy (of 2 cores)", "machine_busy_cores", "{:.2f}"),
        ("unread bytes in client sockets, mean (MB)", "kernel_client_rx_mb_mean", "{:.1f}"),
        ("memory per idle connection (KB RSS)", "kb_per_idle_connection", "{:.1f}"),
        ("time to connect + subscribe all (s)", "connect_s", "{:.1f}"),
        ("sequence gaps seen by clients", "gaps", "{}"),
    ]
    setup = f"{args.clients:,} clients ({args.codec}), {args.rate:,} records/s input, {args.seconds:.0f} s"
    lines = [
        f"| {setup} | grouped (ours) | baseline: broadcast() per record |",
        "|---|---|---|",
    ]

    def cell(result: dict[str, Any], key: str | tuple[str, ...], fmt: str) -> str:
        keys = key if isinstance(key, tuple) else (key,)
        values = [result.get(k) for k in keys]
        if any(v is None for v in values):
            return "–"
        return fmt.format(*values)

    for label, key, fmt in rows:
        lines.append(f"| {label} | {cell(grouped, key, fmt)} | {cell(baseline, key, fmt)} |")
    lines.append(f"| **ratio (deliveries/s, ours ÷ baseline)** | **{ratio:.1f}×** | 1× |")
    lines.append("")
    lines.append(
        f"Reconnect + resume of all {args.clients:,} clients (connections dropped without close handshake while "
        f"input continues): {grouped.get('resume_s', float('nan')):.1f} s; resumed from the replay buffer: "
        f"{grouped.get('resumed')}, explicit resets: {grouped.get('reset')}, sequence gaps after resume: "
        f"{grouped.get('gaps_after_resume')}."
    )
    return "\n".join(lines)


def prepare_loadgen(name: str = "") -> Path:
    """Build the Go load generator (to /tmp, ``name`` telling concurrent runs apart) and raise this process'
    open-file limit to its hard limit: the node and the load generator inherit it, 10,000 sockets each."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    binary = Path("/tmp") / f"shfeeds-loadgen-{os.getuid()}{name}"
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=HERE / "loadgen", check=True)
    return binary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=2_000, help="input records per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--tick-ms", type=int, default=50)
    parser.add_argument("--port", type=int, default=18900)
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:16379/0")
    parser.add_argument("--server-cpu", default="0", help="taskset CPU list for the server ('' = none)")
    parser.add_argument("--loadgen-cpu", default="1", help="taskset CPU list for the load generator")
    parser.add_argument("--codec", choices=("json", "msgpack"), default="json", help="the clients' subprotocol")
    parser.add_argument("--modes", default="grouped,baseline", help="which nodes to run (investigation)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    binary = prepare_loadgen()
    with primed(args.bootstrap, args.redis_url, "benchfanout") as naming:
        results = [run_mode(mode, args, naming, binary) for mode in args.modes.split(",")]
    for result in results:
        print(orjson.dumps(result).decode(), flush=True)
    if len(results) != 2:
        return
    text = table(results, args)
    print(text)
    if args.out is not None:
        write_table(args.out, text)


def write_table(path: Path, text: str) -> None:
    """Replace the table between the markers of an existing report (keeping its prose), or write it."""
    start, end = "<!-- bench:table -->", "<!-- /bench:table -->"
    old = path.read_text() if path.exists() else ""
    if start in old and end in old:
        head, rest = old.split(start, 1)
        path.write_text(f"{head}{start}\n{text}\n{end}{rest.split(end, 1)[1]}")
    else:
        path.write_text(text + "\n")


if __name__ == "__main__":
    main()
