"""What feeds Centrifugo in the peer run: reads the same tier topic our server reads, matches every record
against the distinct filters with our own filter code (Centrifugo has no filters: a channel per filter is how
one would use it), and every tick publishes each channel's records as one publication through Centrifugo's
HTTP server API (``/api/batch`` with ``parallel``: one command per channel), the same grouping per tick and
the same gap between one channel's publications as our server's per stream.

    python -m bench.peers.centrifugo_bridge --topic T --api URL --key K --filters FILE [--tick-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import msgspec
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer

from access.identity import kafka_options
from ws_server.config import ServerConfig
from ws_server.districts import lookup_district
from ws_server.protocol.filters import CompiledFilter, compile_filter
from ws_server.protocol.messages import Filter


def compiled(filters: list[dict[str, Any]]) -> list[CompiledFilter]:
    return [compile_filter(msgspec.convert(f, Filter), "gcj02", lookup_district) for f in filters]


def publications(records: list[dict[str, Any]], filters: list[CompiledFilter]) -> list[dict[str, Any]]:
    """One publish command per channel with matching records: ``{"records": [...]}``."""
    lng = np.array([r["lng"] for r in records], dtype=np.float64)
    lat = np.array([r["lat"] for r in records], dtype=np.float64)
    out = []
    for i, flt in enumerate(filters):
        idx = np.flatnonzero(flt.mask(lng, lat))
        hits = [records[j] for j in idx if flt.admits(records[j]["id"], records[j].get("route_id"))]
        if hits:
            out.append({"publish": {"channel": f"f{i}", "data": {"records": hits}}})
    return out


class Paced:
    """Each channel's records, latest per entity, held until its last publication is ``gap_ms`` old: the
    frame gap our node keeps per stream, so both servers send the same number of messages."""

    def __init__(self, gap_ms: int) -> None:
        self.gap_s = gap_ms / 1000
        self.pending: dict[str, dict[str, dict[str, Any]]] = {}
        self.last: dict[str, float] = {}

    def add(self, commands: list[dict[str, Any]]) -> None:
        for command in commands:
            held = self.pending.setdefault(command["publish"]["channel"], {})
            for record in command["publish"]["data"]["records"]:
                held[record["id"]] = record

    def due(self, now: float) -> list[dict[str, Any]]:
        out = []
        for channel, held in list(self.pending.items()):
            if now - self.last.get(channel, float("-inf")) >= self.gap_s:
                out.append({"publish": {"channel": channel, "data": {"records": list(held.values())}}})
                self.last[channel] = now
                del self.pending[channel]
        return out


async def run(args: argparse.Namespace) -> None:
    filters = compiled(json.loads(Path(args.filters).read_text()))
    consumer = AIOKafkaConsumer(
        args.topic, bootstrap_servers=args.bootstrap, **kafka_options(), auto_offset_reset="latest"
    )
    await consumer.start()
    headers = {"X-API-Key": args.key, "Content-Type": "application/json"}
    print("bridging", flush=True)
    try:
        async with aiohttp.ClientSession(headers=headers) as http:

            async def post(body: bytes) -> None:
                async with http.post(args.api + "/api/batch", data=body) as resp:
                    resp.raise_for_status()
                    await resp.read()

            sending: asyncio.Task[None] | None = None
            paced = Paced(args.frame_gap_ms)
            while True:
                started = time.monotonic()
                batch = await consumer.getmany(timeout_ms=args.tick_ms)
                records = [msgpack.unpackb(r.value) for recs in batch.values() for r in recs if r.value]
                if records:
                    paced.add(publications(records, filters))
                commands = paced.due(time.monotonic())
                if commands:
                    # One command per channel, so Centrifugo may run them in parallel; the next tick's batch
                    # is built while this one is sent, and sent after it (each channel keeps its order).
                    body = orjson.dumps({"commands": commands, "parallel": True})
                    if sending is not None:
                        await sending
                    sending = asyncio.create_task(post(body))
                await asyncio.sleep(max(0.0, args.tick_ms / 1000 - (time.monotonic() - started)))
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--api", required=True, help="Centrifugo's HTTP server address, e.g. http://127.0.0.1:PORT")
    parser.add_argument("--key", required=True)
    parser.add_argument("--filters", required=True, help="JSON list of the distinct filters; channel fN is the N-th")
    parser.add_argument("--tick-ms", type=int, default=ServerConfig.tick_ms)
    parser.add_argument("--frame-gap-ms", type=int, default=ServerConfig.frame_gap_ms)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
