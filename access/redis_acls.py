"""Make Redis enforce the principals table: one ACL user per component, its key patterns and the commands
it needs (reads and writes, no admin or dangerous commands), and the password-less default user off."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable

import redis

from schemas.naming import Naming

from .principals import ADMIN, Principal

# Ordinary data commands; @dangerous (FLUSHALL, KEYS, CONFIG, DEBUG, ...) and @admin stay denied.
COMMANDS = ("+@read", "+@write", "+@connection", "+@transaction", "+@scripting", "-@dangerous", "-@admin")


def rules(principal: Principal, secret: str, naming: Naming) -> list[str]:
    """``ACL SETUSER`` arguments for a component, from scratch (``reset``), so re-running is idempotent."""
    keys = [f"{'~' if r.write else '%R~'}{naming.redis_prefix}:{r.pattern}" for r in principal.redis]
    return ["reset", "on", f">{secret}", "resetchannels", *keys, *(COMMANDS if keys else ())]


def admin_line(secret: str) -> str:
    """The ACL file's admin user, there from Redis' first start."""
    digest = hashlib.sha256(secret.encode()).hexdigest()  # the file keeps the hash, not the password
    return f"user {ADMIN} on #{digest} ~* &* +@all"


def apply(url: str, principals: Iterable[Principal], passwords: dict[str, str], naming: Naming | None = None) -> int:
    """Create or reset each principal's user (``url`` must be admin's); the count of users."""
    naming = naming or Naming()
    client = redis.Redis.from_url(url, socket_timeout=10)
    count = 0
    try:
        for principal in principals:
            client.execute_command(
                "ACL", "SETUSER", principal.name, *rules(principal, passwords[principal.name], naming)
            )
            count += 1
        client.execute_command("ACL", "SETUSER", "default", "off", "resetpass", "-@all")
        # Saved to the local stack's ACL file, so a restarted Redis keeps the users; a Redis without one
        # (docker-compose.yml) refuses, and there the access job runs again at each start.
        with contextlib.suppress(redis.ResponseError):
            client.execute_command("ACL", "SAVE")
    finally:
        client.close()
    return count
