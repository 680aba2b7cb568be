"""``shfeeds run``: the whole service with simulated Shanghai feeds, until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import settings as settings_mod
from access.identity import redact
from settings.secret_store import OCPI_PUSH_TOKEN, PSEUDONYM_SECRET, resolve

from . import stack
from .cmd_control_plane import DEFAULT_WEB_PORT as CONTROL_PLANE_PORT
from .supervisor import ChildSpec, Supervisor, component_argv, log

# The simulated city's sources, as named in the adapters' source registry.
SIMULATED_SOURCES = (
    "sh-bus",
    "sh-metro",
    "sh-parking",
    "sh-charging",
    "sh-scenic",
    "sh-charging-sessions",
    "sh-bus-arrivals",
    "sh-metro-arrivals",
)
# Receivers operators push to, started with or without the simulator. The OCPI Locations full sync that pairs
# with it (sh-charging-locations) is not started here: the simulated stations already come in through
# sh-charging, under other ids, and would be counted twice.
PUSH_RECEIVERS = ("ocpi-push",)


ADAPTER_METRICS_BASE = 18801  # the adapters' /metrics: 18801, 18802, ... in SIMULATED_SOURCES order, then the
# push receivers
STREAMS_METRICS_PORT = 18810
ARCHIVER_NICE = 10


def adapter_metrics_ports() -> dict[str, int]:
    return {name: ADAPTER_METRICS_BASE + i for i, name in enumerate((*SIMULATED_SOURCES, *PUSH_RECEIVERS))}


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "run", help="run the whole service (stack, simulators, adapters, streams, WebSocket server, archiver)"
    )
    parser.add_argument("--buses", type=int, default=None, help="simulated buses (default: the simulator's)")
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--no-simulator", action="store_true", help="poll configured real sources only")
    parser.set_defaults(func=handle)


def children(args: argparse.Namespace, settings: settings_mod.Settings) -> list[ChildSpec]:
    specs: list[ChildSpec] = []
    if not args.no_simulator:
        sim = ["simulate", "--seed", str(args.seed), "--time-scale", str(args.time_scale)]
        if args.buses is not None:
            sim += ["--buses", str(args.buses)]
        # The adapters poll it from their first second: they start once it listens.
        specs.append(ChildSpec("simulator", component_argv(*sim), ready_port=settings.simulator_port))
    # Every component serves Prometheus /metrics, each on its own port (the WebSocket server and the
    # control plane on their HTTP ports).
    specs += [
        ChildSpec(f"adapter {name}", component_argv("adapter", "run", name, "--metrics-port", str(port)))
        for name, port in adapter_metrics_ports().items()
    ]
    specs.append(
        ChildSpec(
            "streams",
            component_argv(
                "streams", "worker", "--metrics-port", str(STREAMS_METRICS_PORT), "--aggregates-on-control-plane"
            ),
        )
    )
    serve = ["serve", "--network-seed", str(args.seed)]
    if args.buses is not None:
        serve += ["--network-buses", str(args.buses)]
    specs.append(ChildSpec("ws-server", component_argv(*serve)))
    # The archiver is a batch job (minutes behind costs nothing, its input waits in Kafka); on one machine it
    # took a third of a core from the live path in the soak (docs/benchmarks-soak.md). Niced, it gets the CPU
    # the live path leaves.
    specs.append(ChildSpec("archiver", component_argv("archive", "run"), nice=ARCHIVER_NICE))
    # Feed health (its own Faust worker and consumer group): /health, /health/feeds, `shfeeds health`.
    # It also publishes the aggregate feeds (the holder of the publishing lease); Faust's working
    # directory goes with the stack's other state rather than into the current directory.
    # A standby worker (its own web port) takes the aggregates over within seconds if the first dies.
    for name, port, data in (("control-plane", None, "control-plane"), ("control-plane-standby", 18771, "standby")):
        argv = ["control-plane", "--publish-aggregates", "--data-dir", str(settings.stack_dir / data)]
        argv += ["--web-port", str(port)] if port else []
        specs.append(ChildSpec(name, component_argv(*argv)))
    return specs


def handle(args: argparse.Namespace) -> int:
    settings = settings_mod.load()
    # Before anything starts: in production a missing secret stops here; in development the children find
    # this installation's secret already made.
    resolve(PSEUDONYM_SECRET, settings)
    resolve(OCPI_PUSH_TOKEN, settings, configured=settings.ocpi_push_token)
    try:
        stack.up(settings)
    except stack.StackError as err:
        print(f"shfeeds run: the stack could not start: {err}", file=sys.stderr)
        return 1
    log(f"WebSocket server: ws://127.0.0.1:{settings.ws_port}/  (map page: http://127.0.0.1:{settings.ws_port}/)")
    redis_url = redact(settings.redis_url)
    log(f"simulator: {settings.simulator_url}/   Kafka: {settings.kafka_bootstrap}   Redis: {redis_url}")
    port = os.environ.get("SHFEEDS_CONTROL_PLANE_PORT", CONTROL_PLANE_PORT)
    log(f"feed health: http://127.0.0.1:{port}/health  (or `shfeeds health`)")
    from adapters.runtime.runtime import DEFAULT_PUSH_PORT  # here: the CLI starts without the adapters' imports

    log(f"OCPI push receiver: http://127.0.0.1:{DEFAULT_PUSH_PORT}/ocpi/2.2.1/locations/...")
    last = ADAPTER_METRICS_BASE + len(SIMULATED_SOURCES) + len(PUSH_RECEIVERS) - 1
    log(f"Prometheus /metrics: adapters on {ADAPTER_METRICS_BASE}-{last}, streams on {STREAMS_METRICS_PORT}, "
        f"WebSocket server on {settings.ws_port}, control plane on {port}")  # fmt: skip
    log("Ctrl-C stops the service; `shfeeds stack down` stops Kafka and Redis")
    asyncio.run(Supervisor(settings, children(args, settings)).run())
    return 0
