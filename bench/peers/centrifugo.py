"""Fan-out peer: our server and Centrifugo, the same Go load generator, clients, filters and input, alternated.

Centrifugo is built by ``go install`` into a bench-local bin folder under .stack/ (not in git) and runs with
its memory broker, insecure client mode (no tokens: no JWT check at connect for either side) and one channel
per distinct filter. A bridge (bench/peers/centrifugo_bridge.py) reads the tier topic our server reads and
publishes each tick's matching records per channel through Centrifugo's HTTP API. Our server runs as in
bench/fanout/run.py (grouped frames, JSON). Each side: connect every client, wait, then produce the input for
``seconds`` while the load generator counts deliveries and latency from the ``sent_ms`` stamp in each record.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fanout.points import Samples, backlog_growth_mb, overloaded
from bench.fanout.run import LoadGen, Server, cpu_s, primed, produce, rss_kb
from bench.py_spy import start_spy, stop_spy
from bench.report import ROOT, median_of
from ws_server.config import Naming, ServerConfig

VERSION = "v6.9.1"
GOBIN = ROOT / ".stack/gobin"
LOADGEN_DIR = ROOT / "bench/fanout/loadgen"
API_KEY = "bench-peers"


def build() -> tuple[Path, Path]:
    """(Centrifugo, the load generator), built on first use."""
    GOBIN.mkdir(parents=True, exist_ok=True)
    centrifugo = GOBIN / "centrifugo"
    if not centrifugo.exists():
        env = dict(os.environ, GOBIN=str(GOBIN))
        subprocess.run(["go", "install", f"github.com/centrifugal/centrifugo/v6@{VERSION}"], env=env, check=True)
    loadgen = GOBIN / "loadgen"
    subprocess.run(["go", "build", "-o", str(loadgen), "."], cwd=LOADGEN_DIR, check=True)
    return centrifugo, loadgen


def centrifugo_config(port: int) -> dict[str, Any]:
    return {
        "http_server": {"address": "127.0.0.1", "port": port},
        "http_api": {"key": API_KEY},
        "client": {"insecure": True, "allowed_origins": ["*"]},
        "log": {"level": "error"},
    }


def measured_side(
    name: str,
    pid: int,
    port: int,
    url: str,
    args: argparse.Namespace,
    loadgen: Path,
    topic: str,
    extra: tuple[str, ...],
    rates: list[int] | None = None,
    bridge_pid: int | None = None,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    """Connect every client to the server ``pid`` serves at ``url`` (on ``port``), then measure one window of input at
    ``args.rate``, or with ``rates`` one window per rate on the same connections, stopping after the first
    window past the knee (bench/fanout/points.py ``overloaded``) in ``windows``. ``bridge_pid``: the process
    that feeds the server (Centrifugo's bridge), whose CPU each window notes apart. ``profile_to``: py-spy
    samples the server over the (last) window into this file (bench/peers/node_profile.py)."""
    subprocess.run([str(loadgen), "-url", url, "-clients", "1", *extra], input="quit\n", text=True,
                   capture_output=True, check=True)  # fmt: skip
    time.sleep(1.0)
    rss_before = rss_kb(pid)
    gen = LoadGen(loadgen, url, args.clients, args.loadgen_cpu or None, "json", extra)
    try:
        connected = gen.read()
        time.sleep(3.0)
        rss_idle = rss_kb(pid)
        side: dict[str, Any] = {
            "side": name,
            "connect_s": connected["seconds"],
            "kb_per_idle_connection": (rss_idle - rss_before) / args.clients,
        }
        windows = []
        for rate in rates or [args.rate]:
            gen.command("measure")
            cpu_before, gen_before = cpu_s(pid), cpu_s(gen.proc.pid)
            bridge_before = cpu_s(bridge_pid) if bridge_pid else 0.0
            spy = start_spy(pid, profile_to) if profile_to else None
            with Samples(port, [pid]) as samples:
                sent = asyncio.run(produce(args.bootstrap, topic, rate, args.seconds, 7))
                time.sleep(1.0)
            if spy is not None:
                stop_spy(spy)
            rss_loaded = rss_kb(pid)
            gen.command("stop")
            measured = gen.read()
            window = args.seconds + 1.0
            windows.append({
                "rate": rate,
                "input_records": sent,
                "deliveries_per_s": measured["deliveries_per_s"],
                "frames_per_s": measured["frames_per_s"],
                "mb_per_s": measured.get("mb_per_s"),
                "p50_ms": measured["p50_ms"],
                "p99_ms": measured["p99_ms"],
                "max_ms": measured.get("max_ms"),
                "slow_closes": measured.get("slow_closes", 0),
                "backlog_growth_mb": backlog_growth_mb(samples.rows),
                "server_cpu": (cpu_s(pid) - cpu_before) / window,
                "loadgen_cpu": (cpu_s(gen.proc.pid) - gen_before) / window,
                "bridge_cpu": (cpu_s(bridge_pid) - bridge_before) / window if bridge_pid else None,
                "kb_per_connection": (rss_loaded - rss_before) / args.clients,
            })  # fmt: skip
            windows[-1]["overloaded"] = overloaded(windows[-1])
            if rates and windows[-1]["overloaded"]:
                break
        if rates:
            side["windows"] = windows
        else:
            side.update(windows[0])
        return side
    finally:
        gen.close()


def stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_ours(
    args: argparse.Namespace,
    naming: Naming,
    loadgen: Path,
    rates: list[int] | None = None,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.fanout.serve_node", "--mode", "grouped", "--port", str(args.port),
            "--topic-prefix", naming.topic_prefix, "--redis-prefix", naming.redis_prefix]  # fmt: skip
    if args.server_cpu:
        argv = ["taskset", "-c", args.server_cpu, *argv]
    node = Server(argv)
    try:
        assert node.proc.stdout is not None
        node.proc.stdout.readline()
        time.sleep(1.5)
        url = f"ws://127.0.0.1:{args.port}/"
        topic = naming.tier_topic("public", "bus")
        return measured_side("ours", node.proc.pid, args.port, url, args, loadgen, topic, (), rates, None, profile_to)
    finally:
        stop(node.proc)


def run_centrifugo(
    args: argparse.Namespace, naming: Naming, binaries: tuple[Path, Path], tmp: Path, rates: list[int] | None = None
) -> dict[str, Any]:
    centrifugo, loadgen = binaries
    port = args.port + 1
    config = tmp / "centrifugo.json"
    config.write_text(json.dumps(centrifugo_config(port)))
    filters = tmp / "filters.json"
    listed = subprocess.run([str(loadgen), "-clients", str(args.clients), "-list-filters"], capture_output=True,
                            text=True, check=True)  # fmt: skip
    filters.write_text(listed.stdout)
    argv = [str(centrifugo), "-c", str(config)]
    if args.server_cpu:
        argv = ["taskset", "-c", args.server_cpu, *argv]
    server = subprocess.Popen(argv, cwd=tmp)
    topic = naming.tier_topic("public", "bus")
    bridge_argv = [
        sys.executable, "-m", "bench.peers.centrifugo_bridge", "--topic", topic, "--bootstrap", args.bootstrap,
        "--api", f"http://127.0.0.1:{port}", "--key", API_KEY, "--filters", str(filters),
        "--tick-ms", str(ServerConfig.tick_ms), "--frame-gap-ms", str(ServerConfig.frame_gap_ms),
    ]  # fmt: skip
    if args.server_cpu:
        # The bridge does for Centrifugo what our node does for itself (read the tier topic, filter, group per
        # tick): the Kafka → client path of each side gets the same core.
        bridge_argv = ["taskset", "-c", args.server_cpu, *bridge_argv]
    bridge = subprocess.Popen(bridge_argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert bridge.stdout is not None
        bridge.stdout.readline()
        time.sleep(1.5)
        url = f"ws://127.0.0.1:{port}/connection/websocket"
        protocol = ("-protocol", "centrifugo")
        side = measured_side("centrifugo", server.pid, port, url, args, loadgen, topic, protocol, rates, bridge.pid)
        side["channels"] = len(json.loads(listed.stdout))
        return side
    finally:
        stop(bridge)
        stop(server)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    binaries = build()

    def naming() -> contextlib.AbstractContextManager[Naming]:
        # a fresh topic per run: our node must not start behind on earlier runs' records
        return primed(args.bootstrap, args.redis_url, "peerfanout")

    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "centrifugo": []}
    with tempfile.TemporaryDirectory(prefix="shfeeds-peers-") as tmp:
        for round_no in range(args.rounds):
            order = ("ours", "centrifugo") if round_no % 2 == 0 else ("centrifugo", "ours")
            for side in order:
                if side == "ours":
                    with naming() as fresh:
                        run = run_ours(args, fresh, binaries[1])
                else:
                    with naming() as fresh:
                        run = run_centrifugo(args, fresh, binaries, Path(tmp))
                print(side, json.dumps(run), flush=True)
                runs[side].append(run)
        ramp = [int(r) for r in args.ramp.split(",")] if args.ramp else []
        # Each side's knee on one set of connections (rates raised until p99 or backlogs give way), the two
        # sides back to back and alternated: the machine's load drifts, so each round is judged as a pair.
        capacity_rounds: list[dict[str, Any]] = []
        for round_no in range(args.ramp_rounds if ramp else 0):
            pair: dict[str, Any] = {}
            for side in ("ours", "centrifugo") if round_no % 2 == 0 else ("centrifugo", "ours"):
                if side == "ours":
                    with naming() as fresh:
                        pair["ours"] = run_ours(args, fresh, binaries[1], ramp)
                else:
                    with naming() as fresh:
                        pair["centrifugo"] = run_centrifugo(args, fresh, binaries, Path(tmp), ramp)
            capacity_rounds.append(pair)
    keys = ("deliveries_per_s", "frames_per_s", "p50_ms", "p99_ms", "server_cpu", "loadgen_cpu",
            "kb_per_idle_connection", "kb_per_connection", "bridge_cpu")  # fmt: skip
    return {
        "clients": args.clients,
        "channels": runs["centrifugo"][0]["channels"] if runs["centrifugo"] else None,
        "rate": args.rate,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "runs": runs,
        "medians": {side: {k: median_of(rs, k) for k in keys} for side, rs in runs.items()},
        "capacity_rounds": capacity_rounds,
    }
