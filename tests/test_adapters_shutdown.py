"""Shutdown is bounded: an adapter runtime cancelled while Kafka cannot be reached ends on time.

Kafka is away in two ways a real deployment meets: a closed port (connection refused at once) and a port
that accepts connections and never answers (a hung broker or a firewall that drops). The runtime is
cancelled at many different moments of its connect/back-off cycle, since where the cancellation lands
decides which stop path runs.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

import settings
from adapters.runtime import AdapterRuntime, KafkaSink
from adapters.runtime.kafka_sink import STOP_TIMEOUT_S
from adapters.runtime.shutdown import cancel_within, stop_within

CLOSE_TIMEOUT_S = 0.2
# Flush bound + drain task + producer + pollers + metrics, each bounded by STOP_TIMEOUT_S, plus slack for a
# loaded machine.
SHUTDOWN_BOUND_S = CLOSE_TIMEOUT_S + 4 * STOP_TIMEOUT_S + 3.0


async def _stubborn(swallow: int, lasts_s: float = 3.0) -> str:
    """Absorbs the first ``swallow`` cancellations, as aiokafka's stop() can while a flush is pending; ends
    by itself after ``lasts_s`` (so the test's event loop can close)."""
    end = time.monotonic() + lasts_s
    for _ in range(swallow + 1):
        try:
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            break
        except asyncio.CancelledError:
            continue
    return "stopped"


async def test_stop_within_returns_on_time_when_the_stop_ignores_cancellation() -> None:
    started = time.monotonic()
    assert await stop_within(_stubborn(swallow=1_000), 0.3, "stubborn") is False
    assert time.monotonic() - started < 1.5


async def test_a_cancelled_caller_of_stop_within_is_cancelled_at_once() -> None:
    caller = asyncio.create_task(stop_within(_stubborn(swallow=1_000), 60, "stubborn"))
    await asyncio.sleep(0.05)
    caller.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert time.monotonic() - started < 1.0


async def test_cancel_within_delivers_cancellation_again_to_a_task_that_absorbed_it() -> None:
    task = asyncio.create_task(_stubborn(swallow=2, lasts_s=60))
    await asyncio.sleep(0.05)
    assert await cancel_within([task], 5.0, "stubborn") is True
    assert task.done()


async def test_cancel_within_gives_up_on_time() -> None:
    task = asyncio.create_task(_stubborn(swallow=1_000))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    assert await cancel_within([task], 0.5, "stubborn") is False
    assert time.monotonic() - started < 1.5


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)  # the kernel completes the handshakes; nobody ever reads or writes
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


async def _cancel_after(bootstrap: str, url: str, delay_s: float) -> float:
    """Runs the runtime against ``bootstrap``, cancels it after ``delay_s``; the seconds shutdown took."""
    sink = KafkaSink(bootstrap, close_timeout_s=CLOSE_TIMEOUT_S, request_timeout_ms=3_000)
    runtime = AdapterRuntime(settings.load(), sink=sink)
    task = asyncio.create_task(
        runtime.run(["sh-bus"], urls={"sh-bus": url}, intervals={"sh-bus": 0.05}, metrics_port=0, create_topics=True)
    )
    await asyncio.sleep(delay_s)
    task.cancel()
    started = time.monotonic()
    try:
        async with asyncio.timeout(SHUTDOWN_BOUND_S * 3):  # far past the bound: a hang fails, not blocks
            await task
    except asyncio.CancelledError:
        pass
    return time.monotonic() - started


@pytest.mark.timeout(240)
@pytest.mark.parametrize("broker", ["refusing", "silent"])
async def test_runtime_cancelled_with_kafka_unreachable_ends_within_its_bound(
    broker: str, bus_source: str, silent_port: int
) -> None:
    port = _closed_port() if broker == "refusing" else silent_port
    # Cancellation lands in every part of the cycle: connecting, creating topics, backing off, polling.
    delays = [0.0, 0.01, 0.05, 0.1, 0.2, 0.35, 0.5, 0.8, 1.2, 1.7, 2.3, 3.1]
    took = [await _cancel_after(f"127.0.0.1:{port}", bus_source, delay) for delay in delays]
    assert max(took) < SHUTDOWN_BOUND_S, dict(zip(delays, took, strict=True))
