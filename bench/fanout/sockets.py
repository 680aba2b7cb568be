"""Kernel memory of the benchmark's TCP connections, read with ``ss -tm`` (iproute2): what the sockets cost
outside the server's RSS, per side of the loopback connection."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

SKMEM = re.compile(r"skmem:\(r(\d+),rb\d+,t\d+,tb\d+,f(\d+),w(\d+),")


@dataclass(frozen=True)
class SocketMemory:
    server_sockets: int
    server_bytes: int  # received-not-read + queued-to-send + reserved ahead, over the server's sockets
    client_bytes: int  # the same over the clients' sockets (unread deliveries show up here)

    def per_server_socket(self) -> float:
        return self.server_bytes / self.server_sockets if self.server_sockets else 0.0


def parse_ss(text: str, port: int) -> SocketMemory:
    """``ss -tmnH state established`` output: each socket's line (Recv-Q, Send-Q, local, peer) is followed by
    its ``skmem`` line. A socket whose local address ends in ``:port`` is the server's."""
    server_n = server_b = client_b = 0
    local = ""
    for line in text.splitlines():
        match = SKMEM.search(line)
        if match is None:
            fields = line.split()
            local = fields[2] if len(fields) >= 4 else ""
            continue
        charged = int(match[1]) + int(match[2]) + int(match[3])
        if local.endswith(f":{port}"):
            server_n += 1
            server_b += charged
        else:
            client_b += charged
    return SocketMemory(server_n, server_b, client_b)


def socket_memory(port: int) -> SocketMemory:
    out = subprocess.run(
        ["ss", "-tmnH", "state", "established", f"( sport = :{port} or dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_ss(out.stdout, port)


def kernel_slab_kb() -> int:
    """The kernel's slab memory (``Slab`` in /proc/meminfo, KiB): socket, inode, file and epoll objects of
    every connection live there, outside any process' RSS."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            return int(line.split()[1])
    return 0
