"""WebSocket framing of shared payloads: the wire bytes of a frame are built once and written as the same
object to every member's transport (server frames are unmasked, and we negotiate no compression)."""

from __future__ import annotations

import asyncio
import struct

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

_OPEN = State.OPEN


def wire_frame(payload: bytes, binary: bool) -> bytes:
    first = 0x82 if binary else 0x81  # FIN + opcode
    n = len(payload)
    if n < 126:
        header = bytes((first, n))
    elif n < 65536:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


class WsSink:
    """A session's output on a live connection. Frames bypass the library's per-send framing, which would
    copy the payload once per member; control frames (ping, close) stay with the library."""

    __slots__ = ("binary", "conn", "transport")

    # The most recent payload and its wire bytes: a stream's members are served one after the other, so a
    # one-entry cache builds each frame's wire bytes exactly once.
    _last: tuple[bytes, bool, bytes] = (b"", False, b"")

    def __init__(self, conn: ServerConnection, binary: bool) -> None:
        self.conn = conn
        self.transport = conn.transport
        self.binary = binary

    def send(self, frame: bytes) -> None:
        conn = self.conn
        if conn.protocol.state is not _OPEN or conn.send_in_progress is not None:
            return
        last = WsSink._last
        if last[0] is frame and last[1] == self.binary:
            wire = last[2]
        else:
            wire = wire_frame(frame, self.binary)
            WsSink._last = (frame, self.binary, wire)
        self.transport.write(wire)

    def send_many(self, frames: list[bytes]) -> None:
        """Several frames in one write: a resume replay or a snapshot costs one system call, not dozens."""
        conn = self.conn
        if not frames or conn.protocol.state is not _OPEN or conn.send_in_progress is not None:
            return
        self.transport.write(b"".join([wire_frame(frame, self.binary) for frame in frames]))

    def backlog(self) -> int:
        size: int = self.transport.get_write_buffer_size()
        return size

    def close(self, code: int, reason: str) -> None:
        asyncio.get_running_loop().create_task(self.conn.close(code, reason))
