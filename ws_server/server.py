"""The WebSocket node: handshake (auth, caps), connections, the tick that fans frames out, key watching,
access audit, and the HTTP side on the same port (GTFS-RT, map page, health)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import ssl
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

import settings as settings_mod
from agreements.access import (
    AGREEMENT_EXPIRED,
    IP_NOT_ALLOWED,
    QUOTA_EXCEEDED,
    expired,
    ip_allowed,
    over_quota,
    shanghai_day,
)
from agreements.action_log import ActionLog
from agreements.policy import load_policy
from agreements.store import AgreementStore
from agreements.usage import ALL_FEEDS, UsageLedger
from schemas import now_ms
from settings.secret_store import AUDIT_KEY, resolve

from .agreement_routes import PlatformRoutes
from .audit import AccessAudit
from .catalog_routes import CatalogRoutes
from .client_log import ClientLog
from .config import Naming, ServerConfig, hash_api_key
from .districts import lookup_district
from .feed_reader import FeedReaders, FeedUnavailable
from .gtfs_static_feed import StaticFeed
from .heap import release_free_heap
from .http_query import FeedQueries
from .http_routes import HttpRoutes, refusal, text_response
from .keepalive import Keepalive
from .keys import KeyInfo, KeyStore, key_id_of
from .metrics import NodeMetrics
from .ops_report import report_forever
from .protocol.codec import CODECS, JSON, SUBPROTOCOLS
from .protocol.errors import CLOSE_QUOTA, CLOSE_UNAUTHORIZED, INTERNAL_ERROR, ProtocolError
from .protocol.errors import QUOTA_EXCEEDED as QUOTA_ERROR
from .protocol.hub import Hub
from .protocol.limits import DEFAULT_LIMITS, Limits
from .protocol.messages import REPLAY_MESSAGES, ReplayStart
from .protocol.session import FeedNeed, Session
from .protocol.state import Entry
from .redis_health import RedisHealth
from .redis_health import watch as watch_redis
from .replays import ReplayService
from .wire import WsSink

log = logging.getLogger(__name__)

RESUME_WAIT_S = 5.0  # how long a resume may wait for this node to reach the client's position


@dataclass
class Auth:
    tier: str
    key: KeyInfo | None
    limits: Limits
    ip: str


def limits_for(tier: str, key: KeyInfo | None) -> Limits:
    base = DEFAULT_LIMITS[tier]
    return base.with_overrides(key.limits) if key is not None else base


def api_key_of(request: Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    header = request.headers.get("X-API-Key")
    if header:
        return header.strip()
    values = parse_qs(urlsplit(request.path).query).get("key")
    return values[0] if values else None


def _select_subprotocol(conn: ServerConnection, offered: Any) -> Any:
    for name in SUBPROTOCOLS:
        if name in offered:
            return name
    return None  # clients offering nothing get JSON


class Node:
    """One server process. Several may share a port (``reuse_port``); each reads the tier topics itself."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.naming: Naming = config.naming
        self.redis = aioredis.from_url(config.redis_url)
        self.hub = Hub(
            lookup_district,
            node_id=config.node_id,
            buffer_frames=config.replay_frames,
            replay_bytes=config.replay_bytes_total,
            idle_grace_ms=config.idle_stream_grace_ms,
            frame_gap_ms=config.frame_gap_ms,
            clock=now_ms,
        )
        self.readers = FeedReaders(
            self.hub, self.redis, config.kafka_bootstrap, self.naming, history_records=config.history_records
        )
        self.keys = KeyStore(self.redis, self.naming)
        # Operator actions over HTTP go to the operator log like the CLI's (agreements/action_log.py).
        self.agreements = AgreementStore(self.redis, self.naming, ActionLog(config.kafka_bootstrap, self.naming))
        self.usage = UsageLedger()
        self.policy = load_policy(config.agreement_policy)
        audit_key = (config.audit_key or resolve(AUDIT_KEY).value).encode()
        self.audit = AccessAudit(
            config.kafka_bootstrap,
            self.naming.audit_topic(),
            self.hub.node_id,
            self.naming.audit_checkpoint_topic(),
            audit_key,
        )
        self.http = HttpRoutes(
            self,
            StaticFeed(config.network_seed, config.network_buses),
            NodeMetrics(self),
            FeedQueries(self),
            CatalogRoutes(config.control_plane_url),
            tls=config.tls_cert is not None,
        )
        self.http.platform = PlatformRoutes(self)
        self.replays = ReplayService(
            config.kafka_bootstrap, self.naming, lookup_district, self.audit, config.archive_dir
        )
        self.sessions: dict[Session, ServerConnection] = {}
        self._pending_auth: dict[ServerConnection, Auth] = {}
        self._per_ip: Counter[str] = Counter()
        self._per_key: Counter[str] = Counter()
        self.server: Server | None = None
        self.port = config.port
        self.tick_ms_total = 0.0
        self.ticks = 0
        self.redis_health = RedisHealth()
        self.keepalive = Keepalive(config.ping_interval_s, config.ping_timeout_s)

    # ------------------------------------------------------------------------------------------ handshake

    async def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return await self.http.handle(conn, request)
        path = urlsplit(request.path).path
        if path not in ("/", "/ws", "/v1"):
            return conn.respond(404, "WebSocket endpoint is / (or /v1)\n")
        auth = await self.authenticate(request, conn.remote_address[0] if conn.remote_address else "?")
        if isinstance(auth, Response):
            return auth
        self._pending_auth[conn] = auth
        return None

    async def authenticate(self, request: Request, ip: str) -> Auth | Response:
        api_key = api_key_of(request)
        key: KeyInfo | None = None
        if api_key is not None:
            try:
                key = await self.keys.get(hash_api_key(api_key))
            except (aioredis.RedisError, OSError):
                return text_response(503, "key store unavailable; retry\n")
            if key is None or key.revoked:
                return text_response(401, "unknown or revoked API key\n")
            refused = await self._agreement_refusal(key, ip)
            if refused is not None:
                return refused
        tier = key.tier if key is not None else "public"
        limits = limits_for(tier, key)
        if key is None:
            cap = self.config.per_ip_connections or limits.max_connections
            if self._per_ip[ip] >= cap:
                return text_response(429, f"at most {cap} public connections per IP address\n")
        elif self._per_key[key.key_hash] >= limits.max_connections:
            return text_response(429, f"at most {limits.max_connections} connections for this key\n")
        return Auth(tier, key, limits, ip)

    async def _agreement_refusal(self, key: KeyInfo, ip: str) -> Response | None:
        """What the key's agreement forbids now: use after its end, from outside its allow-list, over quota."""
        now = now_ms()
        if expired(key.expires_at, now):
            return refusal(401, AGREEMENT_EXPIRED, "the key's agreement has expired")
        if not ip_allowed(key.allow_ips, ip):
            return refusal(403, IP_NOT_ALLOWED, f"this key may not be used from {ip}")
        if key.daily_quota is not None:
            try:
                used = await self.agreements.messages_today(key.key_id, now)
            except (aioredis.RedisError, OSError):
                return text_response(503, "key store unavailable; retry\n")
            if over_quota(key.daily_quota, used + self.usage.pending_messages(key.key_id)):
                return refusal(429, QUOTA_EXCEEDED, f"the key's {key.daily_quota} messages for today are used")
        return None

    # ------------------------------------------------------------------------------------------ connections

    async def handle(self, conn: ServerConnection) -> None:
        auth = self._pending_auth.pop(conn, None)
        if auth is None:
            return
        codec = CODECS[conn.subprotocol or JSON]
        sink = WsSink(conn, codec.binary)
        session = Session(
            self.hub,
            sink,
            codec,
            tier=auth.tier,
            limits=auth.limits,
            now_ms=now_ms(),
            key_id=auth.key.key_hash if auth.key else None,
            agreement_id=auth.key.agreement_id if auth.key else None,
            principal=f"key:{auth.key.key_hash}" if auth.key else f"ip:{auth.ip}",
        )
        if auth.key is not None and auth.key.feeds:
            session.feeds = frozenset(auth.key.feeds)
        if auth.key is not None:
            session.daily_quota = auth.key.daily_quota
        if auth.tier == "licensed":
            session.on_delivered = self.audit.recorder(session, auth.ip)
        self.sessions[session] = conn
        if auth.key is None:
            self._per_ip[auth.ip] += 1
        else:
            self._per_key[auth.key.key_hash] += 1
            self.usage.add(auth.key.key_id, auth.key.agreement_id, ALL_FEEDS, sessions=1)
        client_log = ClientLog(f"{auth.ip} ({auth.key.key_hash[:12] if auth.key else 'public'})",
                               self.config.log_lines_per_minute)  # fmt: skip
        session.on_error = client_log.refused
        # The handshake's headers are read (auth, subprotocol): kept, they would be the largest part of an
        # idle connection's memory (about 4 KB of the 20). The request stays: the library reads it as the
        # sign that the handshake is done.
        for message in (conn.request, conn.response):
            if message is not None:
                message.headers.clear()
        try:
            while True:
                # After the session closed itself (flood, slow) keep reading and discarding: the library
                # must see the client's close frame, which waits behind anything the client sent before.
                # (recv() in a loop, not ``async for``: no async generator held per connection.)
                data = await conn.recv()
                try:
                    await self._serve_message(session, data, auth.ip)
                except Exception:  # a bug: answered and logged (within the budget), never a 1011
                    client_log.write(logging.ERROR, "could not handle a message", exc_info=True)
                    session.error(ProtocolError(INTERNAL_ERROR, "the server could not handle this message"))
        except ConnectionClosed:
            pass
        finally:
            client_log.close()
            session.closed = True
            self._take_usage(session)
            self.replays.close_session(session)
            session.release_all()
            self.sessions.pop(session, None)
            if auth.key is None:
                self._per_ip[auth.ip] -= 1
                if self._per_ip[auth.ip] <= 0:
                    del self._per_ip[auth.ip]
            else:
                self._per_key[auth.key.key_hash] -= 1

    async def _serve_message(self, session: Session, data: bytes | str, ip: str) -> None:
        message = session.parse(data, now_ms())
        if message is None:
            return
        if isinstance(message, REPLAY_MESSAGES):  # a replay reads history, not the live streams
            if isinstance(message, ReplayStart) and session.key_id:
                self.usage.add(key_id_of(session.key_id), session.agreement_id, message.feed, replays=1)
            await self.replays.handle(session, message, ip)
            return
        needs = session.needs(message)
        if needs is None:
            return
        try:
            await self._meet(needs)
        except FeedUnavailable as err:
            session.unavailable(message, str(err))
            return
        session.apply(message, now_ms())

    async def _meet(self, needs: list[FeedNeed]) -> None:
        """Make ready what a session said a message needs (raises FeedUnavailable if it cannot)."""
        for need in needs:
            await self.readers.ensure(need.tier, need.feed)
            if need.position is not None:
                await self.readers.wait_for(need.tier, need.feed, need.position, RESUME_WAIT_S)

    # ------------------------------------------------------------------------------------------ HTTP view

    async def tier_of(self, request: Request, ip: str) -> str | Response:
        """The tier a plain HTTP request may read, or the refusal to send."""
        auth = await self.authenticate(request, ip)
        return auth if isinstance(auth, Response) else auth.tier

    async def latest(self, tier: str, feeds: list[str]) -> tuple[list[Entry], list[str]]:
        """The latest entry of every entity of ``feeds`` at ``tier``, and why any feed could not be read."""
        entries: list[Entry] = []
        problems: list[str] = []
        for feed in feeds:
            try:
                await self.readers.ensure(tier, feed)
            except FeedUnavailable as err:
                problems.append(str(err))
                continue
            entries.extend(self.hub.source(tier, feed).entries.values())
        return entries, problems

    def health(self) -> dict[str, Any]:
        """The node's figures served on /healthz."""
        hub = self.hub
        return {
            # degraded: the node serves open streams, but new snapshots and key checks wait for Redis
            "state": "ok" if self.redis_health.up else "degraded",
            "redis": self.redis_health.to_json(),
            "node": hub.node_id,
            "connections": len(self.sessions),
            "streams": len(hub.streams),
            "replay_bytes": hub.replay.used,
            "sources": {f"{t}/{f}": len(s.entries) for (t, f), s in hub.sources.items() if s.ready},
            "frames_sent": hub.frames_sent,
            "records_delivered": hub.records_delivered,
            "records_read": self.readers.records_read,
            "tick_ms_avg": round(self.tick_ms_total / self.ticks, 3) if self.ticks else None,
            "audit_entries_written": self.audit.entries_written,
            "latency": {
                "kafka_to_node": self.readers.kafka_latency.summary(),
                "node_to_written": hub.latency.summary(),
            },
        }

    # ------------------------------------------------------------------------------------------ loops

    async def tick_loop(self) -> None:
        interval = self.config.tick_ms / 1000
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                self.hub.tick(now_ms())
            except Exception:  # one bad record must not stop every client's stream
                log.exception("tick failed")
            spent = loop.time() - started
            self.tick_ms_total += spent * 1000
            self.ticks += 1
            await asyncio.sleep(max(0.0, interval - spent))

    async def gc_loop(self) -> None:
        """Keep the garbage collector's full passes off the fan-out path. Ten thousand connections are
        millions of long-lived objects, and a full collection walks all of them (hundreds of ms, during
        which no frame goes out). Objects that survive ``gc_freeze_s`` are frozen (refcounting still frees
        them; only cyclic garbage among them waits), and a full collection of everything runs every
        ``gc_full_s``, so that waiting garbage is bounded."""
        if self.config.gc_freeze_s <= 0:
            return
        since_full = 0.0
        while True:
            await asyncio.sleep(self.config.gc_freeze_s)
            since_full += self.config.gc_freeze_s
            if since_full >= self.config.gc_full_s:
                gc.unfreeze()
                gc.collect()
                since_full = 0.0
            gc.freeze()

    async def heap_loop(self) -> None:
        """Hand freed memory back to the system every ``heap_trim_s`` (see ws_server/heap.py)."""
        if self.config.heap_trim_s <= 0 or not release_free_heap():
            return
        while True:
            await asyncio.sleep(self.config.heap_trim_s)
            release_free_heap()

    async def _ping_redis(self) -> None:
        await self.redis.ping()  # type: ignore[misc]

    async def key_watch_loop(self) -> None:
        """Revocations and tier changes reach open connections within two check intervals."""
        while True:
            await asyncio.sleep(self.config.key_check_interval_s)
            keyed = [s for s in self.sessions if s.key_id is not None and not s.closed]
            if not keyed:
                continue
            try:
                found = await self.keys.get_many(sorted({s.key_id for s in keyed if s.key_id}))
            except (aioredis.RedisError, OSError) as err:
                log.warning("key check failed: %s", err)
                continue
            for session in keyed:
                info = found.get(session.key_id or "")
                if info is not None:
                    session.daily_quota = info.daily_quota  # what usage_loop enforces
                if info is None or info.revoked:
                    session.close(CLOSE_UNAUTHORIZED, "API key revoked")
                elif expired(info.expires_at, now_ms()):  # the agreement ended: cut like a revocation
                    session.close(CLOSE_UNAUTHORIZED, "agreement expired")
                elif info.tier != session.tier:
                    try:
                        await self._meet(session.needs_for_tier(info.tier))
                    except FeedUnavailable as err:
                        log.warning("tier change deferred: %s", err)
                        continue
                    session.agreement_id = info.agreement_id
                    session.on_delivered = (
                        self.audit.recorder(session, self._ip_of(session)) if info.tier == "licensed" else None
                    )
                    session.change_tier(info.tier, limits_for(info.tier, info))

    def _take_usage(self, session: Session) -> None:
        """Move a keyed session's per-feed tallies into the node's ledger (a few additions per feed)."""
        if session.key_id is None or not session.usage:
            return
        tallies, session.usage = session.usage, {}
        for feed, (messages, records, nbytes) in tallies.items():
            self.usage.add(key_id_of(session.key_id), session.agreement_id, feed,
                           messages=messages, records=records, bytes=nbytes)  # fmt: skip

    async def usage_loop(self) -> None:
        """Usage counts go to Redis (per Shanghai day); keys with a daily quota that is used up are cut."""
        while True:
            await asyncio.sleep(self.config.usage_flush_interval_s)
            for session in list(self.sessions):
                self._take_usage(session)
            for session in self.http.query_sessions():
                self._take_usage(session)
            increments = self.usage.drain()
            if not increments:
                continue
            try:
                totals = await self.agreements.add_usage(shanghai_day(now_ms()), increments)
            except (aioredis.RedisError, OSError) as err:
                log.warning("usage flush failed: %s", err)
                for (key_id, agreement, feed), counts in increments.items():  # kept for the next flush
                    self.usage.add(key_id, agreement, feed, **counts)
                continue
            # Each session's quota is its key's, as read at connect and by the key watch: no key reads here.
            for session in list(self.sessions):
                quota = session.daily_quota
                if session.key_id is None or quota is None or session.closed:
                    continue
                if over_quota(quota, totals.get(key_id_of(session.key_id), 0)):
                    message = f"the key's {quota} messages for today are used"
                    session.error(ProtocolError(QUOTA_ERROR, message))
                    session.close(CLOSE_QUOTA, "daily quota used")

    def _ip_of(self, session: Session) -> str:
        conn = self.sessions.get(session)
        return str(conn.remote_address[0]) if conn is not None and conn.remote_address else "?"

    # ------------------------------------------------------------------------------------------ run

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.config.tls_cert is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return context

    async def run(self, started: asyncio.Future[int] | None = None) -> None:
        tasks: list[asyncio.Task[Any]] = []
        try:
            async with ws_serve(
                self.handle,
                self.config.host,
                self.config.port,
                process_request=self.process_request,
                select_subprotocol=_select_subprotocol,
                subprotocols=list(SUBPROTOCOLS),  # type: ignore[arg-type]
                compression=None,  # shared frames need identical bytes per member; deflate costs +76 % CPU
                max_size=self.config.max_frame_bytes,
                max_queue=16,
                ping_interval=None,  # one keepalive loop for the node (ws_server/keepalive.py), not a task each
                ping_timeout=None,
                backlog=self.config.backlog,
                reuse_port=self.config.reuse_port,
                ssl=self._ssl_context(),
            ) as server:
                self.server = server
                tasks = [
                    asyncio.create_task(self.tick_loop()),
                    asyncio.create_task(self.keepalive.run(self.sessions.values)),
                    asyncio.create_task(self.key_watch_loop()),
                    asyncio.create_task(watch_redis(self.redis_health, self._ping_redis, now_ms)),
                    asyncio.create_task(self.gc_loop()),
                    asyncio.create_task(self.heap_loop()),
                    asyncio.create_task(self.usage_loop()),
                    asyncio.create_task(self.audit.run(self.config.audit_interval_s)),
                ]
                if self.config.ops_stats_every_s > 0:
                    tasks.append(asyncio.create_task(report_forever(self, self.config.ops_stats_every_s)))
                if server.sockets:
                    self.port = server.sockets[0].getsockname()[1]
                log.info("serving on %s:%s (node %s)", self.config.host, self.port, self.hub.node_id)
                if started is not None and not started.done():
                    started.set_result(self.port)
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.replays.close()
            await self.readers.close()
            await self.audit.close()
            if self.agreements.log is not None:
                await self.agreements.log.close()
            await self.redis.aclose()


def config_from_settings(settings: settings_mod.Settings, **overrides: Any) -> ServerConfig:
    base: dict[str, Any] = {
        "host": settings.bind_host,
        "port": settings.ws_port,
        "kafka_bootstrap": settings.kafka_bootstrap,
        "redis_url": settings.redis_url,
        "ops_stats_every_s": 2.0,  # the control plane shows connections and subscriptions per tier
    }
    # Replays read this tier's archive too (archive/), where the archiver writes it.
    base["archive_dir"] = Path(os.environ.get("SHFEEDS_ARCHIVE_DIR") or settings.stack_dir / "archive")
    # The catalogue shows the control plane's live health (catalog/): on this machine unless configured.
    base["control_plane_url"] = (
        os.environ.get("SHFEEDS_CONTROL_PLANE_URL") or f"http://127.0.0.1:{settings.control_plane_port}"
    )
    cert = os.environ.get("SHFEEDS_TLS_CERT")
    if cert:
        base["tls_cert"] = cert
        base["tls_key"] = os.environ.get("SHFEEDS_TLS_KEY") or None
    base.update(overrides)
    return ServerConfig(**base)


async def serve(settings: settings_mod.Settings, **overrides: Any) -> None:
    """Run one server node until cancelled (used by ``shfeeds run`` through ``shfeeds serve``)."""
    await Node(config_from_settings(settings, **overrides)).run()


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")
