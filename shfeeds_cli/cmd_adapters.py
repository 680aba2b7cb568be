"""``shfeeds adapters parse|list`` and ``shfeeds adapter run NAME``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from schemas import now_ms

METRICS_PORT_ENV = "SHFEEDS_ADAPTER_METRICS_PORT"


def register(subparsers: Any) -> None:
    adapters = subparsers.add_parser("adapters", help="source formats: parse files, list formats and sources")
    adapters_sub = adapters.add_subparsers(dest="adapters_command", metavar="ACTION")
    adapters_sub.required = True

    parse = adapters_sub.add_parser(
        "parse", help="parse files of a source format: canonical NDJSON on stdout, rejects on stderr"
    )
    parse.add_argument("--format", required=True, dest="format_name", metavar="FORMAT")
    parse.add_argument("--source", default=None, help="source name stamped on records (default: the format)")
    parse.add_argument("--mode", choices=("bus", "metro"), default=None, help="GTFS-RT: vehicle mode / feed")
    parse.add_argument("--gtfs-static", type=Path, default=None, help="GTFS-RT: folder of the static GTFS")
    parse.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parse.set_defaults(func=_parse_files)

    listing = adapters_sub.add_parser("list", help="list the source formats and configured sources")
    listing.set_defaults(func=_list)

    adapter = subparsers.add_parser("adapter", help="run one configured adapter")
    adapter_sub = adapter.add_subparsers(dest="adapter_command", metavar="ACTION")
    adapter_sub.required = True
    run = adapter_sub.add_parser("run", help="poll (or receive) one source forever and produce to Kafka")
    run.add_argument("name", metavar="NAME")
    run.add_argument("--url", default=None, help="poll this URL instead of the simulator's")
    run.add_argument("--push-port", type=int, default=None, help="port of the push receiver (push sources)")
    run.add_argument("--interval", type=float, default=None, help="seconds between polls (default: the source's)")
    run.add_argument(
        "--bind-host", default=None, help="address of the push receiver and metrics (default: SHFEEDS_BIND_HOST)"
    )
    run.add_argument("--topic-prefix", default="", help="prepended to every Kafka topic name (default: none)")
    run.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help=f"serve Prometheus metrics on http://HOST:PORT/metrics (default: ${METRICS_PORT_ENV}, else off)",
    )
    run.set_defaults(func=_run)


def _parse_files(args: argparse.Namespace) -> int:
    from adapters.formats import get_format
    from schemas import encode_json

    try:
        spec = get_format(args.format_name)
    except ValueError as err:
        print(f"shfeeds adapters parse: {err}", file=sys.stderr)
        return 2
    options: dict[str, Any] = {}
    if spec.name.startswith("gtfs-rt"):
        options["mode"] = args.mode or "bus"
        if args.gtfs_static is not None:
            from adapters.formats.gtfs_static import load_static

            try:
                options["static"] = load_static(args.gtfs_static)
            except (OSError, ValueError) as err:
                print(f"shfeeds adapters parse: cannot read static GTFS: {err}", file=sys.stderr)
                return 2
    elif args.mode or args.gtfs_static:
        print("shfeeds adapters parse: --mode and --gtfs-static apply to GTFS-RT formats only", file=sys.stderr)
        return 2
    payloads: list[tuple[Path, bytes]] = []
    for path in args.files:
        try:
            payloads.append((path, path.read_bytes()))
        except OSError as err:
            print(f"shfeeds adapters parse: cannot read {path}: {err.strerror or err}", file=sys.stderr)
            return 2
    out = sys.stdout.buffer
    for path, data in payloads:
        result = spec.parse(data, source=args.source or spec.name, received_at_ms=now_ms(), **options)
        for record in result.records:
            out.write(encode_json(record) + b"\n")
        out.flush()
        for letter in result.rejects:
            where = f"{path}:{letter.locator}" if letter.locator else str(path)
            print(f"reject {where}: {letter.reason}", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    from adapters.formats import FORMATS
    from adapters.runtime.sources import PUSH_SOURCES, SOURCES

    print("formats:")
    for spec in FORMATS.values():
        print(f"  {spec.name:22} {spec.feed:9} {spec.description}")
    print("sources:")
    for config in SOURCES.values():
        print(f"  {config.name:22} {config.format:16} {config.feed:9} every {config.interval_s:g} s  {config.path}")
    for name, format_name in PUSH_SOURCES.items():
        print(f"  {name:22} {format_name:16} push receiver")
    return 0


def _metrics_port(args: argparse.Namespace) -> int | None:
    """The --metrics-port, else the environment's; raises ValueError for a port that cannot be."""
    if args.metrics_port is not None:
        port = args.metrics_port
    else:
        text = os.environ.get(METRICS_PORT_ENV, "").strip()
        if not text:
            return None
        try:
            port = int(text)
        except ValueError:
            raise ValueError(f"{METRICS_PORT_ENV}={text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"metrics port {port} is not within 0..65535")
    return int(port)


def _run(args: argparse.Namespace) -> int:
    import settings
    from adapters.runtime import DEFAULT_PUSH_PORT, AdapterRuntime
    from adapters.runtime.sources import PUSH_SOURCES, SOURCES

    if args.name not in SOURCES and args.name not in PUSH_SOURCES:
        known = ", ".join([*SOURCES, *PUSH_SOURCES])
        print(f"shfeeds adapter run: unknown source {args.name!r}; known sources: {known}", file=sys.stderr)
        return 2
    if args.interval is not None and not args.interval > 0:
        print(f"shfeeds adapter run: --interval must be positive, got {args.interval}", file=sys.stderr)
        return 2
    try:
        metrics_port = _metrics_port(args)
    except ValueError as err:
        print(f"shfeeds adapter run: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = AdapterRuntime(settings.load(), topic_prefix=args.topic_prefix)
    run = runtime.run(
        [args.name],
        urls={args.name: args.url} if args.url else None,
        push_port=args.push_port or DEFAULT_PUSH_PORT,
        intervals={args.name: args.interval} if args.interval else None,
        metrics_port=metrics_port,
        bind_host=args.bind_host,
    )
    try:
        asyncio.run(run)
    except KeyboardInterrupt:
        return 0
    except OSError as err:  # a port already taken
        print(f"shfeeds adapter run: {err}", file=sys.stderr)
        return 1
    return 0
