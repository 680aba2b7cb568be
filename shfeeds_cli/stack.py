"""The local stack: a real single-node Apache Kafka (KRaft) and a real redis-server, as local processes.

Kafka comes from the Maven Central artifacts (resolved by Maven from ``scripts/kafka-pom.xml``) and runs
with ``java``; Redis is Debian's ``redis-server``. Data, logs and pid files live under the stack folder
(``SHFEEDS_STACK_DIR``, git-ignored). ``up`` is idempotent and ``down`` stops only what ``up`` started.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from access import credentials
from access.identity import kafka_options
from access.principals import ADMIN
from access.redis_acls import admin_line
from access.setup import setup_components
from settings import BROKERS_FILE, PROJECT_ROOT, Settings

KAFKA_VERSION = "4.1.1"
KAFKA_POM = PROJECT_ROOT / "scripts" / "kafka-pom.xml"
# Per partition, when the stack keeps records by size rather than age (Settings.kafka_retention_hours).
RETENTION_BYTES = 1 << 30
SCRAM_MARKER = "scram-admin"  # in a broker's folder: its storage was formatted with the admin credential


class StackError(RuntimeError):
    """A stack component could not be installed or started; the message says what to do."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    address: str
    data_dir: Path
    log: Path

    def describe(self) -> str:
        state = f"running (pid {self.pid})" if self.running else "stopped"
        return f"{self.name:<6} {state:<22} {self.address:<22} data {self.data_dir}  log {self.log}"


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); check its state where /proc exists.
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().split(") ", 1)[1][0] != "Z"
        except (OSError, IndexError):
            return True
    return True


def _read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


class KafkaService:
    """One Kafka node (broker and controller). A stack runs ``settings.broker_count`` of them: node 1 in
    ``kafka/``, node N in ``kafka-N/``; with three, every topic has three copies and writes need two."""

    def __init__(self, settings: Settings, index: int = 0) -> None:
        self.settings = settings
        self.index = index
        self.clustered = settings.broker_count > 1
        self.name = f"kafka-{index + 1}" if self.clustered else "kafka"
        self.home = settings.stack_dir / ("kafka" if index == 0 else f"kafka-{index + 1}")
        self.port = settings.kafka_port + 2 * index
        self.controller_port = settings.kafka_controller_port + 2 * index
        self.libs = settings.cache_dir / f"kafka-libs-{KAFKA_VERSION}"
        self.data_dir = self.home / "data"
        self.config = self.home / "server.properties"
        self.log = self.home / "kafka.log"
        self.pid_file = self.home / "kafka.pid"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def status(self) -> ServiceStatus:
        pid = _read_pid(self.pid_file)
        running = pid is not None and port_open(self.port)
        return ServiceStatus(self.name, running, pid, self.address, self.data_dir, self.log)

    def ensure_libs(self) -> None:
        marker = self.libs / ".complete"
        if marker.exists():
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError("Maven ('mvn') is needed to fetch Apache Kafka: apt-get install -y maven")
        if shutil.which("java") is None:
            raise StackError("Java 17+ is needed to run Apache Kafka: apt-get install -y openjdk-17-jre-headless")
        print(f"fetching Apache Kafka {KAFKA_VERSION} and its runtime dependencies with Maven...", flush=True)
        self.libs.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.libs.with_name(self.libs.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            mvn, "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}", "-DincludeScope=runtime", f"-Dkafka.version={KAFKA_VERSION}",
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"Maven could not fetch Kafka:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        shutil.rmtree(self.libs, ignore_errors=True)
        tmp.rename(self.libs)
        marker.touch()

    def _classpath(self) -> str:
        return str(self.libs / "*")

    def _write_config(self) -> None:
        s = self.settings
        self.home.mkdir(parents=True, exist_ok=True)
        replicas, min_isr = s.replication_factor, s.min_insync_replicas
        if self.clustered:  # a fixed quorum of every node's controller, known to all before the first start
            quorum = ",".join(f"{i + 1}@127.0.0.1:{s.kafka_controller_port + 2 * i}" for i in range(s.broker_count))
            quorum_line = f"controller.quorum.voters={quorum}"
            # Leaders move off a lost broker once its session ends: 4 s here instead of Kafka's 9 s, as the
            # brokers share one machine and a missed heartbeat means the process is gone.
            quorum_line += "\nbroker.session.timeout.ms=4000\nbroker.heartbeat.interval.ms=1000"
        else:
            quorum_line = f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}"
        lines = [
            "# Written by `shfeeds stack up`; edits are overwritten.",
            "process.roles=broker,controller",
            f"node.id={self.index + 1}",
            f"listeners=CLIENT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=CLIENT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            *_access_lines(_admin_password(s)),
            quorum_line,
            f"log.dirs={self.data_dir}",
            f"num.partitions={s.topic_partitions}",
            # Topics are created by the project with explicit partition counts and replication, never by
            # a client's first use of a name (docs/design-notes.md).
            "auto.create.topics.enable=false",
            f"default.replication.factor={replicas}",
            f"min.insync.replicas={min_isr}",
            f"offsets.topic.replication.factor={replicas}",
            "offsets.topic.num.partitions=8",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={min_isr}",
            f"share.coordinator.state.topic.replication.factor={replicas}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            "group.initial.rebalance.delay.ms=0",
            f"log.retention.hours={s.kafka_retention_hours}",
            f"log.retention.bytes={RETENTION_BYTES if s.kafka_retention_hours < 0 else -1}",
            "log.segment.bytes=67108864",
            # Tests and benchmarks delete their topics: remove the files at once (default: a minute later),
            # so the deletions neither hold open files nor land in the middle of the next measurement.
            "log.segment.delete.delay.ms=1000",
            "socket.listen.backlog.size=1024",
        ]
        _write_private(self.config, "\n".join(lines) + "\n")  # it holds the admin password

    def _format_storage(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            if not (self.home / SCRAM_MARKER).exists():
                raise StackError(
                    f"{self.data_dir} was formatted before Kafka required logins (it has no admin credential): "
                    f"delete {self.settings.stack_dir}/kafka* (its topics are lost) and start it again"
                )
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            "java", "-cp", self._classpath(), "kafka.tools.StorageTool", "format",
            # "=" form: a base64url id may start with "-", which argparse would read as an option.
            f"--cluster-id={_kafka_cluster_id(self.settings)}", f"--config={self.config}",
            # The admin's SCRAM credential is in the metadata from the start: the brokers authenticate to each
            # other with it, and `kafka-principal setup` connects as admin to add the others.
            f"--add-scram=SCRAM-SHA-256=[name={ADMIN},password={_admin_password(self.settings)}]",
        ]  # fmt: skip
        if not self.clustered:
            cmd.insert(5, "--standalone")
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")
        (self.home / SCRAM_MARKER).touch()

    def start(self) -> bool:
        """Start Kafka unless it already runs; True when this call started it."""
        if self.status().running:
            if not (self.home / SCRAM_MARKER).exists():
                raise StackError(
                    f"{self.name} runs without logins (started before Kafka required them): `shfeeds stack down`, "
                    f"delete {self.settings.stack_dir}/kafka* (its topics are lost) and start it again"
                )
            return False
        if port_open(self.port):
            raise StackError(
                f"port {self.port} is taken by a process this stack did not start; "
                "set SHFEEDS_KAFKA_PORT to another port"
            )
        self.ensure_libs()
        self._write_config()
        self._format_storage()
        heap = self.settings.kafka_heap
        cmd = [
            "java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", "-cp", self._classpath(), "kafka.Kafka", str(self.config),
        ]  # fmt: skip
        pid = _spawn(cmd, self.log)
        self.pid_file.write_text(str(pid))
        return True

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _read_pid(self.pid_file) is None:
                raise StackError(f"Kafka exited during start-up; see {self.log}:\n{_tail(self.log)}")
            if port_open(self.port) and _kafka_answers(self.address, self.settings):
                return
            time.sleep(0.5)
        raise StackError(f"Kafka did not answer on {self.address} within {timeout:.0f} s; see {self.log}")

    def stop(self) -> bool:
        return _stop(self.pid_file)


class RedisService:
    name = "redis"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.stack_dir / "redis"
        self.data_dir = self.home / "data"
        self.config = self.home / "redis.conf"
        self.acl_file = self.home / "users.acl"
        self.log = self.home / "redis.log"
        self.pid_file = self.home / "redis.pid"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.redis_port}"

    def status(self) -> ServiceStatus:
        pid = _read_pid(self.pid_file)
        running = pid is not None and port_open(self.settings.redis_port)
        return ServiceStatus(self.name, running, pid, self.address, self.data_dir, self.log)

    @staticmethod
    def ensure_installed() -> str:
        binary = shutil.which("redis-server")
        if binary:
            return binary
        if os.geteuid() != 0:
            raise StackError("redis-server is missing; install it with: sudo apt-get install -y redis-server")
        print("installing redis-server with apt-get...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
            result = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if result.returncode != 0:
                raise StackError(f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server is still missing after apt-get install redis-server")
        return binary

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "# Written by `shfeeds stack up`; edits are overwritten.",
            "bind 127.0.0.1",
            f"port {self.settings.redis_port}",
            "daemonize no",
            f"dir {self.data_dir}",
            # API keys live here; latest state can be rebuilt from Kafka but keys cannot.
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "tcp-backlog 4096",
            "maxclients 10000",
            "protected-mode yes",
            # No anonymous use: the default user is off, admin is there from the first start, and
            # `kafka-principal setup` adds each component's user and saves it to the ACL file, so a
            # restarted Redis (the supervisor restarts a dead one) still has them.
            f"aclfile {self.acl_file}",
        ]
        _write_private(self.config, "\n".join(lines) + "\n")
        try:
            kept = [line for line in self.acl_file.read_text().splitlines() if line.split()[1:2] not in ([], [ADMIN])]
        except (OSError, IndexError):
            kept = []
        kept = [line for line in kept if not line.startswith("user default ")]
        users = ["user default off resetpass -@all", admin_line(_admin_password(self.settings)), *kept]
        _write_private(self.acl_file, "\n".join(users) + "\n")

    def start(self) -> bool:
        if self.status().running:
            return False
        if port_open(self.settings.redis_port):
            raise StackError(
                f"port {self.settings.redis_port} is taken by a process this stack did not start; "
                "set SHFEEDS_REDIS_PORT to another port"
            )
        binary = self.ensure_installed()
        self._write_config()
        pid = _spawn([binary, str(self.config)], self.log)
        self.pid_file.write_text(str(pid))
        return True

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _read_pid(self.pid_file) is None:
                raise StackError(f"redis-server exited during start-up; see {self.log}:\n{_tail(self.log)}")
            if _redis_answers(self.settings.redis_port):
                return
            time.sleep(0.2)
        raise StackError(f"redis-server did not answer on {self.address} within {timeout:.0f} s")

    def stop(self) -> bool:
        return _stop(self.pid_file)


def brokers(settings: Settings) -> list[KafkaService]:
    return [KafkaService(settings, i) for i in range(settings.broker_count)]


def services(settings: Settings) -> list[KafkaService | RedisService]:
    return [*brokers(settings), RedisService(settings)]


def up(settings: Settings, *, quiet: bool = False) -> None:
    """Start whatever is not running yet and wait until all of it answers."""
    _record_shape(settings)
    every: list[KafkaService | RedisService] = [RedisService(settings), *brokers(settings)]
    # Every broker starts before any is waited for: a clustered controller quorum forms only once a
    # majority of the nodes runs.
    started = {service.name: service.start() for service in every}
    for service in every:
        service.wait_ready()
        if not quiet:
            verb = "started" if started[service.name] else "already running"
            print(f"{service.name} {verb} on {service.address}", flush=True)
    create_topics(settings)
    setup_components(settings)


def share_secrets(source: Settings, target: Settings) -> None:
    """Give a second stack folder the development secrets (passwords included) of the first, before its first
    start: a process that talks to both (a test, a benchmark) finds its passwords through the environment's
    stack folder, so both stacks must agree on them."""
    from settings.secret_store import secrets_dir

    if secrets_dir(source).is_dir():
        shutil.copytree(secrets_dir(source), secrets_dir(target), dirs_exist_ok=True)


def _record_shape(settings: Settings) -> None:
    """Remember the broker count in the stack folder; refuse to reshape a cluster that holds data."""
    shape = settings.stack_dir / BROKERS_FILE
    try:
        before = int(shape.read_text())
    except (OSError, ValueError):
        before = 1
    wanted = settings.broker_count
    if wanted != before and (settings.stack_dir / "kafka" / "data" / "meta.properties").exists():
        raise StackError(
            f"this stack folder holds a {before}-broker Kafka; to run {wanted} brokers, "
            f"`shfeeds stack down` and delete {settings.stack_dir}/kafka* first (its topics are lost)"
        )
    settings.stack_dir.mkdir(parents=True, exist_ok=True)
    shape.write_text(f"{wanted}\n")


def create_topics(settings: Settings) -> None:
    """Every topic the service uses, created up front with explicit partition counts."""
    import asyncio

    from kafka_admin import ensure_topics
    from schemas import all_topics
    from schemas.topics import topic_configs

    replicas = settings.replication_factor
    asyncio.run(
        ensure_topics(
            settings.kafka_bootstrap,
            settings.topic_partitions,
            all_topics(),
            replication_factor=replicas,
            configs=topic_configs(),
            client_options=kafka_options(settings, as_principal=ADMIN),
        )
    )


def down(settings: Settings) -> None:
    for service in services(settings):
        stopped = service.stop()
        print(f"{service.name} {'stopped' if stopped else 'was not running (nothing to stop)'}", flush=True)


def status(settings: Settings) -> list[ServiceStatus]:
    return [service.status() for service in services(settings)]


OPEN_FILES_WANTED = 262_144


def _raise_open_files_limit() -> None:
    """Kafka keeps several files open per partition; a developer's broker that has seen many test and
    benchmark topics outgrows a 20k descriptor limit and then dies at every start."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:  # raising the hard limit needs privileges the machine may not grant
        resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES_WANTED, max(hard, OPEN_FILES_WANTED)))
    except (ValueError, OSError):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _spawn(cmd: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # A new session so Ctrl-C in the terminal that ran `stack up` does not stop the stack.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_raise_open_files_limit)  # fmt: skip
    return proc.pid


def _stop(pid_file: Path, timeout: float = 30.0) -> bool:
    pid = _read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        _reap(pid)
        time.sleep(0.2)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        _reap(pid)
    pid_file.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _admin_password(settings: Settings) -> str:
    return credentials.password(ADMIN, settings)


def _access_lines(secret: str) -> list[str]:
    """SASL on both listeners and ACLs enforced (docs/security.md). Clients log in with SCRAM-SHA-256; the
    controller listener takes only admin, with PLAIN (KRaft's controllers cannot check SCRAM credentials,
    which live in the metadata they serve), so neither is an open door. ``secret``: admin's password."""
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    return [
        "listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name=CLIENT",
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256",
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-256",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f'listener.name.client.scram-sha-256.sasl.jaas.config={scram} required username="{ADMIN}" password="{secret}";',
        f"listener.name.controller.plain.sasl.jaas.config={plain} required "
        f'username="{ADMIN}" password="{secret}" user_{ADMIN}="{secret}";',
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{ADMIN}",
        "allow.everyone.if.no.acl.found=false",
    ]


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds a password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _kafka_cluster_id(settings: Settings) -> str:
    """The stack's cluster id: made once (a base64url UUID without padding, as StorageTool's random-uuid)
    and shared by every node formatted in this stack folder."""
    import base64

    path = settings.stack_dir / "kafka-cluster-id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    return path.read_text().strip()


def _kafka_answers(bootstrap: str, settings: Settings) -> bool:
    """True once the broker serves metadata (the port opens a little before that)."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    options = kafka_options(settings, as_principal=ADMIN)

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, **options)
        try:
            await asyncio.wait_for(admin.start(), 5)
            await asyncio.wait_for(admin.list_topics(), 5)
            return True
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    return asyncio.run(probe())


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            # Anonymous use is refused, which also says the server is up.
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


if __name__ == "__main__":  # pragma: no cover - convenience for debugging
    up(Settings())
    sys.exit(0)
