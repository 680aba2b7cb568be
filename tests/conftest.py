"""Shared fixtures: the real local Kafka and Redis, started by the project's own stack code.

Tests never mock Kafka or Redis. Topic and key names are made unique per test so runs never collide.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import settings as settings_mod
from shfeeds_cli import stack

SHARED_DATA = Path(settings_mod.PROJECT_ROOT).parent / "shared" / "data"


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


_counter = itertools.count()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_name("topic")`` → a name no other test or run uses (``topic-<test>-<random>``)."""
    run = uuid.uuid4().hex[:8]
    test = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]

    def make(prefix: str) -> str:
        return f"{prefix}-{test}-{run}-{os.getpid()}-{next(_counter)}"

    return make


@pytest.fixture(scope="session")
def shared_data() -> Iterator[Path]:
    if not SHARED_DATA.exists():
        pytest.skip(f"the shared real-data folder is not beside the project ({SHARED_DATA})")
    yield SHARED_DATA
