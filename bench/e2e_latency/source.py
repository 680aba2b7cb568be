"""The bench's own bus source: the project's simulator app (``adapters.simulators.server.build_app``) with one
middleware that writes down when each bus-feed body was served, and which position reports in it were new.

"The poll" of a position report is the moment the first response that carried it had been written to the
adapter's socket (``write_eof`` returned: the body is with the kernel, the adapter can read it). Simulated
buses report whole seconds, so ``(bus id, observed_at)`` names one report; a report served again by a
later poll keeps its first serve time (the adapter's change filter drops the repeat).

Run as a child of the bench (``python -m bench.e2e_latency.source``): rendering the whole fleet and
reading the bodies back costs CPU the measuring process must not share (its receive stamps would wait).
Each served body with new reports becomes one JSON line
``{"served_ms": ..., "items": <reports in the body>, "new": [[id, observed_ms], ...]}``.

The fleet served is the one of a stated Beijing time of day (``--fleet-at``, default 14:30), whenever the
bench runs: how many buses are in service follows the timetable (a few hundred at 2:00, ~14,000 at
14:30), so the load would otherwise depend on the hour. The city's clock runs that far ahead (or behind)
and the simulator's own ``time_jump`` fault writes every time back by as much, so the reports carry the
real time, as the stream worker and the latency stamps need.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import IO, Any

import orjson
from aiohttp import web

from adapters.formats.common import ItemError, beijing_time_ms
from adapters.formats.sh_envelope import item_time_ms
from adapters.simulators.beijing import OFFSET_S

BUS_PATH = "/bus/gps.json"
FLEET_AT = "14:30"  # an afternoon off-peak: the timetable's all-day lines, ~14,000 of the 17,000 buses
Report = tuple[str, int]  # (bus id as the adapter writes it, observed_at ms)


class ServeLog:
    """First serve time per position report. Pure bookkeeping: no clock, no I/O."""

    def __init__(self) -> None:
        self.first_served: dict[Report, int] = {}
        self.bodies = 0
        self.reports_seen = 0  # every report in every body, repeats included

    def note(self, served_ms: int, reports: Iterable[Report]) -> list[Report]:
        """Record a body served at ``served_ms``; returns the reports it carried for the first time."""
        self.bodies += 1
        new: list[Report] = []
        for report in reports:
            self.reports_seen += 1
            if report not in self.first_served:
                self.first_served[report] = served_ms
                new.append(report)
        return new


def bus_reports(body: bytes) -> list[Report]:
    """The ``(obuId, observed_at ms)`` of each item of an ``sh-bus-gps`` body, times read as the adapter
    reads them (the item's ``gpsTime`` in Beijing time, else the envelope's ``updateTime``). Items the
    adapter would reject for want of an id or a time are left out: they never become records."""
    payload = orjson.loads(body)
    header = payload.get("updateTime")
    header_ms = beijing_time_ms(header, "updateTime") if header else None
    out: list[Report] = []
    times: dict[str, int] = {}  # a body holds a few dozen distinct seconds for 17,000 buses: parse each once
    for item in payload.get("data") or ():
        if not isinstance(item, dict) or not isinstance(item.get("obuId"), str):
            continue
        text = item.get("gpsTime")
        with contextlib.suppress(ItemError):
            if isinstance(text, str):
                if text not in times:
                    times[text] = item_time_ms(item, "gpsTime", header_ms)
                out.append((item["obuId"], times[text]))
            else:
                out.append((item["obuId"], item_time_ms(item, "gpsTime", header_ms)))
    return out


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def serve_time_middleware(log: ServeLog, sink: IO[bytes], clock_ms: Callable[[], int]) -> Any:
    """An aiohttp middleware: a 200 of the bus feed is sent here (so the time taken is after the write),
    then its new reports go to ``log`` and one line to ``sink``."""

    @web.middleware
    async def note_serve_time(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path != BUS_PATH or response.status != 200 or not isinstance(response, web.Response):
            return response
        await response.prepare(request)
        await response.write_eof()
        served_ms = clock_ms()
        body = response.body
        if isinstance(body, bytes):
            reports = bus_reports(body)
            new = log.note(served_ms, reports)
            if new:
                sink.write(orjson.dumps({"served_ms": served_ms, "items": len(reports), "new": new}) + b"\n")
                sink.flush()
        return response

    return note_serve_time


def fleet_shift_s(fleet_at: str, now_s: float) -> int:
    """Seconds to move the city's clock so that it reads ``fleet_at`` (``HH:MM``, Beijing time) now: the
    nearest such moment, at most 12 hours either way."""
    hours, _, minutes = fleet_at.partition(":")
    target = int(hours) * 3600 + int(minutes or 0) * 60
    local = int(now_s + OFFSET_S) % 86_400
    shift = (target - local) % 86_400
    return shift - 86_400 if shift > 43_200 else shift


async def run(args: argparse.Namespace) -> None:
    from adapters.simulators.city import SimulatedCity
    from adapters.simulators.faults import Fault
    from adapters.simulators.server import build_app

    shift_s = fleet_shift_s(args.fleet_at, time.time())
    city = SimulatedCity(seed=args.seed, buses=args.buses, start_ms=int(time.time() * 1000) + shift_s * 1000)
    log = ServeLog()
    with Path(args.serve_log).open("wb") as sink:
        app = build_app(city, faults={"bus": Fault(kind="time_jump", jump_s=-shift_s)} if shift_s else None)
        app.middlewares.append(serve_time_middleware(log, sink, lambda: int(time.time() * 1000)))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        print(f"bench source: {args.buses} buses on http://127.0.0.1:{args.port}{BUS_PATH}", file=sys.stderr)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
    print(f"bench source: {log.bodies} bodies, {len(log.first_served):,} reports served", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description="the e2e latency bench's bus source (serve times noted)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--buses", type=int, default=17_000)
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--fleet-at", default=FLEET_AT, help="serve the fleet of this Beijing time of day (HH:MM)")
    parser.add_argument("--serve-log", required=True, help="JSON lines, one per body with new reports")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
