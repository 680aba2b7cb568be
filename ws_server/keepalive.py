"""Keepalive pings for every connection of a node from one loop, in place of the library's task per
connection (a task, its coroutine, a timer and a future: over a kilobyte each, on every idle connection).

The behaviour is the library's: every ``interval_s`` each open connection is pinged, and one that has not
answered within ``timeout_s`` is failed with 1011 "keepalive ping timeout". A connection whose writes are
paused (a slow reader) gets its ping when it drains, as with the library; the slow-reader rules close it
before that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable, Iterable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

_OPEN = State.OPEN
REASON = "keepalive ping timeout"
Pending = weakref.WeakKeyDictionary[ServerConnection, "asyncio.Future[float]"]  # pinged, with their pong


class Keepalive:
    def __init__(self, interval_s: float, timeout_s: float | None) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.timed_out = 0  # connections failed for not answering
        self._tasks: set[asyncio.Task[None]] = set()  # held until done (the loop keeps weak references)

    async def run(self, connections: Callable[[], Iterable[ServerConnection]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval_s)
            # Weak: a connection that closes meanwhile is freed now, not after the timeout.
            waiting: Pending = weakref.WeakKeyDictionary()
            for conn in list(connections()):
                if conn.state is _OPEN:
                    # A task each, as ping() may wait for a paused connection to drain; they end at once
                    # for the others.
                    self._hold(loop.create_task(self._ping(conn, waiting)))
            if self.timeout_s is not None:
                loop.call_later(self.timeout_s, self._expire, waiting)

    def _hold(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _ping(conn: ServerConnection, waiting: Pending) -> None:
        with contextlib.suppress(ConnectionClosed):
            pong = await conn.ping()
            assert isinstance(pong, asyncio.Future)
            waiting[conn] = pong

    def _expire(self, waiting: Pending) -> None:
        loop = asyncio.get_running_loop()
        for conn, pong in list(waiting.items()):
            if conn.state is _OPEN and not pong.done():
                self.timed_out += 1
                self._hold(loop.create_task(self._fail(conn)))

    @staticmethod
    async def _fail(conn: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async with conn.send_context():
                conn.protocol.fail(CloseCode.INTERNAL_ERROR, REASON)
