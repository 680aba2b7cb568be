"""Prometheus /metrics on every component: distinct ports in ``shfeeds run``, tiers as labels, names that
pass promtool's rules; the WebSocket node's connections and subscriptions per tier."""

from __future__ import annotations

import argparse
import re

import aiohttp
import pytest
from prometheus_client import REGISTRY, generate_latest

import settings as settings_mod
from shfeeds_cli.cmd_control_plane import DEFAULT_WEB_PORT
from shfeeds_cli.cmd_run import children
from streams.io import metrics as stream_metrics

from .metrics_lint import lint
from .test_ws_e2e import Stack, open_ws, recv, send
from .test_ws_e2e import stack as stack  # the fixture, by its name


def test_shfeeds_run_gives_every_component_its_own_metrics_port() -> None:
    args = argparse.Namespace(no_simulator=False, seed=1, time_scale=1.0, buses=None)
    settings = settings_mod.load()
    specs = children(args, settings)
    ports = {}
    for spec in specs:
        if "--metrics-port" in spec.argv:
            ports[spec.name] = int(spec.argv[spec.argv.index("--metrics-port") + 1])
    names = {s.name for s in specs}
    assert {n for n in names if n.startswith("adapter ")} | {"streams"} <= set(ports)
    assert "control-plane" in names and "ws-server" in names  # /metrics on their own HTTP ports
    standby = next(s for s in specs if s.name == "control-plane-standby").argv
    standby_port = int(standby[standby.index("--web-port") + 1])
    taken = [*ports.values(), settings.ws_port, settings.simulator_port, DEFAULT_WEB_PORT, standby_port]
    assert len(taken) == len(set(taken)), ports


def test_stream_metrics_put_tiers_in_labels() -> None:
    stream_metrics.TIER_RECORDS.labels("clean", "bus", "public", "released").inc(0)
    text = generate_latest(REGISTRY).decode()
    assert 'shfeeds_streams_tier_records_total{feed="bus",outcome="released",stage="clean",tier="public"}' in text
    assert lint(text) == []


async def test_the_websocket_node_serves_metrics_per_tier(stack: Stack) -> None:
    ws = await open_ws(stack.url)
    await send(ws, {"type": "subscribe", "id": "a", "feed": "bus", "options": {"snapshot": False}})
    await recv(ws)
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{stack.node.port}/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
    finally:
        await ws.close()
    assert lint(text) == []
    assert re.search(r'^shfeeds_ws_connections\{tier="public"\} 1\.0$', text, re.M), text
    assert re.search(r'^shfeeds_ws_subscriptions\{tier="public"\} 1\.0$', text, re.M), text
    assert re.search(r'^shfeeds_ws_connections\{tier="licensed"\} 0\.0$', text, re.M), text
    assert re.search(r"^shfeeds_ws_slow_closes_total 0\.0$", text, re.M), text
    assert re.search(r"^shfeeds_ws_conflated_frames_total 0\.0$", text, re.M), text


pytestmark = pytest.mark.stack
