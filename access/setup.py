"""``shfeeds kafka-principal setup``: (re)create every component principal on Kafka and Redis; idempotent."""

from __future__ import annotations

from schemas.naming import Naming
from settings import Settings

from . import credentials, kafka_acls, redis_acls
from .identity import with_redis_credentials
from .principals import ADMIN, COMPONENTS


def admin_redis_url(settings: Settings) -> str:
    base = settings.redis_url_override or f"redis://127.0.0.1:{settings.redis_port}/0"
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(base)
    if "@" in parts.netloc:
        return with_redis_credentials(base, settings)
    secret = quote(credentials.password(ADMIN, settings), safe="")
    return urlunsplit(parts._replace(netloc=f"{ADMIN}:{secret}@{parts.netloc}"))


def setup_components(settings: Settings, naming: Naming | None = None) -> tuple[int, int]:
    """Every component's credential and grants; (Kafka ACLs, Redis users)."""
    passwords = {p.name: credentials.password(p.name, settings) for p in COMPONENTS}
    acls = kafka_acls.apply(settings, COMPONENTS, passwords, naming)
    users = redis_acls.apply(admin_redis_url(settings), COMPONENTS, passwords, naming)
    return acls, users
