"""What an open, idle WebSocket connection costs the node in memory: what decides how many clients one
process holds. Measured with tracemalloc on a real node; the clients run in a child process so only the
node's allocations are counted. (bench/fanout/conn_memory.py measures RSS under load, and by file:line.)"""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
from collections.abc import Callable

from ws_server.config import Naming, ServerConfig
from ws_server.testing import running_node

CLIENTS = 300
# An idle connection's Python allocations were about 16 KB (request and response headers kept, a keepalive
# task each, an async generator, an empty flood deque); now about 10.5 KB.
MAX_BYTES_PER_CONNECTION = 12_500

# Opens the connections with raw sockets (a WebSocket handshake each, nothing more), says so, and holds them
# until its stdin closes.
CLIENT_SCRIPT = r"""
import base64, os, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(n):
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    socks.append(sock)
print("open", flush=True)
sys.stdin.read()
"""


async def test_an_idle_connection_costs_the_node_little_memory(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("wsmem")
    config = ServerConfig(
        port=0,
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        naming=Naming(prefix + ".", prefix),
        per_ip_connections=CLIENTS + 10,
        gc_freeze_s=0,
        heap_trim_s=0,
    )
    async with running_node(config) as node:
        tracemalloc.start()
        try:
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            clients = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CLIENT_SCRIPT, str(node.port), str(CLIENTS),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert clients.stdout is not None and clients.stdin is not None
            async with asyncio.timeout(20):
                assert await clients.stdout.readline() == b"open\n"
                while len(node.sessions) < CLIENTS:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # handshake leftovers (timeouts, the open_timeout context) are gone
            gc.collect()
            per_connection = (tracemalloc.get_traced_memory()[0] - before) / CLIENTS
        finally:
            tracemalloc.stop()
        clients.stdin.close()
        await clients.wait()
    assert per_connection < MAX_BYTES_PER_CONNECTION, f"{per_connection:.0f} bytes per idle connection"
