"""Secrets no file in the repository holds: configured in the environment, or, in development only, made once per
installation and kept under the stack folder (``<stack>/secrets/``, the folder 0700, each file 0600).

A production process without its secret does not start (``MissingSecret``). Processes that start together agree
on one value: the file is written aside and linked into place, so the first one wins and the others read it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from . import Settings, load
from .environment import DEVELOPMENT, ENV_VAR, ConfigurationError, environment

log = logging.getLogger(__name__)


class MissingSecret(ConfigurationError):
    """A production process without a secret it needs."""


@dataclass(frozen=True)
class InstallationSecret:
    env_var: str
    file_name: str  # under <stack>/secrets/ in development
    purpose: str  # completes "it ..." in messages


@dataclass(frozen=True)
class ResolvedSecret:
    value: str
    file: Path | None  # the development file it came from; None when configured


PSEUDONYM_SECRET = InstallationSecret(
    "SHFEEDS_PSEUDONYM_SECRET", "pseudonym-secret", "keys the pseudonymous ids of the lower tiers"
)
OCPI_PUSH_TOKEN = InstallationSecret(
    "SHFEEDS_OCPI_PUSH_TOKEN", "ocpi-push-token", "is the credentials token operators present to push to us"
)

AUDIT_KEY = InstallationSecret(
    "SHFEEDS_AUDIT_KEY", "audit-key", "signs the checkpoints that anchor the access log's hash chains"
)


def secrets_dir(settings: Settings) -> Path:
    return settings.stack_dir / "secrets"


def resolve(
    secret: InstallationSecret, settings: Settings | None = None, configured: str | None = None
) -> ResolvedSecret:
    """The configured value (``configured``, else the environment's); in development without one, this
    installation's generated value; otherwise ``MissingSecret``."""
    settings = settings or load()
    value = configured if configured is not None else os.environ.get(secret.env_var, "")
    if value:
        return ResolvedSecret(value, None)
    mode = environment(settings)
    if mode != DEVELOPMENT:
        raise MissingSecret(
            f"{secret.env_var} is not set: it {secret.purpose}, and a {mode} service does not start without it "
            f"(only development, {ENV_VAR}={DEVELOPMENT}, makes one of its own)"
        )
    path = secrets_dir(settings) / secret.file_name
    return ResolvedSecret(read_or_create(path), path)


def read_or_create(path: Path) -> str:
    """The secret in ``path``, made (random, 0600) if there is none yet."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(aside, path)  # atomic, and refuses to replace: a process that got here first wins
            log.warning("made a development secret in %s (0600); production processes need their own", path)
        except FileExistsError:
            pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)
    return _read(path)


def _read(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, encoding="utf-8") as source:
        if stat.S_IMODE(os.fstat(source.fileno()).st_mode) & 0o077:
            raise ConfigurationError(f"{path} can be read by other users: `chmod 600` it, or delete it for a new one")
        value = source.read().strip()
    if not value:
        raise ConfigurationError(f"{path} is empty: delete it and a new secret is made on the next start")
    return value
