"""``shfeeds simulate``: serve the simulated city's feeds over HTTP on the simulator port."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import settings as settings_mod


def parse_fault_specs(texts: list[str]) -> dict[str, dict[str, Any]]:
    """``bus=garbage:rate=0.2:mode=body,parking=stall`` → ``{"bus": {"fault": "garbage", ...}, ...}``."""
    faults: dict[str, dict[str, Any]] = {}
    for text in texts:
        for item in filter(None, (part.strip() for part in text.split(","))):
            feed, sep, rest = item.partition("=")
            if not sep or not feed or not rest:
                raise ValueError(f"fault {item!r} is not FEED=KIND[:OPTION=VALUE...]")
            kind, *options = rest.split(":")
            spec: dict[str, Any] = {"fault": kind}
            for option in options:
                key, sep, value = option.partition("=")
                if not sep:
                    raise ValueError(f"fault option {option!r} is not OPTION=VALUE")
                spec[key] = value
            faults[feed] = spec
    return faults


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "simulate", help="serve simulated Shanghai feeds (bus, metro, parking, charging, scenic) over HTTP"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed: the same seed serves the same city")
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--start", help="simulated start time, ISO 8601 (no zone: Beijing time); default now")
    parser.add_argument("--buses", type=int, default=None, help="number of buses (default: the full city)")
    parser.add_argument("--lots", type=int, default=None, help="number of public car parks")
    parser.add_argument("--connectors", type=int, default=None, help="number of public charging connectors")
    parser.add_argument("--host", default=None, help="default: the settings' bind address (SHFEEDS_BIND_HOST)")
    parser.add_argument("--port", type=int, default=None, help="default: the settings' simulator port")
    parser.add_argument(
        "--faults",
        action="append",
        default=[],
        metavar="FEED=KIND[:OPT=VAL...]",
        help="start with faults, e.g. bus=garbage:rate=0.2,parking=stall:stall_s=10 (repeatable)",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from adapters.simulators.city import SimulatedCity
    from adapters.simulators.clock import parse_start
    from adapters.simulators.faults import FaultError, parse_fault
    from adapters.simulators.server import serve

    settings = settings_mod.load()
    try:
        faults = parse_fault_specs(args.faults)
        for spec in faults.values():
            parse_fault(spec)
        start_ms = parse_start(args.start) if args.start else None
        counts = {
            k: v
            for k, v in (("buses", args.buses), ("lots", args.lots), ("connectors", args.connectors))
            if v is not None
        }
        began = time.monotonic()
        city = SimulatedCity(seed=args.seed, start_ms=start_ms, time_scale=args.time_scale, **counts)
    except (ValueError, FaultError) as err:
        print(f"shfeeds simulate: {err}", file=sys.stderr)
        return 2
    from adapters.simulators.charging_sessions import FEED_NAME as SESSIONS

    # The city's feeds plus the OCPI sessions endpoint, which reads the charging network.
    targets = [*city.feeds, SESSIONS]
    unknown = sorted(set(faults) - set(targets))
    if unknown:
        print(f"shfeeds simulate: unknown feed(s) {', '.join(unknown)}; expected {', '.join(targets)}", file=sys.stderr)
        return 2
    port = args.port if args.port is not None else settings.simulator_port
    args.host = args.host or settings.bind_host  # compose names the container's address for the adapters
    print(
        f"simulated city (seed {args.seed}) built in {time.monotonic() - began:.1f}s; serving "
        + ", ".join(f"{name} {feed.path}" for name, feed in city.feeds.items())
        + f" on http://{args.host}:{port}",
        file=sys.stderr,
    )
    try:
        asyncio.run(serve(city, settings=settings, host=args.host, port=port, faults=faults))
    except OSError as err:
        print(f"shfeeds simulate: cannot serve on {args.host}:{port}: {err}", file=sys.stderr)
        return 1
    return 0
