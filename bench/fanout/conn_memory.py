"""Memory per WebSocket connection of the real server node, and where it goes.

For each subprotocol asked for, a node runs in a child process as in bench/fanout/serve_node.py, the Go load
generator connects ``--clients`` clients (the fan-out bench's mixed subscriptions), and the node's resident
memory is read before, with every client connected and idle, and after ``--seconds`` of bus input at
``--rate``. A second node per subprotocol runs with tracemalloc on (which itself inflates RSS, so its RSS is
not the one reported) and prints the Python allocations grown since before the clients came, by file:line,
and the object types that grew. Needs the local Kafka and Redis and Go.

    nice -n 10 .venv/bin/python -m bench.fanout.conn_memory --clients 2000 --codecs json,msgpack --top 25
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

import settings
from bench.fanout.run import ROOT, LoadGen, prepare_loadgen, prime, produce, rss_kb
from ws_server.config import Naming
from ws_server.protocol.limits import DEFAULT_LIMITS
from ws_server.server import Node, config_from_settings

# ------------------------------------------------------------------------------------------ the node side


class Tracer:
    """What the node allocated since ``mark``: tracemalloc by file:line, and gc-tracked objects by type."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.base: tracemalloc.Snapshot | None = None
        self.types: Counter[str] = Counter()

    @staticmethod
    def _types() -> Counter[str]:
        # The node freezes long-lived objects (Node.gc_loop), and frozen ones are not listed: thaw first.
        gc.unfreeze()
        types = Counter(type(o).__name__ for o in gc.get_objects())
        gc.freeze()
        return types

    def _snapshot(self) -> tracemalloc.Snapshot:
        gc.collect()
        return tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])

    def mark(self) -> None:
        self.base = self._snapshot() if tracemalloc.is_tracing() else None
        self.types = self._types()

    def top(self, n: int, node: Node) -> dict[str, Any]:
        grown = self._types() - self.types
        answer: dict[str, Any] = {
            "connections": len(node.sessions),
            "types": grown.most_common(n),
        }
        if self.base is not None:
            now = self._snapshot()
            stats = now.compare_to(self.base, "lineno")
            answer["traced_growth_bytes"] = sum(s.size_diff for s in stats)
            answer["lines"] = [
                (f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}", s.size_diff, s.count_diff)
                for s in stats[:n]
            ]
            answer["files"] = [(_short(s.traceback[0].filename), s.size_diff) for s in
                               now.compare_to(self.base, "filename")[: n // 2]]  # fmt: skip
        return answer


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    try:
        return str(Path(filename).relative_to(ROOT))
    except ValueError:
        return filename


async def control(node: Node, tracer: Tracer) -> None:
    """Commands on stdin: ``mark``; ``top N`` prints one JSON line."""
    while True:
        line = (await asyncio.to_thread(sys.stdin.readline)).split()
        if not line:
            return
        if line[0] == "mark":
            tracer.mark()
            print("{}", flush=True)
        elif line[0] == "top":
            print(orjson.dumps(tracer.top(int(line[1]), node)).decode(), flush=True)


async def serve_with_control(node: Node, tracer: Tracer) -> None:
    task = asyncio.create_task(control(node, tracer))
    try:
        await node.run()
    finally:
        task.cancel()


def serve(args: argparse.Namespace) -> None:
    if args.trace_frames:
        tracemalloc.start(args.trace_frames)
    config = config_from_settings(  # as bench/fanout/serve_node.py runs it
        settings.load(),
        host="127.0.0.1",
        port=args.port,
        naming=Naming(args.topic_prefix, args.redis_prefix),
        tick_ms=50,
        per_ip_connections=1_000_000,
        ping_interval_s=60.0,
    )
    public = DEFAULT_LIMITS["public"]  # every client comes from 127.0.0.1 (serve_node lifts these caps too)
    DEFAULT_LIMITS["public"] = dataclasses.replace(public, max_streams=1_000_000, vertices_per_minute=1 << 40)
    node = Node(config)
    print("serving", flush=True)
    asyncio.run(serve_with_control(node, Tracer(args.trace_frames)))


# ------------------------------------------------------------------------------------------ the runner


class NodeProcess:
    def __init__(self, args: argparse.Namespace, naming: Naming, trace_frames: int) -> None:
        argv = [sys.executable, "-m", "bench.fanout.conn_memory", "--serve", "--port", str(args.port),
                "--topic-prefix", naming.topic_prefix, "--redis-prefix", naming.redis_prefix,
                "--trace-frames", str(trace_frames)]  # fmt: skip
        if args.server_cpu:
            argv = ["taskset", "-c", args.server_cpu, *argv]
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()

    def ask(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = orjson.loads(self.proc.stdout.readline())
        return answer

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def one_node(args: argparse.Namespace, naming: Naming, binary: Path, codec: str, trace: bool) -> dict[str, Any]:
    node = NodeProcess(args, naming, args.trace_frames if trace else 0)
    url = f"ws://127.0.0.1:{args.port}/"
    gen: LoadGen | None = None
    try:
        time.sleep(1.5)
        pid = node.proc.pid
        # One client first loads the feed (Redis snapshot + topic), so what follows is connections only.
        subprocess.run([str(binary), "-url", url, "-clients", "1", "-codec", codec], input="quit\n", text=True,
                       check=True, capture_output=True)  # fmt: skip
        time.sleep(1.0)
        node.ask("mark")
        rss_before = rss_kb(pid)
        gen = LoadGen(binary, url, args.clients, args.loadgen_cpu or None, codec)
        gen.read()
        time.sleep(3.0)
        rss_idle = rss_kb(pid)
        idle = node.ask(f"top {args.top}") if trace else {}
        gen.command("measure")
        if args.seconds > 0:
            asyncio.run(produce(args.bootstrap, naming.tier_topic("public", "bus"), args.rate, args.seconds, 7))
        time.sleep(1.0)
        rss_loaded = rss_kb(pid)
        loaded = node.ask(f"top {args.top}")
        gen.command("stop")
        measured = gen.read()
        result: dict[str, Any] = {"codec": codec, "connections": loaded["connections"]}
        if trace:
            result["idle"], result["loaded"] = idle, loaded
        else:
            result["kb_per_idle_connection"] = round((rss_idle - rss_before) / args.clients, 1)
            result["kb_per_connection"] = round((rss_loaded - rss_before) / args.clients, 1)
            result["deliveries_per_s"] = measured.get("deliveries_per_s")
        return result
    finally:
        if gen is not None:
            gen.close()
        node.stop()


def show(result: dict[str, Any], clients: int) -> None:
    if "kb_per_connection" in result:
        print(f"{result['codec']}: {result['connections']} connections, RSS per connection "
              f"{result['kb_per_idle_connection']} KB idle, {result['kb_per_connection']} KB under load")  # fmt: skip
        return
    for phase in ("idle", "loaded"):
        top = result[phase]
        traced = top.get("traced_growth_bytes", 0)
        print(f"{result['codec']} {phase}: traced Python growth {traced / clients / 1024:.1f} KB per connection")
        for where, size, count in top.get("lines", []):
            print(f"  {size / clients:9.0f} B/conn {count / clients:7.2f} blocks/conn  {where}")
        print("  by file: " + ", ".join(f"{f} {size / clients:.0f}" for f, size in top.get("files", [])))
        print("  objects grown per connection: " + ", ".join(f"{t} {c / clients:.2f}" for t, c in top["types"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--topic-prefix", help=argparse.SUPPRESS)
    parser.add_argument("--redis-prefix", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=31950, help="below the ephemeral range: no client socket holds it")
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--codecs", default="json,msgpack")
    parser.add_argument("--rate", type=int, default=2000, help="bus input records/s while loaded")
    parser.add_argument("--seconds", type=float, default=10.0, help="input window (0: idle only)")
    parser.add_argument("--top", type=int, default=25, help="tracemalloc lines shown (0: no traced run)")
    parser.add_argument("--trace-frames", type=int, default=1)
    parser.add_argument("--server-cpu", default="0", help="taskset CPU list for the node ('' = none)")
    parser.add_argument("--loadgen-cpu", default="1", help="taskset CPU list for the load generator")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    s = settings.load()
    args.bootstrap = s.kafka_bootstrap
    binary = prepare_loadgen(f"-{os.getpid()}")
    prefix = f"connmem-{uuid.uuid4().hex[:8]}"
    naming = Naming(prefix + ".", prefix)
    asyncio.run(prime(s.kafka_bootstrap, s.redis_url, naming))
    results = []
    try:
        for codec in args.codecs.split(","):
            for trace in (False, True) if args.top else (False,):
                result = one_node(args, naming, binary, codec, trace)
                show(result, args.clients)
                results.append(result)
    finally:
        binary.unlink(missing_ok=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
