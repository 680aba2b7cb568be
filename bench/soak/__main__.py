"""Soak: the whole service as ``shfeeds run`` runs it (simulated city at full size, every adapter, the stream
worker, the control plane, the WebSocket server, the archiver) on a stack of its own, with a client
population, for long enough (15 minutes by default) that full garbage collections, Redis persistence and
Kafka log-segment rolls fall inside the window. Every ``--interval`` seconds it records each component's
resident memory, Redis memory, the stream stages' consumer lag, what the clients received and an
undelayed-tier client's latency; then it checks the stated bounds (``BOUNDS``) on the second half of the run
against the first, writes the result JSON (commit, machine load) and the generated section of
docs/benchmarks-soak.md.

Clients: ``--clients`` public-tier map users (each from its own loopback address, as phones would be: most
watch a bus viewport of their own, some a district's car parks or the scenic areas) and one operator-tier
client on the whole bus feed, whose latency is the record's age on receipt (``observed_at`` to client:
the source's own reporting delay, the adapter's poll interval, the pipeline and the fan-out together).

Run (stop your own ``shfeeds run`` first: the components' metrics ports are fixed):
    .venv/bin/python -m bench.soak [--minutes 15] [--clients 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import shutil
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import redis.asyncio as aioredis
from rich.console import Console
from websockets.asyncio.client import connect

import settings as settings_mod
from access.identity import redact
from bench.chaos.service import Service, cli
from bench.report import ROOT, Goal, machine, publish_section, stamp, write_result
from shfeeds_cli import cmd_run
from shfeeds_cli.supervisor import ChildSpec
from ws_server.latency import LatencyHistogram

PAGE = ROOT / "docs/benchmarks-soak.md"
MSGPACK = "shfeeds.v1.msgpack"
# Ports clear of a developer's stack (1xxxx), the test suite's and a chaos run's (2xxxx).
SOAK_DEFAULTS = {
    "SHFEEDS_STACK_DIR": str(settings_mod.PROJECT_ROOT / ".stack" / "soak"),
    "SHFEEDS_CACHE_DIR": str(settings_mod.PROJECT_ROOT / ".stack" / "cache"),
    "SHFEEDS_KAFKA_PORT": "49092",
    "SHFEEDS_KAFKA_CONTROLLER_PORT": "49093",
    "SHFEEDS_REDIS_PORT": "46379",
    "SHFEEDS_SIMULATOR_PORT": "48080",
    "SHFEEDS_WS_PORT": "48765",
    "SHFEEDS_CONTROL_PLANE_PORT": "48770",
    "SHFEEDS_KAFKA_BROKERS": "1",
}
# The stated bounds, on the second half of the run (the first half warms up: caches fill, Redis snapshots
# appear, the delayed tiers' backlog reaches its steady size).
BOUNDS = {
    "rss_growth_mib": 64,  # per component: the second half's last third against its first third, medians
    "lag_growth": 2.0,  # the clean stage's lag: the second half's largest ≤ 2× the first half's (+ one poll)
    "p99_ms": 15_000,  # undelayed client, record age on receipt: the simulator reports buses every ~10 s
}
CLEAN_LAG_SLACK = 20_000  # records: one poll of the whole city arriving at once

console = Console(stderr=True)


def say(text: str) -> None:
    console.log(text)


class Population:
    """The public map users and the operator client, counting what they receive."""

    def __init__(self, url: str, operator_key: str, clients: int, seed: int = 11) -> None:
        self.url = url
        self.operator_key = operator_key
        self.clients = clients
        self.rng = random.Random(seed)
        self.frames = 0
        self.records = 0
        self.errors: list[str] = []
        self.connected = 0
        self.latency = LatencyHistogram()

    def take_latency(self) -> LatencyHistogram:
        """The undelayed client's latencies since the last call."""
        taken, self.latency = self.latency, LatencyHistogram()
        return taken

    def _subscription(self, n: int) -> dict[str, Any]:
        kind = n % 10
        if kind == 8:
            return {"type": "subscribe", "id": "p", "feed": "parking", "filter": {"district": "黄浦"}}
        if kind == 9:
            return {"type": "subscribe", "id": "s", "feed": "scenic"}
        lng, lat = self.rng.uniform(121.2, 121.75), self.rng.uniform(30.95, 31.4)
        size = self.rng.uniform(0.01, 0.04)  # a phone's viewport: 1–4 km across
        return {"type": "subscribe", "id": "b", "feed": "bus", "filter": {"bbox": [lng, lat, lng + size, lat + size]}}

    async def _public(self, n: int, stop: asyncio.Event) -> None:
        source = f"127.0.{1 + n // 10}.{1 + n % 10}"  # ten per address: under the public per-IP limit
        subscribe = msgpack.packb(self._subscription(n))
        while not stop.is_set():
            try:
                async with connect(self.url, subprotocols=[MSGPACK], local_addr=(source, 0), max_size=None) as ws:  # type: ignore[list-item]
                    self.connected += 1
                    try:
                        await ws.send(subscribe)
                        while not stop.is_set():
                            self._count(msgpack.unpackb(await ws.recv()))
                    finally:
                        self.connected -= 1
            except Exception as err:  # a soak client reconnects, as an app would
                if not stop.is_set():
                    self.errors.append(f"public {n}: {type(err).__name__}: {err}"[:200])
                    await asyncio.sleep(2)

    def _count(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        kind = message.get("type")
        if kind in ("snapshot", "delta"):
            self.frames += 1
            records = list(message.get("records") or message.get("upsert") or [])
            self.records += len(records)
            return records
        if kind == "error":
            self.errors.append(f"error frame: {message.get('code')}"[:200])
        return []

    async def _operator(self, stop: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self.operator_key}"}
        subscribe = msgpack.packb({"type": "subscribe", "id": "all", "feed": "bus", "options": {"snapshot": False}})
        while not stop.is_set():
            try:
                async with connect(self.url, subprotocols=[MSGPACK], additional_headers=headers, max_size=None) as ws:  # type: ignore[list-item]
                    await ws.send(subscribe)
                    while not stop.is_set():
                        message = msgpack.unpackb(await ws.recv())
                        now = time.time() * 1000
                        if message.get("type") == "delta":
                            for record in self._count(message):
                                observed = record.get("observed_at")
                                if isinstance(observed, int):
                                    self.latency.add(now - observed)
            except Exception as err:  # a soak client reconnects, as an app would
                if not stop.is_set():
                    self.errors.append(f"operator: {type(err).__name__}: {err}"[:200])
                    await asyncio.sleep(2)

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._operator(stop))]
        for n in range(self.clients):
            tasks.append(asyncio.create_task(self._public(n, stop)))
            await asyncio.sleep(0.02)  # a population arriving, not a thundering herd
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def scrape(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text: str = resp.read().decode()
            return text
    except OSError:
        return ""


def stage_lag(metrics_text: str) -> dict[str, int]:
    """Records behind per stream stage, summed over its partitions (Prometheus text from the worker)."""
    out: dict[str, int] = {}
    for line in metrics_text.splitlines():
        if line.startswith("shfeeds_streams_consumer_lag{"):
            labels, value = line.rsplit(" ", 1)
            stage = labels.split('stage="', 1)[1].split('"', 1)[0]
            out[stage] = out.get(stage, 0) + int(float(value))
    return out


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        env = dict(os.environ)
        for name, value in SOAK_DEFAULTS.items():
            env.setdefault(name, value)
        self.env = env
        # A fresh city each run, as at a first ``shfeeds run``: topics, Redis and archive left by an earlier
        # soak would be recovered by this one's workers and counted as its memory.
        shutil.rmtree(env["SHFEEDS_STACK_DIR"], ignore_errors=True)
        Path(env["SHFEEDS_STACK_DIR"]).mkdir(parents=True)
        run_args = argparse.Namespace(no_simulator=False, seed=2019, time_scale=1.0, buses=args.buses)

        def children(settings: settings_mod.Settings) -> list[ChildSpec]:
            return cmd_run.children(run_args, settings)

        self.service = Service(env, Path(env["SHFEEDS_STACK_DIR"]) / "soak-components.log", children)
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()

    def t(self) -> float:
        return round(time.monotonic() - self.started, 1)

    async def sample(self, population: Population, redis: aioredis.Redis) -> dict[str, Any]:
        rss = {c.name: self.service.rss_bytes(c.name) for c in self.service.children}
        cpu = {c.name: self.service.cpu_seconds(c.name) for c in self.service.children}
        info = await redis.info("memory")
        persistence = await redis.info("persistence")
        entries = await tier_entries(redis)
        lag = stage_lag(await asyncio.to_thread(scrape, f"http://127.0.0.1:{cmd_run.STREAMS_METRICS_PORT}/metrics"))
        hist = population.take_latency()
        return {
            "t_s": self.t(),
            "rss": rss,
            "cpu_s": cpu,
            "redis_used_bytes": int(info["used_memory"]),
            "redis_rdb_saves": int(persistence.get("rdb_saves", 0) or 0),
            "redis_tier_entries": entries,
            "lag": lag,
            "client_frames": population.frames,
            "client_records": population.records,
            "clients_connected": population.connected,
            "clients_errors": len(population.errors),
            "undelayed_p50_ms": hist.percentile(0.5),
            "undelayed_p99_ms": hist.percentile(0.99),
            "undelayed_records": hist.total,
            "loadavg": machine()["loadavg"][0],
        }

    async def main(self) -> dict[str, Any]:
        s = self.service.settings
        say(f"soak: stack {s.stack_dir}, Kafka {s.kafka_bootstrap}, Redis {redact(s.redis_url)}")
        await asyncio.to_thread(self.service.stack_up)
        operator_key = cli(self.env, "keys", "issue", "operator", "--label", "soak watcher").strip()
        await self.service.start()
        stop = asyncio.Event()
        redis = aioredis.from_url(s.redis_url)
        population = Population(self.service.url, operator_key, self.args.clients)
        try:
            await self._wait_serving()
            self.started = time.monotonic()
            say("service up; clients arriving")
            clients = asyncio.create_task(population.run(stop))
            end = self.args.minutes * 60
            while self.t() < end:
                await asyncio.sleep(self.args.interval)
                sample = await self.sample(population, redis)
                self.samples.append(sample)
                rss = sum(v or 0 for v in sample["rss"].values())
                say(
                    f"t={sample['t_s']:.0f}s rss {rss >> 20} MiB, redis {sample['redis_used_bytes'] >> 20} MiB, "
                    f"lag {sample['lag']}, p99 {sample['undelayed_p99_ms']} ms, frames {sample['client_frames']}"
                )
            stop.set()
            await clients
        finally:
            stop.set()
            await redis.aclose()
            restarts = {c.name: c.restarts for c in self.service.children if getattr(c, "restarts", 0)}
            await self.service.stop()
            await asyncio.to_thread(self.service.stack_down)
        return {
            "bench": "soak",
            "config": {
                "minutes": self.args.minutes,
                "clients": self.args.clients,
                "interval_s": self.args.interval,
                "buses": self.args.buses,
                "bounds": BOUNDS,
            },
            "samples": self.samples,
            "restarts": restarts,
            "client_errors": population.errors[:50],
            "client_error_count": len(population.errors),
        }

    async def _wait_serving(self) -> None:
        deadline = time.monotonic() + 180
        while not scrape(f"http://127.0.0.1:{self.service.settings.ws_port}/healthz"):
            if time.monotonic() > deadline:
                raise TimeoutError("the WebSocket server did not answer within 180 s")
            await asyncio.sleep(1)


async def tier_entries(redis: aioredis.Redis) -> int:
    """Entities held in the tier snapshots (one hash field per entity per tier and feed): Redis memory
    divided by this is the capacity model's bytes per entity."""
    total = 0
    async for key in redis.scan_iter(match="*:state:*", count=500):
        if not key.endswith(b":offsets"):
            total += int(await redis.hlen(key))
    return total


def _half(samples: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    middle = samples[-1]["t_s"] / 2 if samples else 0
    return [s for s in samples if s["t_s"] < middle], [s for s in samples if s["t_s"] >= middle]


def rss_growth(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Per component, MiB: the median of the second half's last third minus that of its first third."""
    _, second = _half(samples)
    third = max(1, len(second) // 3)
    out = {}
    for name in samples[0]["rss"] if samples else []:
        head = [s["rss"][name] for s in second[:third] if s["rss"].get(name)]
        tail = [s["rss"][name] for s in second[-third:] if s["rss"].get(name)]
        if head and tail:
            out[name] = round((statistics.median(tail) - statistics.median(head)) / 2**20, 1)
    return out


def cpu_shares(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Per component, the share of one core it used over the second half, busiest first (components restarted
    in it, whose counters started again, are left out)."""
    _, second = _half(samples)
    if len(second) < 2 or "cpu_s" not in second[0]:
        return {}
    start, end = second[0], second[-1]
    wall = end["t_s"] - start["t_s"]
    out = {}
    for name, used in end["cpu_s"].items():
        before = start["cpu_s"].get(name)
        if used is not None and before is not None and used >= before and wall > 0:
            out[name] = (used - before) / wall
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def goals(result: dict[str, Any]) -> list[Goal]:
    samples = result["samples"]
    first, second = _half(samples)
    growth = rss_growth(samples)
    worst = max(growth.items(), key=lambda kv: kv[1], default=("-", 0.0))
    clean_first = max((s["lag"].get("clean", 0) for s in first), default=0)
    clean_second = max((s["lag"].get("clean", 0) for s in second), default=0)
    p99s = [s["undelayed_p99_ms"] for s in second if s["undelayed_p99_ms"] is not None]
    p99 = max(p99s, default=None)
    return [
        Goal(
            "memory does not creep",
            f"every component's RSS grows ≤ {BOUNDS['rss_growth_mib']} MiB over the second half",
            f"largest growth {worst[1]:+.1f} MiB ({worst[0]})",
            worst[1] <= BOUNDS["rss_growth_mib"],
        ),
        Goal(
            "the pipeline keeps up",
            f"clean-stage lag in the second half ≤ {BOUNDS['lag_growth']:g}× the first half's + one city poll",
            f"largest {clean_second:,} records (first half {clean_first:,})",
            clean_second <= BOUNDS["lag_growth"] * clean_first + CLEAN_LAG_SLACK,
        ),
        Goal(
            "undelayed latency holds",
            f"record age on receipt, p99 of every interval of the second half ≤ {BOUNDS['p99_ms']:,} ms",
            f"worst interval p99 {p99} ms" if p99 is not None else "no records received",
            p99 is not None and p99 <= BOUNDS["p99_ms"],
        ),
        Goal(
            "nothing restarted",
            "no component restarted by its supervisor",
            ", ".join(f"{k} {v}" for k, v in result["restarts"].items()) or "none",
            not result["restarts"],
        ),
    ]


def _distance(t_s: float, sample: dict[str, Any]) -> float:
    return abs(sample["t_s"] - t_s)


def section(result: dict[str, Any], source: str) -> str:
    cfg, samples = result["config"], result["samples"]
    before = result["machine_before"]
    names = list(samples[0]["rss"]) if samples else []
    short = {n: n.removeprefix("adapter ") for n in names}
    lines = [
        f"Commit `{result['git_sha'][:12]}`, {result['when']}, {cfg['minutes']} minutes, {cfg['clients']} public "
        f"clients + 1 operator client, {before['cores']} cores (load average at start {before['loadavg'][0]}). "
        f"Raw result: `{source}` in the results folder (not in git; the script writes it).",
        "",
        "One row a minute (the sample nearest each minute). RSS in MiB; lag in records behind, summed over "
        "partitions; p99 of the operator client's record age over the preceding interval.",
        "",
        "| t | " + " | ".join(short[n] for n in names) + " | Redis MiB | clean lag | delay lags | p99 ms | "
        "frames to clients | load |",
        "|---" * (len(names) + 8) + "|",
    ]
    shown: list[dict[str, Any]] = []
    for minute in range(int(samples[-1]["t_s"] // 60) + 1 if samples else 0):
        near = min(samples, key=functools.partial(_distance, 60.0 * minute))
        if near not in shown:
            shown.append(near)
    for s in shown:
        delays = sum(v for k, v in s["lag"].items() if k != "clean")
        rss = " | ".join(f"{(s['rss'].get(n) or 0) / 2**20:.0f}" for n in names)
        lines.append(
            f"| {s['t_s'] / 60:.1f} min | {rss} | {s['redis_used_bytes'] / 2**20:.0f} | {s['lag'].get('clean', 0):,} "
            f"| {delays:,} | {s['undelayed_p99_ms']} | {s['client_frames']:,} | {s['loadavg']} |"
        )
    lines += ["", f"RSS growth over the second half (MiB): {rss_growth(samples)}."]
    shares = cpu_shares(samples)
    if shares:
        busy = ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
        lines.append(f"CPU over the second half, share of one core (busiest first): {busy}.")
    if samples and samples[-1].get("redis_tier_entries"):
        last = samples[-1]
        per = last["redis_used_bytes"] / last["redis_tier_entries"]
        lines.append(
            f"Redis at the end: {last['redis_used_bytes'] / 2**20:.0f} MiB for {last['redis_tier_entries']:,} tier "
            f"snapshot entries (entity × tier), {per:,.0f} bytes per entry with the recovery state included."
        )
    lines.append("")
    lines += [f"- {g.line()}" for g in goals(result)]
    if result["client_error_count"]:
        lines.append(f"- client errors: {result['client_error_count']} (first: {result['client_errors'][:3]})")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--buses", type=int, default=None, help="simulated buses (default: the simulator's city)")
    parser.add_argument("--no-docs", action="store_true", help="write the result JSON only")
    args = parser.parse_args()
    before = machine()
    measured = asyncio.run(Soak(args).main())
    result = {**stamp(), **measured, "machine_before": before, "machine_after": machine()}
    path = write_result(result)
    held = True
    for goal in goals(result):
        print(goal.line())
        held &= goal.met
    print(f"result: {path.relative_to(ROOT)}")
    if not args.no_docs:
        publish_section(PAGE, "soak", section(result, path.name))  # results are not in git
    return 0 if held else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
