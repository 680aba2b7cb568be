"""``shfeeds policy show`` and ``shfeeds policy apply``: inspect the tier policy and run it over NDJSON."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import orjson

import schemas
from schemas import TIERS


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("policy", help="show the tier policy or apply it to records")
    sub = parser.add_subparsers(dest="policy_command", metavar="ACTION")
    sub.required = True

    show = sub.add_parser("show", help="the active policy as a table")
    show.add_argument("--file", help="policy TOML file (default: the project's)")
    show.set_defaults(func=_show)

    apply = sub.add_parser(
        "apply", help="blur canonical records (NDJSON on stdin) for a tier; NDJSON on stdout, errors on stderr"
    )
    apply.add_argument("--feed", required=True, choices=_feeds())
    apply.add_argument("--tier", required=True, choices=TIERS)
    apply.add_argument("--crs", choices=("gcj02", "wgs84"), help="output CRS (default: the tier's default)")
    apply.add_argument("--file", help="policy TOML file (default: the project's)")
    apply.set_defaults(func=_apply)


def _feeds() -> tuple[str, ...]:
    """Source feeds and the stream layer's aggregate feeds (``agg_*``)."""
    return schemas.CLIENT_FEEDS


def _canonical(feed: str, data: dict[str, Any]) -> dict[str, Any]:
    import msgspec

    from schemas.aggregates import AGGREGATE_TYPES, validate_aggregate

    if feed not in AGGREGATE_TYPES:
        return schemas.to_dict(schemas.from_dict(feed, data))
    try:
        out: dict[str, Any] = msgspec.to_builtins(validate_aggregate(feed, data))
    except msgspec.ValidationError as err:
        raise schemas.InvalidRecord(str(err)) from None
    return out


def _engine(path: str | None) -> Any:
    from streams.policy import PolicyEngine, load_policy

    return PolicyEngine(load_policy(path))


def _show(args: argparse.Namespace) -> int:
    from streams.policy import PolicyError

    try:
        engine = _engine(args.file)
    except PolicyError as err:
        print(f"policy error: {err}", file=sys.stderr)
        return 2
    print(f"policy version {engine.policy_version} ({engine.policy.source})")
    days = engine.policy.pseudonym_days
    boundary = f"{days.boundary_s // 3600:02d}:{days.boundary_s % 3600 // 60:02d}"
    print(f"rotating pseudonyms change daily at {boundary} {days.time_zone}; public ids never change")
    rows = engine.describe()
    header = ("feed", "tier", "delay s", "min gap s", "crs", "operations")
    table = [
        (
            r["feed"],
            r["tier"],
            f"{r['delay_s']:g}",
            f"{r['min_interval_s']:g}",
            "/".join(r["crs"]),
            "; ".join(r["operations"]) or ("raw" if r["tier"] == TIERS[0] else "same as the tier above"),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header[:-1])]
    line = "  ".join(h.ljust(w) for h, w in zip(header[:-1], widths, strict=True)) + "  " + header[-1]
    print(line)
    print("-" * len(line))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    return 0


def _read_records(feed: str, stream: TextIO, errors: TextIO) -> tuple[list[dict[str, Any]], int]:
    records: list[dict[str, Any]] = []
    bad = 0
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            data = orjson.loads(line)
            if not isinstance(data, dict):
                raise schemas.InvalidRecord("expected a JSON object")
            records.append(_canonical(feed, data))
        except orjson.JSONDecodeError as err:
            bad += 1
            print(f"line {number}: not JSON: {err}", file=errors)
        except schemas.InvalidRecord as err:
            bad += 1
            print(f"line {number}: invalid {feed} record: {err}", file=errors)
    return records, bad


def _apply(args: argparse.Namespace) -> int:
    from streams.policy import PolicyError

    try:
        engine = _engine(args.file)
        crs = args.crs or engine.allowed_crs(args.feed, args.tier)[0]
        records, bad = _read_records(args.feed, sys.stdin, sys.stderr)
        views = engine.apply(args.feed, args.tier, records, crs=crs)
    except PolicyError as err:
        print(f"policy error: {err}", file=sys.stderr)
        return 2
    out = sys.stdout.buffer
    for view in views:
        out.write(orjson.dumps(view) + b"\n")
    out.flush()
    return 1 if bad else 0
