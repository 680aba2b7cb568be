"""An asyncio event loop in a thread of its own, for I/O that must not wait for the main loop.

The node's main loop spends most of its time in ticks under load. A Kafka consumer on that loop only gets
to read a fetch response, and send the next fetch, between two ticks: a record then waits for up to two
fetch cycles of a tick each before the node even sees it. On a loop of its own the consumer keeps fetching
while a tick runs (network waits release the interpreter lock), and hands what it read to the main loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the thread's loop and wait for it here; cancelling the waiter cancels it there."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def start(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """``coro`` as a task on the thread's loop; hand it to ``cancel`` to end it."""
        return await self.call(_create_task(coro))

    async def cancel(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Cancel tasks of the thread's loop and wait until each has run its cleanup there."""
        await self.call(_cancel_and_wait(tasks))

    async def stop(self) -> None:
        """Stop the loop once everything spawned on it has been cancelled and awaited."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join, 10)
        if not self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self.loop.close()


async def _create_task(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    return asyncio.create_task(coro)


async def _cancel_and_wait(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
