"""``shfeeds serve``: the WebSocket / GTFS-RT / map server (one or several processes sharing the port)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import sys
from pathlib import Path
from typing import Any

import settings as settings_mod
from schemas import DEFAULT_REDIS_PREFIX
from ws_server.config import ServerConfig


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run the WebSocket server (protocol v1, GTFS-RT endpoint, map page)"
    )
    parser.add_argument(
        "--host", default=None, help="address to listen on (default: SHFEEDS_BIND_HOST, else 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=None, help="default: SHFEEDS_WS_PORT (18765)")
    parser.add_argument("--processes", type=int, default=1, help="server processes sharing the port (SO_REUSEPORT)")
    parser.add_argument(
        "--tick-ms", type=int, default=ServerConfig.tick_ms, help="how often pending changes become frames"
    )
    parser.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain: serve wss:// and https://")
    parser.add_argument("--tls-key", type=Path, default=None, help="PEM private key (if not in --tls-cert)")
    parser.add_argument("--topic-prefix", default="", help="prefix of the tier topic names (tests, benchmarks)")
    parser.add_argument("--redis-prefix", default=DEFAULT_REDIS_PREFIX, help="prefix of the Redis keys")
    parser.add_argument("--network-seed", type=int, default=None, help="simulator seed /gtfs/static.zip describes")
    parser.add_argument(
        "--network-buses", type=int, default=None, help="simulator fleet size /gtfs/static.zip describes"
    )
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(func=handle)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from schemas import Naming

    out: dict[str, Any] = {
        "tick_ms": args.tick_ms,
        "reuse_port": args.processes > 1,
        "naming": Naming(args.topic_prefix, args.redis_prefix),
    }
    if args.host is not None:
        out["host"] = args.host
    if args.port is not None:
        out["port"] = args.port
    if args.network_seed is not None:
        out["network_seed"] = args.network_seed
    if args.network_buses is not None:
        out["network_buses"] = args.network_buses
    if args.tls_cert is not None:
        out["tls_cert"] = args.tls_cert
        out["tls_key"] = args.tls_key
    return out


def _run_one(overrides: dict[str, Any], log_level: str) -> None:
    from ws_server.server import serve

    logging.basicConfig(level=log_level, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings_mod.load(), **overrides))


def handle(args: argparse.Namespace) -> int:
    if args.processes < 1:
        print("shfeeds serve: --processes must be at least 1", file=sys.stderr)
        return 2
    if args.tls_cert is not None and not args.tls_cert.is_file():
        print(f"shfeeds serve: no certificate file {args.tls_cert}", file=sys.stderr)
        return 2
    overrides = _overrides(args)
    if args.processes == 1:
        _run_one(overrides, args.log_level)
        return 0
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_run_one, args=(overrides, args.log_level)) for _ in range(args.processes)]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
    except KeyboardInterrupt:
        for worker in workers:
            worker.join(timeout=5)
    return 0 if all(w.exitcode in (0, None) for w in workers) else 1
