"""Development or production, and how a process knows which it runs in.

``SHFEEDS_ENV=production`` or ``SHFEEDS_ENV=development`` says it. Unset, a process is in development only when
its Kafka is on this machine (every bootstrap address on loopback, as the local stack's is), so ``make run``
and ``make test`` need no setting; a process pointed at any other Kafka is in production, so a deployment that
forgets SHFEEDS_ENV still gets production's rules (a missing secret stops it).
"""

from __future__ import annotations

import ipaddress
import os

from . import Settings, load

ENV_VAR = "SHFEEDS_ENV"
DEVELOPMENT = "development"
PRODUCTION = "production"


class ConfigurationError(RuntimeError):
    """The process cannot start as configured; the message says what to set."""


def environment(settings: Settings | None = None) -> str:
    """``development`` or ``production`` (see the module's docstring)."""
    declared = os.environ.get(ENV_VAR, "").strip().lower()
    if declared in (DEVELOPMENT, PRODUCTION):
        return declared
    if declared:
        raise ConfigurationError(f"{ENV_VAR}={declared!r}: expected {DEVELOPMENT} or {PRODUCTION}")
    bootstrap = (settings or load()).kafka_bootstrap
    return DEVELOPMENT if all(_on_loopback(address) for address in bootstrap.split(",")) else PRODUCTION


def _on_loopback(address: str) -> bool:
    host = address.strip().rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: another machine, as far as we can tell without asking DNS
