"""Where our node's time goes at the Centrifugo comparison's knee: one window of the peers bench's fan-out
setup (same clients, filters, cores and producer) at a stated rate, with py-spy sampling the node.

Every sample's stack is put in one step by its innermost frame that a rule below names; each step's share
of the samples times the node's measured CPU per delivery gives µs per delivery. py-spy leaves idle threads
out, so the Kafka reader's thread counts only while it decodes or hands batches over. The caveat of
bench/pipeline/cpu_split.py holds here too: a thread waiting for its core counts as busy, so socket writes
read high on a loaded machine; the node's system CPU bounds the kernel's real share.

Run (needs the stack, Go and py-spy in the venv): .venv/bin/python -m bench.peers.node_profile [--rate 14000]
Writes bench/results/peers-node-profile-*.json and the profile section of docs/benchmarks-peers.md;
``--render RESULT.json`` writes the section again from a saved result.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import settings
from bench.fanout.run import primed
from bench.peers import centrifugo
from bench.peers.report import PAGE
from bench.py_spy import classify, stacks
from bench.report import machine, publish_section, stamp, write_result

# (step, what a frame's "function (file:line)" text contains), innermost frame first; see classify(). py-spy
# names the project's own files by their base name ("Stream.flush (stream.py:206)"), libraries by their path.
TICK_FILES = ("(hub.py", "(stream.py", "(stream_index.py", "(filters.py", "(filter_cache.py", "(state.py")
STEP_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("socket writes (transport, kernel)", ("selector_events.py", "sock_send", "transports.py")),
    ("Kafka read and decode (reader thread)", ("(feed_reader.py", "aiokafka/", "(loop_thread.py")),
    ("frame encoding", ("(codec.py", "msgpack", "orjson")),
    ("per-member delivery (session, sink, usage)", ("(session.py", "(wire.py")),
    ("tick: changes, stream index, filters", TICK_FILES),
    ("keepalive", ("(keepalive.py",)),
    ("latency and metrics bookkeeping", ("(latency.py", "(metrics.py", "prometheus_client")),
    ("websockets library", ("websockets/",)),
    ("event loop", ("asyncio/", "selectors.py")),
]


def split(raw: str) -> tuple[Counter[str], Counter[str], int]:
    """(samples per step, per leaf function, total) from py-spy's raw (collapsed) output."""
    steps: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for frames, n in stacks(raw):
        steps[classify(frames, STEP_RULES, "other")] += n
        leaves[frames[-1] if frames else "(native)"] += n
        total += n
    return steps, leaves, total


def section(result: dict[str, Any], source: str) -> str:
    w = result["window"]
    lines = [
        f"Measured {result['when']} at `{result['git_sha'][:12]}` by `python -m bench.peers.node_profile`, load "
        f"{result['machine']['loadavg']}; result file `{source}`. Our node alone, pinned to core 0 as in the "
        f"comparison, {result['clients']:,} clients, {w['rate']:,} records/s for {result['seconds']:.0f} s: "
        f"{w['deliveries_per_s']:,.0f} deliveries/s, p99 {w['p99_ms']} ms, node CPU {w['server_cpu']:.2f} cores "
        f"= {result['us_per_delivery']:.2f} µs per delivery ({result['samples']:,} py-spy samples).",
        "",
        "| step | share of samples | µs per delivery |",
        "|---|---|---|",
    ]
    total = result["samples"] or 1
    for step, n in result["samples_by_step"].items():
        lines.append(f"| {step} | {100 * n / total:.0f} % | {result['us_per_delivery'] * n / total:.2f} |")
    leaves: Counter[str] = Counter()
    for frame, n in result["top_leaves"].items():  # by function: one function's lines add up
        leaves[frame.split(" (", 1)[0]] += n
    top = ", ".join(f"{name} {100 * n / total:.0f} %" for name, n in leaves.most_common(6))
    lines += ["", f"Innermost functions with the most samples: {top}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=14_000, help="input records/s (the knee in the latest run)")
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--port", type=int, default=18950)
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--loadgen-cpu", default="1")
    parser.add_argument("--render", type=Path, help="publish this saved result; measure nothing")
    args = parser.parse_args()
    if args.render:
        publish_section(
            PAGE, "bench:peers-node-profile", section(json.loads(args.render.read_text()), args.render.name)
        )
        return
    s = settings.load()
    args.bootstrap, args.redis_url = s.kafka_bootstrap, s.redis_url
    _, loadgen = centrifugo.build()
    out = Path(tempfile.mkdtemp(prefix="shfeeds-node-profile-")) / "stacks.txt"
    try:
        with primed(args.bootstrap, args.redis_url, "peerprofile") as naming:
            side = centrifugo.run_ours(args, naming, loadgen, [args.rate], profile_to=out)
        raw = out.read_text() if out.exists() else ""
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    steps, leaves, total = split(raw)
    window = side["windows"][0]
    result: dict[str, Any] = {
        "bench": "peers-node-profile",
        **stamp(),
        "machine": machine(),
        "clients": args.clients,
        "seconds": args.seconds,
        "window": window,
        "us_per_delivery": window["server_cpu"] * 1e6 / window["deliveries_per_s"],
        "samples": total,
        "samples_by_step": dict(steps.most_common()),
        "top_leaves": dict(leaves.most_common(25)),
    }
    path = write_result(result)
    publish_section(PAGE, "bench:peers-node-profile", section(result, path.name))
    print(section(result, path.name))


if __name__ == "__main__":
    main()
