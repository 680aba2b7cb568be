"""py-spy, the sampling profiler the benchmarks attach to a running process, and its output read back: each
sampled stack with its count, and a stack put in one named step by its innermost frame a rule names
(bench/pipeline/cpu_split.py for the stream worker, bench/peers/node_profile.py for the WebSocket node)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


def start_spy(pid: int, out: Path, rate: int = 100) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` (every thread that is not idle) into ``out``, collapsed stacks."""
    argv = [str(Path(sys.executable).with_name("py-spy")), "record", "--nonblocking", "--format", "raw"]
    argv += ["-r", str(rate), "-o", str(out), "--pid", str(pid)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_spy(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    spy.wait(timeout=30)


def classify(frames: list[str], rules: list[tuple[str, tuple[str, ...]]], default: str) -> str:
    """The first rule naming a frame, innermost frame first (``frames`` is outermost first, as py-spy)."""
    for frame in reversed(frames):
        for name, needles in rules:
            if any(n in frame for n in needles):
                return name
    return default


def stacks(raw: str) -> Iterator[tuple[list[str], int]]:
    """(frames, outermost first, and samples) of each stack in py-spy's raw (collapsed) output."""
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            # py-spy names the thread first; a stack of only that (native code, idle) says nothing
            yield [f for f in stack.split(";") if "(" in f], int(count)
