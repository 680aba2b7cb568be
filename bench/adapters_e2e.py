"""End-to-end poll → Kafka for the full simulated city, against baselines measured in the same run.

    .venv/bin/python -m bench.adapters_e2e [--repeat 3] [--bootstrap HOST:PORT]

Starts a Kafka of its own (a temporary stack folder on free ports; the Kafka jars come from the usual
cache) unless ``--bootstrap`` names one, and ``shfeeds simulate`` (full city: 17,000 buses, 5,000 lots,
20,000 connectors, the scenic areas, the metro) as a separate process. Per feed, each measured cycle is
a cold poll by a fresh adapter (no validators, empty change filter: every record is new), timed from the
GET until Kafka acknowledged every record and dead letter (acks=all):

  fetch only      GET + read the body, nothing else (the HTTP floor, including the simulator's render);
  parse only      the source's parser on that body, in this process (no I/O);
  kafka only      a plain idempotent aiokafka producer sending the same pre-encoded messages (the Kafka
                  floor; same batch settings as the runtime);
  kafka defaults  the same with aiokafka's default batch size and linger;
  runtime         PollingAdapter.poll_once + KafkaSink.flush: fetch, parse, change filter, produce, acks.

Every fetch-only and runtime cycle starts on a new simulated second, so each pays for a fresh render in
the simulator, as a real poll would. Then the whole city at once, as ``run_all`` runs it: all five feeds
polled concurrently into one sink.
The median of ``--repeat`` cycles is reported. Writes bench/results/adapters-e2e-*.json and the generated
section of docs/benchmarks-adapters.md (``--no-docs``: the JSON only; ``--render RESULT.json``: the section
again from a saved result).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

import settings as settings_mod
from access.identity import kafka_options
from adapters.formats import get_format
from adapters.runtime.kafka_sink import DEFAULT_PRODUCER_OPTIONS, KafkaSink
from adapters.runtime.polling_adapter import PollingAdapter
from adapters.runtime.routing import OutMessage, dead_letter_message, record_message
from adapters.runtime.sources import SOURCES
from bench.report import ROOT, Goal, conclude, machine, publish_section, stamp

FEEDS = {
    "sh-bus": "bus",
    "sh-metro": "metro",
    "sh-parking": "parking",
    "sh-charging": "charging",
    "sh-scenic": "scenic",
}
DOC = ROOT / "docs/benchmarks-adapters.md"
START = "2026-11-27T08:30:00"  # a Friday morning peak, Beijing time: every feed busy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def median_of(values: list[float]) -> float:
    return statistics.median(values)


async def next_second() -> None:
    """Sleep into the next wall-clock second (the simulator runs at time scale 1: a new simulated second)."""
    await asyncio.sleep(1.02 - time.time() % 1.0)


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await fn()
    return time.perf_counter() - started


class Bench:
    def __init__(self, bootstrap: str, base_url: str, repeat: int) -> None:
        self.bootstrap = bootstrap
        self.base_url = base_url
        self.repeat = repeat

    def url(self, source: str) -> str:
        return self.base_url + SOURCES[source].path

    async def fetch(self, session: aiohttp.ClientSession, source: str) -> bytes:
        async with session.get(self.url(source)) as response:
            response.raise_for_status()
            return await response.read()

    def messages(self, source: str, body: bytes) -> list[OutMessage]:
        config = SOURCES[source]
        result = get_format(config.format).parse(body, source=source, received_at_ms=0, **config.options)
        return [record_message(r) for r in result.records] + [dead_letter_message(d) for d in result.rejects]

    async def plain_producer(self, messages: list[OutMessage], options: dict[str, Any]) -> float:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, **kafka_options(), acks="all", enable_idempotence=True, **options
        )
        await producer.start()
        try:
            await producer.send_and_wait(messages[0].topic, b"warm-up", key=b"warm-up")

            async def send_all() -> None:
                futures = [
                    await producer.send(m.topic, m.value, key=m.key, timestamp_ms=m.timestamp_ms, headers=m.headers)
                    for m in messages
                ]
                await asyncio.gather(*futures)

            return await timed(send_all)
        finally:
            await producer.stop()

    async def runtime_cycle(self, session: aiohttp.ClientSession, sink: KafkaSink, source: str) -> tuple[float, int]:
        config = SOURCES[source]
        adapter = PollingAdapter(
            name=source,
            format_name=config.format,
            url=self.url(source),
            interval_s=config.interval_s,
            timeout_s=60,
            session=session,
            sink=sink,
            options=dict(config.options),
        )

        async def cycle() -> None:
            await adapter.poll_once()
            await sink.flush()

        elapsed = await timed(cycle)
        return elapsed, adapter.stats.records + adapter.stats.rejects

    async def per_feed(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as session:
            sink = KafkaSink(self.bootstrap)
            await sink.start()
            try:
                for source, feed in FEEDS.items():
                    body = await self.fetch(session, source)
                    messages = self.messages(source, body)
                    fetch_s, parse_s, ours_s = [], [], []
                    sent = 0
                    for _ in range(self.repeat):
                        await next_second()
                        fetch_s.append(await timed(functools.partial(self.fetch, session, source)))
                        parse_s.append(await timed(functools.partial(self.parse_only, source, body)))
                    kafka_s = [
                        await self.plain_producer(messages, DEFAULT_PRODUCER_OPTIONS) for _ in range(self.repeat)
                    ]
                    default_s = [await self.plain_producer(messages, {}) for _ in range(self.repeat)]
                    for _ in range(self.repeat):
                        await next_second()
                        elapsed, sent = await self.runtime_cycle(session, sink, source)
                        ours_s.append(elapsed)
                    row = {
                        "source": source,
                        "feed": feed,
                        "interval_s": SOURCES[source].interval_s,
                        "records": sent,
                        "messages": len(messages),
                        "fetch_s": median_of(fetch_s),
                        "parse_s": median_of(parse_s),
                        "kafka_s": median_of(kafka_s),
                        "kafka_default_s": median_of(default_s),
                        "runtime_s": median_of(ours_s),
                        "runtime_runs_s": ours_s,
                    }
                    print(row_line(row), flush=True)
                    rows.append(row)
            finally:
                await sink.close()
        return rows

    async def parse_only(self, source: str, body: bytes) -> None:
        config = SOURCES[source]
        get_format(config.format).parse(body, source=source, received_at_ms=0, **config.options)

    async def whole_city(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            all_messages: list[OutMessage] = []
            for source in FEEDS:
                all_messages += self.messages(source, await self.fetch(session, source))
            kafka_s = [await self.plain_producer(all_messages, DEFAULT_PRODUCER_OPTIONS) for _ in range(self.repeat)]
            sink = KafkaSink(self.bootstrap)
            await sink.start()
            try:
                ours: list[float] = []
                sent = 0
                for _ in range(self.repeat):
                    await next_second()
                    results: list[tuple[float, int]] = []

                    async def one(source: str, into: list[tuple[float, int]] = results) -> None:
                        into.append(await self.runtime_cycle(session, sink, source))

                    async def all_feeds() -> None:
                        await asyncio.gather(*(one(source) for source in FEEDS))

                    ours.append(await timed(all_feeds))
                    sent = sum(n for _, n in results)
            finally:
                await sink.close()
        return {
            "messages": len(all_messages),
            "records": sent,
            "kafka_s": median_of(kafka_s),
            "runtime_s": median_of(ours),
        }


def row_line(row: dict[str, Any]) -> str:
    return (
        f"{row['feed']}: {row['records']:,} records, fetch {row['fetch_s'] * 1000:.0f} ms, parse "
        f"{row['parse_s'] * 1000:.0f} ms, plain producer {row['kafka_s'] * 1000:.0f} ms, runtime cycle "
        f"{row['runtime_s'] * 1000:.0f} ms"
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def section(result: dict[str, Any], source: Path) -> str:
    lines = [
        f"Measured {result['when']} at `{result['git_sha'][:12]}`, load {result['machine']['loadavg']} before and "
        f"{result['machine_after']['loadavg']} after, on {result['machine']['cores']} cores; median of "
        f"{result['repeat']} cycles each; result file `{source.name}`.",
        "",
        "| feed | records | fetch only | parse only | plain producer | plain, aiokafka defaults | runtime cycle "
        "| runtime records/s | plain producer records/s | ratio | poll interval |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["feeds"]:
        ours, plain = row["records"] / row["runtime_s"], row["messages"] / row["kafka_s"]
        lines.append(
            f"| {row['feed']} | {row['records']:,} | {ms(row['fetch_s'])} | {ms(row['parse_s'])} | "
            f"{ms(row['kafka_s'])} | {ms(row['kafka_default_s'])} | {ms(row['runtime_s'])} | {ours:,.0f} | "
            f"{plain:,.0f} | {ours / plain:.2f} | {row['interval_s']:g} s |"
        )
    city = result["whole_city"]
    ours, plain = city["records"] / city["runtime_s"], city["messages"] / city["kafka_s"]
    lines += [
        "",
        f"Whole city, five feeds polled concurrently into one sink: {city['records']:,} messages in "
        f"{city['runtime_s']:.2f} s = {ours:,.0f} messages/s, against {plain:,.0f}/s for the plain producer on "
        f"the same messages (ratio {ours / plain:.2f}).",
        "",
        "Goals:",
        "",
        *(f"- {goal.line()}" for goal in goals(result)),
    ]
    return "\n".join(lines)


def goals(result: dict[str, Any]) -> list[Goal]:
    return [
        Goal(
            f"a cold poll of {row['feed']} (every record new) delivered within its poll interval",
            f"≤ {row['interval_s']:g} s",
            f"{row['runtime_s']:.2f} s",
            row["runtime_s"] <= row["interval_s"],
        )
        for row in result["feeds"]
    ]


def publish(result: dict[str, Any], source: Path) -> None:
    publish_section(DOC, "bench:adapters-e2e", section(result, source))


def start_simulator(port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "shfeeds_cli.main", "simulate", "--seed", "1", "--start", START, "--port", str(port)]
    return subprocess.Popen(cmd, cwd=settings_mod.PROJECT_ROOT, stderr=subprocess.PIPE)


async def wait_for_simulator(base_url: str, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the simulator exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(base_url + "/") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.5)
    raise RuntimeError("the simulator did not answer in time")


def own_stack() -> tuple[settings_mod.Settings, tempfile.TemporaryDirectory[str]]:
    from shfeeds_cli import stack

    folder = tempfile.TemporaryDirectory(prefix="shfeeds-bench-")
    own = settings_mod.Settings(
        stack_dir=Path(folder.name),
        cache_dir=settings_mod.load().cache_dir,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        redis_port=free_port(),
        topic_partitions=4,
    )
    stack.share_secrets(settings_mod.load(), own)
    stack.up(own, quiet=True)
    return own, folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bootstrap", default=None, help="use this Kafka (its raw./dlq. topics must exist)")
    parser.add_argument("--no-docs", action="store_true", help="write the result JSON only")
    parser.add_argument("--render", type=Path, help="publish this saved result; measure nothing")
    args = parser.parse_args()
    if args.render:
        publish(json.loads(args.render.read_text()), args.render)
        return

    own: settings_mod.Settings | None = None
    folder = None
    if args.bootstrap is None:
        started = time.monotonic()
        own, folder = own_stack()
        bootstrap = own.kafka_bootstrap
        print(f"own Kafka on {bootstrap} ({time.monotonic() - started:.0f} s to start)")
    else:
        bootstrap = args.bootstrap
    port = free_port()
    sim = start_simulator(port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        asyncio.run(wait_for_simulator(base_url, sim))
        print(f"full simulated city serving on {base_url} ({time.monotonic() - started:.0f} s to build)")
        bench = Bench(bootstrap, base_url, args.repeat)
        result: dict[str, Any] = {"bench": "adapters-e2e", **stamp(), "machine": machine(), "repeat": args.repeat}
        result["feeds"] = asyncio.run(bench.per_feed())
        result["whole_city"] = asyncio.run(bench.whole_city())
        conclude(result, None if args.no_docs else publish, goals)
    finally:
        sim.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            sim.wait(10)
        if own is not None:
            from shfeeds_cli import stack

            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                stack.down(own)
        if folder is not None:
            folder.cleanup()


if __name__ == "__main__":
    main()
