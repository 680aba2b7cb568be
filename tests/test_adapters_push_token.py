"""The OCPI push receiver never takes anonymous pushes: production needs SHFEEDS_OCPI_PUSH_TOKEN to start; in
development the installation's own token is made (0600 under the stack folder) and the log says where it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import settings as settings_mod
from adapters.formats.ocpi_auth import authorization_header
from adapters.runtime import AdapterRuntime
from adapters.runtime.kafka_sink import KafkaSink
from adapters.runtime.push import BASE_PATH, PushReceiver
from kafka_admin import ensure_topics
from schemas import dlq_topic, raw_topic
from settings.secret_store import MissingSecret

from .adapters_helpers import shared
from .streams_support import topic_prefix_fixture  # noqa: F401  (the fixture, by its name)
from .test_installation_secrets import SECRET_VARS, cli_env


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, running_stack: settings_mod.Settings) -> Any:
    """The local stack's Kafka with a stack folder of this test's own and no token configured."""
    for name in SECRET_VARS:
        monkeypatch.delenv(name, raising=False)
    return dataclasses.replace(running_stack, stack_dir=tmp_path / "stack", ocpi_push_token="")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_development_pushes_need_the_installation_token(
    installation: settings_mod.Settings, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    topics = [topic_prefix + raw_topic("charging"), topic_prefix + dlq_topic("charging")]
    await ensure_topics(installation.kafka_bootstrap, installation.topic_partitions, names=topics)
    runtime = AdapterRuntime(installation, topic_prefix=topic_prefix)
    port = free_port()
    task = asyncio.create_task(runtime.run(["ocpi-push"], push_port=port, create_topics=False))
    location = shared("ocpi", "v2.2.1", "location_example.json").read_bytes()
    url = f"http://127.0.0.1:{port}{BASE_PATH}/BE/BEC/LOC1"
    try:
        for _ in range(300):
            if runtime.push_receivers and runtime.push_receivers[0].port:
                break
            await asyncio.sleep(0.1)
        token_file = installation.stack_dir / "secrets" / "ocpi-push-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert str(token_file) in caplog.text  # the log says where the token is
        async with aiohttp.ClientSession() as session:
            async with session.put(url, data=location) as anonymous:
                assert anonymous.status == 401
            token = token_file.read_text().strip()
            headers = {"Authorization": authorization_header(token)}
            async with session.put(url, data=location, headers=headers) as known:
                assert known.status == 200 and (await known.json())["status_code"] == 1000
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_production_without_a_push_token_does_not_start(
    installation: settings_mod.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHFEEDS_ENV", "production")
    port = free_port()
    with pytest.raises(MissingSecret, match="SHFEEDS_OCPI_PUSH_TOKEN is not set"):
        await AdapterRuntime(installation).run(["ocpi-push"], push_port=port, create_topics=False)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listens
    assert not (installation.stack_dir / "secrets").exists()


def test_a_production_push_adapter_without_its_token_exits_saying_why(installation: settings_mod.Settings) -> None:
    env = cli_env(installation.stack_dir, SHFEEDS_ENV="production")
    done = subprocess.run(
        [sys.executable, "-m", "shfeeds_cli.main", "adapter", "run", "ocpi-push", "--push-port", str(free_port())],
        env={k: v for k, v in env.items() if k not in ("SHFEEDS_OCPI_PUSH_TOKEN",)},
        cwd=settings_mod.PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "cannot start: SHFEEDS_OCPI_PUSH_TOKEN is not set" in done.stderr and "Traceback" not in done.stderr


def test_a_receiver_cannot_be_made_without_a_token() -> None:
    with pytest.raises(ValueError, match="a credentials token is required"):
        PushReceiver(name="ocpi-push", sink=KafkaSink("127.0.0.1:1"), token="")
