"""The operator dashboard, served by the control plane, in headless Chromium: a row per feed with its
state colour, the last hour's chart, the recent reject samples and a link to each feed's details; the
test saves a screenshot showing every feed."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

import settings as settings_mod
from access.identity import kafka_options
from control_plane.emitter import StatsEmitter
from control_plane.figures import lag_histogram, source_record, stage_record, ws_record
from schemas import FEEDS, DeadLetter, dlq_topic, encode_dead_letter

from .conftest import settings_env
from .streams_support import topic_prefix_fixture  # noqa: F401  (the fixture, by its name)
from .test_control_plane_health import free_port

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
CHROMIUM = Path("/usr/bin/chromium")
# One source per feed that reports; charging_sessions reports nothing, so it is shown as it is (down).
REPORTING = {"bus": "sh-bus", "metro": "sh-metro", "parking": "sh-parking", "charging": "sh-charging",
             "scenic": "sh-scenic"}  # fmt: skip


async def test_the_dashboard_shows_every_feed_with_charts_samples_and_clients(
    topic_prefix: str, running_stack: settings_mod.Settings, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    if not (shutil.which("node") and CHROMIUM.exists() and (BROWSER_DIR / "node_modules").exists()):
        pytest.fail("the dashboard test needs node, Chromium and playwright-core: run `make browser-deps`")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text("[defaults]\ndown_after_s = 5\n" + "".join(
        f'[feeds.{feed}]\nsources = ["{src}"]\nexpected_interval_s = 1\n' for feed, src in REPORTING.items()
    ))  # fmt: skip
    argv = [sys.executable, "-m", "shfeeds_cli.main", "control-plane", "--web-port", str(port)]
    argv += ["--app-id", unique_name("cp"), "--topic-prefix", topic_prefix, "--thresholds", str(thresholds)]
    argv += ["--data-dir", str(tmp_path / "control-plane-data")]
    log = (tmp_path / "control-plane.log").open("wb")
    proc = subprocess.Popen(argv, env=settings_env(running_stack), stdout=log, stderr=subprocess.STDOUT)
    emitter = StatsEmitter(running_stack.kafka_bootstrap, topic_prefix)
    await emitter.start()
    producer = AIOKafkaProducer(bootstrap_servers=running_stack.kafka_bootstrap, **kafka_options())
    await producer.start()
    screenshot = tmp_path / "dashboard.png"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            deadline = time.monotonic() + 120
            while True:
                now = time.time_ns() // 1_000_000
                for feed, src in REPORTING.items():
                    emitter.emit(source_record(src, feed, now, 1.0, polls=1, records=50, skipped=10,
                                               last_success_ms=now, last_record_ms=now))  # fmt: skip
                # The clean stage's batch (ingest → tier lag 200 ms) and a WebSocket node's clients.
                emitter.emit(stage_record("clean", "w1", now, 50, {"bus": {"in": 50, "out": 50,
                                          "ilag": lag_histogram([200] * 50)}}, {}))  # fmt: skip
                emitter.emit(ws_record("node-1", now, {"public": 3, "operator": 1}, {"public": 5, "operator": 2}))
                letter = DeadLetter(source="sh-bus", feed="bus", reason="bad coordinates: lng 999.0 outside Shanghai",
                                    received_at=now, original=b'{"vehicleId": "B1", "lng": 999.0}')  # fmt: skip
                await producer.send_and_wait(topic_prefix + dlq_topic("bus"), encode_dead_letter(letter), key=b"sh-bus")
                try:
                    async with http.get(f"{base}/health/feeds") as r:
                        report = await r.json()
                    states = {f["feed"]: f["state"] for f in report["feeds"]}
                    ready = all(states[f] == "ok" for f in REPORTING) and states["charging_sessions"] == "down"
                    if ready and report["feeds"][0]["samples"]:
                        break
                except (TimeoutError, aiohttp.ClientError, KeyError, IndexError):
                    pass
                assert time.monotonic() < deadline, "the control plane never showed the feeds ok"
                await asyncio.sleep(0.5)
        run = await asyncio.create_subprocess_exec(
            "node", str(BROWSER_DIR / "dashboard_page.mjs"), f"{base}/dashboard", str(len(FEEDS)), str(screenshot),
            cwd=BROWSER_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(run.communicate(), 90)
        assert run.returncode == 0, err.decode()
        seen = orjson.loads(out.splitlines()[-1])
    finally:
        await producer.stop()
        await emitter.stop()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

    assert [r["feed"] for r in seen["rows"]] == list(FEEDS)
    states = {r["feed"]: r["state"] for r in seen["rows"]}
    assert all(states[f] == "ok" for f in REPORTING) and states["charging_sessions"] == "down"
    colours = {r["state"]: r["colour"] for r in seen["rows"]}
    assert colours["ok"] == "rgb(46, 125, 50)" and colours["down"] == "rgb(106, 27, 27)"
    assert all(r["drawnPoints"] == 60 for r in seen["rows"])  # an hour, a point a minute
    assert any("bad coordinates" in s and "999.0" in s for s in seen["samples"])
    assert seen["toTier"]["bus"] == "0.25 s"  # ingest → tier p99, at the histogram's precision
    assert seen["websocket"]["public"] == [3, 5] and seen["websocket"]["operator"] == [1, 2]
    assert seen["details"] == "bus: figures and last hour" and seen["consoleErrors"] == []
    assert screenshot.stat().st_size > 20_000  # a real page, every feed in it
