"""Access control on the real stack: each principal reads and writes only what access/principals.py grants it,
wrong or missing credentials are refused, and Redis' component users cannot touch API keys or run admin
commands. The harness itself is admin; every client here logs in as the principal under test."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

import settings as settings_mod
from access import kafka_acls
from access.identity import kafka_options
from access.principals import lab
from access.setup import admin_redis_url
from schemas.naming import Naming

pytestmark = pytest.mark.stack


async def _read(bootstrap: str, topic: str, options: dict[str, Any]) -> None:
    """Subscribe to ``topic`` and poll a little; raises TopicAuthorizationFailedError when the broker refused it.

    aiokafka only logs a refused topic and keeps retrying (a component missing a grant idles, it does not
    crash), so the broker's answer is read from the consumer's metadata, where aiokafka keeps it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, request_timeout_ms=10_000, **options)
    await consumer.start()
    try:
        consumer.subscribe([topic])
        await consumer.getmany(timeout_ms=1500)
        if topic in consumer._client.cluster.unauthorized_topics:
            raise TopicAuthorizationFailedError(topic)
        assert consumer.assignment(), f"{topic}: neither assigned nor refused"
    finally:
        await consumer.stop()


def read(settings: settings_mod.Settings, topic: str, options: dict[str, Any]) -> None:
    asyncio.run(asyncio.wait_for(_read(settings.kafka_bootstrap, topic, options), 30))


def as_principal(settings: settings_mod.Settings, name: str) -> dict[str, Any]:
    return kafka_options(settings, as_principal=name)


@pytest.fixture
def licensed_lab(running_stack: settings_mod.Settings) -> Iterator[dict[str, Any]]:
    """A lab principal whose agreement covers the licensed tier, made as `shfeeds kafka-principal add` does."""
    principal = lab(f"lab-{secrets.token_hex(4)}", ["licensed"])
    password = secrets.token_urlsafe(18)
    kafka_acls.apply(running_stack, [principal], {principal.name: password})
    options = {**kafka_options(running_stack), "sasl_plain_username": principal.name, "sasl_plain_password": password}
    try:
        yield options
    finally:
        kafka_acls.remove(running_stack, principal.name)


def test_a_licensed_lab_reads_its_tier_but_not_the_operator_tier(
    running_stack: settings_mod.Settings, licensed_lab: dict[str, Any]
) -> None:
    naming = Naming()
    read(running_stack, naming.tier_topic("licensed", "bus"), licensed_lab)  # granted: no error
    with pytest.raises(TopicAuthorizationFailedError):
        read(running_stack, naming.tier_topic("operator", "bus"), licensed_lab)
    with pytest.raises(TopicAuthorizationFailedError):
        read(running_stack, naming.raw_topic("bus"), licensed_lab)


def test_components_read_only_their_topics(running_stack: settings_mod.Settings) -> None:
    naming = Naming()
    # The WebSocket server serves every tier but never sees raw input; adapters write raw and read no tier.
    read(running_stack, naming.tier_topic("operator", "bus"), as_principal(running_stack, "ws-server"))
    with pytest.raises(TopicAuthorizationFailedError):
        read(running_stack, naming.raw_topic("bus"), as_principal(running_stack, "ws-server"))
    for tier in ("operator", "public"):
        with pytest.raises(TopicAuthorizationFailedError):
            read(running_stack, naming.tier_topic(tier, "bus"), as_principal(running_stack, "adapters"))
    with pytest.raises(TopicAuthorizationFailedError):
        read(running_stack, naming.tier_topic("operator", "bus"), as_principal(running_stack, "key-admin"))


def test_an_adapter_cannot_write_a_tier_topic(running_stack: settings_mod.Settings) -> None:
    async def write() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=running_stack.kafka_bootstrap, **as_principal(running_stack, "adapters")
        )
        await producer.start()
        try:
            await producer.send_and_wait(Naming().tier_topic("public", "bus"), b"forged")
        finally:
            await producer.stop()

    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(asyncio.wait_for(write(), 30))


def test_a_wrong_password_or_no_login_is_refused(running_stack: settings_mod.Settings) -> None:
    wrong = {**as_principal(running_stack, "ws-server"), "sasl_plain_password": "not-the-password"}
    with pytest.raises(KafkaConnectionError):
        read(running_stack, Naming().tier_topic("public", "bus"), wrong)
    with pytest.raises(KafkaConnectionError):  # the PLAINTEXT protocol against a SASL listener
        read(running_stack, Naming().tier_topic("public", "bus"), {})


def _redis_as(settings: settings_mod.Settings, name: str) -> redis.Redis:
    return redis.Redis(
        port=settings.redis_port, username=name, password=kafka_options(settings, as_principal=name)[
            "sasl_plain_password"
        ], socket_timeout=5,
    )  # fmt: skip


def test_redis_component_users_cannot_mint_keys_or_flush(running_stack: settings_mod.Settings) -> None:
    naming = Naming()
    streams = _redis_as(running_stack, "streams")
    try:
        streams.hlen(naming.state_key("public", "bus"))  # its own keys: allowed
        with pytest.raises(redis.exceptions.NoPermissionError):
            streams.hset(naming.key_key("forged"), "tier", "operator")
        with pytest.raises(redis.exceptions.NoPermissionError):
            streams.flushall()
    finally:
        streams.close()
    ws = _redis_as(running_stack, "ws-server")
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):  # snapshots are read-only to it
            ws.hset(naming.state_key("operator", "bus"), "forged", "1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            ws.config_get("requirepass")
    finally:
        ws.close()


def test_redis_refuses_anonymous_use(running_stack: settings_mod.Settings) -> None:
    anonymous = redis.Redis(port=running_stack.redis_port, socket_timeout=5)
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.get(Naming().key_key("anything"))
    finally:
        anonymous.close()
    admin = redis.Redis.from_url(admin_redis_url(running_stack), socket_timeout=5)
    try:
        assert admin.ping()
    finally:
        admin.close()


def test_a_stack_formatted_before_logins_were_required_is_refused_with_what_to_do(tmp_path: Any) -> None:
    from shfeeds_cli import stack

    old = settings_mod.Settings(stack_dir=tmp_path / "stack")
    broker = stack.KafkaService(old)
    broker.data_dir.mkdir(parents=True)
    (broker.data_dir / "meta.properties").write_text("version=1\n")  # formatted, without admin's credential
    with pytest.raises(stack.StackError, match=r"formatted before Kafka required logins.*delete .*kafka\*"):
        broker._format_storage()


def test_the_cli_adds_shows_and_removes_a_lab_principal(running_stack: settings_mod.Settings) -> None:
    import subprocess
    import sys

    from tests.conftest import settings_env

    def shfeeds(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shfeeds_cli.main", "kafka-principal", *args],
            env=settings_env(running_stack),
            capture_output=True,
            text=True,
            timeout=60,
        )

    name = f"lab-cli-{secrets.token_hex(4)}"
    bad = shfeeds("add", name, "--tiers", "licensed,everything")
    assert bad.returncode == 2 and "everything" in bad.stderr
    added = shfeeds("add", name, "--tiers", "registered")
    assert added.returncode == 0, added.stderr
    password = added.stdout.strip().splitlines()[-1]
    try:
        shown = shfeeds("show", name).stdout
        assert "READ" in shown and "tier.registered." in shown and "tier.operator" not in shown
        options = {**kafka_options(running_stack), "sasl_plain_username": name, "sasl_plain_password": password}
        read(running_stack, Naming().tier_topic("registered", "parking"), options)
    finally:
        assert shfeeds("remove", name).returncode == 0
    assert shfeeds("show", name).stdout.strip() == ""


def test_a_restarted_redis_keeps_the_component_users(tmp_path: Any, running_stack: settings_mod.Settings) -> None:
    """The supervisor restarts a dead Redis by itself; the components must still be able to log in."""
    import os
    import signal

    from access.principals import COMPONENTS
    from access.redis_acls import apply
    from shfeeds_cli import stack

    from .conftest import _free_port

    own = settings_mod.Settings(stack_dir=tmp_path / "stack", redis_port=_free_port())
    stack.share_secrets(running_stack, own)
    service = stack.RedisService(own)
    service.start()
    service.wait_ready()
    try:
        passwords = {p.name: kafka_options(own, as_principal=p.name)["sasl_plain_password"] for p in COMPONENTS}
        apply(admin_redis_url(own), COMPONENTS, passwords)
        os.kill(int(service.pid_file.read_text()), signal.SIGKILL)
        time.sleep(0.5)
        service.start()
        service.wait_ready()
        ws = _redis_as(own, "ws-server")
        try:
            assert ws.hlen(Naming().state_key("public", "bus")) == 0
        finally:
            ws.close()
    finally:
        service.stop()
