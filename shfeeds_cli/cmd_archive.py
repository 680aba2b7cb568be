"""``shfeeds archive run | status``: the archiver process, and what the archive holds."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path

import settings as project_settings
from schemas import CLIENT_FEEDS, TIERS


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("archive", help="the tier topics' history in Parquet files")
    sub = parser.add_subparsers(dest="archive_command", metavar="ACTION")
    sub.required = True

    run = sub.add_parser("run", help="archive every tier topic until SIGTERM/SIGINT")
    run.add_argument("--dir", type=Path, help="archive folder (default SHFEEDS_ARCHIVE_DIR or <stack>/archive)")
    run.add_argument("--topic-prefix", default="", help="prefix of every topic name (isolated test runs)")
    run.add_argument("--group-id", default="shfeeds-archiver")
    run.add_argument("--feeds", default=",".join(CLIENT_FEEDS), help="comma-separated feeds")
    run.add_argument("--log-level", default="INFO")
    run.set_defaults(func=_run)

    status = sub.add_parser("status", help="days per feed and tier, sizes, offsets covered")
    status.add_argument("--dir", type=Path)
    status.add_argument("--json", action="store_true", help="one JSON object per day")
    status.set_defaults(func=_status)


def _config(args: argparse.Namespace, **overrides: object):  # type: ignore[no-untyped-def]
    from archive.config import ArchiveConfig

    if args.dir is not None:
        overrides["root"] = args.dir
    return ArchiveConfig.from_env(project_settings.load(), **overrides)


def _run(args: argparse.Namespace) -> int:
    from archive.archiver import run_archiver

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    feeds = tuple(f for f in args.feeds.split(",") if f)
    config = _config(args, topic_prefix=args.topic_prefix, group_id=args.topic_prefix + args.group_id, feeds=feeds)
    return asyncio.run(run_archiver(config))


def _status(args: argparse.Namespace) -> int:
    from archive.status import archive_status

    config = _config(args)
    days = archive_status(config.root, list(CLIENT_FEEDS), list(TIERS))
    if args.json:
        for d in days:
            offsets = {str(p): {"first": a, "last": b} for p, (a, b) in sorted(d.offsets.items())}
            print(
                json.dumps(
                    {
                        "feed": d.feed,
                        "tier": d.tier,
                        "date": d.day,
                        "files": d.files,
                        "records": d.records,
                        "bytes": d.bytes,
                        "offsets": offsets,
                    }
                )
            )
        return 0
    if not days:
        print(f"the archive at {config.root} is empty")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"archive: {config.root}")
    for col in ("feed", "tier", "date", "files", "records", "MB", "offsets (partition: first–last)"):
        table.add_column(col, justify="right" if col in ("files", "records", "MB") else "left")
    for d in days:
        covered = "  ".join(f"{p}: {a}–{b}" for p, (a, b) in sorted(d.offsets.items()))
        table.add_row(d.feed, d.tier, d.day, str(d.files), f"{d.records:,}", f"{d.bytes / 1e6:.2f}", covered)
    Console().print(table)
    return 0
