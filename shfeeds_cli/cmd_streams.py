"""``shfeeds streams``: run the stream workers, create the topics."""

from __future__ import annotations

import argparse
import asyncio
import logging

import settings as project_settings
from schemas import DEFAULT_REDIS_PREFIX


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("streams", help="the stream pipeline (raw → clean → tier topics)")
    sub = parser.add_subparsers(dest="streams_command", metavar="ACTION")
    sub.required = True

    worker = sub.add_parser("worker", help="run a stream worker until SIGTERM/SIGINT")
    worker.add_argument("--app-id", help="consumer group prefix (default SHFEEDS_STREAMS_APP_ID or shfeeds-streams)")
    worker.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    worker.add_argument("--no-aggregates", action="store_true", help="do not run the aggregate stage")
    worker.add_argument(
        "--aggregates-on-control-plane",
        action="store_true",
        help="the control plane publishes the aggregate feeds (leader-only Faust timer); this worker only "
        "forwards their delayed tiers",
    )
    worker.add_argument("--topic-prefix", default="", help="prefix of every topic name (isolated test runs)")
    worker.add_argument("--redis-prefix", default=DEFAULT_REDIS_PREFIX, help="prefix of every Redis key")
    worker.add_argument("--log-level", default="INFO")
    worker.set_defaults(func=_worker)

    topics = sub.add_parser("topics", help="create every topic with the configured partition count")
    topics.add_argument("--topic-prefix", default="")
    topics.set_defaults(func=_topics)


def _worker(args: argparse.Namespace) -> int:
    from streams.config import StreamConfig
    from streams.stages.worker import run_worker

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, object] = {"topic_prefix": args.topic_prefix, "redis_prefix": args.redis_prefix}
    if args.app_id:
        overrides["app_id"] = args.app_id
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    if args.aggregates_on_control_plane:
        overrides["aggregate_publisher"] = False
    config = StreamConfig.from_settings(project_settings.load(), **overrides)
    return asyncio.run(run_worker(config, aggregates=not args.no_aggregates))


def _topics(args: argparse.Namespace) -> int:
    from kafka_admin import ensure_topics
    from schemas import Naming, all_topics

    s = project_settings.load()
    names = [Naming(topic_prefix=args.topic_prefix).topic(n) for n in all_topics()]
    counts = asyncio.run(ensure_topics(s.kafka_bootstrap, s.topic_partitions, names))
    print(f"{len(counts)} topics ready with at least {s.topic_partitions} partitions")
    return 0
