"""Where a principal's password comes from: ``SHFEEDS_PASSWORD_<NAME>`` (e.g. ``SHFEEDS_PASSWORD_WS_SERVER``),
or, in development only, a random one made on first use under ``<stack>/secrets/`` (0600), as the other
installation secrets are (``settings/secret_store.py``). Outside development a missing password stops the
process with ``MissingSecret``. The same password serves the principal's Kafka (SCRAM) and Redis user."""

from __future__ import annotations

from settings import Settings
from settings.secret_store import InstallationSecret, resolve


def env_var(principal: str) -> str:
    return "SHFEEDS_PASSWORD_" + principal.upper().replace("-", "_").replace(".", "_")


def secret(principal: str) -> InstallationSecret:
    return InstallationSecret(
        env_var(principal), f"principal-{principal}", f"is the {principal} principal's Kafka and Redis password"
    )


def password(principal: str, settings: Settings | None = None) -> str:
    return resolve(secret(principal), settings).value
