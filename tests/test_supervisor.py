"""`shfeeds run`'s supervisor: components that exit come back; a killed Kafka is reported and recovered."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

import settings as settings_mod
from shfeeds_cli import stack
from shfeeds_cli.supervisor import ChildSpec, Supervisor, restart_delay


def test_restart_delay_backs_off_on_crash_loops_only() -> None:
    assert restart_delay(0, 1) < restart_delay(3, 1) < restart_delay(10, 1) <= 30
    assert restart_delay(10, 600) == 0.5


async def test_a_component_that_exits_is_restarted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    counter = tmp_path / "starts"
    script = f"open({str(counter)!r}, 'a').write('x'); print('hello from child')"
    child = ChildSpec("flaky", [sys.executable, "-c", script])
    sup = Supervisor(settings_mod.load(), [child], watch_stack=False)
    task = asyncio.create_task(sup.run())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not counter.exists() or len(counter.read_text()) < 3):
        await asyncio.sleep(0.1)
    sup._stopping.set()
    await asyncio.wait_for(task, 20)
    assert len(counter.read_text()) >= 3
    out = capsys.readouterr().out
    assert "[flaky] hello from child" in out
    assert "flaky exited with code 0" in out


async def test_a_background_component_runs_niced_and_the_archiver_is_one(tmp_path: Path) -> None:
    import argparse

    from shfeeds_cli import cmd_run

    niceness = tmp_path / "nice"
    script = f"import os; open({str(niceness)!r}, 'w').write(str(os.nice(0)))"
    child = ChildSpec("batch", [sys.executable, "-c", script], nice=7)
    sup = Supervisor(settings_mod.load(), [child], watch_stack=False)
    task = asyncio.create_task(sup.run())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (niceness.exists() and niceness.read_text()):
        await asyncio.sleep(0.1)
    sup._stopping.set()
    await asyncio.wait_for(task, 20)
    assert int(niceness.read_text()) == os.nice(0) + 7
    run_args = argparse.Namespace(no_simulator=True, seed=1, time_scale=1.0, buses=None)
    by_name = {c.name: c for c in cmd_run.children(run_args, settings_mod.load())}
    assert by_name["archiver"].nice > 0 and by_name["streams"].nice == 0 and by_name["ws-server"].nice == 0


async def test_killed_kafka_is_reported_clearly_and_comes_back(
    isolated_stack: settings_mod.Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka = stack.KafkaService(isolated_stack)
    old_pid = kafka.status().pid
    assert old_pid is not None
    sup = Supervisor(isolated_stack, [], watch_stack=True)
    task = asyncio.create_task(sup.run())
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 120
    seen = ""
    while time.monotonic() < deadline:
        await asyncio.sleep(1)
        seen += capsys.readouterr().out
        if "kafka is back" in seen:
            break
    sup._stopping.set()
    await asyncio.wait_for(task, 30)
    assert f"ERROR: kafka at 127.0.0.1:{isolated_stack.kafka_port} is not answering" in seen
    assert "kafka process is gone; starting it again" in seen
    assert "kafka is back" in seen
    new = kafka.status()
    assert new.running and new.pid != old_pid
    # The restarted broker kept its data: the service topics are still there.
    await asyncio.to_thread(stack.create_topics, isolated_stack)


STUBBORN_RUN = """
import asyncio, sys
import settings
from shfeeds_cli.supervisor import ChildSpec, Supervisor
child = ChildSpec("stubborn", [sys.executable, "-c", sys.argv[1]])
asyncio.run(Supervisor(settings.load(), [child], watch_stack=False).run())
"""
# A component that ignores SIGTERM (as a wedged one would) and says when it is ready.
STUBBORN_CHILD = (
    "import signal, time, os; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "signal.signal(signal.SIGINT, signal.SIG_IGN); print('ready', os.getpid(), flush=True); time.sleep(120)"
)


async def _start_run(child_script: str = STUBBORN_CHILD) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STUBBORN_RUN, child_script, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line, "the supervisor ended before its component started"
        if "[stubborn] ready" in line:
            return proc, int(line.split()[-1])


async def test_a_second_ctrl_c_stops_a_stuck_component_at_once_and_leaves_nothing_behind() -> None:
    proc, child_pid = await _start_run()
    proc.send_signal(signal.SIGINT)
    await asyncio.sleep(2.5)  # the second must come well over a second after the first
    assert proc.returncode is None, "still waiting for the stuck component, as a first Ctrl-C should"
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert time.monotonic() - started < 5, "the second Ctrl-C did not wait out the 10 s grace period"
    assert proc.returncode == 0
    text = out.decode()
    assert "killing the components that are still running" in text and "[run] stopped" in text
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)


async def test_one_stop_request_delivered_twice_at_once_still_shuts_down_in_order() -> None:
    # `timeout -s INT` signals the process and then its group: two signals, one request.
    proc, child_pid = await _start_run("import os, time; print('ready', os.getpid(), flush=True); time.sleep(120)")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode()
    assert proc.returncode == 0 and "[run] stopped" in text and "asked again" not in text
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)


async def test_components_that_need_a_server_start_once_it_listens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a free port for the slow server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    opened = tmp_path / "opened"
    server = (
        "import socket, time; time.sleep(1.5); s = socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('127.0.0.1', {port})); t = time.time(); s.listen(); open({str(opened)!r}, 'w').write(repr(t)); "
        "time.sleep(60)"
    )
    client = "import time; print('client started at', time.time(), flush=True); time.sleep(60)"
    sup = Supervisor(
        settings_mod.load(),
        [
            ChildSpec("server", [sys.executable, "-c", server], ready_port=port),
            ChildSpec("client", [sys.executable, "-c", client]),
        ],
        watch_stack=False,
    )
    task = asyncio.create_task(sup.run())
    deadline = time.monotonic() + 20
    out = ""
    while time.monotonic() < deadline and "client started at" not in out:
        await asyncio.sleep(0.1)
        out += capsys.readouterr().out
    sup._stopping.set()
    await asyncio.wait_for(task, 20)
    client_started = float(out.split("client started at", 1)[1].split()[0])
    assert opened.exists(), "the client started before the server listened"
    assert float(opened.read_text()) <= client_started
