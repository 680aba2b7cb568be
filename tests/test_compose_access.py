"""docker-compose.yml, read as Docker Compose would (no Docker here): the same access control as the local
stack, each component given its own principal's password only, and a simulator the adapters can reach."""

from __future__ import annotations

from typing import Any

import yaml

import settings as settings_mod
from access.credentials import env_var
from access.principals import ADMIN, COMPONENTS
from shfeeds_cli.main import COMMAND_PRINCIPALS
from shfeeds_cli.stack import _access_lines

COMPOSE = settings_mod.PROJECT_ROOT / "docker-compose.yml"


def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded["services"]


def passwords(service: dict[str, Any]) -> set[str]:
    return {name for name in service.get("environment", {}) if name.startswith("SHFEEDS_PASSWORD_")}


def test_each_component_gets_its_own_password_only() -> None:
    checked = 0
    for name, service in services().items():
        command = service.get("command")
        if not isinstance(command, list) or command[0] not in COMMAND_PRINCIPALS:
            continue
        assert passwords(service) == {env_var(COMMAND_PRINCIPALS[command[0]])}, name
        checked += 1
    assert checked >= 10


def test_the_access_job_sets_up_every_principal_as_admin() -> None:
    job = services()["access"]
    assert passwords(job) == {env_var(ADMIN)} | {env_var(p.name) for p in COMPONENTS}
    assert job["environment"]["SHFEEDS_PRINCIPAL"] == ADMIN
    assert "kafka-principal setup" in " ".join(job["command"])
    for name, service in services().items():
        if name not in ("kafka", "redis", "access"):
            assert service["depends_on"]["access"]["condition"] == "service_completed_successfully", name


def test_kafka_has_the_stack_s_access_settings() -> None:
    script = services()["kafka"]["command"][0]
    for line in _access_lines("PASSWORD"):
        # Compose reads "$$" as a literal "$": the shell in the container expands the variable.
        assert line.replace("PASSWORD", "$${SHFEEDS_PASSWORD_ADMIN}") in script, line
    assert "--add-scram=" in script and "name=admin" in script


def test_redis_refuses_anonymous_use_and_the_simulator_listens_for_other_containers() -> None:
    assert "--user default off" in services()["redis"]["command"][0]
    simulator = services()["simulator"]
    assert "--host" not in simulator["command"]  # so it binds the configured address
    # Its own address on the compose network, not every address; nothing else binds beyond loopback unless
    # its service names an address.
    assert simulator["environment"]["SHFEEDS_BIND_HOST"] == "simulator"
    listening = {name for name, s in services().items() if "SHFEEDS_BIND_HOST" in s.get("environment", {})}
    assert listening == {"simulator", "adapter-ocpi-push"}
    assert services()["adapter-ocpi-push"]["environment"]["SHFEEDS_BIND_HOST"] == "adapter-ocpi-push"
