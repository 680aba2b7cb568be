"""Make Kafka enforce the principals table: SCRAM credentials and ACLs, in one admin session (librdkafka's
admin API), idempotent: creating an ACL that exists changes nothing, and a credential is set again."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from schemas.naming import Naming
from settings import Settings

from .identity import confluent_config
from .principals import ADMIN, Principal, resolved_name

TIMEOUT_S = 30.0
SCRAM_ITERATIONS = 4096


class AccessSetupError(RuntimeError):
    """Kafka refused a credential or an ACL; the message says which."""


def admin_client(settings: Settings) -> AdminClient:
    # log_level 4: librdkafka's informational lines (e.g. on closing) stay out of the command's output
    return AdminClient({**confluent_config(settings, as_principal=ADMIN), "socket.timeout.ms": "15000", "log_level": 4})


def bindings(principal: Principal, naming: Naming) -> list[AclBinding]:
    out = []
    for grant in principal.kafka:
        for operation in grant.operations:
            out.append(
                AclBinding(
                    ResourceType[grant.resource],
                    resolved_name(grant, naming),
                    ResourcePatternType[grant.pattern],
                    f"User:{principal.name}",
                    "*",
                    AclOperation[operation],
                    AclPermissionType.ALLOW,
                )
            )
    return out


def apply(
    settings: Settings, principals: Iterable[Principal], passwords: dict[str, str], naming: Naming | None = None
) -> int:
    """Set each principal's SCRAM password (those in ``passwords``) and create its ACLs; the count of ACLs."""
    naming = naming or Naming()
    wanted = list(principals)
    admin = admin_client(settings)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(
            name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, SCRAM_ITERATIONS), secret.encode()
        )
        for name, secret in passwords.items()
    ]
    if upserts:
        for name, future in admin.alter_user_scram_credentials(upserts, request_timeout=TIMEOUT_S).items():
            _wait(future, f"the SCRAM credential of {name}")
    acls = [b for p in wanted for b in bindings(p, naming)]
    if acls:
        for binding, future in admin.create_acls(acls, request_timeout=TIMEOUT_S).items():
            _wait(future, f"ACL {binding}")
        _until_in_force(admin, {p.name: len(bindings(p, naming)) for p in wanted})
    return len(acls)


def _until_in_force(admin: AdminClient, counts: dict[str, int], timeout_s: float = 10.0) -> None:
    """ACLs reach the brokers' authorizer through the metadata log, a moment after Kafka acknowledged them: wait
    until the broker answers with them, so a component started right after `setup` is not refused."""
    deadline = time.monotonic() + timeout_s
    for name, count in counts.items():
        while time.monotonic() < deadline:
            found = _wait(admin.describe_acls(_of(name), request_timeout=TIMEOUT_S), f"the ACLs of {name}")
            if len(found or []) >= count:
                break
            time.sleep(0.1)


def _of(name: str) -> AclBindingFilter:
    """Every ACL of one principal (None: any resource name, any host)."""
    return AclBindingFilter(
        ResourceType.ANY,
        None,  # type: ignore[arg-type]
        ResourcePatternType.ANY,
        f"User:{name}",
        None,  # type: ignore[arg-type]
        AclOperation.ANY,
        AclPermissionType.ANY,
    )


def remove(settings: Settings, name: str) -> int:
    """Delete a principal's ACLs and make its password one nobody knows (a lab whose agreement ended); the count
    of ACLs removed.

    The credential is replaced, not deleted: after Kafka replayed a SCRAM credential's deletion, our brokers came
    back from a restart without any SCRAM credential at all (every login refused, admin's included)."""
    admin = admin_client(settings)
    removed = 0
    for future in admin.delete_acls([_of(name)], request_timeout=TIMEOUT_S).values():
        removed += len(_wait(future, f"the ACLs of {name}") or [])
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, SCRAM_ITERATIONS)
    unknown: list[UserScramCredentialAlteration] = [UserScramCredentialUpsertion(name, info, secrets.token_bytes(32))]
    for future in admin.alter_user_scram_credentials(unknown, request_timeout=TIMEOUT_S).values():
        _wait(future, f"the SCRAM credential of {name}")
    return removed


def describe(settings: Settings, name: str) -> list[tuple[str, str, str, str]]:
    """A principal's ACLs as Kafka holds them: (operation, resource type, pattern type, resource name), sorted."""
    admin = admin_client(settings)
    result = _wait(admin.describe_acls(_of(name), request_timeout=TIMEOUT_S), f"the ACLs of {name}")
    return sorted(
        (_label(b.operation), _label(b.restype), _label(b.resource_pattern_type), b.name) for b in result or []
    )


def _label(value: Any) -> str:
    return str(getattr(value, "name", value))


def _wait(future: Any, what: str) -> Any:
    try:
        return future.result(TIMEOUT_S)
    except KafkaException as err:
        raise AccessSetupError(f"Kafka refused {what}: {err}") from err
