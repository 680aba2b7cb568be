"""Secure by default on the network: the WebSocket server, the OCPI push receiver and the adapters'
metrics listen on loopback unless an address is configured; the HTTP side answers only GET and HEAD
(405 with ``Allow`` for the rest, HEAD without a body). Against the real Kafka and Redis."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import settings as settings_mod
from adapters.runtime import AdapterRuntime
from adapters.runtime.kafka_sink import KafkaSink
from shfeeds_cli import cmd_adapters, cmd_serve
from ws_server.config import Naming, ServerConfig
from ws_server.server import Node, config_from_settings


def _namespace() -> Naming:
    tag = uuid.uuid4().hex[:8]
    return Naming(topic_prefix=f"test-{tag}.", redis_prefix=f"test-{tag}")


@contextlib.asynccontextmanager
async def default_node() -> AsyncIterator[Node]:
    """A node on its defaults (bind address included) but a free port, started here rather than through
    ``running_node`` so that nothing but the defaults picks the address."""
    config = config_from_settings(settings_mod.load(), port=0, naming=_namespace())
    node = Node(config)
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(node.run(started))
    waiting: list[asyncio.Future[Any]] = [task, started]
    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    try:
        yield node
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_defaults_are_loopback_and_the_setting_or_flag_changes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServerConfig().host == "127.0.0.1"
    monkeypatch.delenv("SHFEEDS_BIND_HOST", raising=False)
    assert config_from_settings(settings_mod.load()).host == "127.0.0.1"
    monkeypatch.setenv("SHFEEDS_BIND_HOST", "127.0.0.2")  # a configured address is the one bound
    assert config_from_settings(settings_mod.load()).host == "127.0.0.2"
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cmd_serve.register(sub)
    cmd_adapters.register(sub)
    assert "host" not in cmd_serve._overrides(parser.parse_args(["serve"]))  # the setting decides
    assert cmd_serve._overrides(parser.parse_args(["serve", "--host", "::1"]))["host"] == "::1"
    assert parser.parse_args(["adapter", "run", "ocpi-push", "--bind-host", "10.0.0.1"]).bind_host == "10.0.0.1"


async def test_the_websocket_server_listens_on_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHFEEDS_BIND_HOST", raising=False)
    async with default_node() as node:
        assert node.server is not None
        hosts = {sock.getsockname()[0] for sock in node.server.sockets}
        assert hosts == {"127.0.0.1"}


async def test_the_push_receiver_and_metrics_listen_on_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHFEEDS_BIND_HOST", raising=False)
    settings = settings_mod.load()
    sink = KafkaSink(settings.kafka_bootstrap, topic_prefix=f"test-{uuid.uuid4().hex[:8]}.")
    runtime = AdapterRuntime(settings, sink=sink)
    task = asyncio.create_task(runtime.run(["ocpi-push"], push_port=0, metrics_port=0, create_topics=False))
    try:
        for _ in range(400):
            if runtime.push_receivers and runtime.push_receivers[0].port and runtime.metrics and runtime.metrics.port:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        receiver = runtime.push_receivers[0]
        assert receiver._runner is not None and runtime.metrics is not None and runtime.metrics._runner is not None
        assert {a[0] for a in receiver._runner.addresses} == {"127.0.0.1"}
        assert {a[0] for a in runtime.metrics._runner.addresses} == {"127.0.0.1"}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 60)


def _request(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """One request on a raw socket, read to the end: what the server really sent after the headers."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE", "TRACE", "OPTIONS", "PATCH"])
async def test_methods_other_than_get_and_head_get_405_with_allow(method: str) -> None:
    async with default_node() as node:
        for path in ("/healthz", "/", "/operator", "/districts.geojson"):
            status, headers, body = await asyncio.to_thread(_request, node.port, method, path)
            assert status == 405, (method, path)
            assert headers["Allow"] == "GET, HEAD"
            assert b"not allowed" in body


async def test_head_answers_like_get_without_a_body() -> None:
    async with default_node() as node:
        for path in ("/", "/operator", "/districts.geojson", "/nowhere"):
            get_status, get_headers, get_body = await asyncio.to_thread(_request, node.port, "GET", path)
            head_status, head_headers, head_body = await asyncio.to_thread(_request, node.port, "HEAD", path)
            assert head_status == get_status and get_body and head_body == b""
            assert head_headers["Content-Length"] == get_headers["Content-Length"] == str(len(get_body))
