"""Where the topic prefix and the Redis key prefix are applied, and every Redis key name, spelled once.

A ``Naming`` is a namespace: production uses the empty topic prefix and the ``shfeeds`` Redis prefix; tests
and benchmarks pick their own so they run beside the live service on the same Kafka and Redis. Every
component (adapters, stream workers, WebSocket servers, the CLI) asks its ``Naming`` for a topic or key
name rather than joining strings itself. Topic base names come from ``schemas/topics.py``.

Redis keys (``<prefix>`` is ``redis_prefix``):

- ``<prefix>:state:<tier>:<feed>`` hash entity → latest tier value, and ``...:offsets`` hash partition →
  next tier-topic offset the snapshot covers: written by the stream workers, read by the WebSocket servers.
- ``<prefix>:streams:last|released|forwarded|windows|decided:...`` and ``<prefix>:streams:agghist:<name>``:
  the stream workers' own recovery state (``streams/io/state_store.py`` says what each holds).
- ``<prefix>:key:<sha256 of the API key>``: an API key's tier and limits (WebSocket servers, ``shfeeds keys``).
- ``<prefix>:agreement:<id>`` (JSON of a data-use agreement) and ``<prefix>:agreements`` (sorted set of ids
  by application time); ``<prefix>:claim:<id>`` (SHA-256 of the applicant's claim token);
  ``<prefix>:usage:<Shanghai day>:<key id>`` (hash ``<feed>|<metric>`` → count, ``agreement``) and
  ``<prefix>:usage:<day>`` (set of key ids that day); ``<prefix>:feedback:<id>`` (JSON of a report),
  ``<prefix>:feedback`` (sorted set of ids) and ``<prefix>:feedback-token:<id>``: ``agreements/store.py``.
- ``<prefix>:health:<feed>``: hash of a feed's health figures.
- ``<prefix>:control:lease:<job>`` (the control-plane worker holding the job, with a TTL) and
  ``<prefix>:control:published:<job>`` (Unix ms of the job's last run): which control-plane worker
  publishes the aggregates (``control_plane/lease.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import topics

DEFAULT_REDIS_PREFIX = "shfeeds"


@dataclass(frozen=True)
class Naming:
    topic_prefix: str = ""  # prepended to every Kafka topic name (tests use a unique one)
    redis_prefix: str = DEFAULT_REDIS_PREFIX

    # Kafka topics: the prefix is applied here and nowhere else.
    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    def raw_topic(self, feed: str) -> str:
        return self.topic(topics.raw_topic(feed))

    def dlq_topic(self, feed: str) -> str:
        return self.topic(topics.dlq_topic(feed))

    def tier_topic(self, tier: str, feed: str) -> str:
        return self.topic(topics.tier_topic(tier, feed))

    def pending_topic(self, tier: str, feed: str) -> str:
        return self.topic(topics.pending_topic(tier, feed))

    def audit_topic(self) -> str:
        return self.topic(topics.AUDIT_ACCESS)

    def audit_checkpoint_topic(self) -> str:
        return self.topic(topics.AUDIT_CHECKPOINTS)

    def operator_log_topic(self) -> str:
        return self.topic(topics.AUDIT_OPERATOR)

    def ops_stats_topic(self) -> str:
        return self.topic(topics.OPS_STATS)

    def ops_alerts_topic(self) -> str:
        return self.topic(topics.OPS_ALERTS)

    def ocpi_locations_topic(self) -> str:
        return self.topic(topics.OCPI_LOCATIONS)

    # Redis keys.
    def _key(self, *parts: str) -> str:
        return ":".join((self.redis_prefix, *parts))

    def state_key(self, tier: str, feed: str) -> str:
        return self._key("state", tier, feed)

    def offsets_key(self, tier: str, feed: str) -> str:
        return self._key("state", tier, feed, "offsets")

    def last_key(self, feed: str) -> str:
        return self._key("streams", "last", feed)

    def released_key(self, tier: str, feed: str) -> str:
        return self._key("streams", "released", tier, feed)

    def forwarded_key(self, tier: str, feed: str) -> str:
        return self._key("streams", "forwarded", tier, feed)

    def windows_key(self, tier: str, feed: str) -> str:
        return self._key("streams", "windows", tier, feed)

    def decided_key(self, tier: str, feed: str) -> str:
        return self._key("streams", "decided", tier, feed)

    def history_key(self, name: str) -> str:
        return self._key("streams", "agghist", name)

    def key_key(self, key_hash: str) -> str:
        return self._key("key", key_hash)

    def key_pattern(self) -> str:
        return self._key("key", "*")

    def agreement_key(self, agreement_id: str) -> str:
        return self._key("agreement", agreement_id)

    def agreements_index(self) -> str:
        return self._key("agreements")

    def claim_key(self, agreement_id: str) -> str:
        return self._key("claim", agreement_id)

    def usage_key(self, day: str, key_id: str) -> str:
        return self._key("usage", day, key_id)

    def usage_day_index(self, day: str) -> str:
        return self._key("usage", day)

    def feedback_key(self, report_id: str) -> str:
        return self._key("feedback", report_id)

    def feedback_index(self) -> str:
        return self._key("feedback")

    def feedback_token_key(self, report_id: str) -> str:
        return self._key("feedback-token", report_id)

    def health_key(self, feed: str) -> str:
        return self._key("health", feed)

    def lease_key(self, job: str) -> str:
        return self._key("control", "lease", job)

    def published_key(self, job: str) -> str:
        return self._key("control", "published", job)
