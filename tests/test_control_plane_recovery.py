"""Kill -9 the control plane: on restart its tables come back from their changelog topics, so the last
hour's per-minute history and the sources' latest times are there before any new figure arrives."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import settings as settings_mod
from control_plane.emitter import StatsEmitter
from control_plane.figures import source_record

from .conftest import settings_env
from .streams_support import topic_prefix_fixture  # noqa: F401  (the fixture, by its name)
from .test_control_plane_health import free_port

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


async def history(http: aiohttp.ClientSession, base: str) -> dict[str, Any] | None:
    try:
        async with http.get(f"{base}/health/feeds/bus/history") as r:
            return dict(await r.json()) if r.status == 200 else None
    except aiohttp.ClientError:
        return None


def recorded(h: dict[str, Any] | None) -> int:
    return sum(p["records"] for p in (h or {}).get("sources", {}).get("sh-bus", []))


async def test_tables_come_back_from_their_changelogs_after_kill_9(
    topic_prefix: str, running_stack: settings_mod.Settings, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "shfeeds_cli.main", "control-plane", "--web-port", str(port), "--feeds", "bus"]
    argv += ["--app-id", unique_name("cp"), "--topic-prefix", topic_prefix]
    argv += ["--data-dir", str(tmp_path / "control-plane-data")]
    env = settings_env(running_stack)
    log = tmp_path / "control-plane.log"
    proc = start(argv, env, log)
    emitter = StatsEmitter(running_stack.kafka_bootstrap, topic_prefix)
    await emitter.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            # Until the control plane is up and reading, keep reporting (it starts from the latest offset).
            deadline = time.monotonic() + 120
            sent_success = 0
            while recorded(await history(http, base)) < 1000:
                assert time.monotonic() < deadline, f"no figures folded; see {log}"
                sent_success = time.time_ns() // 1_000_000
                emitter.emit(source_record("sh-bus", "bus", sent_success, 10.0, polls=1, records=100,
                                           last_success_ms=sent_success))  # fmt: skip
                await asyncio.sleep(0.3)
            await asyncio.sleep(3)  # let the changelog writes of the last folds go out
            before = recorded(await history(http, base))
            await emitter.stop()

            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            proc = start(argv, env, log)

            async def recovered() -> dict[str, Any] | None:
                h = await history(http, base)
                return h if recorded(h) >= before else None

            deadline = time.monotonic() + 120
            while (after := await recovered()) is None:
                assert time.monotonic() < deadline, f"history not recovered; see {log}"
                await asyncio.sleep(0.5)
            # Nothing new was emitted: what is there came back from the changelog (at-least-once: a fold
            # not committed before the kill may be counted again, never lost).
            assert recorded(after) >= before
            async with http.get(f"{base}/health/feeds") as r:
                feed = (await r.json())["feeds"][0]
            assert feed["sources"]["sh-bus"]["last_success_ms"] == sent_success
    finally:
        await emitter.stop()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
