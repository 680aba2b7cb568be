"""A server node for the fan-out benchmark: ``grouped`` is the real server; ``baseline`` is the same node
with the fan-out replaced by one ``websockets.broadcast()`` frame per record to the matching clients."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import time
from typing import Any

import numpy as np
import orjson
from websockets.asyncio.server import broadcast

from ws_server.config import Naming, ServerConfig
from ws_server.protocol.session import Subscription
from ws_server.server import Node


class PerRecordNode(Node):
    """Baseline: every record becomes its own frame, broadcast to the members of each matching stream."""

    async def tick_loop(self) -> None:
        hub = self.hub
        while True:
            await asyncio.sleep(0.005)
            for src, items in hub.incoming.items():
                if not items:
                    continue
                batch, items[:] = list(items), []
                streams = list(hub.by_source[src])
                for entity_id, raw in batch:
                    src.apply(entity_id, raw)
                    changes = src.take_changes()
                    if not changes:
                        continue
                    entry = changes[0].entry
                    xs, ys = np.array([entry.x]), np.array([entry.y])
                    for stream in streams:
                        if not stream.members:
                            continue
                        if not (
                            stream.filter.mask(xs, ys)[0] and stream.filter.admits(entry.id, entry.route, entry.stop)
                        ):
                            continue
                        stream.seq += 1
                        head = {"type": "delta", "stream": stream.sid, "epoch": stream.epoch, "seq": stream.seq}
                        frame = stream.codec.delta(head, [entry.encoded(stream.codec, stream.crs)], [], [])
                        subs = [s for s in stream.members if isinstance(s, Subscription)]
                        conns = [self.sessions[s.session] for s in subs if s.session in self.sessions]
                        broadcast(conns, frame, text=True)
                        hub.records_delivered += len(conns)
            self.ticks += 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("grouped", "baseline"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic-prefix", required=True)
    parser.add_argument("--redis-prefix", required=True)
    parser.add_argument("--tick-ms", type=int, default=50)
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    config = ServerConfig(
        host="127.0.0.1",
        port=args.port,
        naming=Naming(args.topic_prefix, args.redis_prefix),
        tick_ms=args.tick_ms,
        per_ip_connections=1_000_000,  # every benchmark client comes from 127.0.0.1
        ping_interval_s=60.0,
    )
    node = PerRecordNode(config) if args.mode == "baseline" else Node(config)
    print(f"serving {args.mode} {time.time()}", flush=True)
    asyncio.run(run_with_control(node))


class GcTimer:
    """Time spent in the garbage collector (a full collection walks every object of 10,000 connections)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.total_s = 0.0
        self.max_s = 0.0
        self.full = 0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        spent = time.perf_counter() - self.started
        self.total_s += spent
        self.max_s = max(self.max_s, spent)
        self.full += info.get("generation") == 2

    def clear(self) -> None:
        self.total_s = self.max_s = 0.0
        self.full = 0


GC = GcTimer()


def report(node: Node) -> dict[str, Any]:
    """Where the time goes on the node, and how many bytes wait in its user-space send buffers."""
    backlogs = [s.sink.backlog() for s in node.sessions if not s.closed]
    return {
        "kafka_to_node": node.readers.kafka_latency.summary(),
        "node_to_written": node.hub.latency.summary(),
        "tick_ms_avg": round(node.tick_ms_total / node.ticks, 2) if node.ticks and node.tick_ms_total else None,
        "ticks": node.ticks,
        "connections": len(node.sessions),
        "send_buffer_bytes_total": sum(backlogs),
        "send_buffer_bytes_max": max(backlogs, default=0),
        "records_read": node.readers.records_read,
        "gc_ms_total": round(GC.total_s * 1000, 1),
        "gc_ms_max": round(GC.max_s * 1000, 1),
        "gc_full_collections": GC.full,
    }


async def run_with_control(node: Node) -> None:
    """The node, plus commands on stdin from the benchmark runner: ``reset`` clears the latency
    histograms, ``report`` prints them (one JSON line)."""

    async def control() -> None:
        while True:
            line = (await asyncio.to_thread(sys.stdin.readline)).strip()
            if not line:
                return
            if line == "reset":
                node.readers.kafka_latency.clear()
                node.hub.latency.clear()
                node.tick_ms_total, node.ticks = 0.0, 0
                GC.clear()
            elif line == "report":
                print(orjson.dumps(report(node)).decode(), flush=True)

    task = asyncio.create_task(control())
    try:
        await node.run()
    finally:
        task.cancel()


if __name__ == "__main__":
    main()
