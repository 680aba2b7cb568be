"""Which principal this process is, and the client settings that follow from it.

``SHFEEDS_PRINCIPAL`` names it: each ``shfeeds <component>`` command sets its own (``shfeeds_cli/main.py``),
so ``shfeeds run``'s children are each their component. Unset, a development process is ``admin`` (the
developer's own commands); a production process must say who it is. ``SHFEEDS_ACT_AS_ADMIN=1`` makes a
development process admin whatever it runs (the test harness and benchmarks), and is refused in production.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from settings import Settings, load
from settings.environment import DEVELOPMENT, ConfigurationError, environment

from . import credentials
from .principals import ADMIN

PRINCIPAL_VAR = "SHFEEDS_PRINCIPAL"
ADMIN_OVERRIDE_VAR = "SHFEEDS_ACT_AS_ADMIN"
SCRAM = "SCRAM-SHA-256"


def principal(settings: Settings | None = None) -> str:
    settings = settings or load()
    if os.environ.get(ADMIN_OVERRIDE_VAR) == "1":
        if environment(settings) != DEVELOPMENT:
            raise ConfigurationError(f"{ADMIN_OVERRIDE_VAR}=1 is for development only")
        return ADMIN
    name = os.environ.get(PRINCIPAL_VAR, "").strip()
    if name:
        return name
    if environment(settings) != DEVELOPMENT:
        raise ConfigurationError(f"{PRINCIPAL_VAR} is not set: a production process must say which principal it is")
    return ADMIN


def set_principal(name: str) -> None:
    """Called by a component's command before it connects (the test harness' admin override still wins)."""
    os.environ[PRINCIPAL_VAR] = name


def kafka_options(settings: Settings | None = None, as_principal: str | None = None) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
    settings = settings or load()
    name = as_principal or principal(settings)
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": SCRAM,
        "sasl_plain_username": name,
        "sasl_plain_password": credentials.password(name, settings),
    }


def faust_credentials(settings: Settings | None = None) -> Any:
    import faust

    options = kafka_options(settings)
    return faust.SASLCredentials(
        username=options["sasl_plain_username"], password=options["sasl_plain_password"], mechanism=SCRAM
    )


def confluent_config(settings: Settings | None = None, as_principal: str | None = None) -> dict[str, str]:
    """librdkafka's settings for the same principal (the admin API in ``kafka_acls.py``)."""
    settings = settings or load()
    options = kafka_options(settings, as_principal)
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": SCRAM,
        "sasl.username": options["sasl_plain_username"],
        "sasl.password": options["sasl_plain_password"],
    }


def with_redis_credentials(url: str, settings: Settings) -> str:
    """``url`` with this process' Redis user and password, unless it already names a user or password."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return url
    name = principal(settings)
    secret = quote(credentials.password(name, settings), safe="")
    return urlunsplit(parts._replace(netloc=f"{quote(name, safe='')}:{secret}@{parts.netloc}"))


def redact(url: str) -> str:
    """A URL fit for a log line: the password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
