"""A server node for the fan-out benchmark, in one of three modes:

``grouped``   the real server;
``tick``      the fair baseline, what a competent engineer would write: the same node (subscriptions, snapshots,
              filters, codecs) but each tick the batch's matching records go out as one frame per group of
              equal subscriptions through ``websockets.broadcast()``, with none of the server's per-client
              bookkeeping (no replay buffer, no slow-reader conflation, no leave events, no usage counts);
``baseline``  the naive one, kept as a secondary row: one ``broadcast()`` frame per record.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import sys
import time
from typing import Any

import numpy as np
import orjson
from websockets.asyncio.server import broadcast

import settings
from ws_server.config import Naming, ServerConfig
from ws_server.protocol.limits import DEFAULT_LIMITS
from ws_server.protocol.session import Subscription
from ws_server.server import Node, config_from_settings


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
                        conns = member_connections(self, stream)
                        broadcast(conns, frame, text=not stream.codec.binary)
                        hub.records_delivered += len(conns)
            self.ticks += 1


class PerTickBroadcastNode(Node):
    """Fair baseline: every tick, one frame per stream with the batch's matching records, to every member at
    once with ``broadcast()``; the filter test is vectorised over the batch, as the server's is."""

    async def tick_loop(self) -> None:
        hub = self.hub
        period = self.config.tick_ms / 1000
        while True:
            started = time.monotonic()
            for src, items in hub.incoming.items():
                if not items:
                    continue
                for entity_id, raw in items:
                    src.apply(entity_id, raw)
                items.clear()
                entries = [change.entry for change in src.take_changes()]
                if not entries:
                    continue
                xs = np.fromiter((e.x for e in entries), dtype=np.float64, count=len(entries))
                ys = np.fromiter((e.y for e in entries), dtype=np.float64, count=len(entries))
                for stream in list(hub.by_source[src]):
                    conns = member_connections(self, stream)
                    if not conns:
                        continue
                    flt = stream.filter
                    hits = [e for e in (entries[i] for i in np.flatnonzero(flt.mask(xs, ys)))
                            if flt.admits(e.id, e.route, e.stop)]  # fmt: skip
                    if not hits:
                        continue
                    stream.seq += 1
                    head = {"type": "delta", "stream": stream.sid, "epoch": stream.epoch, "seq": stream.seq}
                    frame = stream.codec.delta(head, [e.encoded(stream.codec, stream.crs) for e in hits], [], [])
                    broadcast(conns, frame, text=not stream.codec.binary)
                    hub.frames_sent += len(conns)
                    hub.records_delivered += len(hits) * len(conns)
            self.ticks += 1
            self.tick_ms_total += (time.monotonic() - started) * 1000
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))


def member_connections(node: Node, stream: Any) -> list[Any]:
    subs = [s for s in stream.members if isinstance(s, Subscription)]
    return [node.sessions[s.session] for s in subs if s.session in node.sessions]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("grouped", "tick", "baseline"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic-prefix", required=True)
    parser.add_argument("--redis-prefix", required=True)
    parser.add_argument("--tick-ms", type=int, default=ServerConfig.tick_ms)
    parser.add_argument("--reuse-port", action="store_true", help="share the port with other nodes (SO_REUSEPORT)")
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    config = config_from_settings(
        settings.load(),  # the stack's Kafka and Redis, with this process' logins
        host="127.0.0.1",
        port=args.port,
        naming=Naming(args.topic_prefix, args.redis_prefix),
        tick_ms=args.tick_ms,
        per_ip_connections=1_000_000,  # every benchmark client comes from 127.0.0.1
        ping_interval_s=60.0,
        reuse_port=args.reuse_port,
    )
    # Every benchmark client comes from 127.0.0.1: the per-IP caps would stop a city of phones at 200 streams.
    public = DEFAULT_LIMITS["public"]
    DEFAULT_LIMITS["public"] = dataclasses.replace(public, max_streams=1_000_000, vertices_per_minute=1 << 40)
    kinds: dict[str, type[Node]] = {"grouped": Node, "tick": PerTickBroadcastNode, "baseline": PerRecordNode}
    node = kinds[args.mode](config)
    print(f"serving {args.mode} {time.time()}", flush=True)
    asyncio.run(run_with_control(node))


class GcTimer:
    """Time spent in the garbage collector (a full collection walks every object of 10,000 connections)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.total_s = 0.0
        self.max_s = 0.0
        self.max_s_by_generation = [0.0, 0.0, 0.0]
        self.full = 0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        spent = time.perf_counter() - self.started
        self.total_s += spent
        self.max_s = max(self.max_s, spent)
        generation = info.get("generation", 2)
        self.max_s_by_generation[generation] = max(self.max_s_by_generation[generation], spent)
        self.full += info.get("generation") == 2

    def clear(self) -> None:
        self.total_s = self.max_s = 0.0
        self.max_s_by_generation = [0.0, 0.0, 0.0]
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
        "records_delivered": node.hub.records_delivered,
        "conflated_frames": node.hub.conflated_frames,
        "slow_closes": node.hub.slow_closes,
        "gc_ms_total": round(GC.total_s * 1000, 1),
        "gc_ms_max": round(GC.max_s * 1000, 1),
        "gc_ms_max_by_generation": [round(s * 1000, 1) for s in GC.max_s_by_generation],
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
                hub = node.hub
                hub.records_delivered = hub.frames_sent = hub.conflated_frames = hub.slow_closes = 0
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
