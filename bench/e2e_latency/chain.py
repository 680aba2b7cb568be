"""The real chain as separate processes, as ``tests/test_e2e_bus.py`` starts it: the bench's source
(``bench/e2e_latency/source.py``), ``shfeeds adapter run sh-bus`` polling it, ``shfeeds streams worker`` and
``shfeeds serve``, on topics and Redis keys of the run's own prefix (made before, deleted after)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

import settings as settings_mod
from bench.e2e_latency.source import BUS_PATH, FLEET_AT
from bench.pipeline.run import delete_redis_keys
from kafka_admin import delete_topics_under, ensure_topics
from schemas import Naming, all_topics
from shfeeds_cli.supervisor import component_argv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(check: str, timeout_s: float, what: str) -> None:
    """Until ``check`` (an HTTP URL) answers at all."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError), urllib.request.urlopen(check, timeout=2):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not answer within {timeout_s:.0f} s")
        time.sleep(0.5)


class Chain:
    """One run's processes. ``interval_s`` None polls at the source's configured interval."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        work: Path,
        buses: int,
        seed: int,
        interval_s: float | None,
        fleet_at: str = FLEET_AT,
    ):
        self.settings = settings
        self.fleet_at = fleet_at
        self.work = work
        self.buses = buses
        self.seed = seed
        self.interval_s = interval_s
        tag = os.urandom(3).hex()
        self.naming = Naming(topic_prefix=f"e2e-{tag}.", redis_prefix=f"e2e-{tag}")
        self.source_port = free_port()
        self.ws_port = free_port()
        self.adapter_metrics_port = free_port()
        self.serve_log = work / f"served-{tag}.jsonl"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._log: IO[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/"

    async def make_topics(self) -> None:
        names = [self.naming.topic(n) for n in all_topics()]
        await ensure_topics(self.settings.kafka_bootstrap, self.settings.topic_partitions, names)

    async def remove_state(self) -> None:
        """Every topic under the run's prefix (the adapter makes some of its own) and its Redis keys."""
        await delete_topics_under(self.settings.kafka_bootstrap, self.naming.topic_prefix)
        await delete_redis_keys(self.settings.redis_url, self.naming.redis_prefix + ":")

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        assert self._log is not None
        self._log.write(f"--- {name}: {' '.join(argv[2:])}\n".encode())
        self._log.flush()
        self.procs[name] = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def start(self) -> None:
        env = {**os.environ, "SHFEEDS_WS_PORT": str(self.ws_port)}
        self._log = (self.work / "components.log").open("ab")
        prefix = ["--topic-prefix", self.naming.topic_prefix]
        source = [sys.executable, "-m", "bench.e2e_latency.source", "--port", str(self.source_port)]
        source += ["--buses", str(self.buses), "--seed", str(self.seed), "--serve-log", str(self.serve_log)]
        source += ["--fleet-at", self.fleet_at]
        self._start("source", source, env)
        # Building the whole city takes a while; the adapter's first polls would only fail meanwhile.
        wait_until(f"http://127.0.0.1:{self.source_port}/", 180, "the bench source")
        redis = ["--redis-prefix", self.naming.redis_prefix]
        worker = ["streams", "worker", "--no-aggregates", "--app-id", f"{self.naming.redis_prefix}-streams"]
        self._start("streams worker", component_argv(*worker, *prefix, *redis), env)
        network = ["--network-seed", str(self.seed), "--network-buses", str(self.buses)]
        self._start("ws server", component_argv("serve", *network, *prefix, *redis), env)
        wait_until(f"http://127.0.0.1:{self.ws_port}/healthz", 180, "the WebSocket server")
        adapter = ["adapter", "run", "sh-bus", "--url", f"http://127.0.0.1:{self.source_port}{BUS_PATH}", *prefix]
        adapter += ["--metrics-port", str(self.adapter_metrics_port)]
        if self.interval_s is not None:
            adapter += ["--interval", f"{self.interval_s:g}"]
        self._start("adapter", component_argv(*adapter), env)

    def died(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is not None]

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(proc.pid) for name, proc in self.procs.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
