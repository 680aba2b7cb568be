"""``shfeeds gtfs export``: the static GTFS of the simulated network (the zip the server serves at
``/gtfs/static.zip``)."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

DEFAULT_SEED = 2019  # `shfeeds run`'s simulator seed
DEFAULT_BUSES = 17_000  # the simulator's full city


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("gtfs", help="static GTFS of the simulated network")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    export = verbs.add_parser("export", help="write the static GTFS zip (routes, stops, trips, shapes, calendar)")
    export.add_argument("--out", type=Path, default=Path("static.zip"), help="zip to write (default: static.zip)")
    export.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the simulator's seed (default: shfeeds run's)")
    export.add_argument("--buses", type=int, default=DEFAULT_BUSES, help="the simulator's fleet size")
    export.add_argument("--start-date", type=date.fromisoformat, default=None, help="first valid day, YYYY-MM-DD "
                        "(default: today in Shanghai)")  # fmt: skip
    export.add_argument("--days", type=int, default=365, help="days the calendar covers")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from adapters.simulators.gtfs_export import build_zip
    from ws_server.gtfs_static_feed import service_day

    if args.buses < 1 or args.days < 1:
        print("shfeeds gtfs export: --buses and --days must be at least 1", file=sys.stderr)
        return 2
    start = args.start_date or service_day()
    body = build_zip(args.seed, args.buses, start, args.days)
    args.out.write_bytes(body)
    print(f"wrote {args.out} ({len(body)} bytes; seed {args.seed}, {args.buses} buses, from {start})", file=sys.stderr)
    return 0
