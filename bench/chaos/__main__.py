"""``make chaos``: the service on a three-broker stack of its own, abusive clients next to a bystander, and in
turn a broker, the streams worker, Redis and the WebSocket server killed with SIGKILL and brought back as
``shfeeds run`` would. Then Kafka and the clients are asked whether anything was lost or repeated.

    python -m bench.chaos [--soak-s 300] [--out chaos-result.json]

Prints a table of what was tried and what held, writes the JSON result (with the git commit), and exits 1
when something did not hold. The ports and stack folder are its own (``CHAOS_DEFAULTS`` in
``bench/chaos/service.py``, each overridable with its ``SHFEEDS_*`` variable): it kills brokers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from access.identity import redact
from client import FeedClient
from schemas import dlq_topic, raw_topic, tier_topic
from ws_server.config import ServerConfig
from ws_server.protocol.stream import parse_position

from .clients import MSGPACK, AbuseTally, Bystander, Watcher, churn, garbage, polygons
from .load import Fleet
from .service import Service, chaos_children, chaos_environment, cli, end_offsets, read_range
from .verdict import (
    Check,
    all_held,
    dead_letter_version,
    latest_per_entity,
    markdown,
    missing_versions,
    render,
    repeated,
    state_matches,
    version_of,
)

# The stated bounds.
BYSTANDER_P99_MS = (
    1000.0  # a ping's round trip, under the abuse and the blows (a JVM restarting, a loaded 2-core machine)
)
REPLAY_BUDGET = ServerConfig.replay_bytes_total  # the server runs with the default
# The server's resident memory while clients churn distinct subscriptions: the replay frames, which fill
# up to their own process-wide budget by design, plus the rest. Measured with tracemalloc in such a run:
# the tier histories kept for catch-up (100,000 records per tier and feed read, ~57 MiB each, three here),
# the entity sets of the streams (0.5 MiB for a whole-city stream, up to 200 streams per IP), the entity
# state and the connections' buffers: 350-450 MiB.
SERVER_RSS_BOUND = REPLAY_BUDGET + (448 << 20)
# Creep of the memory the replay frames do not explain: its median over the last quarter of the churn
# against the quarter before. (Not the spread of single samples: a sample taken while a few whole-city
# snapshots sit in write buffers differs from the next by tens of MiB without anything growing.)
RSS_GROWTH_BOUND = 64 << 20
HEALTH_REACTION_S = 5.0  # Redis down or back: /healthz says so within this

TIER = "operator"  # undelayed: what a client sees is what the pipeline just released
FEED = "bus"

console = Console(stderr=True)


def say(text: str) -> None:
    console.log(text)


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def healthz(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            answer: dict[str, Any] = orjson.loads(resp.read())
            return answer
    except (OSError, ValueError):
        return None


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.env = chaos_environment()
        Path(self.env["SHFEEDS_STACK_DIR"]).mkdir(parents=True, exist_ok=True)
        log = Path(self.env["SHFEEDS_STACK_DIR"]) / "chaos-components.log"
        self.service = Service(self.env, log, chaos_children(args.buses))
        self.checks: list[Check] = []
        self.events: list[dict[str, Any]] = []
        self.rss: list[tuple[float, int]] = []
        self.replay_bytes: list[tuple[float, int]] = []  # the server's replay buffers (/healthz), sampled with RSS
        self.replay_held: int | None = None  # the newest /healthz figure (_watch_health polls it), None if down
        self.started = time.monotonic()
        self.began = self.started
        self.stop_abuse = asyncio.Event()
        self.stop_bystander = asyncio.Event()
        self.stop_fleet = asyncio.Event()
        self.fleet = Fleet(self.service.settings.kafka_bootstrap, vehicles=args.load_vehicles)
        self.tally = AbuseTally()
        self.health_seen: list[tuple[float, str]] = []
        self.watcher_repeats: list[dict[str, Any]] = []

    def t(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def event(self, what: str, **figures: Any) -> None:
        self.events.append({"t_s": self.t(), "what": what, **figures})
        say(f"t={self.t():.0f}s {what} {figures if figures else ''}")

    async def sleep_until(self, t_s: float) -> None:
        await asyncio.sleep(max(0.0, t_s - (time.monotonic() - self.started)))

    # ------------------------------------------------------------------------------------------ the run

    async def main(self) -> int:
        s = self.service.settings
        say(f"stack: 3 brokers on {s.kafka_bootstrap}, Redis {redact(s.redis_url)}, folder {s.stack_dir}")
        await asyncio.to_thread(self.service.stack_up)
        raw, tier = raw_topic(FEED), tier_topic(TIER, FEED)
        raw_start = await end_offsets(s.kafka_bootstrap, raw)
        tier_start = await end_offsets(s.kafka_bootstrap, tier)
        dlq_start = await end_offsets(s.kafka_bootstrap, dlq_topic(FEED))
        operator_key = cli(self.env, "keys", "issue", "operator", "--label", "chaos watcher").strip()
        registered_key = cli(self.env, "keys", "issue", "registered", "--label", "chaos bystander").strip()
        await self.service.start()
        tasks: list[asyncio.Task[Any]] = []
        watcher = Watcher(self.service.url, operator_key, FEED)
        bystander = Bystander(self.service.url, registered_key)
        try:
            await self._wait_serving()
            self.started = time.monotonic()
            self.event("service up")
            tasks.append(asyncio.create_task(watcher.run()))
            tasks.append(asyncio.create_task(bystander.run(self.stop_bystander)))
            tasks.append(asyncio.create_task(self._sample_rss()))
            tasks.append(asyncio.create_task(self._watch_health()))
            await self._until(lambda: watcher.snapshots > 0 and len(watcher.entities) > 0, 120, "watcher's snapshot")
            tasks.append(asyncio.create_task(self.fleet.run(self.stop_fleet)))
            tasks += [asyncio.create_task(churn(self.service.url, self.tally, self.stop_abuse, n)) for n in range(3)]
            tasks.append(asyncio.create_task(garbage(self.service.url, self.tally, self.stop_abuse, 1)))
            tasks += [asyncio.create_task(polygons(self.service.url, self.tally, self.stop_abuse, n)) for n in range(2)]
            await self._blows(watcher)
            self.stop_abuse.set()
            self.stop_fleet.set()
            await asyncio.sleep(3)  # the fleet's last records acknowledged
            raw_end = await end_offsets(s.kafka_bootstrap, raw_topic(FEED))
            await asyncio.sleep(10)  # the last records through the pipeline and out to the watcher
            self.stop_bystander.set()
            # The watcher's view and the position it stands at, taken at one instant, then it stops.
            end = parse_position(watcher.last_pos or "") or {}
            tasks[0].cancel()
            fresh = await self._fresh_snapshot(operator_key)
            self.dlq_range = (dlq_start, await end_offsets(s.kafka_bootstrap, dlq_topic(FEED)))
            await self._verify(watcher, bystander, fresh, raw, tier, raw_start, raw_end, tier_start, end)
        finally:
            self.stop_abuse.set()
            self.stop_bystander.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.service.stop()
            if not self.args.keep_stack:
                await asyncio.to_thread(self.service.stack_down)
        return self._report()

    async def _wait_serving(self) -> None:
        await self._until(lambda: healthz(self.service.settings.ws_port) is not None, 180, "the WebSocket server")

    async def _until(self, ready: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
            await asyncio.sleep(0.25)

    async def _sample_rss(self) -> None:
        while True:
            rss = self.service.rss_bytes("ws-server")
            if rss is not None and self.replay_held is not None:
                self.rss.append((self.t(), rss))
                self.replay_bytes.append((self.t(), self.replay_held))
            await asyncio.sleep(2)

    async def _watch_health(self) -> None:
        last = None
        while True:
            answer = await asyncio.to_thread(healthz, self.service.settings.ws_port)
            self.replay_held = int(answer.get("replay_bytes", 0)) if answer else None
            redis_state = (answer or {}).get("redis", {}).get("state") if answer else "unreachable"
            state = f"{(answer or {}).get('state', 'unreachable')}/redis {redis_state}"
            if state != last:
                self.health_seen.append((self.t(), state))
                last = state
            await asyncio.sleep(0.5)

    async def _blows(self, watcher: Watcher) -> None:
        soak = self.args.soak_s
        s = self.service

        # 1. A broker: the leader of the operator tier's partition 0, under load.
        await self.sleep_until(soak * 0.12)
        victim = await s.leader_broker(tier_topic(TIER, FEED))
        await s.kill_service(victim)
        self.event(f"SIGKILL {victim.name} (leader of {tier_topic(TIER, FEED)}[0])")
        before = (watcher.records, time.monotonic())
        await asyncio.sleep(30)
        self.broker_down_rate = (watcher.records - before[0]) / (time.monotonic() - before[1])
        await s.restart_service(victim)
        self.event(f"{victim.name} restarted", records_per_s_while_down=round(self.broker_down_rate))

        # 2. The streams worker.
        await self.sleep_until(soak * 0.40)
        pid = await s.kill_child("streams")
        self.event("SIGKILL streams worker", pid=pid)
        self.worker_back_s = await s.wait_restarted("streams", pid)

        # 3. Redis: killed, down for a while under load, then started again (data from its append-only file).
        await self.sleep_until(soak * 0.60)
        redis = s.redis()
        await s.kill_service(redis)
        self.redis_killed_at = self.t()
        self.event("SIGKILL redis")
        await asyncio.sleep(15)
        await s.restart_service(redis)
        self.redis_back_at = self.t()
        self.event("redis restarted")

        # The memory soak ends here: the server has run through all of it with the churn going on.
        await self.sleep_until(soak)
        self.soak_end = self.t()

        # 4. The WebSocket server.
        pid = await s.kill_child("ws-server")
        self.server_killed_at = self.t()
        self.event("SIGKILL WebSocket server", pid=pid)
        self.server_back_s = await s.wait_restarted("ws-server", pid)
        await self._wait_serving()
        self.event("WebSocket server serving again")
        await asyncio.sleep(30)

    async def _fresh_snapshot(self, key: str) -> dict[str, Any]:
        """A new client after everything: its snapshot, and the position it is consistent with."""
        client = FeedClient(self.service.url, api_key=key, codec=MSGPACK)
        client.subscribe("all", FEED)
        records: list[dict[str, Any]] = []
        pos = None
        async with asyncio.timeout(60):
            async for event in client.events():
                if event.type == "snapshot":
                    records += event.message.get("records", [])
                    if event.message.get("last", True):
                        pos = event.message.get("pos")
                        break
        await client.close()
        return {"records": records, "pos": pos}

    async def _verify(
        self,
        watcher: Watcher,
        bystander: Bystander,
        fresh: dict[str, Any],
        raw: str,
        tier: str,
        raw_start: dict[int, int],
        raw_end: dict[int, int],
        tier_start: dict[int, int],
        end: dict[int, int],
    ) -> None:
        s = self.service.settings
        add = self.checks.append
        self.watcher_repeats = watcher.repeats[:50]
        tier_end_now = await end_offsets(s.kafka_bootstrap, tier)
        tier_log = await read_range(s.kafka_bootstrap, tier, tier_start, tier_end_now)
        raw_log = await read_range(s.kafka_bootstrap, raw, raw_start, raw_end)

        # Kafka: every raw version reached the operator tier, or the dead letters with its reason.
        dlq_log = await read_range(s.kafka_bootstrap, dlq_topic(FEED), *self.dlq_range)
        rejected = {dead_letter_version(d) for d in dlq_log}
        tier_versions = {(str(r["_key"]), int(r.get("observed_at", 0)), "") for r in tier_log}
        raw_versions = [(str(r["_key"]), int(r.get("observed_at", 0)), "") for r in raw_log]
        not_released = [v for v in set(raw_versions) if v not in tier_versions and v not in rejected]
        add(
            Check(
                "Kafka: every raw bus report reached tier.operator.bus (or dlq.bus)",
                not not_released,
                f"{len(set(raw_versions))} raw versions ({len(rejected)} rejected to dlq.bus), "
                f"{len(not_released)} missing"
                + (f": {not_released[:3]}" if not_released else "")
                + f"; repeats in raw {repeated(raw_versions)}, in the tier topic "
                f"{repeated([version_of(r) for r in tier_log])} (at-least-once; kept from clients)",
            )
        )
        fleet = self.fleet.stats
        add(
            Check(
                "load fleet: every report accepted by the sink delivered, none twice in raw.bus",
                fleet.get("delivered") == fleet.get("submitted")
                and not fleet.get("undeliverable")
                and repeated([v for v in raw_versions if v[0].startswith("LOAD-")]) == 0,
                f"{fleet}; {len([v for v in raw_versions if v[0].startswith('LOAD-')])} in raw.bus",
            )
        )

        # The watcher: no gap, no reset, no repeat; its final state is Kafka's.
        add(
            Check(
                "client: deltas numbered without a hole through every blow",
                not watcher.gaps and not watcher.resets,
                f"{watcher.deltas} deltas ({watcher.conflated} conflated catch-ups), {watcher.client.connects} "
                f"connections, {watcher.client.resumes} resumes, gaps {len(watcher.gaps)}, resets {watcher.resets}",
            )
        )
        add(
            Check(
                "client: no record version delivered twice",
                watcher.duplicates() == 0,
                f"{len(watcher.versions)} versions received, {watcher.duplicates()} repeated",
            )
        )
        window_log = await read_range(s.kafka_bootstrap, tier, tier_start, end)
        window = [version_of(r) for r in window_log]
        window_entities = {v[0] for v in window}
        wrong = state_matches(watcher.entities, latest_per_entity(window_log), only=window_entities)
        missing = missing_versions(window, watcher.versions)
        add(
            Check(
                "client: final view equals Kafka's newest record per entity",
                not wrong,
                f"{len(window_entities)} entities compared; {len(wrong)} differ" + (f": {wrong[:3]}" if wrong else ""),
            )
        )
        add(
            Check(
                "client: no version lost (each delivered or superseded before sending)",
                not missing,
                f"{len(window)} versions in Kafka during the run, {len(missing)} never delivered"
                + (f": {missing[:3]}" if missing else ""),
            )
        )

        # A broker down: the client kept receiving (two of three brokers serve).
        expected_rate = self.args.load_vehicles  # the fleet alone: one report a second each
        add(
            Check(
                "broker SIGKILL: records kept reaching the client while it was down",
                self.broker_down_rate >= 0.8 * expected_rate,
                f"{self.broker_down_rate:.0f} records/s to the client in the 30 s it was down "
                f"(the load fleet alone sends {expected_rate}/s)",
            )
        )

        # Redis: /healthz said so, then recovered; a new client gets the full snapshot, consistent with Kafka.
        said_down = [t for t, state in self.health_seen if "redis down" in state and t >= self.redis_killed_at]
        said_up = [t for t, state in self.health_seen if state == "ok/redis up" and t >= self.redis_back_at]
        held = (
            bool(said_down)
            and said_down[0] - self.redis_killed_at <= HEALTH_REACTION_S
            and bool(said_up)
            and (said_up[0] - self.redis_back_at <= HEALTH_REACTION_S)
        )
        add(
            Check(
                "Redis SIGKILL: /healthz says degraded while it is down, ok once back",
                held,
                (
                    f"degraded {said_down[0] - self.redis_killed_at:.1f} s after the kill"
                    if said_down
                    else "never degraded"
                )
                + "; "
                + (f"ok {said_up[0] - self.redis_back_at:.1f} s after the restart" if said_up else "never ok again"),
            )
        )
        fresh_pos = parse_position(fresh["pos"] or "") or {}
        fresh_latest = latest_per_entity(
            await read_range(s.kafka_bootstrap, tier, {p: 0 for p in fresh_pos}, fresh_pos)
        )
        fresh_view = {str(r.get("id")): r for r in fresh["records"]}
        fresh_wrong = state_matches(fresh_view, fresh_latest)
        extra = [e for e in fresh_view if e not in fresh_latest]
        add(
            Check(
                "after Redis and server restarts: a new client's snapshot is Kafka's state",
                not fresh_wrong and not extra,
                f"{len(fresh_view)} entities in the snapshot, {len(fresh_wrong)} differ from Kafka, "
                f"{len(extra)} unknown to it",
            )
        )

        # The bystander's latency.
        p99 = bystander.p99_ms()
        add(
            Check(
                f"bystander: ping p99 ≤ {BYSTANDER_P99_MS:.0f} ms next to the abuse",
                p99 is not None and p99 <= BYSTANDER_P99_MS,
                f"{len(bystander.rtts)} pings, p99 {p99:.0f} ms; {bystander.outage_s:.1f} s unserved while the server "
                f"restarted ({bystander.reconnects} refused or dropped connection attempts)"
                if p99 is not None
                else "no ping answered",
            )
        )

        # Memory while distinct subscriptions churn.
        samples = zip(self.rss, self.replay_bytes, strict=True)
        soak = [(t, rss, held) for (t, rss), (_, held) in samples if t <= self.soak_end]
        peak = max((rss for _, rss, _ in soak), default=0)
        half = [(rss, held) for t, rss, held in soak if t >= self.soak_end / 2]

        def rest(start: float, end: float) -> float:  # median of what the bounded replay frames do not explain
            values = [rss - held for t, rss, held in soak if start * self.soak_end <= t < end * self.soak_end]
            return statistics.median(values) if values else 0.0

        growth = rest(0.75, 1.01) - rest(0.5, 0.75)
        held_peak = max((held for _, held in half), default=0)
        add(
            Check(
                f"server memory ≤ {SERVER_RSS_BOUND >> 20} MiB, churning distinct subscriptions {self.soak_end:.0f} s",
                peak <= SERVER_RSS_BOUND and growth <= RSS_GROWTH_BOUND,
                f"peak RSS {peak / 2**20:.0f} MiB; over the second half, replay buffers up to {held_peak / 2**20:.0f} "
                f"MiB (their budget: {REPLAY_BUDGET >> 20} MiB); the rest's median {rest(0.5, 0.75) / 2**20:.0f} MiB, "
                f"then {rest(0.75, 1.01) / 2**20:.0f} MiB in the last quarter "
                f"(creep bound {RSS_GROWTH_BOUND >> 20} MiB); "
                f"{self.tally.sent['distinct subscription']} distinct subscriptions",
            )
        )

        # The abuse was answered, never with a server error.
        errors = {k: v for k, v in self.tally.replies.items() if k.startswith("error:")}
        internal = self.tally.replies.get("error:internal_error", 0) + self.tally.closes.get(1011, 0)
        add(
            Check(
                "abusive clients: answered with documented errors, never 1011",
                internal == 0,
                f"{self.tally.connections} connections; sent {dict(self.tally.sent)}; errors {errors}; "
                f"close codes {dict(self.tally.closes)}",
            )
        )
        add(
            Check(
                "worker SIGKILL: restarted by the supervisor",
                self.worker_back_s < 30,
                f"back in {self.worker_back_s:.1f} s",
            )
        )
        add(
            Check(
                "server SIGKILL: restarted, the client resumed",
                self.server_back_s < 30 and watcher.client.resumes >= 1,
                f"back in {self.server_back_s:.1f} s; watcher resumes {watcher.client.resumes}",
            )
        )

    def _report(self) -> int:
        title = f"make chaos — {git_sha()[:12]}, {self.args.buses} buses, soak {self.args.soak_s:.0f} s"
        Console().print(render(self.checks, title))
        result = {
            "git_sha": git_sha(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "held": all_held(self.checks) and bool(self.checks),
            "duration_s": round(time.monotonic() - self.began, 1),
            "setup": (
                f"3 Kafka brokers (replication 3, min.insync 2), {self.args.buses} simulated buses plus a load fleet "
                f"of {self.args.load_vehicles} vehicles at 1 report/s, soak {self.args.soak_s:.0f} s; clients: an "
                "operator-tier watcher, a registered-tier bystander, 3 churners of distinct subscriptions, "
                "1 garbage sender, 2 senders of 5,000-vertex polygons"
            ),
            "bounds": {
                "bystander_p99_ms": BYSTANDER_P99_MS,
                "server_rss_bytes": SERVER_RSS_BOUND,
                "rss_growth_bytes": RSS_GROWTH_BOUND,
                "health_reaction_s": HEALTH_REACTION_S,
            },
            "checks": [c.to_json() for c in self.checks],
            "events": self.events,
            "health_seen": self.health_seen,
            "rss_samples": self.rss,
            "replay_bytes_samples": self.replay_bytes,
            "client_repeats": self.watcher_repeats,
        }
        Path(self.args.out).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        if self.args.markdown:
            Path(self.args.markdown).write_text(markdown(self.checks, result))
        say(f"result written to {self.args.out}")
        return 0 if result["held"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--soak-s", type=float, default=300.0, help="seconds of churn before the server is killed")
    # Enough that a few hundred run at night too (night lines are one in forty).
    parser.add_argument("--buses", type=int, default=8000)
    parser.add_argument("--load-vehicles", type=int, default=300, help="vehicles of the load fleet, 1 report/s each")
    parser.add_argument("--out", default="chaos-result.json")
    parser.add_argument("--markdown", default=None, help="also write the result as a Markdown page here")
    parser.add_argument("--keep-stack", action="store_true", help="leave Kafka and Redis running afterwards")
    args = parser.parse_args()
    run = Run(args)
    try:
        return asyncio.run(run.main())
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # something the run could not do at all: say what, and fail
        console.print_exception()
        run.checks.append(Check("the run itself", False, f"{type(err).__name__}: {err}"))
        with contextlib.suppress(Exception):
            run._report()
        return 1


if __name__ == "__main__":
    sys.exit(main())
