"""Operator actions (approve, reject, withdraw, feedback status) and applications, one JSON entry each, to
the ``audit.operator`` topic: Kafka is the log of record. The first write creates the topic with the audit
retention."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from access.identity import kafka_options
from kafka_admin import ensure_topics
from schemas import Naming, now_ms
from schemas.topics import AUDIT_TOPIC_CONFIG


class ActionLog:
    def __init__(self, bootstrap: str, naming: Naming) -> None:
        self.bootstrap = bootstrap
        self.topic = naming.operator_log_topic()
        self._producer: AIOKafkaProducer | None = None

    async def write(self, action: str, actor: str, subject: str, **details: Any) -> None:
        """Written and acknowledged before the caller answers, so no action goes unlogged."""
        if self._producer is None:
            await ensure_topics(self.bootstrap, 1, [self.topic], configs={self.topic: AUDIT_TOPIC_CONFIG})
            self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, **kafka_options(), acks="all")
            await self._producer.start()
        entry = {"at": now_ms(), "action": action, "actor": actor, "subject": subject, **details}
        await self._producer.send_and_wait(self.topic, orjson.dumps(entry), key=subject.encode())

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
