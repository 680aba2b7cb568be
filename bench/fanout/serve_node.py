"""A server node for the fan-out benchmark: ``grouped`` is the real server; ``baseline`` is the same node
with the fan-out replaced by one ``websockets.broadcast()`` frame per record to the matching clients."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

import numpy as np
from websockets.asyncio.server import broadcast

from ws_server.config import Naming, ServerConfig
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
                        if not (stream.filter.mask(xs, ys)[0] and stream.filter.admits(entry.id, entry.route)):
                            continue
                        stream.seq += 1
                        head = {"type": "delta", "stream": stream.sid, "epoch": stream.epoch, "seq": stream.seq}
                        frame = stream.codec.delta(head, [entry.encoded(stream.codec, stream.crs)], [], [])
                        conns = [self.sessions[s.session] for s in stream.members if s.session in self.sessions]
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
    asyncio.run(node.run())


if __name__ == "__main__":
    main()
