"""End-to-end latency, source poll → client receipt, for the undelayed operator tier (issue 15).

For every position report the bench's source serves in the window (the whole simulated fleet, polled by the
real ``sh-bus`` adapter), the latency is the moment the operator-tier client received it minus the moment the
first body carrying it had been written to the adapter (``bench/e2e_latency/source.py``); raw.bus and
tier.operator.bus are read along the way for the split. One run per poll interval: the source's own
(10 s: each poll brings ~10,000 new reports at once) and, by default, 1 s (the same rate in small bodies).

Run (needs the stack: ``shfeeds stack up``):
    nice -n 10 .venv/bin/python -m bench.e2e_latency [--intervals default,1] [--warmup 20] [--seconds 60]
Writes bench/results/e2e-latency-*.json, the generated section of docs/benchmarks-e2e.md and the summary in
docs/benchmarks.md; ``--render RESULT.json`` writes them again from a saved result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from rich.console import Console

import settings as settings_mod
from adapters.runtime.sources import get_source
from adapters.simulators.city import DEFAULT_BUSES
from bench.e2e_latency.chain import Chain
from bench.e2e_latency.receivers import AdapterProbe, OperatorClient, TopicStamps, now_ms
from bench.e2e_latency.source import FLEET_AT
from bench.e2e_latency.summary import PAGE, SUMMARY, Report, goals, join, page_body, summary_body
from bench.report import conclude, machine, publish_section, stamp
from ws_server.keys import KeyStore

console = Console(stderr=True)


def read_serve_log(path: Path) -> tuple[dict[Report, int], list[tuple[int, int]]]:
    """The source's first serve time per report, and (serve time, items) of every body that had new ones."""
    served: dict[Report, int] = {}
    bodies: list[tuple[int, int]] = []
    with path.open("rb") as lines:
        for line in lines:
            entry = orjson.loads(line)
            bodies.append((entry["served_ms"], entry["items"]))
            for bus, observed in entry["new"]:
                served.setdefault((bus, observed), entry["served_ms"])
    return served, bodies


async def operator_key(chain: Chain) -> str:
    client = aioredis.from_url(chain.settings.redis_url)
    try:
        key, _ = await KeyStore(client, chain.naming).issue("operator", label="e2e latency bench")
    finally:
        await client.aclose()
    return key


async def measure(
    settings: settings_mod.Settings, args: argparse.Namespace, interval_s: float | None
) -> dict[str, Any]:
    work = settings.stack_dir / "e2e-latency"
    work.mkdir(parents=True, exist_ok=True)
    chain = Chain(settings, work, args.buses, args.seed, interval_s, args.fleet_at)
    poll_s = interval_s if interval_s is not None else get_source("sh-bus").interval_s
    await chain.make_topics()
    stop, measuring = asyncio.Event(), asyncio.Event()
    probe = AdapterProbe(chain.adapter_metrics_port)
    raw = TopicStamps(settings.kafka_bootstrap, chain.naming.raw_topic("bus"))
    tier = TopicStamps(settings.kafka_bootstrap, chain.naming.tier_topic("operator", "bus"))
    tasks: list[asyncio.Task[None]] = []
    try:
        key = await operator_key(chain)
        console.log(f"{poll_s:g} s poll: starting the chain ({args.buses:,} buses; log {work / 'components.log'})")
        await asyncio.to_thread(chain.start)
        client = OperatorClient(chain.ws_url, key)
        running = (raw.run(stop), tier.run(stop), client.run(), probe.run(stop, measuring))
        tasks = [asyncio.create_task(t) for t in running]
        await asyncio.wait_for(client.subscribed.wait(), 60)
        console.log(f"client subscribed; warming up {args.warmup:g} s")
        await asyncio.sleep(args.warmup)
        cpu_before, adapter_before, start_ms = chain.cpu(), dict(probe.latest), now_ms()
        measuring.set()
        console.log(f"measuring {args.seconds:g} s")
        await asyncio.sleep(args.seconds)
        cpu_after, adapter_after, end_ms = chain.cpu(), dict(probe.latest), now_ms()
        measuring.clear()
        console.log(f"window over; awaiting late receipts {args.grace:g} s")
        await asyncio.sleep(args.grace)
        died = chain.died()
        broken = [repr(t.exception()) for t in tasks if t.done() and t.exception()]
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(chain.stop)
        await chain.remove_state()
    served, bodies = read_serve_log(chain.serve_log)
    chain.serve_log.unlink()
    in_window = [items for t, items in bodies if start_ms <= t < end_ms]
    joined = join(served, raw.first, tier.first, client.first, start_ms, end_ms)
    window_s = (end_ms - start_ms) / 1000
    return {
        "buses": args.buses,
        "fleet_at": args.fleet_at,
        "interval_s": poll_s,
        "interval_is_default": interval_s is None,
        "warmup_s": args.warmup,
        "seconds": round(window_s, 2),
        "grace_s": args.grace,
        "bodies": len(in_window),
        "items_per_body": sorted(in_window)[len(in_window) // 2] if in_window else None,  # buses in service
        **joined,
        "client": {
            "frames": client.frames,
            "conflated": client.conflated,
            "repeats": client.repeats,
            "errors": client.errors[:20],
        },
        "adapter": adapter_account(adapter_before, adapter_after, probe.poll_s),
        "cpu_share": {name: round((cpu_after[name] - cpu_before[name]) / window_s, 3) for name in cpu_before},
        "components_died": died,
        "receivers_failed": broken,
    }


def adapter_account(before: dict[str, float], after: dict[str, float], poll_s: list[float]) -> dict[str, Any]:
    """What the adapter says of the window: its polls and records (counter differences) and the fetch +
    parse + hand-over time of the polls seen."""
    counts = {
        name: int(after.get(f"{name}_total", 0) - before.get(f"{name}_total", 0))
        for name in ("polls", "not_modified", "records", "skipped", "rejects", "errors")
    }
    ordered = sorted(poll_s)
    return {
        **counts,
        "poll_ms_seen": len(ordered),
        "poll_ms_median": round(1000 * ordered[len(ordered) // 2]) if ordered else None,
        "poll_ms_max": round(1000 * ordered[-1]) if ordered else None,
    }


def publish(result: dict[str, Any], path: Path) -> None:
    publish_section(PAGE, "bench:e2e-latency", page_body(result, path.name))
    publish_section(SUMMARY, "bench:e2e-latency-summary", summary_body(result, path.name))


def intervals(text: str) -> list[float | None]:
    return [None if part.strip() == "default" else float(part) for part in text.split(",") if part.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--buses", type=int, default=DEFAULT_BUSES, help="simulated fleet (default: the city's)")
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--fleet-at", default=FLEET_AT, help="the Beijing time of day whose fleet is served (HH:MM)")
    parser.add_argument("--intervals", default="default,1", help="adapter poll intervals, s ('default': the source's)")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds after the client subscribed")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window (by serve time)")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds receipts are awaited past the window")
    parser.add_argument("--no-docs", action="store_true", help="write the result JSON only")
    parser.add_argument("--render", type=Path, help="publish this saved result; measure nothing")
    args = parser.parse_args()
    if args.render:
        publish(json.loads(args.render.read_text()), args.render)
        return 0
    settings = settings_mod.load()
    result: dict[str, Any] = {"bench": "e2e-latency", **stamp(), "machine": machine(), "runs": []}
    for interval_s in intervals(args.intervals):
        result["runs"].append(asyncio.run(measure(settings, args, interval_s)))
    conclude(result, None if args.no_docs else publish, goals)
    # A missed goal is a finding, printed and published like every bench's; a broken run is not one.
    return 1 if any(run["components_died"] or run["receivers_failed"] for run in result["runs"]) else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
