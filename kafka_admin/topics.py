"""Create topics up front with an explicit partition count; read and delete topics.

Broker auto-create is never relied on (it is switched off in the local stack and in docker-compose.yml):
a topic created by a first produce gets the broker's default partition count, and keys would then map
to other partitions than the workers expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from access.identity import kafka_options

log = logging.getLogger(__name__)


class TopicSetupError(RuntimeError):
    """Topics could not be created or an existing topic has the wrong shape."""


async def topic_partitions(bootstrap: str, topic: str, timeout_s: float = 15.0) -> list[int]:
    """The partition numbers of ``topic`` (empty if it does not exist), through the public admin API:
    a consumer with manual assignment needs them before it can assign."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_options())
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        (described,) = await asyncio.wait_for(admin.describe_topics([topic]), timeout_s)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    if described.get("error_code"):
        return []
    return sorted(p["partition"] for p in described.get("partitions", []))


async def topics_under(bootstrap: str, *prefixes: str) -> list[str]:
    """The topics whose name starts with one of ``prefixes``, sorted."""
    if not prefixes or not all(prefixes):
        raise ValueError("an empty prefix would name every topic")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000, **kafka_options())
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith(prefixes))
    finally:
        await admin.close()


async def delete_topics_under(bootstrap: str, *prefixes: str) -> list[str]:
    """Delete every topic whose name starts with one of ``prefixes`` (a test's or a benchmark run's own:
    left behind, they pile up on a shared broker, each partition holding open files); returns their names."""
    names = await topics_under(bootstrap, *prefixes)
    if names:
        await delete_topics(bootstrap, names)
    return names


async def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Delete topics (those that exist); for tests and benchmarks that made their own."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000, **kafka_options())
    await admin.start()
    try:
        existing = set(await _partition_counts(admin, list(names)))
        if existing:
            await admin.delete_topics(sorted(existing))
    finally:
        await admin.close()


async def ensure_topics(
    bootstrap: str,
    partitions: int,
    names: Sequence[str],
    *,
    replication_factor: int = 1,
    connect_timeout_s: float = 30.0,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    client_options: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Create the missing topics among ``names``; idempotent.

    ``configs`` (topic name → settings) are applied to new topics and set again on existing ones among
    ``names``, so a topic made before a rule existed (e.g. the audit log's retention) follows it too.

    Returns the partition count of each topic. An existing topic with fewer partitions than asked is an
    error (keys would map to other partitions than the workers expect); one with more is accepted, since
    partitions can only ever be added. ``client_options``: the login to use (default: this process' principal).
    """
    if partitions < 1:
        raise TopicSetupError(f"partitions must be at least 1, got {partitions}")
    wanted = list(dict.fromkeys(names))
    options = dict(client_options) if client_options is not None else kafka_options()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000, **options)
    deadline = asyncio.get_running_loop().time() + connect_timeout_s
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError as err:
            if asyncio.get_running_loop().time() > deadline:
                raise TopicSetupError(f"cannot reach Kafka at {bootstrap}: {err}") from err
            await asyncio.sleep(0.5)
    try:
        existing = await _partition_counts(admin, wanted)
        missing = [n for n in wanted if n not in existing]
        if missing:
            settings = configs or {}
            new = [
                NewTopic(n, partitions, replication_factor, topic_configs=dict(settings.get(n, {}))) for n in missing
            ]
            response = await admin.create_topics(new)
            for error_code, error_message, name in _topic_errors(response):
                if error_code and error_code != TopicAlreadyExistsError.errno:
                    raise TopicSetupError(f"cannot create topic {name}: {error_message or error_code}")
            log.info("created %d topics with %d partitions", len(missing), partitions)
        counts = await _wait_for_metadata(admin, wanted)
        altered = [n for n in wanted if n in existing and configs and configs.get(n)]
        if altered and configs:
            await _set_configs(admin, {n: configs[n] for n in altered})
    finally:
        await admin.close()
    short = {n: c for n, c in counts.items() if c < partitions}
    if short:
        raise TopicSetupError(f"topics have fewer partitions than {partitions}: {short}")
    return counts


async def _set_configs(admin: AIOKafkaAdminClient, configs: Mapping[str, Mapping[str, str]]) -> None:
    resources = [ConfigResource(ConfigResourceType.TOPIC, name, dict(c)) for name, c in configs.items()]
    for response in await admin.alter_configs(resources):
        for resource in getattr(response, "resources", []):
            error_code, error_message, name = resource[0], resource[1], resource[3]
            if error_code:
                raise TopicSetupError(f"cannot configure topic {name}: {error_message or error_code}")


async def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    """A topic's settings as the broker reports them (for checks and tests)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000, **kafka_options())
    await admin.start()
    try:
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    out: dict[str, str] = {}
    for resource in response.resources:
        for entry in resource[4]:
            out[str(entry[0])] = str(entry[1])
    return out


def _topic_errors(response: object) -> list[tuple[int, str | None, str]]:
    out: list[tuple[int, str | None, str]] = []
    for entry in getattr(response, "topic_errors", []):
        # CreateTopicsResponse v0 has (name, code); later versions add the message.
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        out.append((int(code), message, str(name)))
    return out


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    meta = await admin.describe_topics(names)
    counts: dict[str, int] = {}
    for topic in meta:
        if topic.get("error_code", 0) == 0 and topic.get("partitions"):
            counts[topic["topic"]] = len(topic["partitions"])
    return counts


async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Topic creation is asynchronous on the broker: wait until every topic has its leaders."""
    for _ in range(100):
        counts = await _partition_counts(admin, names)
        if all(n in counts for n in names):
            return counts
        await asyncio.sleep(0.1)
    missing = [n for n in names if n not in counts]
    raise TopicSetupError(f"topics not visible after creation: {missing}")
