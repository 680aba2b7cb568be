"""``shfeeds control-plane``: the Faust control plane (stats → windowed tables → health on the web)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import Any

import settings as settings_mod

DEFAULT_WEB_PORT = 18770


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "control-plane", help="run the control plane (feed health, /health, /health/feeds) as a Faust worker"
    )
    parser.add_argument("--web-host", default=os.environ.get("SHFEEDS_CONTROL_PLANE_HOST", "127.0.0.1"))
    parser.add_argument(
        "--web-port", type=int, default=int(os.environ.get("SHFEEDS_CONTROL_PLANE_PORT", DEFAULT_WEB_PORT))
    )
    parser.add_argument("--app-id", default=os.environ.get("SHFEEDS_CONTROL_PLANE_APP_ID", "shfeeds-control-plane"))
    parser.add_argument("--topic-prefix", default="", help="prefix of every topic read (tests isolate with it)")
    parser.add_argument("--thresholds", default=os.environ.get("SHFEEDS_HEALTH_THRESHOLDS") or None)
    parser.add_argument(
        "--alert-webhook",
        default=os.environ.get("SHFEEDS_ALERT_WEBHOOK") or None,
        help="URL to POST alert events to as JSON (retried); alerts are logged either way",
    )
    parser.add_argument(
        "--publish-aggregates",
        action="store_true",
        help="publish the aggregate feeds on a leader-only timer (run the streams worker with "
        "--aggregates-on-control-plane)",
    )
    parser.add_argument("--redis-prefix", default="shfeeds", help="prefix of every Redis key (aggregates)")
    parser.add_argument("--feeds", default="", help="comma-separated feeds to watch (default: all)")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("SHFEEDS_CONTROL_PLANE_DATA_DIR") or None,
        help="Faust's working directory (default: <app id>-data in the current directory)",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    import faust

    from control_plane.app import ControlPlaneConfig, build_app
    from control_plane.health import load_thresholds
    from control_plane.health.thresholds import ThresholdsError
    from schemas import FEEDS
    from streams.config import StreamConfig

    settings = settings_mod.load()
    try:
        thresholds = load_thresholds(args.thresholds)
    except ThresholdsError as err:
        print(f"shfeeds control-plane: {err}")
        return 2
    feeds = tuple(f for f in args.feeds.split(",") if f) or FEEDS
    unknown = [f for f in feeds if f not in FEEDS]
    if unknown:
        print(f"shfeeds control-plane: unknown feed(s) {', '.join(unknown)}; known: {', '.join(FEEDS)}")
        return 2
    cfg = ControlPlaneConfig(
        bootstrap=settings.kafka_bootstrap,
        thresholds=thresholds,
        app_id=args.app_id,
        topic_prefix=args.topic_prefix,
        dlq_partitions=settings.topic_partitions,
        web_host=args.web_host,
        web_port=args.web_port,
        feeds=feeds,
        alert_webhook=args.alert_webhook,
        data_dir=args.data_dir,
        aggregates=StreamConfig.from_settings(
            settings, topic_prefix=args.topic_prefix, redis_prefix=args.redis_prefix, app_id=args.app_id
        )
        if args.publish_aggregates
        else None,
    )
    # Inputs exist before Faust subscribes (it does not create topics it only reads).
    from kafka_admin import ensure_topics
    from schemas import Naming

    naming = Naming(cfg.topic_prefix)

    try:
        asyncio.run(ensure_topics(cfg.bootstrap, 1, [naming.ops_stats_topic(), naming.ops_alerts_topic()]))
        dlqs = [naming.dlq_topic(f) for f in feeds]
        asyncio.run(ensure_topics(cfg.bootstrap, settings.topic_partitions, dlqs))
    except Exception as err:
        print(f"shfeeds control-plane: could not create the input topics: {err}")
        return 1
    app = build_app(cfg)
    logging.getLogger("faust").setLevel(logging.WARNING)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
