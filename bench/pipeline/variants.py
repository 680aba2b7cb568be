"""The three ways of doing the same raw.bus → tier.*.bus work, each run as its own process by run.py.

- ``pipeline``: the project's stream worker (streams.stages.worker.Pipeline: batch stages, pending topics, delay
  stages, Redis state, commits after delivery).
- ``plain``: a bare aiokafka loop, consume → decode → validate/dedupe → enrich → policy for every tier
  (the same chained ``FeedFanout``) → produce, one batch at a time, no Redis, no delays, no pending
  topics: the limit of what this work costs in Python.
- ``plain-overlap``: the plain loop as a competent engineer would write it for throughput: while batch n
  is being delivered and acknowledged, batch n+1 is fetched and computed; batch n's offsets are committed
  only once its records are delivered, and batch n+1 is queued to the producer only after that, so each
  partition's order is kept. The fair baseline for CPU per record.
- ``pipeline-undelayed``, ``pipeline-no-state``, ``pipeline-bare``: ours with one or both of the duties the
  plain loops do not have taken away, to measure what each costs (``--ablation`` in bench/pipeline/fair.py):
  every tier released by the clean stage (no pending topics, no delay stages; with the backlog's old event
  times the output is the same), no Redis writes (snapshots, recovery state, release marks), or neither.
  Diagnostic only: each breaks a guarantee the service makes (docs/contracts.md, docs/design-notes.md).
- ``faust-batched``: the same job as a Faust agent written for throughput: ``stream.take(N, within=…)``
  hands it up to N raw records at a time and it runs the same vectorised code on each batch, then sends
  the tier records (Faust's ``send``, the producer batching them). The fair Faust baseline.
- ``faust``: a naive Faust agent doing the same per event, with one ``send`` per tier and record (kept as a
  secondary row: what a per-event design costs).
- ``faust-forward``: Faust's floor, not the same work: a per-event agent that only forwards each raw
  record's bytes to the operator tier topic (one ``send`` per event, no decoding, no policy). What any
  per-event Faust design pays before doing anything useful.
- ``quix``: the same job as a Quix Streams application (a peer, not a baseline; see bench/peers/quix.py):
  a StreamingDataFrame that expands each raw record into its tier records and routes each to its tier
  topic. Its DataFrame API has no batching across keys, so the same code is called one record at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from access.identity import faust_credentials, kafka_options  # noqa: E402
from schemas import TIERS, Naming, decode_kafka, now_ms, raw_topic, to_dict  # noqa: E402
from streams.config import StreamConfig  # noqa: E402
from streams.logic.cleaning import Cleaner  # noqa: E402
from streams.logic.enrichment import Enricher  # noqa: E402
from streams.logic.fanout import FeedFanout, TierFanout, TierPolicy  # noqa: E402
from streams.stages.worker import tune_gc  # noqa: E402


def load_engine() -> TierPolicy:
    from streams.stages.worker import load_engine as real

    return real()


def feed_fanout(engine: TierPolicy) -> FeedFanout:
    return FeedFanout(engine, "bus", {t: TierFanout(engine, "bus", t, "gcj02", persist_marks=False) for t in TIERS})


class Undelayed:
    """The policy with every delay taken away (``pipeline-undelayed``): the worker then makes no delay stage."""

    def __init__(self, engine: TierPolicy) -> None:
        self._engine = engine

    def delay_ms(self, feed: str, tier: str) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


async def run_pipeline(args: argparse.Namespace) -> None:
    from streams.io.state_store import StateStore
    from streams.stages.worker import Pipeline

    engine: Any = load_engine()
    if args.variant in ("pipeline-undelayed", "pipeline-bare"):
        engine = Undelayed(engine)
    if args.variant in ("pipeline-no-state", "pipeline-bare"):

        async def write_nothing(self: StateStore, *args: Any, **kwargs: Any) -> None:
            return None

        StateStore.write = write_nothing  # type: ignore[method-assign]

    config = StreamConfig(
        bootstrap=args.bootstrap,
        redis_url=args.redis,
        partitions=args.partitions,
        app_id=args.prefix + "app",
        topic_prefix=args.prefix,
        redis_prefix=args.prefix + "r",
        feeds=("bus",),
        max_poll_records=args.max_poll,
    )
    async with Pipeline(config, engine=engine, enricher=Enricher.from_geo(), aggregates=False):
        tune_gc()  # as ``shfeeds streams worker`` does
        await asyncio.sleep(args.seconds)


async def plain_clients(args: argparse.Namespace, listener: Any = None) -> tuple[Any, Any]:
    """The plain loops' consumer (raw.bus, commits by hand) and producer, started, with the worker's runtime
    tuning applied."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        **kafka_options(),
        group_id=args.prefix + "plain",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=args.max_poll,
    )
    consumer.subscribe([args.prefix + raw_topic("bus")], listener=listener)
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap, **kafka_options(), linger_ms=10, acks="all", max_batch_size=1024 * 1024
    )
    await consumer.start()
    await producer.start()
    tune_gc()  # the same runtime tuning as the worker
    return consumer, producer


async def run_plain(args: argparse.Namespace) -> None:

    from streams.io.batch_producer import BatchProducer

    engine = load_engine()
    enricher = Enricher.from_geo()
    cleaner = Cleaner("bus")
    fanout = feed_fanout(engine)
    consumer, producer = await plain_clients(args)
    batcher = BatchProducer(producer)
    deadline = time.monotonic() + args.seconds
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100, max_records=args.max_poll)
            if not batch:
                continue
            recs = [to_dict(decode_kafka("bus", r.value)) for rs in batch.values() for r in rs if r.value]
            accepted = cleaner.clean(recs, now_ms()).accepted
            enricher.enrich("bus", accepted)
            pending = []
            for tier, release in fanout.release(accepted).items():
                topic = Naming(args.prefix).tier_topic(tier, "bus")
                pending.append(batcher.deliver(topic, release.records))
            await asyncio.gather(*pending)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def run_plain_overlap(args: argparse.Namespace) -> None:
    from aiokafka import ConsumerRebalanceListener, TopicPartition
    from aiokafka.errors import CommitFailedError, IllegalStateError

    from streams.io.batch_producer import BatchProducer

    engine = load_engine()
    enricher = Enricher.from_geo()
    cleaner = Cleaner("bus")
    fanout = feed_fanout(engine)
    naming = Naming(args.prefix)
    inflight: asyncio.Task[None] | None = None

    class FinishBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
        """Partitions leave only after the batch in flight is delivered and committed."""

        async def on_partitions_revoked(self, revoked: Any) -> None:
            if inflight is not None:
                await asyncio.shield(inflight)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            pass

    consumer, producer = await plain_clients(args, FinishBeforeRevoke())
    batcher = BatchProducer(producer)

    async def deliver(futures: list[Any], offsets: dict[TopicPartition, int]) -> None:
        await asyncio.gather(*(f for f, _ in futures))
        mine = consumer.assignment()
        ours = {tp: o for tp, o in offsets.items() if tp in mine}
        # only what is delivered, of partitions still ours; when the group has moved on, the new owner
        # repeats the batch (at least once, like any consumer)
        if ours:
            with contextlib.suppress(CommitFailedError, IllegalStateError):
                await consumer.commit(ours)

    deadline = time.monotonic() + args.seconds
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100, max_records=args.max_poll)
            releases = {}
            if batch:
                recs = [to_dict(decode_kafka("bus", r.value)) for rs in batch.values() for r in rs if r.value]
                accepted = cleaner.clean(recs, now_ms()).accepted
                enricher.enrich("bus", accepted)
                releases = fanout.release(accepted)
            # batch n must be delivered before batch n+1 is queued: per-partition order
            if inflight is not None:
                await inflight
                inflight = None
            if batch:
                futures = []
                for tier, release in releases.items():
                    futures += await batcher.send_all(naming.tier_topic(tier, "bus"), release.records)
                offsets = {tp: rs[-1].offset + 1 for tp, rs in batch.items() if rs}
                inflight = asyncio.create_task(deliver(futures, offsets))
        if inflight is not None:
            await inflight
    finally:
        await consumer.stop()
        await producer.stop()


def run_faust(args: argparse.Namespace) -> None:
    import faust

    engine = load_engine()
    enricher = Enricher.from_geo()
    cleaner = Cleaner("bus")
    fanout = feed_fanout(engine)
    # Faust makes a data folder even with in-memory tables: keep it out of the working tree.
    datadir = tempfile.mkdtemp(prefix="shfeeds-bench-faust-")
    atexit.register(shutil.rmtree, datadir, ignore_errors=True)
    app = faust.App(
        args.prefix + "faust",
        datadir=datadir,
        broker=f"kafka://{args.bootstrap}",
        broker_credentials=faust_credentials(),
        web_enabled=False,
        topic_partitions=args.partitions,
        topic_disable_leader=True,
        broker_max_poll_records=args.max_poll if args.variant == "faust-batched" else 500,
        producer_linger=0.01,
        store="memory://",
        consumer_auto_offset_reset="earliest",
    )
    source = app.topic(args.prefix + raw_topic("bus"), value_serializer="raw", key_serializer="raw")
    sinks = {
        t: app.topic(Naming(args.prefix).tier_topic(t, "bus"), value_serializer="raw", key_serializer="raw")
        for t in TIERS
    }

    async def per_event(stream: Any) -> None:
        async for value in stream:
            rec = to_dict(decode_kafka("bus", value))
            accepted = cleaner.clean([rec], now_ms()).accepted
            enricher.enrich("bus", accepted)
            for tier, release in fanout.release(accepted).items():
                for key, value, ts in release.records:
                    await sinks[tier].send(key=key, value=value, timestamp=ts / 1000)

    async def batched(stream: Any) -> None:
        # the same vectorised code as the plain loop, on up to --max-poll records at a time
        async for values in stream.take(args.max_poll, within=0.1):
            recs = [to_dict(decode_kafka("bus", v)) for v in values if v]
            accepted = cleaner.clean(recs, now_ms()).accepted
            enricher.enrich("bus", accepted)
            for tier, release in fanout.release(accepted).items():
                sink = sinks[tier]
                for key, value, ts in release.records:
                    await sink.send(key=key, value=value, timestamp=ts / 1000)

    if args.variant == "faust-forward":
        operator = sinks["operator"]

        @app.agent(source)
        async def forward(stream: Any) -> None:
            async for event in stream.events():
                msg = event.message
                await operator.send(key=msg.key, value=msg.value, timestamp=msg.timestamp)

    elif args.variant == "faust-batched":
        app.agent(source)(batched)
    else:
        app.agent(source)(per_event)

    @app.timer(args.seconds)
    async def stop_after() -> None:
        if time.monotonic() - started > args.seconds:
            raise SystemExit(0)

    started = time.monotonic()
    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()


def run_quix(args: argparse.Namespace) -> None:
    from quixstreams import Application
    from quixstreams.kafka.configuration import ConnectionConfig
    from quixstreams.models.serializers import Serializer

    from access.identity import confluent_config

    engine = load_engine()
    enricher = Enricher.from_geo()
    cleaner = Cleaner("bus")
    fanout = feed_fanout(engine)

    class TierValue(Serializer):
        """A tier record travels as (tier, key, value, timestamp); its topic gets the value bytes."""

        def __call__(self, value: tuple[str, bytes, bytes, int], ctx: Any) -> bytes:
            return value[2]

    app = Application(
        # The same SCRAM login as the project's own clients (access/identity.py).
        broker_address=ConnectionConfig.from_librdkafka_dict(
            {**confluent_config(), "bootstrap.servers": args.bootstrap}
        ),
        consumer_group=args.prefix + "quix",
        auto_offset_reset="earliest",
        loglevel="WARNING",
        use_changelog_topics=False,
    )
    source = app.topic(args.prefix + raw_topic("bus"), value_deserializer="bytes", key_deserializer="bytes")
    sinks = {
        t: app.topic(Naming(args.prefix).tier_topic(t, "bus"), value_serializer=TierValue(), key_serializer="bytes")
        for t in TIERS
    }

    def tier_records(value: bytes) -> list[tuple[str, bytes, bytes, int]]:
        rec = to_dict(decode_kafka("bus", value))
        accepted = cleaner.clean([rec], now_ms()).accepted
        enricher.enrich("bus", accepted)
        return [
            (tier, key, out, ts)
            for tier, release in fanout.release(accepted).items()
            for key, out, ts in release.records
        ]

    sdf = app.dataframe(source)
    sdf = sdf.apply(tier_records, expand=True)
    sdf = sdf.set_timestamp(lambda value, key, ts, headers: value[3])
    sdf.to_topic(lambda value, key, ts, headers: sinks[value[0]], key=lambda value: value[1])
    app.run()  # until the benchmark stops the process


ABLATIONS = ["pipeline-undelayed", "pipeline-no-state", "pipeline-bare"]
VARIANTS = ["pipeline", *ABLATIONS, "plain", "plain-overlap", "faust", "faust-batched", "faust-forward", "quix"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--max-poll", type=int, default=2000, help="records per batch (pipeline and plain)")
    args = parser.parse_args()
    if args.variant.startswith("faust"):
        run_faust(args)
    elif args.variant == "quix":
        run_quix(args)
    else:
        runners = {"plain": run_plain, "plain-overlap": run_plain_overlap}
        runner = runners.get(args.variant, run_pipeline)
        asyncio.run(runner(args))


if __name__ == "__main__":
    main()
