"""One Kafka node: its configuration files, its storage and its JVM process.

Every node is a combined KRaft broker and controller listening on 127.0.0.1 only. The controller
quorum is static (`controller.quorum.voters`), so a node's endpoints come from its configuration
rather than from the formatted log: a single node may move to other ports between runs, and
the nodes of a cluster find each other without a bootstrap step.

A node's folder holds `server.properties`, `log4j2.properties`, `node.json` (what we started it
with), `broker.pid`, `broker.log` (log4j), `jvm.out` (the JVM's own output) and `kafka-logs/`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from monitor.errors import BrokerError

HOST = "127.0.0.1"
PID_FILE = "broker.pid"
LOG_FILE = "broker.log"
JVM_OUT_FILE = "jvm.out"
STATE_FILE = "node.json"
MIN_JAVA = 17

# Processes this interpreter started, so stopping one also reaps it (no zombie, no warning).
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class NodeConfig:
    """What one node needs to know about itself and its quorum."""

    node_id: int
    port: int
    controller_port: int
    voters: tuple[tuple[int, int], ...]  # (node id, controller port) of every controller
    cluster_id: str
    partitions: int
    replication: int
    min_insync: int
    heap: str

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def server_properties(self, node_dir: Path) -> str:
        voters = ",".join(f"{node}@{HOST}:{port}" for node, port in self.voters)
        settings = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": node_dir.resolve() / "kafka-logs",
            "num.partitions": self.partitions,
            "default.replication.factor": self.replication,
            "min.insync.replicas": self.min_insync,
            # The internal topics must fit the cluster's size, or groups and transactions stall.
            "offsets.topic.replication.factor": self.replication,
            "transaction.state.log.replication.factor": self.replication,
            "transaction.state.log.min.isr": self.min_insync,
            "share.coordinator.state.topic.replication.factor": self.replication,
            "share.coordinator.state.topic.min.isr": self.min_insync,
            # Fewer internal partitions than the defaults (50) make the first group join and
            # the first transaction quick on a small machine.
            "offsets.topic.num.partitions": 6,
            "transaction.state.log.num.partitions": 6,
            "group.initial.rebalance.delay.ms": 0,
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> NodeConfig:
        raw = json.loads(text)
        raw["voters"] = tuple((int(node), int(port)) for node, port in raw["voters"])
        return cls(**raw)


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, as Kafka makes."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka's tools reject ids that look like options
            return text


def read_config(node_dir: Path) -> NodeConfig | None:
    """The configuration a node was last started with, or None for a fresh folder."""
    path = node_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        return NodeConfig.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError) as err:
        raise BrokerError(f"broker state {path} is unreadable: {err}") from err


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:  # all held open at once, so the OS cannot hand out one twice
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def accepts_connections(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0


def ensure_port_free(port: int) -> None:
    """Raise a one-line `BrokerError` when `port` on 127.0.0.1 is already taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As Kafka's own listener does: connections of a just-stopped broker lingering in
        # TIME_WAIT must not count as the port being taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as err:
            raise BrokerError(f"port {port} on {HOST} is already in use ({err.strerror})") from err


@cache
def find_java() -> str:
    """The `java` to run (`$JAVA_HOME/bin/java` or the one on PATH), checked to be 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if java_home and not Path(str(java)).is_file():
        raise BrokerError(f"JAVA_HOME={java_home} has no bin/java; Kafka needs Java {MIN_JAVA}+")
    if java is None:
        raise BrokerError(f"Java {MIN_JAVA}+ ('java') is not installed or not on PATH")
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BrokerError(f"cannot run {java} -version: {err}") from err
    found = re.search(r'version "(\d+)', done.stderr + done.stdout)
    if found is None or int(found.group(1)) < MIN_JAVA:
        version = found.group(1) if found else "unknown"
        raise BrokerError(f"Kafka needs Java {MIN_JAVA} or newer; {java} is version {version}")
    return java


def write_files(node_dir: Path, config: NodeConfig) -> None:
    """Write the node's `server.properties`, `log4j2.properties` and `node.json`."""
    node_dir.mkdir(parents=True, exist_ok=True)
    (node_dir / "server.properties").write_text(config.server_properties(node_dir))
    (node_dir / "log4j2.properties").write_text(_log4j_properties(node_dir))
    (node_dir / STATE_FILE).write_text(config.to_json())


def _log4j_properties(node_dir: Path) -> str:
    log = (node_dir / LOG_FILE).resolve()
    return f"""status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def is_formatted(node_dir: Path) -> bool:
    return (node_dir / "kafka-logs" / "meta.properties").is_file()


def format_storage(node_dir: Path, config: NodeConfig, jars: Path) -> None:
    """Format the node's log folder for its cluster id (Kafka's `kafka-storage.sh format`)."""
    command = [
        *_jvm(node_dir, jars, heap="256m"),
        # A short-lived tool: the quick JIT tier and serial GC start it fastest.
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        config.cluster_id,
        "--config",
        str(node_dir / "server.properties"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0 or not is_formatted(node_dir):
        reason = _last_lines(done.stdout + done.stderr) or f"exit {done.returncode}"
        raise BrokerError(f"formatting Kafka storage in {node_dir} failed: {reason}")


def launch(node_dir: Path, jars: Path, heap: str) -> int:
    """Start the node's JVM in its own session (it outlives the caller) and write its pid file."""
    command = [
        *_jvm(node_dir, jars, heap=heap),
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "kafka.Kafka",
        str((node_dir / "server.properties").resolve()),
    ]
    with open(node_dir / JVM_OUT_FILE, "wb") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=node_dir,
            start_new_session=True,  # Ctrl-C in the starting terminal must not reach it
        )
    _children[process.pid] = process
    (node_dir / PID_FILE).write_text(f"{process.pid}\n")
    return process.pid


def _jvm(node_dir: Path, jars: Path, heap: str) -> list[str]:
    return [
        find_java(),
        f"-Xmx{heap}",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={(node_dir / 'log4j2.properties').resolve()}",
        "-cp",
        str(jars / "*"),
    ]


def running_pid(node_dir: Path) -> int | None:
    """The pid of this folder's Kafka process if it is alive, else None."""
    try:
        pid = int((node_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_our_kafka(pid, node_dir) else None


def _is_our_kafka(pid: int, node_dir: Path) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    proc = Path("/proc") / str(pid)
    try:
        if proc.joinpath("stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
        cmdline = proc.joinpath("cmdline").read_bytes().decode(errors="replace")
    except (OSError, IndexError):
        return False
    # The pid may have been reused by another program since the pid file was written.
    return "kafka.Kafka" in cmdline and str((node_dir / "server.properties").resolve()) in cmdline


def stop_nodes(node_dirs: list[Path], *, timeout: float = 60.0, kill: bool = False) -> list[Path]:
    """Stop the given nodes: SIGTERM (or SIGKILL with `kill`), wait, then SIGKILL the stragglers.

    Signals every node before waiting, so a cluster shuts down in parallel. Returns the folders
    whose process was running. Idempotent: stopped nodes are skipped.
    """
    running = {node_dir: pid for node_dir in node_dirs if (pid := running_pid(node_dir))}
    for pid in running.values():
        _signal(pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for node_dir, pid in running.items():
        if not _wait_gone(pid, node_dir, deadline):
            _signal(pid, signal.SIGKILL)
            if not _wait_gone(pid, node_dir, time.monotonic() + 30):
                raise BrokerError(f"Kafka process {pid} of {node_dir} survived SIGKILL")
    for node_dir in node_dirs:
        (node_dir / PID_FILE).unlink(missing_ok=True)
    return list(running)


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
        os.kill(pid, signum)


def _wait_gone(pid: int, node_dir: Path, deadline: float) -> bool:
    child = _children.get(pid)
    while True:
        if child is not None:
            try:
                child.wait(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
            else:
                del _children[pid]
                return True
        elif not _is_our_kafka(pid, node_dir):
            return True
        else:
            time.sleep(0.2)
        if time.monotonic() >= deadline:
            return False


def log_tail(node_dir: Path, lines: int = 3) -> str:
    """The broker's last error lines (or last lines), on one line, for error messages."""
    parts = []
    for name in (JVM_OUT_FILE, LOG_FILE):
        try:
            text = (node_dir / name).read_text(errors="replace")
        except OSError:
            continue
        if tail := _last_lines(text, lines):
            parts.append(f"{name}: {tail}")
    return " || ".join(parts) or f"no log in {node_dir}"


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"\b(ERROR|FATAL)\b|Exception|Error:", line)]
    picked = (errors or lines)[-count:]
    return " | ".join(line[:300] for line in picked)
