"""No secret in the code: the pseudonym secret is configured, or made once per development installation (0600
under the stack folder); a production process without it does not start, and says why.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import settings as settings_mod
from settings.environment import DEVELOPMENT, PRODUCTION, ConfigurationError, environment
from settings.secret_store import PSEUDONYM_SECRET, MissingSecret, resolve
from streams.policy import PolicyEngine

# The secret the code carried before: every pseudonym made with it could be reversed by anyone who read it.
SECRET_ONCE_IN_THE_CODE = b"shfeeds-development-only-pseudonym-secret"
SECRET_VARS = (
    "SHFEEDS_PSEUDONYM_SECRET",
    "SHFEEDS_OCPI_PUSH_TOKEN",
    "SHFEEDS_ENV",
    "SHFEEDS_KAFKA_BOOTSTRAP",
    "SHFEEDS_ACT_AS_ADMIN",
)
T = 1_780_000_000_000
BUS = {
    "source": "test",
    "observed_at": T,
    "expires_at": T + 60_000,
    "id": "obu-9",
    "vehicle_id": "obu-9",
    "lng": 121.4705,
    "lat": 31.2349,
}


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stack folder of this test's own, with no secret configured and the local (loopback) Kafka."""
    for name in SECRET_VARS:
        monkeypatch.delenv(name, raising=False)
    stack_dir = tmp_path / "stack"
    monkeypatch.setenv("SHFEEDS_STACK_DIR", str(stack_dir))
    return stack_dir


def public_id(engine: PolicyEngine) -> str:
    out: str = engine.apply("bus", "public", [dict(BUS)])[0]["id"]
    return out


def test_development_pseudonyms_are_keyed_by_a_secret_of_this_installation(
    installation: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = public_id(PolicyEngine())
    secret_file = installation / "secrets" / "pseudonym-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret_file.parent.stat().st_mode) == 0o700
    assert first != public_id(PolicyEngine(secret=SECRET_ONCE_IN_THE_CODE))  # nothing in the code links it
    assert first == public_id(PolicyEngine(secret=secret_file.read_text().strip().encode()))
    assert public_id(PolicyEngine()) == first  # a restart keeps every id
    monkeypatch.setenv("SHFEEDS_STACK_DIR", str(tmp_path / "another"))
    assert public_id(PolicyEngine()) != first  # another installation, another key


def test_production_without_the_secret_does_not_start(installation: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHFEEDS_ENV", "production")
    with pytest.raises(MissingSecret, match="SHFEEDS_PSEUDONYM_SECRET is not set"):
        PolicyEngine()
    assert not (installation / "secrets").exists()  # nothing was made for it
    monkeypatch.setenv("SHFEEDS_PSEUDONYM_SECRET", "a configured secret")
    assert public_id(PolicyEngine()) == public_id(PolicyEngine(secret=b"a configured secret"))


def cli_env(stack_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    return {**env, "SHFEEDS_STACK_DIR": str(stack_dir), **extra}


def test_a_production_stream_worker_without_the_secret_exits_saying_why(
    installation: Path, running_stack: Any, unique_name: Any
) -> None:
    prefix = unique_name("nosecret") + "."
    argv = ["streams", "worker", "--topic-prefix", prefix, "--redis-prefix", prefix, "--app-id", prefix]
    # Its Kafka and Redis password is configured, so the pseudonym secret is what it misses.
    env = cli_env(installation, SHFEEDS_ENV="production", SHFEEDS_PASSWORD_STREAMS="configured")
    done = subprocess.run(
        [sys.executable, "-m", "shfeeds_cli.main", *argv],
        env=env,
        cwd=settings_mod.PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "cannot start: SHFEEDS_PSEUDONYM_SECRET is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_production_component_without_its_password_exits_saying_why(installation: Path, running_stack: Any) -> None:
    """No development fallback: a production process without its principal's password does not start."""
    done = subprocess.run(
        [sys.executable, "-m", "shfeeds_cli.main", "archive", "run"],
        env=cli_env(installation, SHFEEDS_ENV="production", SHFEEDS_PSEUDONYM_SECRET="configured"),
        cwd=settings_mod.PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "cannot start: SHFEEDS_PASSWORD_ARCHIVER is not set" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("declared", "bootstrap", "expected"),
    [
        ("", "127.0.0.1:19092", DEVELOPMENT),
        ("", "localhost:9092,[::1]:9093", DEVELOPMENT),
        ("", "kafka:9092", PRODUCTION),
        ("", "127.0.0.1:19092,10.1.2.3:9092", PRODUCTION),
        ("production", "127.0.0.1:19092", PRODUCTION),
        (" Development ", "kafka:9092", DEVELOPMENT),
    ],
)
def test_how_development_is_known(
    declared: str, bootstrap: str, expected: str, installation: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHFEEDS_ENV", declared)
    assert environment(settings_mod.Settings(kafka_bootstrap_override=bootstrap)) == expected


def test_an_unknown_environment_is_refused(installation: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHFEEDS_ENV", "staging")
    with pytest.raises(ConfigurationError, match="SHFEEDS_ENV='staging': expected development or production"):
        resolve(PSEUDONYM_SECRET)


def test_a_secret_file_others_can_read_or_an_empty_one_is_refused(installation: Path) -> None:
    secret_file = installation / "secrets" / "pseudonym-secret"
    resolve(PSEUDONYM_SECRET)
    secret_file.chmod(0o644)
    with pytest.raises(ConfigurationError, match="can be read by other users: `chmod 600` it"):
        resolve(PSEUDONYM_SECRET)
    secret_file.write_text("")
    secret_file.chmod(0o600)
    with pytest.raises(ConfigurationError, match="is empty"):
        resolve(PSEUDONYM_SECRET)


def test_processes_starting_together_agree_on_one_secret(installation: Path) -> None:
    script = "from settings.secret_store import PSEUDONYM_SECRET, resolve; print(resolve(PSEUDONYM_SECRET).value)"
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=cli_env(installation),
            cwd=settings_mod.PROJECT_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    values = {start.communicate(timeout=120)[0].strip() for start in starts}
    assert [start.returncode for start in starts] == [0] * 6
    assert len(values) == 1 and len(values.pop()) >= 40
    assert os.listdir(installation / "secrets") == ["pseudonym-secret"]  # nothing left aside
