"""The node-wide keepalive (ws_server/keepalive.py) does what the library's per-connection one did: a client
that answers pings stays connected, one that does not is closed with 1011 within interval + timeout."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from ws_server.keepalive import REASON, Keepalive

INTERVAL_S = 0.1
TIMEOUT_S = 0.1


async def _server(conns: set[ServerConnection]) -> tuple[asyncio.Task[None], int, object]:
    async def handler(conn: ServerConnection) -> None:
        conns.add(conn)
        try:
            await conn.wait_closed()
        finally:
            conns.discard(conn)

    server = await serve(handler, "127.0.0.1", 0, ping_interval=None, ping_timeout=None)
    keepalive = Keepalive(INTERVAL_S, TIMEOUT_S)
    task = asyncio.create_task(keepalive.run(lambda: conns))
    port = server.sockets[0].getsockname()[1]
    return task, port, server


def _silent_client(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never answers anything (no pong)."""
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101")
    return sock


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked server frame (all short here: control frames)."""
    frames = []
    while data:
        opcode, length = data[0] & 0x0F, data[1]
        assert length < 126
        frames.append((opcode, data[2 : 2 + length]))
        data = data[2 + length :]
    return frames


async def test_a_client_that_answers_pings_stays_connected() -> None:
    conns: set[ServerConnection] = set()
    task, port, server = await _server(conns)
    try:
        async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as client:
            await asyncio.sleep(6 * INTERVAL_S)  # several rounds of ping and pong
            await client.send("still here")  # would raise if the server had closed it
            assert len(conns) == 1 and next(iter(conns)).latency > 0  # pings were sent and answered
    finally:
        task.cancel()
        server.close()  # type: ignore[attr-defined]


async def test_a_client_that_never_answers_is_closed_with_1011() -> None:
    conns: set[ServerConnection] = set()
    task, port, server = await _server(conns)
    sock = await asyncio.to_thread(_silent_client, port)
    try:
        sock.settimeout(5 * (INTERVAL_S + TIMEOUT_S))

        def read_all() -> bytes:
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            return data

        received = await asyncio.to_thread(read_all)  # ends when the server closes the TCP connection
        frames = _frames(received)
        # Pings (opcode 9) came first, then a close frame (opcode 8) with 1011 and the reason.
        assert frames[0][0] == 0x9 and frames[-1][0] == 0x8
        payload = frames[-1][1]
        assert struct.unpack("!H", payload[:2])[0] == 1011
        assert payload[2:] == REASON.encode()
        sock.close()
        async with asyncio.timeout(1.0):  # and the server's handler saw it closed
            while conns:
                await asyncio.sleep(0.01)
    finally:
        sock.close()
        task.cancel()
        server.close()  # type: ignore[attr-defined]
