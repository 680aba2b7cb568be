"""The control plane on the real stack: the simulated city with its fault switches → the real adapter
runtime (its per-source stats to ops.stats) → the Faust control plane as its own process → /health.

What an operator would notice: a stalled source turns its feed stale within its threshold and /health
answers 503 naming it; garbage raises the reject ratio and the samples show the reason; duplicates raise
the duplicate ratio; clearing each fault brings the feed back to ok; the operator's webhook gets each
alert raised once and cleared once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import settings as settings_mod
from adapters.runtime import AdapterRuntime, KafkaSink
from adapters.simulators.city import SimulatedCity
from adapters.simulators.server import build_app
from kafka_admin import ensure_topics
from schemas import dlq_topic, raw_topic

from .conftest import settings_env
from .metrics_lint import lint
from .streams_support import topic_prefix_fixture  # noqa: F401  (the fixture, by its name)

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]

START_MS = 1_795_743_000_000  # a Friday afternoon in Shanghai: buses running
POLL_S = 0.5
STALE_AFTER_S = 8.0
THRESHOLDS = f"""
[defaults]
window_s = 60
down_after_s = 60

[feeds.bus]
sources = ["sh-bus"]
expected_interval_s = {POLL_S}
stale_after_s = {STALE_AFTER_S}
reject_ratio = 0.02
duplicate_ratio = 0.05
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(
    check: Callable[[], Awaitable[tuple[bool, Any]]], timeout_s: float, what: str
) -> tuple[float, Any]:
    """Seconds it took and the last value seen, once ``check`` says yes."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout_s:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            done, last = await check()
            if done:
                return time.monotonic() - started, last
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; last seen: {last}")


@pytest.fixture
async def city(topic_prefix: str, running_stack: settings_mod.Settings) -> AsyncIterator[tuple[str, AdapterRuntime]]:
    """The simulator (bus only matters here) and the adapter runtime polling it under the test's prefix."""
    await ensure_topics(
        running_stack.kafka_bootstrap, running_stack.topic_partitions, [topic_prefix + raw_topic("bus"),
                                                                         topic_prefix + dlq_topic("bus")]
    )  # fmt: skip
    sim = SimulatedCity(seed=7, start_ms=START_MS, time_scale=20.0, buses=200, lots=20, connectors=20)
    runner = web.AppRunner(build_app(sim), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    runtime = AdapterRuntime(running_stack, sink=KafkaSink(running_stack.kafka_bootstrap, topic_prefix=topic_prefix))
    runtime.ops_stats_every_s = 0.5
    task = asyncio.create_task(
        runtime.run(
            ["sh-bus"],
            urls={"sh-bus": base + sim.feeds["bus"].path},
            intervals={"sh-bus": POLL_S},
            create_topics=False,
        )
    )
    try:
        yield base, runtime
    finally:
        async with aiohttp.ClientSession() as s, s.delete(f"{base}/_faults"):
            pass
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.cleanup()


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """An operator's alert webhook: every event it received, in order."""
    events: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        events.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/alerts", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/alerts", events
    finally:
        await runner.cleanup()


@pytest.fixture
def control_plane(
    topic_prefix: str,
    running_stack: settings_mod.Settings,
    tmp_path: Path,
    unique_name: Callable[[str], str],
    webhook: tuple[str, list[dict[str, Any]]],
) -> Any:
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text(THRESHOLDS)
    port = free_port()
    log = (tmp_path / "control-plane.log").open("wb")
    argv = [sys.executable, "-m", "shfeeds_cli.main", "control-plane", "--web-port", str(port)]
    argv += ["--app-id", unique_name("cp"), "--topic-prefix", topic_prefix, "--feeds", "bus"]
    argv += ["--thresholds", str(thresholds), "--alert-webhook", webhook[0]]
    argv += ["--data-dir", str(tmp_path / "control-plane-data")]
    proc = subprocess.Popen(argv, env=settings_env(running_stack), stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def cli(*args: str) -> tuple[int, str]:
    """``shfeeds ARGS`` as an operator runs it; its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shfeeds_cli.main", *args, stdout=asyncio.subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode()


async def set_fault(session: aiohttp.ClientSession, base: str, **spec: Any) -> None:
    async with session.post(f"{base}/_faults", json={"feed": "bus", **spec}) as response:
        assert response.status == 200, await response.text()


async def clear_faults(session: aiohttp.ClientSession, base: str) -> None:
    async with session.delete(f"{base}/_faults") as response:
        assert response.status == 200, await response.text()


async def test_faults_turn_the_feed_stale_or_degraded_and_recovery_clears_them(
    city: tuple[str, AdapterRuntime], control_plane: str, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    sim, _ = city
    alerts = webhook[1]

    async def alerted(count: int) -> tuple[bool, Any]:
        return len(alerts) >= count, [(a["action"], a["state"]) for a in alerts]

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

        async def bus() -> dict[str, Any]:
            async with http.get(f"{control_plane}/health/feeds") as r:
                assert r.status == 200
                report = await r.json()
            (feed,) = [f for f in report["feeds"] if f["feed"] == "bus"]
            return dict(feed)

        async def health() -> tuple[int, dict[str, Any]]:
            async with http.get(f"{control_plane}/health") as r:
                return r.status, await r.json()

        async def bus_is(state: str) -> tuple[bool, Any]:
            b = await bus()
            return b["state"] == state and (b["figures"]["records_per_s"] or 0) >= 0, b

        async def healthy() -> tuple[bool, Any]:
            b = await bus()
            return b["state"] == "ok" and b["figures"]["last_seen_ms"] is not None, b

        await wait_until(healthy, 120, "the bus feed to be seen and ok")
        status, body = await health()
        assert status == 200 and body["ok"] and body["feeds"] == {"bus": "ok"}
        code, out = await cli("health", "--url", control_plane)
        assert code == 0 and "bus" in out and "ok" in out, out

        # A stalled source: stale within its threshold, /health 503 naming the feed.
        await set_fault(http, sim, fault="stall", stall_s=600)

        async def unhealthy() -> tuple[bool, Any]:
            status, body = await health()
            return status == 503, body

        took, body = await wait_until(unhealthy, STALE_AFTER_S + 30, "/health to answer 503")
        assert took <= STALE_AFTER_S + 15, f"stale only after {took:.1f} s"
        assert body["feeds"]["bus"] == "stale" and body["reasons"][0].startswith("bus: stale")
        assert "no data from sh-bus" in body["reasons"][0]
        async with http.get(f"{control_plane}/metrics") as r:
            exposition = await r.text()
        assert lint(exposition) == []
        assert 'shfeeds_feed_state{feed="bus",state="stale"} 1.0' in exposition
        assert 'shfeeds_feed_state{feed="bus",state="ok"} 0.0' in exposition
        code, out = await cli("health", "--url", control_plane, "--json")
        assert code == 1 and [f["state"] for f in json.loads(out)["feeds"]] == ["stale"], out
        await wait_until(lambda: alerted(1), 30, "the stale alert")
        await clear_faults(http, sim)
        await wait_until(healthy, 60, "the bus feed to recover from the stall")
        status, _ = await health()
        assert status == 200
        await wait_until(lambda: alerted(2), 30, "the stale alert to clear")

        # Garbage: the reject ratio rises and the samples say why.
        await set_fault(http, sim, fault="garbage", rate=0.3)
        _, b = await wait_until(lambda: bus_is("degraded"), 60, "garbage to degrade the feed")
        assert b["figures"]["reject_ratio"] > 0.02 and "reject ratio" in " ".join(b["reasons"])
        assert b["dimensions"]["normativity"]["state"] == "degraded"

        async def samples() -> tuple[bool, Any]:
            s = (await bus())["samples"]
            return bool(s), s

        _, kept = await wait_until(samples, 60, "reject samples")
        assert all(s["reason"] and s["excerpt"] and s["source"] == "sh-bus" for s in kept)
        status, _ = await health()
        assert status == 200  # degraded is not down: the feed still serves
        await wait_until(lambda: alerted(3), 30, "the reject alert")
        await clear_faults(http, sim)
        await wait_until(healthy, 180, "the reject ratio to clear")
        await wait_until(lambda: alerted(4), 30, "the reject alert to clear")

        # Duplicates: the duplicate ratio rises; clearing brings it back.
        await set_fault(http, sim, fault="duplicates", rate=0.3)
        _, b = await wait_until(lambda: bus_is("degraded"), 60, "duplicates to degrade the feed")
        assert b["figures"]["duplicate_ratio"] > 0.05
        assert b["dimensions"]["truthfulness"]["state"] == "degraded"
        await wait_until(lambda: alerted(5), 30, "the duplicate alert")
        await clear_faults(http, sim)
        await wait_until(healthy, 180, "the duplicate ratio to clear")
        await wait_until(lambda: alerted(6), 30, "the duplicate alert to clear")
        await asyncio.sleep(5)  # nothing more may come: each alert is raised once and cleared once

    assert [(a["action"], a["feed"], a["state"]) for a in alerts] == [
        ("raise", "bus", "stale"),
        ("clear", "bus", "ok"),
        ("raise", "bus", "degraded"),
        ("clear", "bus", "ok"),
        ("raise", "bus", "degraded"),
        ("clear", "bus", "ok"),
    ]
    assert "no data from sh-bus" in alerts[0]["reasons"][0] and "reject ratio" in alerts[2]["reasons"][0]
    assert "duplicate ratio" in alerts[4]["reasons"][0]
