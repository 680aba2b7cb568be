"""The control plane as a Faust app: stats and dead letters in, windowed tables, health on the web.

Agents (one per input, no concurrency, so per-key order holds and offsets are not committed past events
in flight):
- ``fold_stats`` reads ``ops.stats`` and folds each record into ``minutes``, a one-minute tumbling
  windowed table kept for a day, and the latest times per source into ``latest``;
- ``keep_samples`` reads every ``dlq.<feed>`` and keeps the last few rejects per feed (reason and a short
  excerpt of the original bytes) in ``samples``.
Every table has a changelog topic, so a restarted control plane recovers them from Kafka.

Web views on Faust's own server: ``/health`` (200, or 503 naming the stale or down feeds),
``/health/feeds`` (the whole report), ``/health/feeds/{feed}/history`` (the last hour per minute).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from access.identity import faust_credentials
from schemas import FEEDS, Naming, decode_dead_letter, now_ms
from streams.config import StreamConfig

from .aggregates import attach_aggregate_publisher
from .alerts import AlertBook, AlertEvent, WebhookSender
from .figures import decode_stats, fold, fold_bundle
from .health import Thresholds
from .health.report import build_report, history
from .metrics import render as render_metrics

STATIC = Path(__file__).resolve().parent / "static"
WINDOW_S = 60
KEEP = timedelta(days=1)
SAMPLES_PER_FEED = 20
EXCERPT_BYTES = 160


@dataclass(frozen=True)
class ControlPlaneConfig:
    bootstrap: str
    thresholds: Thresholds
    app_id: str = "shfeeds-control-plane"
    topic_prefix: str = ""
    dlq_partitions: int = 4
    web_host: str = "127.0.0.1"
    web_port: int = 18770
    feeds: tuple[str, ...] = FEEDS
    alert_webhook: str | None = None
    evaluate_every_s: float = 2.0
    data_dir: str | None = None  # Faust's working directory; None: "<app id>-data" in the current directory
    aggregates: StreamConfig | None = None  # publish the aggregate feeds (leader-only timer) with this config


def excerpt(original: bytes, limit: int = EXCERPT_BYTES) -> str:
    text = original[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(original) > limit else "")


def build_app(cfg: ControlPlaneConfig) -> faust.App:
    extra: dict[str, Any] = {"datadir": cfg.data_dir} if cfg.data_dir else {}
    app = faust.App(
        cfg.app_id,
        **extra,
        broker=f"kafka://{cfg.bootstrap}",
        broker_credentials=faust_credentials(),
        store="memory://",
        value_serializer="raw",
        topic_partitions=1,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="latest",  # a new control plane starts from now, not the whole log
        broker_max_poll_records=500,
        stream_buffer_maxsize=4096,
        stream_recovery_delay=0.5,
        producer_linger=0.01,
        table_cleanup_interval=60.0,
        web_enabled=True,
        web_bind=cfg.web_host,
        web_host=cfg.web_host,
        web_port=cfg.web_port,
        web_in_thread=False,
        # A dead worker's partitions (and the leadership) move within seconds, not Faust's default minute.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,  # under a third of the session timeout; the aggregates hand over by lease
    )
    started_ms = now_ms()
    naming = Naming(cfg.topic_prefix)
    stats_topic = app.topic(naming.ops_stats_topic(), value_serializer="raw", key_serializer="raw")
    dlq_topics = app.topic(*[naming.dlq_topic(f) for f in cfg.feeds], value_serializer="raw", key_serializer="raw")

    json_schema: Any = faust.Schema(key_serializer="json", value_serializer="json")
    minutes_table = app.Table("minutes", default=dict, schema=json_schema, partitions=1).tumbling(
        WINDOW_S, expires=KEEP
    )
    window = minutes_table.table.window
    assert window is not None
    latest = app.Table("latest", default=dict, schema=json_schema, partitions=1)
    samples = app.Table("samples", default=list, schema=json_schema, partitions=cfg.dlq_partitions)

    @app.agent(stats_topic)
    async def fold_stats(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            # One message carries the records of about a second (the emitter's bundle): folded first,
            # so each key costs one table write (and one changelog message) per message.
            for key, delta in fold_bundle(decode_stats(value)).items():
                if not key.startswith("ws:"):  # a WebSocket node's gauges need no history, only the latest
                    minutes_table[key] = fold(minutes_table[key].current(), delta)
                if key.startswith(("source:", "ws:")):  # what must outlive its minute
                    keep = {k: v for k, v in delta.items() if not isinstance(v, int) or k.startswith("last_")}
                    latest[key] = fold(latest[key], keep)

    @app.agent(dlq_topics)
    async def keep_samples(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            try:
                letter = decode_dead_letter(value)
            except Exception:  # a malformed letter is itself worth showing, but has no feed to file under
                continue
            kept = list(samples[letter.feed])[-(SAMPLES_PER_FEED - 1) :]
            kept.append(
                {
                    "at": letter.received_at,
                    "source": letter.source,
                    "reason": letter.reason[:200],
                    "excerpt": excerpt(letter.original),
                }
            )
            samples[letter.feed] = kept

    if cfg.aggregates is not None:
        attach_aggregate_publisher(app, cfg.aggregates, json_schema)

    alerts_topic = app.topic(naming.ops_alerts_topic(), value_serializer="raw", key_serializer="raw")
    open_alerts = app.Table("alerts", default=dict, schema=json_schema, partitions=1)
    sender = WebhookSender(cfg.alert_webhook)
    book: list[AlertBook] = []  # made on the first evaluation, once the tables are recovered

    @app.timer(cfg.evaluate_every_s, on_leader=True)
    async def evaluate() -> None:
        """The leader decides alerts; they go through ops.alerts so their state is kept in a table."""
        body = report()
        if not book:
            book.append(AlertBook(k for k, v in open_alerts.items() if v))
        for event in book[0].update(
            ((f["feed"], f["state"], f["reasons"]) for f in body["feeds"]), body["generated_at"]
        ):
            await alerts_topic.send(key=event.feed.encode(), value=orjson.dumps(event.to_json()))

    @app.agent(alerts_topic)
    async def deliver_alerts(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            event = AlertEvent.from_json(orjson.loads(value))
            open_alerts[event.feed] = event.to_json() if event.action == "raise" else {}
            await sender.send(event)

    def minutes(key: str, count: int) -> list[dict[str, Any] | None]:
        now = time.time()
        data = minutes_table.table.data
        return [data.get((key, window.current(now - i * WINDOW_S))) for i in range(count - 1, -1, -1)]

    def report() -> dict[str, Any]:
        now = now_ms()
        current_latest = {k: dict(v) for k, v in latest.items()}
        current_samples = {k: list(v) for k, v in samples.items()}
        return build_report(now, cfg.thresholds, minutes, current_latest, current_samples, started_ms, cfg.feeds)

    @app.page("/health")
    async def health(self: View, request: Request) -> Response:
        body = report()
        summary = {k: body[k] for k in ("schema", "generated_at", "state", "ok", "reasons")}
        summary["feeds"] = {f["feed"]: f["state"] for f in body["feeds"]}
        return self.json(summary, status=200 if body["ok"] else 503)

    @app.page("/health/feeds")
    async def health_feeds(self: View, request: Request) -> Response:
        return self.json(report())

    @app.page("/metrics")
    async def metrics_view(self: View, request: Request) -> Response:
        def extra() -> dict[str, float]:
            return {"alerts_open": sum(1 for v in open_alerts.values() if v), "webhook_failures": sender.failed}

        body = render_metrics(report, extra)
        return self.bytes(body, content_type="text/plain; version=0.0.4")

    @app.page("/dashboard")
    async def dashboard(self: View, request: Request) -> Response:
        return self.html((STATIC / "dashboard.html").read_text(encoding="utf-8"))

    @app.page("/dashboard/{name}")
    async def dashboard_asset(self: View, request: Request, name: str) -> Response:
        kind = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}.get(name)
        if kind is None:
            return self.text("not found\n", status=404)
        return self.text((STATIC / name).read_text(encoding="utf-8"), content_type=kind)

    @app.page("/health/alerts")
    async def alerts_view(self: View, request: Request) -> Response:
        return self.json({"open": {k: v for k, v in open_alerts.items() if v}})

    @app.page("/health/feeds/{feed}/history")
    async def feed_history(self: View, request: Request, feed: str) -> Response:
        if feed not in cfg.feeds:
            return self.json({"error": f"unknown feed {feed!r}", "feeds": list(cfg.feeds)}, status=404)
        now = now_ms()
        t = cfg.thresholds.for_feed(feed)
        return self.json(
            {
                "feed": feed,
                "minutes": history(minutes, f"feed:{feed}", now),
                "sources": {s: history(minutes, f"source:{s}", now) for s in t.sources},
            }
        )

    return app
