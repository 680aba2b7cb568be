"""Replays through the WebSocket protocol (docs/protocol.md, "Replay"): the same options as
``shfeeds replay``, on a connection of the replay's own, so a long replay never holds up live data.

    async for message in client.replay("bus", "2026-12-04T08:00", "2026-12-04T09:00", district="黄浦"):
        ...                                   # replay_started, replay_snapshot, replay_delta, ... complete
    await client.replay_to_file("bus", "2026-12-04T08:00", "2026-12-04T09:00", out="bus.parquet")
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import orjson
from websockets.asyncio.client import connect

JSON = "shfeeds.v1.json"
MSGPACK = "shfeeds.v1.msgpack"


class ReplayFailed(RuntimeError):
    """The server refused or ended the replay with an error; ``message`` is its error message."""

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(f"{message.get('code')}: {message.get('message')}")
        self.message = message


def replay_request(
    replay_id: str,
    feed: str,
    start: str | int,
    end: str | int,
    *,
    speed: float | str = "max",
    district: str | list[str] | None = None,
    bbox: list[float] | None = None,
    near: dict[str, float] | None = None,
    routes: list[str] | None = None,
    ids: list[str] | None = None,
    snapshot: bool = True,
    crs: str = "gcj02",
) -> dict[str, Any]:
    flt: dict[str, Any] = {}
    for name, value in (("district", district), ("bbox", bbox), ("near", near), ("routes", routes), ("ids", ids)):
        if value is not None:
            flt[name] = value
    return {
        "type": "replay",
        "id": replay_id,
        "feed": feed,
        "from": start,
        "to": end,
        "speed": speed,
        "filter": flt,
        "options": {"snapshot": snapshot, "crs": crs},
    }


async def replay_messages(
    url: str,
    request: dict[str, Any],
    *,
    api_key: str | None = None,
    codec: str = JSON,
    open_timeout_s: float = 10.0,
    on_open: Callable[[Callable[[dict[str, Any]], Awaitable[None]]], None] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Every message of one replay, ending with its ``replay_complete`` (``ReplayFailed`` on an error)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    async with connect(
        url,
        subprotocols=[codec],  # type: ignore[list-item]
        additional_headers=headers,
        open_timeout=open_timeout_s,
        max_size=None,
        compression=None,
    ) as conn:

        async def send(message: dict[str, Any]) -> None:
            await conn.send(msgpack.packb(message) if codec == MSGPACK else orjson.dumps(message).decode())

        await send(request)
        if on_open is not None:
            on_open(send)  # lets the caller pause, resume, seek or change speed
        async for data in conn:
            message = msgpack.unpackb(data, raw=False) if isinstance(data, bytes) else orjson.loads(data)
            if message.get("id") != request["id"]:
                continue
            if message.get("type") == "error":
                raise ReplayFailed(message)
            yield message
            if message.get("type") in ("replay_complete", "replay_stopped"):
                return


async def replay_to_file(
    url: str, request: dict[str, Any], out: str | Path, *, api_key: str | None = None, with_snapshot: bool = False
) -> int:
    """Write a replay's records to ``out`` (.ndjson, .csv or .parquet, columns from the published record
    schema served at /schemas/<feed>/<tier>.json); returns the number of records written."""
    import aiohttp

    from replay.export import Export

    path = Path(out)
    export: Export | None = None
    written = 0
    try:
        async for message in replay_messages(url, request, api_key=api_key):
            kind = message["type"]
            if kind == "replay_started":
                base = url.replace("wss://", "https://").replace("ws://", "http://").rstrip("/")
                schema_url = f"{base}/schemas/{message['feed']}/{message['tier']}.json"
                async with aiohttp.ClientSession() as http, http.get(schema_url) as resp:
                    resp.raise_for_status()
                    export = Export(path, await resp.json(content_type=None))
            elif export is not None and (kind == "replay_delta" or (kind == "replay_snapshot" and with_snapshot)):
                export.write(message["records"])
                written += len(message["records"])
    finally:
        if export is not None:
            export.close()
    return written
