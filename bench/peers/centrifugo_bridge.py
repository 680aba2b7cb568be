"""What feeds Centrifugo in the peer run: reads the same tier topic our server reads, matches every record
against the distinct filters with our own filter code (Centrifugo has no filters: a channel per filter is how
one would use it), and every tick publishes each channel's records as one publication through Centrifugo's
HTTP server API (``/api/batch`` with ``parallel``: one command per channel), the same grouping per tick our
server does per stream.

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
            while True:
                started = time.monotonic()
                batch = await consumer.getmany(timeout_ms=args.tick_ms)
                records = [msgpack.unpackb(r.value) for recs in batch.values() for r in recs if r.value]
                if records:
                    # One command per channel, so Centrifugo may run them in parallel; the next tick's batch
                    # is built while this one is sent, and sent after it (each channel keeps its order).
                    body = orjson.dumps({"commands": publications(records, filters), "parallel": True})
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
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
