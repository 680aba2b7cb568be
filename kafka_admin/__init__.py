"""Kafka topic administration for every component: create topics up front, read a topic's partitions,
delete topics (tests and benchmarks).

A package of its own at the bottom of the project, beside ``schemas/``: adapters, stream workers, the
WebSocket servers and the CLI all need it, so it cannot live in any of them (adapters would otherwise
import ``streams/``, as they once did). It is not part of ``schemas/`` because that package is imported by
pure code and by clients and must not pull in a Kafka client. It knows no topic names: each caller passes
the names it needs (from ``schemas/topics.py``, through its ``schemas.Naming``), and each component creates
only the topics it writes.
"""

from .topics import (
    TopicSetupError,
    delete_topics,
    delete_topics_under,
    ensure_topics,
    topic_config,
    topic_partitions,
    topics_under,
)

__all__ = [
    "TopicSetupError",
    "delete_topics",
    "delete_topics_under",
    "ensure_topics",
    "topic_config",
    "topic_partitions",
    "topics_under",
]
