"""``shfeeds tail FEED``: subscribe like any client and print what arrives, one JSON line per record."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

import orjson

import settings as settings_mod
from schemas import CLIENT_FEEDS

DEFAULT_CONNECT_TIMEOUT_S = 30.0  # without --timeout: how long a tail waits for a server that cannot be reached


def _floats(text: str, n: int, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be {n} comma-separated numbers") from None
    if len(values) != n:
        raise argparse.ArgumentTypeError(f"{what} must be {n} comma-separated numbers")
    return values


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("tail", help="print a feed's records as a client receives them")
    parser.add_argument("feed", help=f"{', '.join(CLIENT_FEEDS)} (agg_*: the aggregates, per district etc.)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--bbox", type=lambda t: _floats(t, 4, "--bbox"), help="min_lng,min_lat,max_lng,max_lat")
    where.add_argument("--district", action="append", help="adcode, Chinese or English name (repeatable)")
    where.add_argument("--near", type=lambda t: _floats(t, 3, "--near"), help="lng,lat,radius_m")
    parser.add_argument("--routes", help="comma-separated route ids")
    parser.add_argument("--ids", help="comma-separated entity ids")
    parser.add_argument("--stops", help="comma-separated stop ids (an arrival's stop, a train's station)")
    parser.add_argument("--crs", choices=("gcj02", "wgs84"), default=None)
    parser.add_argument("--min-interval-ms", type=int, default=None)
    parser.add_argument("--no-snapshot", action="store_true", help="only changes from now on")
    parser.add_argument("--tier-key", default=None, help="API key (default: public tier, no key)")
    parser.add_argument("--url", default=None, help="server URL (default: the local server)")
    parser.add_argument("--count", type=int, default=None, help="stop after this many lines")
    parser.add_argument(
        "--timeout", type=float, default=None, help="stop after this many seconds (status 1 if not connected then)"
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=None,
        help="give up (status 1) after this many seconds without a connection (default 30, none with --timeout)",
    )
    parser.add_argument("--messages", action="store_true", help="print whole protocol messages instead")
    parser.set_defaults(func=handle)


def build_filter(args: argparse.Namespace) -> dict[str, Any]:
    """The protocol filter from the spatial and id options that `tail` and `replay` share."""
    flt: dict[str, Any] = {}
    if args.bbox:
        flt["bbox"] = args.bbox
    if args.district:
        flt["district"] = args.district if len(args.district) > 1 else args.district[0]
    if args.near:
        flt["near"] = {"lng": args.near[0], "lat": args.near[1], "radius_m": args.near[2]}
    if args.routes:
        flt["routes"] = [r for r in args.routes.split(",") if r]
    if args.ids:
        flt["ids"] = [i for i in args.ids.split(",") if i]
    if getattr(args, "stops", None):  # tail's option; replay has none
        flt["stops"] = [s for s in args.stops.split(",") if s]
    return flt


def build_request(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    flt = build_filter(args)
    options: dict[str, Any] = {}
    if args.crs:
        options["crs"] = args.crs
    if args.min_interval_ms is not None:
        options["min_interval_ms"] = args.min_interval_ms
    if args.no_snapshot:
        options["snapshot"] = False
    return flt, options


def lines_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """What one protocol message means record by record."""
    kind = message.get("type")
    if kind == "snapshot":
        return list(message.get("records", []))
    if kind == "delta":
        out = list(message.get("upsert", []))
        out += [{"id": i, "state": "removed"} for i in message.get("remove", [])]
        out += [{"id": i, "state": "stale"} for i in message.get("stale", [])]
        return out
    return []


async def tail(args: argparse.Namespace) -> int:
    """Print until --count lines, --timeout or an error; 1 when the server could not be reached in time."""
    from client import FeedClient

    url = args.url or f"ws://127.0.0.1:{settings_mod.load().ws_port}/"
    loop = asyncio.get_running_loop()
    patience = args.connect_timeout
    if patience is None and args.timeout is None:
        patience = DEFAULT_CONNECT_TIMEOUT_S  # with --timeout and no --connect-timeout, --timeout alone decides
    # Armed while there is no connection: it fires after ``patience`` seconds without one.
    giving_up = asyncio.timeout_at(None if patience is None else loop.time() + patience)

    def connected() -> None:
        giving_up.reschedule(None)

    def retrying(problem: str, detail: str, wait_s: float) -> None:
        print(f"shfeeds tail: {problem}, retrying in {wait_s:.1f} s ({url}: {detail})", file=sys.stderr, flush=True)
        if patience is not None and giving_up.when() is None:
            giving_up.reschedule(loop.time() + patience)

    feed_client = FeedClient(url, api_key=args.tier_key, on_connected=connected, on_retry=retrying)
    stop_at = None if args.timeout is None else loop.time() + args.timeout
    try:
        async with asyncio.timeout_at(stop_at), giving_up:
            return await _print_events(feed_client, args)
    except TimeoutError:
        if giving_up.expired():
            print(f"shfeeds tail: no connection to {url} for {patience:g} s; giving up", file=sys.stderr)
            return 1
        if not feed_client.connected:  # --timeout came while the server could not be reached
            print(f"shfeeds tail: not connected to {url} when --timeout ran out", file=sys.stderr)
            return 1
        return 0


async def _print_events(feed_client: Any, args: argparse.Namespace) -> int:
    flt, options = build_request(args)
    feed_client.subscribe("tail", args.feed, flt, options)
    printed = 0
    out = sys.stdout.buffer
    # aclosing: leaving the loop early (--count) must close the connection here, not at interpreter exit.
    async with contextlib.aclosing(feed_client.events()) as events:
        async for event in events:
            if event.type == "error":
                print(f"shfeeds tail: {event.message.get('code')}: {event.message.get('message')}", file=sys.stderr)
                if event.message.get("id") == "tail":
                    return 1
                continue
            lines = [event.message] if args.messages else lines_of(event.message)
            for line in lines:
                out.write(orjson.dumps(line) + b"\n")
                printed += 1
                if args.count is not None and printed >= args.count:
                    out.flush()
                    return 0
            out.flush()
    return 0


def handle(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(tail(args))
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a refused handshake etc.: a clear line, not a traceback
        print(f"shfeeds tail: {err}", file=sys.stderr)
        return 1
