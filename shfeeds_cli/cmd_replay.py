"""``shfeeds replay``: replay or export a feed's history at a tier, from its topic and the archive.

Times are ISO 8601 (Shanghai time unless a zone is given) or epoch ms. Without ``--out`` the records are
printed as NDJSON; with it they go to a ``.ndjson``, ``.csv`` or ``.parquet`` file while a progress bar
with an ETA runs on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

import settings as settings_mod
from schemas import CLIENT_FEEDS, TIERS, tier_topic

from .cmd_tail import _floats, build_filter


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("replay", help="replay or export a feed's history at a tier")
    p.add_argument("--feed", required=True, choices=CLIENT_FEEDS)
    p.add_argument("--from", dest="start", required=True, help="ISO 8601 (Shanghai time by default) or epoch ms")
    p.add_argument("--to", dest="end", required=True, help="ISO 8601 (Shanghai time by default) or epoch ms")
    p.add_argument("--speed", default="max", help="1 to 1000 (times the original pace) or max (default)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--bbox", type=lambda t: _floats(t, 4, "--bbox"), help="min_lng,min_lat,max_lng,max_lat")
    where.add_argument("--district", action="append", help="adcode, Chinese or English name (repeatable)")
    where.add_argument("--near", type=lambda t: _floats(t, 3, "--near"), help="lng,lat,radius_m")
    p.add_argument("--routes", help="comma-separated route ids")
    p.add_argument("--ids", help="comma-separated entity ids")
    p.add_argument("--out", type=Path, help="FILE.ndjson, FILE.csv or FILE.parquet (default: NDJSON on stdout)")
    p.add_argument("--with-snapshot", action="store_true", help="write the as-of snapshot at --from first")
    p.add_argument("--tier", choices=TIERS, default="public", help="the tier to read (direct reads; --url: the key's)")
    p.add_argument("--archive-dir", type=Path, help="archive folder (default SHFEEDS_ARCHIVE_DIR or <stack>/archive)")
    p.add_argument("--no-archive", action="store_true", help="read Kafka only")
    p.add_argument("--topic-prefix", default="", help="prefix of every topic name (isolated test runs)")
    p.add_argument("--url", help="replay through this server's protocol (ws://...), at the key's tier")
    p.add_argument("--key", default=None, help="API key for --url (default: public tier)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=handle)


class _CliSink:
    """Writes the replay's records and moves the progress bar."""

    def __init__(self, make_export: Any, with_snapshot: bool, progress: Any, task: Any, from_ms: int) -> None:
        self.make_export = make_export  # tier → Export, or None to print NDJSON
        self.export: Any = None
        self.with_snapshot = with_snapshot
        self.progress, self.task, self.from_ms = progress, task, from_ms
        self.records = 0
        self.complete: dict[str, Any] | None = None

    def _write(self, records: list[dict[str, Any]]) -> None:
        self.records += len(records)
        if self.export is not None:
            self.export.write(records)
        else:
            sys.stdout.buffer.write(b"".join(orjson.dumps(r) + b"\n" for r in records))

    def open(self, tier: str) -> None:
        if self.make_export is not None and self.export is None:
            self.export = self.make_export(tier)

    def emit(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "replay_started":  # over the protocol: the key's tier decides the columns
            self.open(message["tier"])
        elif kind == "replay_snapshot" and self.with_snapshot:
            self._write(message["records"])
        elif kind == "replay_delta":
            self._write(message["records"])
            self._advance(message["t"])
        elif kind == "replay_progress":
            self._advance(message["t"])
        elif kind == "replay_complete":
            self.complete = message

    def _advance(self, t: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=t - self.from_ms, records=self.records)


def handle(args: argparse.Namespace) -> int:
    from archive.config import ArchiveConfig
    from replay.core import ReplayError, parse_speed
    from replay.export import Export
    from replay.filtering import admit_for, compile_replay_filter
    from replay.opening import open_replay
    from replay.times import format_time, parse_time
    from streams.policy import load_policy
    from streams.policy.record_schema import tier_record_schema

    settings = settings_mod.load()
    try:
        start, end = parse_time(args.start), parse_time(args.end)
        speed = parse_speed(args.speed)
        if end <= start:
            raise ReplayError("--to must be after --from")
        flt = build_filter(args)
        make_export = None
        if args.out is not None:
            policy = load_policy(ArchiveConfig.from_env(settings).policy_path)
            out = args.out

            def make_export(tier: str) -> Export:
                return Export(out, tier_record_schema(policy, args.feed, tier))

            if not args.url:
                make_export(args.tier).close()  # a bad extension fails here, before any reading
    except ReplayError as err:
        print(f"shfeeds replay: {err}", file=sys.stderr)
        return 2
    archive_root = None if args.no_archive else (args.archive_dir or ArchiveConfig.from_env(settings).root)

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    show = not args.quiet and args.out is not None
    progress = (
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[records]:,} records"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        if show
        else None
    )
    task = None
    if progress is not None:
        tier = "key's tier" if args.url else args.tier
        print(f"replaying {args.feed} ({tier}) {format_time(start)} → {format_time(end)}", file=sys.stderr)
        task = progress.add_task(args.feed, total=end - start, records=0)
    sink = _CliSink(make_export, args.with_snapshot, progress, task, start)
    if not args.url:
        sink.open(args.tier)

    async def over_protocol() -> None:
        from client.replay import ReplayFailed, replay_messages, replay_request

        request = replay_request(
            "cli",
            args.feed,
            start,
            end,
            speed="max" if speed is None else speed,
            snapshot=args.with_snapshot,
            **{k: v for k, v in flt.items() if k in ("district", "bbox", "near", "routes", "ids")},
        )
        try:
            async for message in replay_messages(args.url, request, api_key=args.key):
                sink.emit(message)
        except ReplayFailed as err:
            raise ReplayError(str(err)) from None

    async def go() -> None:
        if args.url:
            await over_protocol()
            return
        replay = await open_replay(
            bootstrap=settings.kafka_bootstrap,
            topic=args.topic_prefix + tier_topic(args.tier, args.feed),
            archive_root=archive_root,
            feed=args.feed,
            tier=args.tier,
            from_ms=start,
            to_ms=end,
            sink=sink,
            speed=speed,
            admit=admit_for(compile_replay_filter(flt)),
        )
        await replay.run_to_end()

    try:
        if progress is not None:
            with progress:
                asyncio.run(go())
                progress.update(task, completed=end - start, records=sink.records)  # type: ignore[arg-type]
        else:
            asyncio.run(go())
    except ReplayError as err:
        print(f"shfeeds replay: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a source or server that cannot be reached: say so, no traceback
        from websockets.exceptions import InvalidHandshake, InvalidStatus

        from replay.kafka_source import SourceUnavailable

        if not isinstance(err, SourceUnavailable | InvalidHandshake | InvalidStatus | OSError):
            raise
        print(f"shfeeds replay: {err}", file=sys.stderr)
        return 1
    finally:
        if sink.export is not None:
            sink.export.close()
    done = sink.complete or {}
    if args.out is not None:
        late = done.get("late", 0)
        print(f"wrote {sink.records:,} records to {args.out}" + (f" ({late} late)" if late else ""), file=sys.stderr)
    return 0
