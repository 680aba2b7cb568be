"""Runs the service's components as child processes, restarts the ones that exit, and watches the stack.

Each component is its own process (as it would be in production), so a crash in one does not take the
others down. The watchdog reports Kafka or Redis going away in plain words and brings back a stack
process that died, since ``shfeeds run`` owns the stack it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from settings import Settings

from . import stack


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    # A port the child serves that the children after it need: they start once it accepts connections.
    ready_port: int | None = None
    # Added to the child's nice value: background work that must not take the CPU from the live path.
    nice: int = 0
    restarts: int = 0
    started_at: float = 0.0
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)


def restart_delay(restarts: int, ran_for_s: float) -> float:
    """Back off on a crash loop, but restart at once a child that ran fine for a while."""
    if ran_for_s > 60:
        return 0.5
    return float(min(30.0, 0.5 * 2 ** min(restarts, 6)))


def log(line: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"{stamp} [run] {line}", flush=True)


class Supervisor:
    def __init__(self, settings: Settings, children: Sequence[ChildSpec], *, watch_stack: bool = True) -> None:
        self.settings = settings
        self.children = list(children)
        self.watch_stack = watch_stack
        self._stopping = asyncio.Event()
        self._forced = asyncio.Event()  # a second signal: stop the components now, without waiting
        self._stop_asked_at = 0.0

    def _on_signal(self) -> None:
        # `timeout` signals its child and then the child's whole group, so one stop request can arrive
        # twice at once: only a signal a second or more into the shutdown means "now".
        now = time.monotonic()
        if self._stopping.is_set():
            if now - self._stop_asked_at >= 1.0 and not self._forced.is_set():
                log("asked again: killing the components that are still running")
                self._forced.set()
            return
        self._stop_asked_at = now
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        try:
            await self._supervise()
        finally:
            # Kept until every component is gone: a signal during shutdown must not kill this process
            # and leave its components behind.
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def _supervise(self) -> None:
        tasks: list[asyncio.Task[None]] = []
        if self.watch_stack:
            tasks.append(asyncio.create_task(self._watch_stack()))
        for child in self.children:
            if self._stopping.is_set():
                break
            tasks.append(asyncio.create_task(self._keep_running(child)))
            if child.ready_port is not None:
                await self._wait_ready(child)
        await self._stopping.wait()
        log("stopping every component...")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(self._terminate(c) for c in self.children), return_exceptions=True)
        log("stopped (the Kafka + Redis stack keeps running; `shfeeds stack down` stops it)")

    async def _keep_running(self, child: ChildSpec) -> None:
        while not self._stopping.is_set():
            child.started_at = time.monotonic()
            child.process = await asyncio.create_subprocess_exec(
                *child.argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                preexec_fn=functools.partial(os.nice, child.nice) if child.nice else None,
            )
            log(f"{child.name} started (pid {child.process.pid})")
            assert child.process.stdout is not None
            await _copy_lines(child.process.stdout, child.name)
            code = await child.process.wait()
            if self._stopping.is_set():
                return
            ran_for = time.monotonic() - child.started_at
            delay = restart_delay(child.restarts, ran_for)
            child.restarts += 1
            log(f"{child.name} exited with code {code} after {ran_for:.0f} s; restarting in {delay:.1f} s")
            await asyncio.sleep(delay)

    async def _wait_ready(self, child: ChildSpec, timeout_s: float = 60.0) -> None:
        """Until ``child`` accepts connections on its port (so those who need it do not start with a burst of
        refused connections), a stop is asked for, or ``timeout_s`` passed (they start anyway and retry)."""
        assert child.ready_port is not None
        deadline = time.monotonic() + timeout_s
        while not self._stopping.is_set():
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", child.ready_port)
            except OSError:
                if time.monotonic() >= deadline:
                    log(f"{child.name} is not answering on port {child.ready_port} yet; starting the rest anyway")
                    return
                await asyncio.sleep(0.2)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def _terminate(self, child: ChildSpec) -> None:
        proc = child.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        exited = asyncio.ensure_future(proc.wait())
        forced = asyncio.ensure_future(self._forced.wait())
        try:
            await asyncio.wait({exited, forced}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        finally:
            forced.cancel()
        if not exited.done():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await exited

    async def _watch_stack(self) -> None:
        """Say clearly when Kafka or Redis stops answering, and start it again if its process died."""
        down_since: dict[str, float] = {}
        while True:
            await asyncio.sleep(2)
            for service in stack.services(self.settings):
                state = await asyncio.to_thread(service.status)
                if state.running:
                    if service.name in down_since:
                        gone = time.monotonic() - down_since.pop(service.name)
                        log(f"{service.name} is back on {service.address} after {gone:.0f} s; "
                            "components reconnect by themselves")  # fmt: skip
                    continue
                if service.name not in down_since:
                    down_since[service.name] = time.monotonic()
                    log(f"ERROR: {service.name} at {service.address} is not answering "
                        f"(see {state.log}); components keep retrying and lose nothing")  # fmt: skip
                if state.pid is None:
                    log(f"{service.name} process is gone; starting it again")
                    try:
                        await asyncio.to_thread(service.start)
                        await asyncio.to_thread(service.wait_ready)
                    except stack.StackError as err:
                        log(f"ERROR: could not restart {service.name}: {err}")


async def _copy_lines(stream: asyncio.StreamReader, name: str, out: Callable[[str], None] | None = None) -> None:
    write = out or (lambda text: print(text, flush=True))
    while True:
        line = await stream.readline()
        if not line:
            return
        write(f"{time.strftime('%H:%M:%S')} [{name}] {line.decode(errors='replace').rstrip()}")


def component_argv(*args: str) -> list[str]:
    """The same interpreter and CLI as this process, so a venv install needs no PATH set-up."""
    return [sys.executable, "-m", "shfeeds_cli.main", *args]
