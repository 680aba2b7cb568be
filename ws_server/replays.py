"""``replay`` over the WebSocket protocol: each running replay of a connection is a ``ReplayCore`` fed
from the connection's own tier topic and that tier's archive, never another tier's, so a key replays only
what its tier released (and when: a delayed tier's topic holds records only from their release on).

The session stays the owner of the connection: replays write through its sink and codec, and licensed
replays are recorded in the access audit like live deliveries. See docs/protocol.md ("Replay").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from geo.crs import gcj02_to_wgs84, wgs84_to_gcj02
from replay.core import ReplayCore, ReplayError, parse_speed
from replay.filtering import admit_for
from replay.kafka_source import SourceUnavailable
from replay.opening import OpenReplay, open_replay
from replay.runner import ReplayRunner
from replay.times import parse_time
from schemas import is_client_feed, now_ms, unknown_feed_message

from .config import Naming
from .protocol.errors import (
    CRS_NOT_ALLOWED,
    DUPLICATE_ID,
    FEED_UNAVAILABLE,
    INVALID_MESSAGE,
    TOO_MANY_SUBSCRIPTIONS,
    UNKNOWN_FEED,
    UNKNOWN_SUBSCRIPTION,
    ProtocolError,
)
from .protocol.filters import DistrictLookup, compile_filter
from .protocol.limits import CRS_BY_TIER
from .protocol.messages import (
    ReplayMessage,
    ReplayPause,
    ReplayResume,
    ReplaySeek,
    ReplaySpeed,
    ReplayStart,
    ReplayStop,
)

if TYPE_CHECKING:
    from .audit import AccessAudit
    from .protocol.session import Session

log = logging.getLogger(__name__)

MAX_REPLAYS_PER_CONNECTION = 2
SNAPSHOT_PART_RECORDS = 500
BACKLOG_BYTES = 1 << 20  # at max speed, wait while the connection holds more unsent bytes than this


def wall_ms() -> float:
    return time.monotonic() * 1000.0


def _unpack(value: bytes) -> dict[str, Any]:
    out: dict[str, Any] = msgpack.unpackb(value, raw=False)
    return out


def _map_header(n: int) -> bytes:
    return bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    return b"\xdc" + n.to_bytes(2, "big") if n < 65536 else b"\xdd" + n.to_bytes(4, "big")


class _ReplaySink:
    """Encodes a replay's messages for one connection: its id, the client's CRS, snapshot parts."""

    def __init__(self, session: Session, replay_id: str, feed: str, crs: str, snapshot: bool, audit: Any) -> None:
        self.session = session
        self.id = replay_id
        self.feed = feed
        self.crs = crs
        self.snapshot = snapshot
        self.audit = audit  # a callable (frame bytes, records sent) or None
        self.done = False

    def emit(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "replay_snapshot":
            if not self.snapshot:
                return
            records = [self._in_crs(r) for r in message["records"]]
            parts = [records[i : i + SNAPSHOT_PART_RECORDS] for i in range(0, len(records), SNAPSHOT_PART_RECORDS)]
            for n, part in enumerate(parts or [[]]):
                last = n == max(0, len(parts) - 1)
                self._send({"type": kind, "id": self.id, "at": message["at"], "part": n, "last": last, "records": part})
            return
        if kind == "replay_delta" and "raw" in message:
            raw: list[bytes] = message.pop("raw")
            sample = _unpack(raw[0]) if raw else {}
            if self.session.codec.binary and sample.get("crs", "gcj02") == self.crs:
                self._send_spliced({**message, "id": self.id}, raw, sample)
                return
            message["records"] = [_unpack(v) for v in raw]  # JSON, or another datum: decode after all
        if kind == "replay_delta":
            message = {**message, "records": [self._in_crs(r) for r in message["records"]]}
        elif kind == "replay_complete":
            self.done = True
        self._send({**message, "id": self.id})

    def _send(self, message: dict[str, Any]) -> None:
        if self.session.closed:
            return
        frame = self.session.codec.encode(message)
        self.session.sink.send(frame)
        if self.audit is not None and message["type"] in ("replay_snapshot", "replay_delta"):
            self.audit(frame, message["records"])

    def _send_spliced(self, head: dict[str, Any], raw: list[bytes], sample: dict[str, Any]) -> None:
        """A MessagePack delta whose records are the tier topic's bytes as they are (no decode, no
        encode), as the live protocol forwards them: the same structure as ``records`` decoded."""
        if self.session.closed:
            return
        parts = [_map_header(len(head) + 1)]
        for key, value in head.items():
            parts += [msgpack.packb(key), msgpack.packb(value)]
        parts += [msgpack.packb("records"), _array_header(len(raw)), *raw]
        frame = b"".join(parts)
        self.session.sink.send(frame)
        if self.audit is not None:
            self.audit(frame, [sample] * len(raw))  # the records of one tier topic share their fields

    def _in_crs(self, record: dict[str, Any]) -> dict[str, Any]:
        have = record.get("crs", "gcj02")
        lng, lat = record.get("lng"), record.get("lat")
        if have == self.crs or not isinstance(lng, int | float) or not isinstance(lat, int | float):
            return record
        x, y = gcj02_to_wgs84(lng, lat) if self.crs == "wgs84" else wgs84_to_gcj02(lng, lat)
        return {**record, "lng": round(x, 7), "lat": round(y, 7), "crs": self.crs}


@dataclass
class _Running:
    core: ReplayCore
    runner: ReplayRunner
    opened: OpenReplay
    sink: _ReplaySink
    task: asyncio.Task[None] | None = None


class ReplayService:
    def __init__(
        self,
        bootstrap: str,
        naming: Naming,
        districts: DistrictLookup,
        audit: AccessAudit,
        archive_root: Path | None,
    ) -> None:
        self.bootstrap = bootstrap
        self.naming = naming
        self.districts = districts
        self.audit = audit
        self.archive_root = archive_root
        self.running: dict[Session, dict[str, _Running]] = {}
        self.replays_started = 0

    async def handle(self, session: Session, message: ReplayMessage, ip: str) -> None:
        """One replay message of a connection; errors are answered, never raised."""
        try:
            if isinstance(message, ReplayStart):
                await self._start(session, message, ip)
            else:
                self._control(session, message)
        except ProtocolError as err:
            err.sub_id = message.id
            session.error(err)

    async def _start(self, session: Session, message: ReplayStart, ip: str) -> None:
        mine = self.running.setdefault(session, {})
        if not is_client_feed(message.feed):
            raise ProtocolError(UNKNOWN_FEED, unknown_feed_message(message.feed))
        session.check_licensed(message.feed)
        if message.id in mine or message.id in session.subs:
            raise ProtocolError(DUPLICATE_ID, f"a subscription or replay {message.id!r} is already open")
        if len(mine) >= MAX_REPLAYS_PER_CONNECTION:
            raise ProtocolError(TOO_MANY_SUBSCRIPTIONS, f"at most {MAX_REPLAYS_PER_CONNECTION} replays per connection")
        crs = message.options.crs
        if crs not in CRS_BY_TIER[session.tier]:
            raise ProtocolError(CRS_NOT_ALLOWED, f"tier {session.tier} may not receive {crs}")
        try:
            start, end = parse_time(message.from_), parse_time(message.to)
            speed = parse_speed(message.speed)
        except ReplayError as err:
            raise ProtocolError(INVALID_MESSAGE, str(err)) from None
        end = min(end, now_ms())  # history only: the live subscription serves what comes next
        if end <= start:
            raise ProtocolError(INVALID_MESSAGE, "'to' must be after 'from' (and 'from' in the past)")
        admit = admit_for(compile_filter(message.filter, crs, self.districts))
        tier, feed = session.tier, message.feed
        recorder = None
        if tier == "licensed":
            recorder = self.audit.replay_recorder(session, ip, feed, start, end)
        sink = _ReplaySink(session, message.id, feed, crs, message.options.snapshot, recorder)
        try:
            opened = await open_replay(
                bootstrap=self.bootstrap,
                topic=self.naming.tier_topic(tier, feed),
                archive_root=self.archive_root,
                feed=feed,
                tier=tier,
                from_ms=start,
                to_ms=end,
                sink=sink,
                speed=speed,
                admit=admit,
                raw=session.codec.binary,  # MessagePack clients get the stored bytes (see _send_spliced)
            )
        except SourceUnavailable as err:
            raise ProtocolError(FEED_UNAVAILABLE, str(err)) from None
        core = opened.core

        async def drain() -> None:
            while not session.closed and session.sink.backlog() > BACKLOG_BYTES:
                await asyncio.sleep(0.01)

        runner = ReplayRunner(core, opened.source, drain=drain, clock=wall_ms)
        running = _Running(core, runner, opened, sink)
        mine[message.id] = running
        self.replays_started += 1
        session.send(
            {
                "type": "replay_started",
                "id": message.id,
                "feed": feed,
                "tier": tier,
                "from": start,
                "to": end,
                "speed": "max" if speed is None else speed,
                "crs": crs,
            }
        )
        running.task = asyncio.create_task(self._run(session, message.id, running))

    async def _run(self, session: Session, replay_id: str, running: _Running) -> None:
        try:
            await running.runner.run()
        except SourceUnavailable as err:
            session.error(ProtocolError(FEED_UNAVAILABLE, str(err), replay_id))
        except asyncio.CancelledError:
            raise
        except Exception:  # one failing replay must not take the connection down
            log.exception("replay %s failed", replay_id)
            session.error(ProtocolError(FEED_UNAVAILABLE, "the replay stopped on a server error; retry", replay_id))
        finally:
            await running.opened.close()
            mine = self.running.get(session)
            if mine is not None and mine.get(replay_id) is running:
                del mine[replay_id]

    def _control(self, session: Session, message: ReplayMessage) -> None:
        running = self.running.get(session, {}).get(message.id)
        if running is None:
            raise ProtocolError(UNKNOWN_SUBSCRIPTION, f"no running replay {message.id!r}")
        core, now = running.core, wall_ms()
        if isinstance(message, ReplayStop):
            self._stop(session, message.id)
            session.send({"type": "replay_stopped", "id": message.id})
            return
        if isinstance(message, ReplayPause):
            core.pause(now)
        elif isinstance(message, ReplayResume):
            core.resume(now)
        elif isinstance(message, ReplaySpeed):
            try:
                core.set_speed(parse_speed(message.speed), now)
            except ReplayError as err:
                raise ProtocolError(INVALID_MESSAGE, str(err)) from None
        elif isinstance(message, ReplaySeek):
            try:
                core.seek(parse_time(message.at))
            except ReplayError as err:
                raise ProtocolError(INVALID_MESSAGE, str(err)) from None
        core.report(now)  # the client sees the new state at once (paused, position)
        running.runner.wake()

    def _stop(self, session: Session, replay_id: str) -> None:
        running = self.running.get(session, {}).pop(replay_id, None)
        if running is not None and running.task is not None:
            running.task.cancel()

    def close_session(self, session: Session) -> None:
        for replay_id in list(self.running.get(session, {})):
            self._stop(session, replay_id)
        self.running.pop(session, None)

    async def close(self) -> None:
        tasks = [r.task for mine in self.running.values() for r in mine.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.running.clear()
