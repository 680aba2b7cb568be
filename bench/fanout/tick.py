"""The WebSocket node's tick in process, no broker and no sockets: CPU per 10 s of input and a digest of
every frame, to judge a change to ``ws_server/protocol/`` before and after it in one sitting.

The hub of one node gets the peers bench's load (bench/peers): the public bus feed of the whole fleet,
``--rate`` position reports a second in ticks of 20 ms, and ``--clients`` sessions whose filters follow the
Go load generator's mix (bench/fanout/loadgen/main.go: half a district, 30 % a map viewport, 15 % near a
point, 5 % the whole feed; 117 distinct filters). Each session writes to a sink that only counts and
hashes its frames, so what is measured is the hub's Python: ingest, tick, filters, encoding, per-member
delivery; the socket writes and the event loop (about half of a node's CPU under load,
``bench.peers.node_profile``) are not in it. Input is generated before the clock starts and is the same
for every run of a seed, and the hash seed is fixed, so two revisions that send the same frames print the
same digest: a speed-up that changes what clients get shows as a different digest.

``--against REV`` runs this same script on REV's code as well (a temporary worktree first on the path),
the two alternating for ``--rounds`` rounds, and compares the best CPU of each; the result JSON (both SHAs,
every round, machine load) goes to bench/results/. Nothing is published: it is a tool for a change, as
bench/pipeline/compare.py is for the stream worker.

Run: .venv/bin/python -m bench.fanout.tick [--rate 8000] [--clients 2000] [--viewports] [--against REV]
    [--rounds 5]   (``--viewports``: each client a map screen of its own instead of the mix)
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
import orjson

T0 = 1_800_000_000_000
TICK_MS = 20
DISTRICTS = [
    "310101", "310104", "310105", "310106", "310107", "310109", "310110", "310112",
    "310113", "310114", "310115", "310116", "310117", "310118", "310120", "310151",
]  # fmt: skip


def subscription(n: int, rng: random.Random) -> dict[str, Any]:
    """Client ``n``'s subscribe message: the load generator's mix (see the module docstring)."""
    p = n % 20
    filt: dict[str, Any]
    if p < 10:
        filt = {"district": rng.choice(DISTRICTS)}
    elif p < 16:
        v = rng.randrange(60)
        x, y = 121.30 + (v % 10) * 0.04, 31.05 + (v // 10) * 0.05
        filt = {"bbox": [x, y, x + 0.08, y + 0.06]}
    elif p < 19:
        v = rng.randrange(40)
        filt = {"near": {"lng": 121.35 + (v % 8) * 0.05, "lat": 31.10 + (v // 8) * 0.06, "radius_m": 2000}}
    else:
        filt = {}
    snapshot = "district" not in filt and bool(filt)
    return {"type": "subscribe", "id": "s", "feed": "bus", "filter": filt, "options": {"snapshot": snapshot}}


class CountingSink:
    """A session's sink that keeps only a count and a hash of what it was sent. Its own class, not one shared
    with ws_server: ``--against`` runs this file on older revisions' code."""

    __slots__ = ("digest", "frames")

    def __init__(self) -> None:
        self.frames = 0
        self.digest = hashlib.blake2b(digest_size=8)

    def send(self, frame: bytes) -> None:
        self.frames += 1
        self.digest.update(frame)

    def send_many(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.send(frame)

    def backlog(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        pass


def viewport(n: int) -> dict[str, Any]:
    """Client ``n``'s own map screen, ~3 × 2.8 km in the buses' area: the load generator's ``-viewports``
    clients (the capacity bench's goal point has one per client), from a sequence of its own."""
    rng = random.Random(7919 * n + 17)
    x, y = round(121.20 + rng.random() * 0.57, 5), round(30.90 + rng.random() * 0.525, 5)
    filt = {"bbox": [x, y, x + 0.03, y + 0.025]}
    return {"type": "subscribe", "id": "s", "feed": "bus", "filter": filt, "options": {"snapshot": True}}


def measure(rate: int, seconds: int, clients: int, seed: int = 1, viewports: bool = False) -> dict[str, Any]:
    """One run on the code first on the path: CPU of ``seconds`` of input, frames and their digest."""
    from bench.fanout.run import FLEET, Fleet, bus
    from ws_server.districts import lookup_district
    from ws_server.protocol.codec import CODECS
    from ws_server.protocol.hub import Hub
    from ws_server.protocol.limits import DEFAULT_LIMITS
    from ws_server.protocol.session import Session

    hub = Hub(lookup_district, node_id="n1", frame_gap_ms=50)
    hub.source("public", "bus").ready = True
    fleet, rng = Fleet(seed), random.Random(seed)
    first = [(n, f"bus-{n:05d}", msgpack.packb(bus(n, fleet.points[n], T0))) for n in range(FLEET)]
    hub.ingest_records("public", "bus", 0, first, FLEET)
    hub.tick(T0)
    sinks = [CountingSink() for _ in range(clients)]
    choose = random.Random(seed + 1)
    for n, sink in enumerate(sinks):
        session = Session(
            hub, sink, CODECS["shfeeds.v1.json"], tier="public", limits=DEFAULT_LIMITS["public"], now_ms=T0
        )
        message = viewport(n) if viewports else subscription(n, choose)
        session.receive(orjson.dumps(message).decode(), T0)
    offset, per_tick, now = FLEET, rate * TICK_MS // 1000, T0 + TICK_MS
    batches = []
    for t in range(seconds * 1000 // TICK_MS):
        batch = []
        for _ in range(per_tick):
            report = fleet.report(rng.randrange(FLEET), rng, now + t * TICK_MS)
            batch.append((offset, report["id"], msgpack.packb(report)))
            offset += 1
        batches.append(batch)
    snapshot_frames = sum(s.frames for s in sinks)
    gc.collect()
    gc.freeze()  # as the node does (ws_server/config.py gc_freeze_s): the set-up is not the tick's garbage
    started = time.process_time()
    for batch in batches:
        hub.ingest_records("public", "bus", 0, batch, batch[-1][0] + 1, now)
        hub.tick(now)
        now += TICK_MS
    cpu = time.process_time() - started
    digest = hashlib.blake2b(digest_size=8)
    for sink in sinks:
        digest.update(sink.digest.digest())
    frames = sum(s.frames for s in sinks) - snapshot_frames
    return {
        "cpu_s": round(cpu, 3),
        "cores": round(cpu / seconds, 3),
        "frames": frames,
        "us_per_frame": round(cpu / max(1, frames) * 1e6, 2),
        "digest": digest.hexdigest(),
    }


def run_tree(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    """This script on ``tree``'s code, in a process of its own with the hash seed fixed."""
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", *_load_args(args)]
    out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise RuntimeError(f"the tick bench failed on {tree}:\n{out.stderr[-2000:]}")
    return {"load_1min": round(os.getloadavg()[0], 2), **json.loads(out.stdout.strip().splitlines()[-1])}


def _load_args(args: argparse.Namespace) -> list[str]:
    mix = ["--viewports"] if args.viewports else []
    return ["--rate", str(args.rate), "--seconds", str(args.seconds), "--clients", str(args.clients), *mix]


def compare(args: argparse.Namespace) -> dict[str, Any]:
    from bench.pipeline.compare import checkout, sha_of
    from bench.report import ROOT, stamp, write_result

    shas = {"before": sha_of(args.against), "after": sha_of("HEAD")}
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="shfeeds-tick-") as tmp:
        trees = {"before": checkout(shas["before"], Path(tmp)), "after": ROOT}
        try:
            for round_no in range(args.rounds):
                order = ("before", "after") if round_no % 2 == 0 else ("after", "before")
                for which in order:
                    runs[which].append(run_tree(trees[which], args))
                    print(which, shas[which][:7], json.dumps(runs[which][-1]), flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(trees["before"])], cwd=ROOT, check=False)
    best = {which: min(r["cpu_s"] for r in rs) for which, rs in runs.items()}
    digests = {which: sorted({r["digest"] for r in rs}) for which, rs in runs.items()}
    result = {
        "bench": "fanout-tick",
        **stamp(),
        "revisions": shas,
        "load": {"rate": args.rate, "seconds": args.seconds, "clients": args.clients, "viewports": args.viewports},
        "runs": runs,
        "best_cpu_s": best,
        "after_over_before": round(best["after"] / best["before"], 3),
        "same_frames": digests["before"] == digests["after"] and len(digests["after"]) == 1,
    }
    path = write_result(result)
    print(
        f"best CPU per {args.seconds} s of input: before {best['before']} s, after {best['after']} s "
        f"(× {result['after_over_before']}); same frames: {result['same_frames']}; result: {path}"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=8000, help="position reports a second")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of input")
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--viewports", action="store_true", help="a map viewport of its own per client")
    parser.add_argument("--repeat", type=int, default=3, help="runs of this tree without --against (best counts)")
    parser.add_argument("--against", help="a git revision to compare with, alternating")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # one run, JSON out (run_tree)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.rate, args.seconds, args.clients, viewports=args.viewports)))
    elif args.against:
        compare(args)
    else:
        from bench.report import ROOT

        for _ in range(args.repeat):
            print(json.dumps(run_tree(ROOT, args)), flush=True)


if __name__ == "__main__":
    main()
