"""The principals of the service and their grants, as data.

Topic and group names are relative to a namespace: a grant's name is prefixed with the ``Naming``'s topic
prefix (tests and benchmarks run under their own), and Redis key patterns with its Redis prefix. Families of
names (``raw.<feed>``, ``tier.<tier>.<feed>``, a Faust app's changelog topics) are PREFIXED patterns.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import topics
from schemas.naming import Naming

ADMIN = "admin"  # Kafka's super user and Redis' full user: the stack, `kafka-principal setup`, the test harness

# Kafka operations, spelled as Kafka names them.
READ, WRITE, CREATE, DESCRIBE = "READ", "WRITE", "CREATE", "DESCRIBE"
DESCRIBE_CONFIGS, ALTER_CONFIGS, ALL = "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "ALL"

TOPIC, GROUP, TRANSACTIONAL_ID = "TOPIC", "GROUP", "TRANSACTIONAL_ID"
PREFIXED, LITERAL = "PREFIXED", "LITERAL"

STREAMS_APP_ID = "shfeeds-streams"  # streams/config.py: consumer groups "<app id>-<stage>"
CONTROL_PLANE_APP_ID = "shfeeds-control-plane"  # control_plane/app.py: Faust's group and internal topics
ARCHIVER_GROUP = "shfeeds-archiver"  # archive/config.py


@dataclass(frozen=True)
class KafkaGrant:
    resource: str  # TOPIC, GROUP or TRANSACTIONAL_ID
    name: str  # before the namespace's topic prefix
    pattern: str  # PREFIXED or LITERAL
    operations: tuple[str, ...]


@dataclass(frozen=True)
class RedisRule:
    pattern: str  # key pattern after "<redis prefix>:"
    write: bool  # False: read-only (Redis' %R~)


@dataclass(frozen=True)
class Principal:
    name: str
    purpose: str
    kafka: tuple[KafkaGrant, ...] = ()
    redis: tuple[RedisRule, ...] = ()


def _topics(prefix: str, *operations: str, pattern: str = PREFIXED) -> KafkaGrant:
    return KafkaGrant(TOPIC, prefix, pattern, operations)


def _group(prefix: str) -> KafkaGrant:
    return KafkaGrant(GROUP, prefix, PREFIXED, (READ, DESCRIBE))


RAW, DLQ, TIER, PENDING = "raw.", "dlq.", "tier.", "pending."
AUDIT = "audit."
# Topics a component makes sure of (kafka_admin.ensure_topics) need CREATE even when they exist: Kafka checks
# the right before it looks for the topic.
PRODUCE = (WRITE, DESCRIBE, CREATE)
CONSUME = (READ, DESCRIBE)

COMPONENTS: tuple[Principal, ...] = (
    Principal(
        "adapters",
        "source adapters and the OCPI push receiver: write `raw.<feed>` and `dlq.<feed>`",
        kafka=(
            _topics(RAW, READ, *PRODUCE),  # READ: the resume point is the last record of raw.<feed>
            _topics(DLQ, *PRODUCE),
            _topics(topics.OPS_STATS, *PRODUCE, pattern=LITERAL),
            _topics(topics.OCPI_LOCATIONS, READ, *PRODUCE, DESCRIBE_CONFIGS, ALTER_CONFIGS, pattern=LITERAL),
        ),
    ),
    Principal(
        "streams",
        "stream workers: read raw and pending, write tier, pending, dlq; the Redis snapshots",
        kafka=(
            _topics(RAW, *CONSUME, CREATE),
            _topics(PENDING, READ, *PRODUCE),
            _topics(TIER, READ, *PRODUCE),
            _topics(DLQ, *PRODUCE),
            _topics(topics.OPS_STATS, *PRODUCE, pattern=LITERAL),
            _group(STREAMS_APP_ID),
        ),
        redis=(RedisRule("state:*", True), RedisRule("streams:*", True), RedisRule("health:*", True)),
    ),
    Principal(
        "ws-server",
        "WebSocket servers: read the tier topics they serve, write the access and operator logs",
        kafka=(
            _topics(TIER, *CONSUME),
            _topics(AUDIT, READ, *PRODUCE, DESCRIBE_CONFIGS, ALTER_CONFIGS),
            _topics(topics.OPS_STATS, *PRODUCE, pattern=LITERAL),
        ),
        redis=(
            RedisRule("state:*", False),
            # Writes too: an applicant claiming an approved agreement gets its key issued by the server, and a
            # withdrawn agreement's key is revoked there (agreements/store.py).
            RedisRule("key:*", True),
            RedisRule("health:*", False),
            RedisRule("agreement*", True),
            RedisRule("claim:*", True),
            RedisRule("usage:*", True),
            RedisRule("feedback*", True),
        ),
    ),
    Principal(
        "archiver",
        "the archiver: read the tier topics into Parquet files",
        kafka=(_topics(TIER, *CONSUME), _group(ARCHIVER_GROUP)),
    ),
    Principal(
        "control-plane",
        "feed health and the aggregate feeds (Faust: its app id's topics, group and transactional ids)",
        kafka=(
            _topics(topics.OPS_STATS, READ, *PRODUCE, pattern=LITERAL),
            _topics(topics.OPS_ALERTS, READ, *PRODUCE, pattern=LITERAL),
            _topics(DLQ, READ, *PRODUCE),
            _topics(TIER, *PRODUCE),
            _topics(PENDING, *PRODUCE),
            _topics(CONTROL_PLANE_APP_ID, ALL),
            KafkaGrant(GROUP, CONTROL_PLANE_APP_ID, PREFIXED, (ALL,)),
            KafkaGrant(TRANSACTIONAL_ID, CONTROL_PLANE_APP_ID, PREFIXED, (ALL,)),
        ),
        redis=(
            RedisRule("control:*", True),
            RedisRule("health:*", True),
            RedisRule("state:*", True),
            RedisRule("streams:*", True),  # the aggregate stage's recovery state and its inputs' latest values
        ),
    ),
    Principal(
        "key-admin",
        "`shfeeds keys` and `shfeeds agreements`: API keys and agreements, logged to audit.operator",
        kafka=(_topics(topics.AUDIT_OPERATOR, *PRODUCE, DESCRIBE_CONFIGS, ALTER_CONFIGS, pattern=LITERAL),),
        redis=(
            RedisRule("key:*", True),
            RedisRule("agreement*", True),
            RedisRule("claim:*", True),
            RedisRule("usage:*", True),
            RedisRule("feedback*", True),
        ),
    ),
    Principal(
        "replay",
        "`shfeeds replay`: reads the tier topics it replays",
        kafka=(_topics(TIER, *CONSUME),),
    ),
)

BY_NAME = {p.name: p for p in COMPONENTS}


def lab(name: str, tiers: list[str]) -> Principal:
    """A lab's read-only principal: the tier topics its agreement covers, and consumer groups named after it."""
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name == ADMIN or name in BY_NAME:
        raise ValueError(f"{name!r}: a lab principal's name is letters, digits, '-', '_' or '.', and not a component's")
    unknown = [t for t in tiers if t not in topics.TIERS]
    if not tiers or unknown:
        raise ValueError(f"tiers {unknown or tiers}: expected some of {', '.join(topics.TIERS)}")
    grants = tuple(_topics(f"{TIER}{tier}.", *CONSUME) for tier in tiers)
    return Principal(name, f"lab reading {', '.join(tiers)}", kafka=(*grants, _group(name)))


def resolved_name(grant: KafkaGrant, naming: Naming) -> str:
    """The grant's resource name in a namespace (topics and groups carry the topic prefix)."""
    return naming.topic(grant.name)
