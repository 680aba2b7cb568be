"""Stopping things within a bound, even when what is stopped does not cooperate.

``asyncio.wait_for(client.stop(), t)`` is not a bound on Python 3.11: once it times out (or is itself
cancelled) it cancels the inner coroutine and then waits, without limit, for it to finish. aiokafka's
``stop()`` flushes to a broker that may be unreachable and can absorb that cancellation, so the wait never
ends. Worse, when the inner call finishes in the same loop iteration as an outer ``cancel()``, 3.11's
``wait_for`` returns the result and drops the cancellation, so a task being shut down carries on.

These helpers wait with ``asyncio.wait``, which returns at its timeout whatever the awaited task does, and
re-deliver cancellation until it takes. What did not stop in time is left running in the background, logged
and kept referenced, so shutdown of the caller always ends on time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

log = logging.getLogger(__name__)

# Tasks that did not stop in time: referenced here so the event loop does not collect them mid-run.
_abandoned: set[asyncio.Future[Any]] = set()


def _abandon(task: asyncio.Future[Any], what: str) -> None:
    log.warning("%s did not stop in time; left to finish in the background", what)
    _abandoned.add(task)
    task.add_done_callback(_abandoned.discard)
    task.add_done_callback(_consume_result)


def _consume_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log "exception was never retrieved"


async def stop_within(stop: Awaitable[Any], timeout_s: float, what: str) -> bool:
    """Await ``stop`` for at most ``timeout_s``; True if it finished (its error, if any, is logged).

    Never waits longer than ``timeout_s``, and a cancellation of the caller is never lost: it is raised at
    once, while ``stop`` is cancelled and left to end on its own.
    """
    task = asyncio.ensure_future(stop)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        task.cancel()
        _abandon(task, what)
        raise
    if not done:
        task.cancel()
        _abandon(task, what)
        return False
    if not task.cancelled() and (err := task.exception()) is not None:
        log.warning("%s failed while stopping: %s: %s", what, type(err).__name__, err)
    return True


async def cancel_within(tasks: Iterable[asyncio.Task[Any]], timeout_s: float, what: str) -> bool:
    """Cancel ``tasks`` and wait at most ``timeout_s`` for all of them to end; True if they all did.

    Cancellation is delivered again every 0.1 s to a task still running, since a task can absorb one
    (the ``wait_for`` race above) and go on.
    """
    tasks = list(tasks)
    for task in tasks:
        task.add_done_callback(_consume_result)  # their errors were the caller's to see before shutdown
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            for task in pending:
                _abandon(task, f"{what} ({task.get_name()})")
            return False
        _, pending = await asyncio.wait(pending, timeout=min(0.1, remaining))
    return True
