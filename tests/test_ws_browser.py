"""The map page served by the node, in headless Chromium: districts drawn, entities live over the protocol."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from ws_server.config import Naming, ServerConfig
from ws_server.testing import TierWriter, bus_record, create_tier_topics, running_node

pytestmark = pytest.mark.stack

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
CHROMIUM = Path("/usr/bin/chromium")


async def test_map_page_shows_districts_and_live_entities(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    missing = [
        what
        for what, ok in (
            ("node", shutil.which("node") is not None),
            ("Chromium at /usr/bin/chromium", CHROMIUM.exists()),
            ("playwright-core in tests/browser", (BROWSER_DIR / "node_modules").exists()),
        )
        if not ok
    ]
    if missing:  # `make browser-deps` (part of `make test`) installs them
        pytest.fail(f"the map page test needs {', '.join(missing)}: run `make browser-deps`")
    prefix = unique_name("wsbrowser")
    naming = Naming(prefix + ".", prefix)
    await create_tier_topics(kafka_bootstrap, naming, [("public", "bus")])
    config = ServerConfig(port=0, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, naming=naming)
    async with TierWriter(kafka_bootstrap, redis_url, naming) as writer, running_node(config) as node:
        await writer.put("public", "bus", [bus_record("ps", 121.4737, 31.2304), bus_record("ljz", 121.5055, 31.2397)])
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(BROWSER_DIR / "map_page.mjs"),
            f"http://127.0.0.1:{node.port}/?feed=bus",
            "ps,ljz",
            "late",
            cwd=BROWSER_DIR,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if not line:
                pytest.fail((await proc.stderr.read()).decode())
            ready = orjson.loads(line)["ready"]
            assert ready["districts"] == 16 and ready["entities"] == ["ljz", "ps"]
            assert ready["filledPixels"] > 10_000 and ready["entityPixels"] > 0  # outlines and dots drawn
            await writer.put("public", "bus", [bus_record("late", 121.32, 31.194)])
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            result = orjson.loads(line)
            assert result["late"]["id"] == "late" and result["consoleErrors"] == []
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
