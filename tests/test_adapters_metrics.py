"""Per-source figures as Prometheus metrics: scraped from the runtime and from ``shfeeds adapter run``.

Kafka is deliberately unreachable here (a closed port), so the producer buffer depth is visible and
nothing is written to any shared topic.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

import settings
from adapters.runtime import AdapterRuntime, KafkaSink


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens once the socket is closed


def samples(text: str) -> dict[tuple[str, str], float]:
    """``{(sample name, source label or ""): value}`` from a Prometheus text exposition."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, sample.labels.get("source", ""))] = sample.value
    return out


async def scrape(session: aiohttp.ClientSession, port: int) -> tuple[str, dict[tuple[str, str], float]]:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        text = await response.text()
        return response.headers["Content-Type"], samples(text)


async def test_runtime_serves_per_source_figures_and_the_producer_buffer(bus_source: str) -> None:
    sink = KafkaSink(f"127.0.0.1:{closed_port()}", close_timeout_s=0.1)
    runtime = AdapterRuntime(settings.load(), sink=sink)
    task = asyncio.create_task(
        runtime.run(
            ["sh-bus"], urls={"sh-bus": bus_source}, intervals={"sh-bus": 0.1}, metrics_port=0, create_topics=False
        )
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                await asyncio.sleep(0.05)
                if runtime.metrics is not None and runtime.metrics.port and runtime.stats["sh-bus"].not_modified >= 2:
                    break
            assert runtime.metrics is not None and runtime.metrics.port
            content_type, got = await scrape(session, runtime.metrics.port)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(15):  # shutdown with Kafka away is bounded (test_adapters_shutdown.py)
                await task
    assert content_type.startswith("text/plain")
    assert got[("shfeeds_adapter_polls_total", "sh-bus")] >= 3
    assert got[("shfeeds_adapter_not_modified_total", "sh-bus")] >= 2
    assert got[("shfeeds_adapter_records_total", "sh-bus")] == 1
    assert got[("shfeeds_adapter_rejects_total", "sh-bus")] == 1
    assert got[("shfeeds_adapter_skipped_total", "sh-bus")] == 0
    assert got[("shfeeds_adapter_errors_total", "sh-bus")] == 0
    assert abs(got[("shfeeds_adapter_last_success_timestamp_seconds", "sh-bus")] - time.time()) < 30
    # Kafka is away: the record and the dead letter wait in the producer buffer, nothing is delivered.
    assert got[("shfeeds_adapter_producer_buffered_messages", "")] == 2
    assert got[("shfeeds_adapter_kafka_connected", "")] == 0
    assert got[("shfeeds_adapter_delivered_total", "")] == 0


async def test_adapter_run_command_serves_metrics_on_the_port_from_the_environment(bus_source: str) -> None:
    metrics_port = closed_port()
    env = {
        **os.environ,
        "SHFEEDS_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}",
        "SHFEEDS_ADAPTER_METRICS_PORT": str(metrics_port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shfeeds_cli.main",
        "adapter",
        "run",
        "sh-bus",
        "--url",
        bus_source,
        "--interval",
        "0.2",
        cwd=settings.PROJECT_ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    got: dict[tuple[str, str], float] = {}
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(150):
                await asyncio.sleep(0.1)
                assert proc.returncode is None, "shfeeds adapter run exited"
                try:
                    _, got = await scrape(session, metrics_port)
                except aiohttp.ClientConnectionError:
                    continue
                if got.get(("shfeeds_adapter_not_modified_total", "sh-bus"), 0) >= 1:
                    break
    finally:
        proc.terminate()
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert got[("shfeeds_adapter_records_total", "sh-bus")] == 1, stderr.decode()[-2000:]
    assert got[("shfeeds_adapter_rejects_total", "sh-bus")] == 1
    assert got[("shfeeds_adapter_producer_buffered_messages", "")] == 2


def test_a_bad_metrics_port_is_a_usage_error() -> None:
    import subprocess

    env = {**os.environ, "SHFEEDS_ADAPTER_METRICS_PORT": "ninety"}
    done = subprocess.run(
        [sys.executable, "-m", "shfeeds_cli.main", "adapter", "run", "sh-bus"],
        capture_output=True,
        text=True,
        cwd=settings.PROJECT_ROOT,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2 and "SHFEEDS_ADAPTER_METRICS_PORT='ninety' is not a port number" in done.stderr
