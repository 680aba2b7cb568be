"""Server processes on the real Kafka and Redis: resume on another process after a kill, several processes
sharing one port, TLS, the MessagePack subprotocol, and the key and audit commands."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from client import FeedClient
from client.feed_client import MSGPACK
from ws_server.config import Naming, ServerConfig
from ws_server.testing import TierWriter, bus_record, create_tier_topics, running_node

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parent.parent
SHFEEDS = [sys.executable, "-m", "shfeeds_cli.main"]
INSIDE = (121.4737, 31.2304)  # People's Square
OUTSIDE = (121.60, 31.10)
BBOX = [121.40, 31.20, 121.55, 31.30]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def namespace(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> Naming:
    prefix = unique_name("wsnodes")
    naming = Naming(prefix + ".", prefix)
    await create_tier_topics(kafka_bootstrap, naming, [("public", "bus"), ("licensed", "bus")])
    return naming


@contextlib.contextmanager
def serve_process(naming: Naming, port: int, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """``shfeeds serve`` in its own process group (so --processes children go with it)."""
    argv = [*SHFEEDS, "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]
    argv += ["--topic-prefix", naming.topic_prefix, "--redis-prefix", naming.redis_prefix, *extra]
    proc = subprocess.Popen(argv, cwd=ROOT, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


async def http_get(port: int, path: str, ssl_context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """One request on a fresh TCP connection (no keep-alive, so each may land on another process)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ssl_context, server_hostname="localhost" if ssl_context else None
    )
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_resume_on_another_process_after_the_first_is_killed(
    kafka_bootstrap: str, redis_url: str, namespace: Naming
) -> None:
    port = free_port()
    async with TierWriter(kafka_bootstrap, redis_url, namespace) as writer:
        await writer.put("public", "bus", [bus_record("leaver", *INSIDE), bus_record("stayer", *INSIDE)])
        client = FeedClient(f"ws://127.0.0.1:{port}/", backoff_initial_s=0.1, backoff_max_s=0.5)
        client.subscribe("s", "bus", {"bbox": BBOX})
        upserts: list[str] = []
        removes: list[str] = []
        seen = asyncio.Event()

        async def consume() -> None:
            async for event in client.events():
                if event.type == "snapshot":
                    upserts.extend(r["id"] for r in event.message["records"])
                elif event.type == "delta":
                    upserts.extend(r["id"] for r in event.message["upsert"])
                    removes.extend(event.message["remove"])
                seen.set()

        task = asyncio.create_task(consume())
        try:
            with serve_process(namespace, port) as node_a:
                await wait_listening(port)
                for n in range(5):
                    await writer.put("public", "bus", [bus_record(f"r{n}", *INSIDE)])
                deadline = time.monotonic() + 15
                while "r4" not in upserts and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert "r4" in upserts
                node_a.send_signal(signal.SIGKILL)  # no goodbye to anyone
                node_a.wait()
            # While no node runs: new entities, and one that leaves the area.
            for n in range(5, 10):
                await writer.put("public", "bus", [bus_record(f"r{n}", *INSIDE)])
            await writer.put("public", "bus", [bus_record("leaver", *OUTSIDE)])
            config = ServerConfig(port=port, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, naming=namespace)
            async with running_node(config):  # node B: another process, another hub, the same port
                deadline = time.monotonic() + 20
                while "r9" not in upserts and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                for n in range(10, 13):
                    await writer.put("public", "bus", [bus_record(f"r{n}", *INSIDE)])
                while "r12" not in upserts and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert client.connects == 2 and client.resumes == 1 and client.resets == 0
    expected = ["leaver", "stayer", *(f"r{n}" for n in range(13))]
    assert sorted(upserts) == sorted(expected)  # every record exactly once: no gap, no duplicate
    assert removes == ["leaver"]
    assert set(client.entities("s")) == {"stayer", *(f"r{n}" for n in range(13))}


async def test_processes_option_serves_from_that_many_processes(namespace: Naming) -> None:
    port = free_port()
    with serve_process(namespace, port, "--processes", "2"):
        await wait_listening(port)
        nodes: set[str] = set()
        deadline = time.monotonic() + 30
        while len(nodes) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                status, body = await http_get(port, "/healthz")
                if status == 200:
                    nodes.add(orjson.loads(body)["node"])
            await asyncio.sleep(0.05)
    assert len(nodes) == 2  # two processes, each with its own node id, answer on the one port


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_serves_wss_and_https(
    kafka_bootstrap: str, redis_url: str, namespace: Naming, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    config = ServerConfig(
        port=0, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, naming=namespace, tls_cert=cert, tls_key=key
    )
    trusted = ssl.create_default_context(cafile=str(cert))
    async with TierWriter(kafka_bootstrap, redis_url, namespace) as writer, running_node(config) as node:
        await writer.put("public", "bus", [bus_record("b1", *INSIDE)])
        status, body = await http_get(node.port, "/healthz", trusted)
        assert status == 200 and orjson.loads(body)["node"] == node.hub.node_id
        async with connect(f"wss://localhost:{node.port}/", ssl=trusted, subprotocols=["shfeeds.v1.json"]) as ws:  # type: ignore[list-item]
            await ws.send(orjson.dumps({"type": "subscribe", "id": "s", "feed": "bus"}).decode())
            assert orjson.loads(await ws.recv())["type"] == "subscribed"
            snapshot = orjson.loads(await ws.recv())
            assert [r["id"] for r in snapshot["records"]] == ["b1"]
        with pytest.raises(ssl.SSLError):  # a client that does not trust the certificate is refused
            await http_get(node.port, "/healthz", ssl.create_default_context())
        with pytest.raises((InvalidHandshake, OSError)):  # plain ws:// gets no WebSocket
            async with connect(f"ws://127.0.0.1:{node.port}/", open_timeout=5):
                pass


async def test_msgpack_subprotocol_end_to_end_with_resume(
    kafka_bootstrap: str, redis_url: str, namespace: Naming
) -> None:
    config = ServerConfig(port=0, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, naming=namespace)
    async with TierWriter(kafka_bootstrap, redis_url, namespace) as writer, running_node(config) as node:
        await writer.put("public", "bus", [bus_record("b0", *INSIDE, route_id="71", speed_kmh=12.5)])
        client = FeedClient(f"ws://127.0.0.1:{node.port}/", codec=MSGPACK, backoff_initial_s=0.05)
        client.subscribe("s", "bus", {"bbox": BBOX})
        got: list[dict[str, Any]] = []

        async def consume() -> None:
            async for event in client.events():
                if event.type == "snapshot":
                    got.extend(event.message["records"])
                elif event.type == "delta":
                    got.extend(event.message["upsert"])
                if len(got) == 3 and client.connects == 1:
                    assert client._conn is not None
                    client._conn.transport.abort()  # drop the connection after the second delta
                if len(got) >= 6:
                    return

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.5)
        for n in range(1, 6):
            await writer.put("public", "bus", [bus_record(f"b{n}", *INSIDE, route_id="71")])
            await asyncio.sleep(0.1)
        await asyncio.wait_for(task, 20)
    assert [r["id"] for r in got] == [f"b{n}" for n in range(6)]
    assert got[0]["speed_kmh"] == 12.5 and got[0]["route_id"] == "71"  # MessagePack records decode as sent
    assert client.connects == 2 and client.resumes == 1 and client.resets == 0


def shfeeds(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SHFEEDS, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.fixture
async def node_for(kafka_bootstrap: str, redis_url: str, namespace: Naming) -> AsyncIterator[Any]:
    config = ServerConfig(
        port=0,
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        naming=namespace,
        key_check_interval_s=1.0,
        audit_interval_s=0.3,
    )
    async with running_node(config) as node:
        yield node


async def test_keys_and_audit_commands(kafka_bootstrap: str, redis_url: str, namespace: Naming, node_for: Any) -> None:
    prefix = ["keys", "--redis-prefix", namespace.redis_prefix]
    refused = shfeeds(*prefix, "issue", "licensed")
    assert refused.returncode == 2 and "agreement" in refused.stderr
    issued = shfeeds(*prefix, "issue", "licensed", "--agreement", "AG-CLI-1", "--label", "test app")
    assert issued.returncode == 0, issued.stderr
    key = issued.stdout.strip()
    listed = shfeeds(*prefix, "list")
    (line,) = listed.stdout.splitlines()
    key_id = line.split()[0]
    assert "licensed" in line and "active" in line and "AG-CLI-1" in line and key not in listed.stdout
    async with TierWriter(kafka_bootstrap, redis_url, namespace) as writer:
        await writer.put("licensed", "bus", [bus_record("v1", *INSIDE, vehicle_id="SH-1")])
        url = f"ws://127.0.0.1:{node_for.port}/"
        headers = {"Authorization": f"Bearer {key}"}
        async with connect(url, additional_headers=headers) as ws:
            await ws.send(orjson.dumps({"type": "subscribe", "id": "s", "feed": "bus"}).decode())
            subscribed = orjson.loads(await ws.recv())
            snapshot = orjson.loads(await ws.recv())
            assert subscribed["tier"] == "licensed" and snapshot["records"][0]["vehicle_id"] == "SH-1"
            started = time.monotonic()
            revoked = shfeeds(*prefix, "revoke", key_id)
            assert revoked.returncode == 0 and key_id in revoked.stdout
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 6)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
            assert time.monotonic() - started < 5.0
    assert "revoked" in shfeeds(*prefix, "list").stdout
    deadline = time.monotonic() + 15
    while True:
        audit = shfeeds("audit", "--topic-prefix", namespace.topic_prefix, "--agreement", "AG-CLI-1")
        entries = [orjson.loads(line) for line in audit.stdout.splitlines()]
        if entries or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert audit.returncode == 0 and "every hash chain verifies" in audit.stderr
    assert entries and all(e["agreement_id"] == "AG-CLI-1" for e in entries)
    assert entries[0]["records"] >= 1 and "vehicle_id" in entries[0]["fields"]
