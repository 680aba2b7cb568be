"""``shfeeds tail`` against a server that is not there says so on stderr and gives up with a failing status."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import settings as settings_mod


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A real port where nothing listens: bound (so nobody else takes it meanwhile) but never listening, so every
    connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def tail(port: int, *options: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "shfeeds_cli.main", "tail", "bus", "--url", f"ws://127.0.0.1:{port}/", *options],
        cwd=settings_mod.PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, time.monotonic() - started


def test_tail_says_it_cannot_connect_and_fails_when_its_timeout_runs_out(closed_port: int) -> None:
    done, took = tail(closed_port, "--timeout", "3")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "shfeeds tail: cannot connect, retrying in" in done.stderr
    assert f"not connected to ws://127.0.0.1:{closed_port}/ when --timeout ran out" in done.stderr
    assert "Traceback" not in done.stderr
    assert took < 60  # 3 s plus the interpreter's start, with room for a loaded machine


def test_tail_without_a_timeout_gives_up_after_its_connect_timeout(closed_port: int) -> None:
    done, took = tail(closed_port, "--connect-timeout", "2")
    assert done.returncode == 1
    assert done.stderr.count("cannot connect, retrying") >= 1
    assert f"no connection to ws://127.0.0.1:{closed_port}/ for 2 s; giving up" in done.stderr
    assert took < 60
