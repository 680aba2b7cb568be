"""The connection loop: connect, (re)subscribe with resume tokens, dispatch frames, back off on failure."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .resume import GapError, StreamPosition

log = logging.getLogger(__name__)

JSON = "shfeeds.v1.json"
MSGPACK = "shfeeds.v1.msgpack"
# Close codes after which reconnecting cannot help (unauthorized).
FATAL_CLOSE_CODES = {4001, 4031}  # revoked or expired key; daily quota used up


@dataclass
class SubscriptionSpec:
    id: str
    feed: str
    filter: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Event:
    """One server message, with the subscription it belongs to (None for connection-level messages)."""

    type: str
    sub_id: str | None
    message: dict[str, Any]


class FeedClient:
    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        codec: str = JSON,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        open_timeout_s: float = 10.0,
        on_connected: Callable[[], None] | None = None,
        on_retry: Callable[[str, str, float], None] | None = None,
    ) -> None:
        """``on_connected()`` is called on each connection; ``on_retry(problem, detail, wait_s)`` each time the
        client waits before trying again (``problem``: "cannot connect", "connection closed"...)."""
        if codec not in (JSON, MSGPACK):
            raise ValueError(f"codec must be {JSON} or {MSGPACK}")
        self.url = url
        self.api_key = api_key
        self.codec = codec
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.open_timeout_s = open_timeout_s
        self.on_connected = on_connected
        self.on_retry = on_retry
        self.specs: dict[str, SubscriptionSpec] = {}
        self.positions: dict[str, StreamPosition] = {}
        self._by_stream: dict[str, str] = {}
        self._conn: ClientConnection | None = None
        self.connects = 0
        self.resumes = 0
        self.resets = 0

    # ------------------------------------------------------------------------------------------ api

    def subscribe(
        self,
        sub_id: str,
        feed: str,
        filter: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        """Register a subscription; it is sent on (every) connect. Call before or while ``events`` runs."""
        spec = SubscriptionSpec(sub_id, feed, filter or {}, options or {})
        self.specs[sub_id] = spec
        self.positions.setdefault(sub_id, StreamPosition())
        if self._conn is not None:
            asyncio.get_running_loop().create_task(self._send(self._subscribe_message(spec)))

    def replay(
        self, feed: str, start: str | int, end: str | int, *, replay_id: str = "replay", **options: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """A replay of ``feed`` over ``[start, end)`` (ISO 8601, Shanghai time by default, or epoch ms) on a
        connection of its own, with ``shfeeds replay``'s options (speed, district, bbox, near, routes, ids,
        snapshot, crs): its messages, ending with ``replay_complete``. See ``client/replay.py``."""
        from .replay import replay_messages, replay_request

        request = replay_request(replay_id, feed, start, end, **options)
        return replay_messages(self.url, request, api_key=self.api_key, codec=self.codec)

    async def replay_to_file(
        self, feed: str, start: str | int, end: str | int, out: str, *, with_snapshot: bool = False, **options: Any
    ) -> int:
        """Like ``replay``, written to ``out`` (.ndjson, .csv or .parquet); returns the records written."""
        from .replay import replay_request, replay_to_file

        request = replay_request("export", feed, start, end, **options)
        return await replay_to_file(self.url, request, out, api_key=self.api_key, with_snapshot=with_snapshot)

    async def update(self, sub_id: str, filter: dict[str, Any]) -> None:
        self.specs[sub_id].filter = filter
        if self._conn is not None:
            await self._send({"type": "update", "id": sub_id, "filter": filter})

    def entities(self, sub_id: str) -> dict[str, dict[str, Any]]:
        """The current records of a subscription, as the client's local copy holds them."""
        return self.positions[sub_id].entities

    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def events(self) -> AsyncGenerator[Event, None]:
        """Every server message, forever: reconnects with backoff and resumes each subscription."""
        delay = self.backoff_initial_s
        while True:
            try:
                async for event in self._session():
                    delay = self.backoff_initial_s  # a working connection resets the backoff
                    yield event
            except InvalidStatus as err:
                if err.response.status_code == 401:
                    raise
                problem, detail = "handshake refused", str(err)
            except ConnectionClosed as err:
                code = err.rcvd.code if err.rcvd is not None else None
                if code in FATAL_CLOSE_CODES:
                    raise
                problem, detail = "connection closed", f"close code {code}"
            except (OSError, InvalidHandshake, TimeoutError) as err:
                problem, detail = "cannot connect", str(err) or type(err).__name__
            self._conn = None
            wait_s = random.uniform(0, delay)  # full jitter spreads a reconnect storm
            log.info("%s (%s: %s); retrying in %.1f s", problem, self.url, detail, wait_s)
            if self.on_retry is not None:
                self.on_retry(problem, detail, wait_s)
            await asyncio.sleep(wait_s)
            delay = min(self.backoff_max_s, delay * 2)

    # ------------------------------------------------------------------------------------------ inner

    def _subscribe_message(self, spec: SubscriptionSpec) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "subscribe", "id": spec.id, "feed": spec.feed}
        if spec.filter:
            message["filter"] = spec.filter
        if spec.options:
            message["options"] = spec.options
        token = self.positions[spec.id].resume_token()
        if token is not None:
            message["resume"] = token
        return message

    async def _send(self, message: dict[str, Any]) -> None:
        if self._conn is None:
            return
        if self.codec == MSGPACK:
            await self._conn.send(msgpack.packb(message))
        else:
            await self._conn.send(orjson.dumps(message).decode())

    async def _session(self) -> AsyncIterator[Event]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        async with connect(
            self.url,
            subprotocols=[self.codec],  # type: ignore[list-item]
            additional_headers=headers,
            open_timeout=self.open_timeout_s,
            max_size=None,
            compression=None,
        ) as conn:
            self._conn = conn
            self.connects += 1
            if self.on_connected is not None:
                self.on_connected()
            self._by_stream.clear()
            for spec in list(self.specs.values()):
                await self._send(self._subscribe_message(spec))
            async for data in conn:
                message = msgpack.unpackb(data, raw=False) if isinstance(data, bytes) else orjson.loads(data)
                event = self._apply(message)
                if event is not None:
                    yield event

    def _apply(self, message: dict[str, Any]) -> Event | None:
        kind = str(message.get("type"))
        sub_id: str | None = message.get("id") if kind in ("subscribed", "reset", "updated", "error") else None
        if sub_id is None and "stream" in message:
            sub_id = self._by_stream.get(message["stream"])
        position = self.positions.get(sub_id) if sub_id is not None else None
        if position is None:
            return Event(kind, sub_id, message)
        assert sub_id is not None
        if kind == "subscribed":
            if message.get("resumed"):
                self.resumes += 1
            position.on_subscribed(message)
            self._by_stream[message["stream"]] = sub_id
        elif kind == "updated":
            position.on_updated(message)
            self._by_stream[message["stream"]] = sub_id
        elif kind == "reset":
            self.resets += 1
            position.on_reset(message)
            self._by_stream[message["stream"]] = sub_id
        elif kind == "snapshot":
            position.on_snapshot(message)
        elif kind == "delta":
            try:
                position.on_delta(message)
            except GapError as err:
                # Never continue past a silent gap: forget the cursor and resubscribe from a snapshot.
                log.warning("%s; resubscribing", err)
                self.positions[sub_id] = StreamPosition()
                spec = self.specs[sub_id]
                asyncio.get_running_loop().create_task(self._resubscribe(spec))
                return None
        return Event(kind, sub_id, message)

    async def _resubscribe(self, spec: SubscriptionSpec) -> None:
        await self._send({"type": "unsubscribe", "id": spec.id})
        await self._send(self._subscribe_message(spec))
