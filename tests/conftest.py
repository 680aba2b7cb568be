"""Shared fixtures: the real local Kafka and Redis, started by the project's own stack code.

Tests never mock Kafka or Redis. Topic and key names are made unique per test so runs never collide.
"""

from __future__ import annotations

import itertools
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import orjson
import pytest
from aiohttp import web

import settings as settings_mod
from access.identity import ADMIN_OVERRIDE_VAR
from shfeeds_cli import stack

# The harness (fixtures, helpers, the components tests start in-process or as children) acts as Kafka's and
# Redis' admin; tests of access control and the end-to-end runs drop this (``as_components``) so each
# component is its own principal and a missing grant fails them.
os.environ[ADMIN_OVERRIDE_VAR] = "1"


@pytest.fixture(scope="session")
def stack_settings() -> settings_mod.Settings:
    return settings_mod.load()


@pytest.fixture(scope="session")
def running_stack(stack_settings: settings_mod.Settings) -> settings_mod.Settings:
    """Kafka and Redis up (started if needed, idempotently) with every service topic created."""
    try:
        stack.up(stack_settings, quiet=True)
    except stack.StackError as err:
        pytest.fail(f"the local stack could not start: {err}")
    return stack_settings


@pytest.fixture(scope="session")
def kafka_bootstrap(running_stack: settings_mod.Settings) -> str:
    return running_stack.kafka_bootstrap


@pytest.fixture(scope="session")
def redis_url(running_stack: settings_mod.Settings) -> str:
    return running_stack.redis_url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def settings_env(own: settings_mod.Settings) -> dict[str, str]:
    """Environment that points child processes (``shfeeds ...``) at the given settings."""
    return {
        **os.environ,
        "SHFEEDS_STACK_DIR": str(own.stack_dir),
        "SHFEEDS_CACHE_DIR": str(own.cache_dir),
        "SHFEEDS_KAFKA_PORT": str(own.kafka_port),
        "SHFEEDS_KAFKA_CONTROLLER_PORT": str(own.kafka_controller_port),
        "SHFEEDS_REDIS_PORT": str(own.redis_port),
        "SHFEEDS_SIMULATOR_PORT": str(own.simulator_port),
        "SHFEEDS_WS_PORT": str(own.ws_port),
        "SHFEEDS_TOPIC_PARTITIONS": str(own.topic_partitions),
    }


def as_components(env: dict[str, str]) -> dict[str, str]:
    """``env`` without the harness' admin override: each ``shfeeds <component>`` child logs in as itself."""
    return {k: v for k, v in env.items() if k != ADMIN_OVERRIDE_VAR}


@pytest.fixture
def isolated_stack(tmp_path: Path, running_stack: settings_mod.Settings) -> Iterator[settings_mod.Settings]:
    """A Kafka + Redis of this test's own, on free ports, stopped afterwards.

    For tests that kill the broker or run the whole service, so nothing they do can disturb other tests.
    """
    own = settings_mod.Settings(
        stack_dir=tmp_path / "stack",
        cache_dir=running_stack.cache_dir,
        kafka_port=_free_port(),
        kafka_controller_port=_free_port(),
        redis_port=_free_port(),
        simulator_port=_free_port(),
        ws_port=_free_port(),
        kafka_heap="384m",
        topic_partitions=2,
    )
    # The same development passwords as the session's stack, so in-process clients log in to this one too.
    stack.share_secrets(running_stack, own)
    stack.up(own, quiet=True)
    try:
        yield own
    finally:
        stack.down(own)


_counter = itertools.count()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Iterator[Callable[[str], str]]:
    """``unique_name("topic")`` → a name no other test or run uses (``topic-<test>-<random>``). Redis keys
    under the names a test made are deleted after it, so a developer's Redis does not fill up run by run."""
    run = uuid.uuid4().hex[:8]
    test = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
    made: list[str] = []

    def make(prefix: str) -> str:
        name = f"{prefix}-{test}-{run}-{os.getpid()}-{next(_counter)}"
        made.append(name)
        return name

    yield make
    if made and "redis_url" in request.fixturenames:
        _delete_redis_keys(request.getfixturevalue("redis_url"), made)


def _delete_redis_keys(url: str, prefixes: list[str]) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        for prefix in prefixes:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
    except redis.RedisError:
        pass  # a test that stopped Redis on purpose: its keys go with the stack folder
    finally:
        client.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under ``make test`` (SHFEEDS_FORBID_SKIPS=1) a skipped test is a failure: CI must not pass by
    quietly skipping what it could not set up (a browser, the shared data)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("SHFEEDS_FORBID_SKIPS") == "1":
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped, but SHFEEDS_FORBID_SKIPS=1 forbids skips: {reason}"


@pytest.fixture
async def bus_source() -> AsyncIterator[str]:
    """A bus GPS endpoint: one good bus and one bad item, then 304 for the same ETag."""
    from .test_adapters_shanghai import documented_example

    example = documented_example("sh-bus-gps")
    example["data"] = [example["data"][0], {"obuId": "bad", "lng": "east", "lat": 31.2}]
    body = orjson.dumps(example)

    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304)
        return web.Response(body=body, headers={"ETag": '"v1"'}, content_type="application/json")

    app = web.Application()
    app.router.add_get("/bus/gps.json", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/bus/gps.json"
    finally:
        await runner.cleanup()
