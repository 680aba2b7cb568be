"""Peers in the same run: our stream worker against Quix Streams (bench/peers/quix.py) and, when its driver
is given, our fan-out server against Centrifugo. Writes the result JSON, checks the goals in code and
rewrites the generated sections of docs/benchmarks-peers.md and docs/benchmarks.md.

Run (needs the dev stack and Go): nice -n 10 .venv/bin/python -m bench.peers [--peers quix,centrifugo]
[--records 4000] [--rounds 3] [--ramp-rounds 3] [--clients 2000] [--rate 2000] [--seconds 15]
``--render RESULT.json`` writes the sections again from a saved result without measuring.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import settings
from bench.peers import centrifugo, quix
from bench.peers.report import PAGE, PEERS, SUMMARY, goals, page_body, summary_body
from bench.report import conclude, machine, publish_section, stamp


def publish(result: dict[str, Any], path: Path) -> None:
    for peer in PEERS:  # only the peers this result measured: the others' sections stay as they were
        if result.get(peer):
            publish_section(PAGE, f"bench:peers-{peer}", page_body(result, path.name, peer))
            publish_section(SUMMARY, f"bench:peers-{peer}-summary", summary_body(result, path.name, peer))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=4000, help="backlog per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-poll", type=int, default=2000)
    parser.add_argument("--settle-seconds", type=float, default=2.0)
    parser.add_argument("--peers", default="quix,centrifugo")
    parser.add_argument("--clients", type=int, default=2000, help="fan-out clients")
    parser.add_argument("--rate", type=int, default=2000, help="fan-out input records/s")
    parser.add_argument("--seconds", type=float, default=15.0, help="fan-out measured window")
    parser.add_argument("--ramp", default="2000,4000,8000,12000,14000,16000,20000,24000,32000",
                        help="fan-out input rates for each side's knee ('' = none)")  # fmt: skip
    parser.add_argument("--ramp-rounds", type=int, default=3, help="alternated ramps per side (median judged)")
    parser.add_argument(
        "--port", type=int, default=18950, help="ours; Centrifugo gets the next one (below the ephemeral range)"
    )
    parser.add_argument("--server-cpu", default="0", help="taskset CPU list for either server ('' = none)")
    parser.add_argument("--loadgen-cpu", default="1", help="taskset CPU list for the load generator")
    parser.add_argument("--render", type=Path, help="publish this saved result; measure nothing")
    args = parser.parse_args()
    if args.render:
        publish(json.loads(args.render.read_text()), args.render)
        return
    result: dict[str, Any] = {"bench": "peers", **stamp(), "machine": machine()}
    s = settings.load()
    args.bootstrap, args.redis_url = s.kafka_bootstrap, s.redis_url
    peers = args.peers.split(",")
    if "quix" in peers:
        result["quix"] = quix.measure(args)
    if "centrifugo" in peers:
        result["centrifugo"] = centrifugo.measure(args)
    conclude(result, publish, goals)


if __name__ == "__main__":
    main()
